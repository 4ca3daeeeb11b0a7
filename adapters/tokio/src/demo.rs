//! `cursorpool demo`: the whole path with no account. It starts the simulated Cursor backend
//! and the proxy on loopback, then plays Claude Code: a streamed Anthropic conversation with a
//! tool call, printed as it happens, with the backend's own counters at the end to show the
//! tool result travelled on the same upstream stream.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use cursorpool_sim::model::SimConfig;
use cursorpool_sim::server::{ServerConfig, SimHandle, spawn};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use cursorpool_host::app::{App, AppConfig};

use crate::platform::TokioPlatform;
use crate::server;

/// What went wrong in the demo (it is a program for people: errors are printed, exit 1).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Starting the simulated backend or the proxy failed.
    #[error("start-up failed: {0}")]
    Startup(String),
    /// Talking to the proxy failed.
    #[error("request failed: {0}")]
    Request(String),
}

/// The tool the demo declares, Claude Code style.
fn tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Current weather for a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }
    }])
}

/// Runs the demo, printing the transcript to stdout.
pub async fn run(base: AppConfig) -> Result<(), DemoError> {
    let sim = spawn(ServerConfig::new(SimConfig {
        chunk_chars: 6,
        token_interval: Duration::from_millis(15),
        ..SimConfig::default()
    }))
    .await
    .map_err(|e| DemoError::Startup(format!("simulated backend: {e}")))?;
    let token = sim
        .access_token("default")
        .ok_or_else(|| DemoError::Startup("simulated backend issued no token".into()))?;
    let config = AppConfig {
        upstream_url: sim.base_url(),
        accounts: vec![("sim".to_owned(), token)],
        ..base
    };
    let app =
        App::new(config, TokioPlatform::shared()).map_err(|e| DemoError::Startup(e.to_string()))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Startup(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Startup(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(server::serve(listener, app.clone(), async {
        let _ = stop_rx.await;
    }));

    say(&format!(
        "cursorpool demo\n  simulated Cursor backend: {}\n  proxy (Anthropic + OpenAI APIs): http://{addr}\n",
        sim.base_url()
    ));

    let mut messages = vec![json!({"role": "user", "content": "Hello! Who are you?"})];
    say("\nuser: Hello! Who are you?\nassistant: ");
    let reply = turn(addr, &messages).await?;
    messages.push(json!({"role": "assistant", "content": reply.content}));

    let ask = "What's the weather in Paris? call get_weather({\"city\":\"Paris\"})";
    say(&format!("\n\nuser: {ask}\nassistant: "));
    messages.push(json!({"role": "user", "content": ask}));
    let runs_before = app.runs_started();
    let reply = turn(addr, &messages).await?;
    messages.push(json!({"role": "assistant", "content": reply.content.clone()}));
    let calls: Vec<&Value> = reply
        .content
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    if calls.is_empty() {
        return Err(DemoError::Request("the model did not call the tool".into()));
    }
    let results: Vec<Value> = calls
        .iter()
        .map(|c| {
            let city = c["input"]["city"].as_str().unwrap_or("?");
            say(&format!(
                "\n  (tool) get_weather({city}) → \"18°C, light rain\""
            ));
            json!({"type": "tool_result", "tool_use_id": c["id"], "content": "18°C, light rain"})
        })
        .collect();
    messages.push(json!({"role": "user", "content": results}));
    say("\nassistant: ");
    turn(addr, &messages).await?;
    let runs = app.runs_started() - runs_before;
    say(&format!(
        "\n\nupstream: the tool round trip used {runs} Cursor run{} (the tool result resumed the parked stream); {} upstream connection(s) in all.\n",
        if runs == 1 { "" } else { "s" },
        app.upstream_connects()
    ));
    report_sim(&sim);
    let _ = stop_tx.send(());
    let _ = proxy.await;
    sim.shutdown().await;
    Ok(())
}

fn report_sim(sim: &SimHandle) {
    let t = sim.counters().total;
    say(&format!(
        "backend counters: {} runs ({} continued from a replayed checkpoint), {} tool call(s) issued, {} tool result(s) answered, {} turns completed\n",
        t.runs,
        t.replayed_checkpoints,
        t.tool_calls_issued,
        t.tool_results_answered,
        t.turns_completed
    ));
}

/// One streamed `POST /v1/messages`: prints text as it arrives, returns the assembled reply.
struct Reply {
    content: Vec<Value>,
}

async fn turn(addr: std::net::SocketAddr, messages: &[Value]) -> Result<Reply, DemoError> {
    let body = json!({
        "model": "claude-sonnet-5",
        "max_tokens": 1024,
        "stream": true,
        "system": "You are a helpful assistant reached through cursorpool.",
        "tools": tools(),
        "messages": messages,
    });
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| DemoError::Request(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| DemoError::Request(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::post("/v1/messages")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "demo-key")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| DemoError::Request(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| DemoError::Request(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(DemoError::Request(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial_json: Vec<String> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| DemoError::Request(e.to_string()))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            match v["type"].as_str() {
                Some("content_block_start") => {
                    blocks.push(v["content_block"].clone());
                    partial_json.push(String::new());
                }
                Some("content_block_delta") => {
                    let i = v["index"].as_u64().unwrap_or(0) as usize;
                    let d = &v["delta"];
                    match d["type"].as_str() {
                        Some("text_delta") => {
                            let t = d["text"].as_str().unwrap_or("");
                            say(t);
                            if let Some(b) = blocks.get_mut(i) {
                                let old = b["text"].as_str().unwrap_or("").to_owned();
                                b["text"] = Value::String(old + t);
                            }
                        }
                        Some("input_json_delta") => {
                            if let Some(p) = partial_json.get_mut(i) {
                                p.push_str(d["partial_json"].as_str().unwrap_or(""));
                            }
                        }
                        _ => {}
                    }
                }
                Some("content_block_stop") => {
                    let i = v["index"].as_u64().unwrap_or(0) as usize;
                    if let (Some(b), Some(p)) = (blocks.get_mut(i), partial_json.get(i))
                        && b["type"] == "tool_use"
                        && !p.is_empty()
                    {
                        b["input"] = serde_json::from_str(p).unwrap_or(Value::Null);
                        say(&format!("[tool_use {} {}]", b["name"], b["input"]));
                    }
                }
                Some("message_delta") => {
                    say(&format!("  ⟨stop_reason: {}⟩", v["delta"]["stop_reason"]));
                }
                Some("error") => {
                    return Err(DemoError::Request(format!("error event: {}", v["error"])));
                }
                _ => {}
            }
        }
    }
    Ok(Reply { content: blocks })
}

fn say(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}
