"""Scenarios driven by the official `openai` Python SDK against cursorpool.

Usage: python openai_scenarios.py <scenario>
Environment: OPENAI_BASE_URL (the proxy's `/v1`), OPENAI_API_KEY.

Each scenario prints one JSON object on its last stdout line; the Rust end-to-end test
(adapters/tokio/tests/e2e_sdk.rs) asserts on it and on the simulated backend's counters.
The simulated model obeys `call <tool>(<json>)` and `think` in the user text and echoes
`last user message: "..."` and `result of cursorpool-<tool>: ...` in its answer.
"""

import json
import sys

import openai

MODEL = "gpt-5"


def function(name, description, prop):
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {prop: {"type": "string"}},
                "required": [prop],
            },
        },
    }


WEATHER = function("get_weather", "Current weather for a city.", "city")
TIME = function("get_time", "Current time in a time zone.", "zone")
TOOL_OUTPUT = {"get_weather": "18 degrees, light rain", "get_time": "09:41 CET"}


def client():
    # Retries off: the test wants to see exactly what the proxy answered.
    return openai.OpenAI(max_retries=0, timeout=60.0)


def extra(obj, name):
    """A field the SDK's models do not declare (kept by pydantic as an extra)."""
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def summary(completion):
    choice = completion.choices[0]
    msg = choice.message
    return {
        "id": completion.id,
        "object": completion.object,
        "model": completion.model,
        "finish_reason": choice.finish_reason,
        "content": msg.content,
        "reasoning": extra(msg, "reasoning_content"),
        "tool_calls": [
            {"id": t.id, "name": t.function.name, "arguments": json.loads(t.function.arguments)}
            for t in (msg.tool_calls or [])
        ],
        "usage": completion.usage.model_dump() if completion.usage else None,
    }


def streamed(c, **kwargs):
    """One streamed request: content, reasoning, tool calls assembled from the chunks."""
    out = {
        "chunks": 0,
        "ids": set(),
        "content": "",
        "reasoning": "",
        "finish_reason": None,
        "usage": None,
        "tool_calls": {},
    }
    stream = c.chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True}, **kwargs
    )
    for chunk in stream:
        out["chunks"] += 1
        out["ids"].add(chunk.id)
        if chunk.usage:
            out["usage"] = chunk.usage.model_dump()
        for choice in chunk.choices:
            d = choice.delta
            out["content"] += d.content or ""
            out["reasoning"] += extra(d, "reasoning_content") or ""
            for t in d.tool_calls or []:
                slot = out["tool_calls"].setdefault(t.index, {"id": None, "name": "", "arguments": ""})
                if t.id:
                    slot["id"] = t.id
                if t.function and t.function.name:
                    slot["name"] += t.function.name
                if t.function and t.function.arguments:
                    slot["arguments"] += t.function.arguments
            if choice.finish_reason:
                out["finish_reason"] = choice.finish_reason
    out["ids"] = sorted(out["ids"])
    out["tool_calls"] = [
        {"id": t["id"], "name": t["name"], "arguments": json.loads(t["arguments"] or "{}")}
        for _, t in sorted(out["tool_calls"].items())
    ]
    return out


def scenario_text():
    completion = client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are tested by the openai SDK."},
            {"role": "user", "content": "hello from the openai sdk, non-streaming"},
        ],
    )
    return summary(completion)


def scenario_stream():
    return streamed(
        client(),
        messages=[{"role": "user", "content": "hello from the openai sdk, streaming"}],
    )


def assistant_with_calls(calls, content=None):
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": t["id"],
                "type": "function",
                "function": {"name": t["name"], "arguments": json.dumps(t["arguments"])},
            }
            for t in calls
        ],
    }


def tool_messages(calls):
    return [
        {"role": "tool", "tool_call_id": t["id"], "content": TOOL_OUTPUT[t["name"]]}
        for t in calls
    ]


def scenario_tool_loop():
    c = client()
    ask = 'What is the weather in Paris? call get_weather({"city":"Paris"})'
    messages = [{"role": "user", "content": ask}]
    first = streamed(c, tools=[WEATHER], messages=messages)
    messages.append(assistant_with_calls(first["tool_calls"], first["content"] or None))
    messages += tool_messages(first["tool_calls"])
    second = streamed(c, tools=[WEATHER], messages=messages)
    return {"first": first, "second": second}


def scenario_two_tools():
    c = client()
    ask = 'Weather and time? call get_weather({"city":"Paris"}) call get_time({"zone":"CET"})'
    messages = [{"role": "user", "content": ask}]
    first = summary(c.chat.completions.create(model=MODEL, tools=[WEATHER, TIME], messages=messages))
    messages.append(assistant_with_calls(first["tool_calls"], first["content"]))
    messages += tool_messages(first["tool_calls"])
    second = summary(c.chat.completions.create(model=MODEL, tools=[WEATHER, TIME], messages=messages))
    return {"first": first, "second": second}


def scenario_thinking():
    c = client()
    messages = [{"role": "user", "content": "think hard: what is two plus two?"}]
    stream = streamed(c, reasoning_effort="high", messages=messages)
    plain = summary(
        c.chat.completions.create(model=MODEL, reasoning_effort="high", messages=messages)
    )
    return {"stream": stream, "plain": plain}


def scenario_models():
    page = client().models.list()
    return {"ids": [m.id for m in page], "objects": sorted({m.object for m in page})}


def scenario_rate_limit():
    try:
        client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "over quota"}]
        )
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "exception": type(e).__name__,
            "status": e.status_code,
            "error_type": body.get("type"),
            "code": body.get("code"),
            "retry_after": e.response.headers.get("retry-after"),
        }
    return {"exception": None}


def scenario_midstream_error():
    text = ""
    try:
        stream = client().chat.completions.create(
            model=MODEL,
            stream=True,
            messages=[{"role": "user", "content": "a long answer please lorem 400"}],
        )
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
        return {"exception": None, "text_len": len(text)}
    except openai.APIError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "exception": type(e).__name__,
            "error_type": body.get("type"),
            "message": e.message,
            "text_len": len(text),
        }


SCENARIOS = {
    name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} <{'|'.join(SCENARIOS)}>")
    print(json.dumps(SCENARIOS[sys.argv[1]](), ensure_ascii=False))
