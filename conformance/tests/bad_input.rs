//! Bad input from clients never crashes the proxy or reaches upstream: each gets a 4xx in the
//! client API's own error shape, and the server goes on serving.

use cursorpool_conformance as support;

use bytes::Bytes;
use serde_json::{Value, json};
use support::{Harness, Options, anthropic_text_request, bounded};

/// A body the proxy must refuse, the status, and the Anthropic / OpenAI error type.
struct Case {
    what: &'static str,
    body: Vec<u8>,
    status: u16,
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn cases(openai: bool) -> Vec<Case> {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let ok = |extra: Value| -> Vec<u8> {
        let mut v = json!({"model": "claude-sonnet-5", "max_tokens": 16, "messages": msgs});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        v.to_string().into_bytes()
    };
    let image = if openai {
        json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@not base64@@"}}
        ]}])
    } else {
        json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "@@not base64@@"}}
        ]}])
    };
    let mut invalid_utf8 =
        br#"{"model":"claude-sonnet-5","max_tokens":16,"messages":[{"role":"user","content":""#
            .to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc0]);
    invalid_utf8.extend_from_slice(br#""}]}"#);
    vec![
        Case { what: "malformed JSON", body: br#"{"model": "#.to_vec(), status: 400 },
        Case { what: "not an object", body: b"[1, 2, 3]".to_vec(), status: 400 },
        Case { what: "empty body", body: Vec::new(), status: 400 },
        Case { what: "wrong type (max_tokens)", body: ok(json!({"max_tokens": "ten"})), status: 400 },
        Case { what: "wrong type (messages)", body: ok(json!({"messages": "hello"})), status: 400 },
        Case {
            what: "missing messages",
            body: json!({"model": "claude-sonnet-5", "max_tokens": 16}).to_string().into_bytes(),
            status: 400,
        },
        Case {
            what: "missing model",
            body: json!({"max_tokens": 16, "messages": msgs}).to_string().into_bytes(),
            status: 400,
        },
        Case { what: "invalid UTF-8", body: invalid_utf8, status: 400 },
        Case {
            what: "nested 100,000 deep",
            body: format!(
                r#"{{"model":"claude-sonnet-5","max_tokens":16,"messages":[{{"role":"user","content":"hi"}}],"metadata":{}}}"#,
                nested(100_000)
            )
            .into_bytes(),
            status: 400,
        },
        Case { what: "absurd max_tokens", body: ok(json!({"max_tokens": 1_000_000_000_000u64})), status: 400 },
        Case { what: "negative max_tokens", body: ok(json!({"max_tokens": -5})), status: 400 },
        Case { what: "image that is not base64", body: ok(json!({"messages": image})), status: 400 },
        Case { what: "unknown role", body: ok(json!({"messages": [{"role": "wizard", "content": "hi"}]})), status: 400 },
    ]
}

fn check_shape(openai: bool, what: &str, r: &support::Response, status: u16) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", r.text()));
    if openai {
        let e = &v["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
        assert_eq!(e["type"], "invalid_request_error", "{what}: {v}");
    } else {
        assert_eq!(v["type"], "error", "{what}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }
}

async fn bad_requests_get_4xx_in_the_api_shape_and_never_reach_upstream() {
    bounded(async {
        let h = Harness::start(Options::default()).await;
        for openai in [false, true] {
            let path = if openai {
                "/v1/chat/completions"
            } else {
                "/v1/messages"
            };
            for case in cases(openai) {
                let r = h.post(path, Bytes::from(case.body)).await;
                check_shape(openai, case.what, &r, case.status);
            }
        }
        assert_eq!(
            h.counters().total.runs,
            0,
            "no bad request reached upstream"
        );
        // Unknown fields are accepted, and the server still serves.
        let mut body = anthropic_text_request("still serving", false);
        body["frobnicate"] = json!({"x": [1, 2, 3]});
        let r = h.anthropic(&body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        h.shutdown().await;
    })
    .await;
}

support::both_binaries!(bad_requests_get_4xx_in_the_api_shape_and_never_reach_upstream);
