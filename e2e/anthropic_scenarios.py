"""Scenarios driven by the official `anthropic` Python SDK against cursorpool.

Usage: python anthropic_scenarios.py <scenario>
Environment: ANTHROPIC_BASE_URL (the proxy), ANTHROPIC_API_KEY.

Each scenario prints one JSON object on its last stdout line; the Rust end-to-end test
(adapters/tokio/tests/e2e_sdk.rs) asserts on it and on the simulated backend's counters.
The simulated model obeys `call <tool>(<json>)` and `think` in the user text and echoes
`last user message: "..."` and `result of cursorpool-<tool>: ...` in its answer.
"""

import json
import sys

import anthropic

MODEL = "claude-sonnet-5"

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME = {
    "name": "get_time",
    "description": "Current time in a time zone.",
    "input_schema": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
    },
}
TOOL_OUTPUT = {"get_weather": "18 degrees, light rain", "get_time": "09:41 CET"}


def client():
    # Retries off: the test wants to see exactly what the proxy answered.
    return anthropic.Anthropic(max_retries=0, timeout=60.0)


def blocks(message):
    """The content blocks as plain dicts, as a client would send them back."""
    return [b.model_dump(exclude_none=True) for b in message.content]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def summary(message):
    return {
        "id": message.id,
        "type": message.type,
        "role": message.role,
        "model": message.model,
        "stop_reason": message.stop_reason,
        "block_types": [b.type for b in message.content],
        "text": text_of(message),
        "thinking": "".join(b.thinking for b in message.content if b.type == "thinking"),
        "tool_uses": [
            {"id": b.id, "name": b.name, "input": b.input}
            for b in message.content
            if b.type == "tool_use"
        ],
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
    }


def streamed(c, **kwargs):
    """One streamed request through the SDK's stream helper: raw event types and the final
    message the SDK assembled."""
    events = []
    text = ""
    with c.messages.stream(model=MODEL, max_tokens=1024, **kwargs) as stream:
        for event in stream:
            events.append(event.type)
            if event.type == "text":
                text += event.text
        final = stream.get_final_message()
    return events, text, final


def scenario_text():
    msg = client().messages.create(
        model=MODEL,
        max_tokens=1024,
        system="You are tested by the anthropic SDK.",
        messages=[{"role": "user", "content": "hello from the anthropic sdk, non-streaming"}],
    )
    return summary(msg)


def scenario_stream():
    events, text, final = streamed(
        client(),
        messages=[{"role": "user", "content": "hello from the anthropic sdk, streaming"}],
    )
    out = summary(final)
    out["events"] = events
    out["streamed_text"] = text
    return out


def tool_results(message):
    return [
        {
            "type": "tool_result",
            "tool_use_id": b.id,
            "content": TOOL_OUTPUT[b.name],
        }
        for b in message.content
        if b.type == "tool_use"
    ]


def scenario_tool_loop():
    c = client()
    ask = 'What is the weather in Paris? call get_weather({"city":"Paris"})'
    messages = [{"role": "user", "content": ask}]
    _, _, first = streamed(c, tools=[WEATHER], messages=messages)
    messages.append({"role": "assistant", "content": blocks(first)})
    messages.append({"role": "user", "content": tool_results(first)})
    events, _, second = streamed(c, tools=[WEATHER], messages=messages)
    return {"first": summary(first), "second": summary(second), "second_events": events}


def scenario_two_tools():
    c = client()
    ask = 'Weather and time? call get_weather({"city":"Paris"}) call get_time({"zone":"CET"})'
    messages = [{"role": "user", "content": ask}]
    first = c.messages.create(model=MODEL, max_tokens=1024, tools=[WEATHER, TIME], messages=messages)
    messages.append({"role": "assistant", "content": blocks(first)})
    messages.append({"role": "user", "content": tool_results(first)})
    second = c.messages.create(
        model=MODEL, max_tokens=1024, tools=[WEATHER, TIME], messages=messages
    )
    return {"first": summary(first), "second": summary(second)}


def scenario_thinking():
    c = client()
    thinking = {"type": "enabled", "budget_tokens": 2048}
    messages = [{"role": "user", "content": "think hard: what is two plus two?"}]
    events, _, streamed_msg = streamed(c, thinking=thinking, messages=messages)
    plain = c.messages.create(
        model=MODEL, max_tokens=4096, thinking=thinking, messages=messages
    )
    return {"stream": summary(streamed_msg), "events": events, "plain": summary(plain)}


def scenario_count_tokens():
    c = client()
    small = c.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    large = c.messages.count_tokens(
        model=MODEL,
        tools=[WEATHER, TIME],
        messages=[{"role": "user", "content": "count these words please " * 200}],
    )
    return {"small": small.input_tokens, "large": large.input_tokens}


def scenario_models():
    ids = [m.id for m in client().models.list()]
    return {"ids": ids}


def scenario_rate_limit():
    try:
        client().messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "over quota"}]
        )
    except anthropic.APIStatusError as e:
        return {
            "exception": type(e).__name__,
            "status": e.status_code,
            "error_type": (e.body or {}).get("error", {}).get("type"),
            "retry_after": e.response.headers.get("retry-after"),
        }
    return {"exception": None}


def scenario_midstream_error():
    text = ""
    try:
        with client().messages.stream(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "a long answer please lorem 400"}],
        ) as stream:
            for event in stream:
                if event.type == "text":
                    text += event.text
        return {"exception": None, "text_len": len(text)}
    except anthropic.APIError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "exception": type(e).__name__,
            "error_type": body.get("error", {}).get("type") or body.get("type"),
            "text_len": len(text),
        }


SCENARIOS = {
    name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} <{'|'.join(SCENARIOS)}>")
    print(json.dumps(SCENARIOS[sys.argv[1]](), ensure_ascii=False))
