//! Error rendering: every upstream `FailureKind`, every client error and the proxy's own
//! conditions, in both APIs' shapes, with status and headers.

use std::time::Duration;

use cursorpool_core::api::{ApiError, ClientError, ErrorType, render_error};
use cursorpool_core::chat::ApiKind;
use cursorpool_core::classify::{Classification, Failure, FailureKind, TransportFailure, classify};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::aiserver_v1::ErrorDetails;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use http::HeaderMap;
use serde_json::{Value, json};

fn connect(code: Code, message: &str) -> Classification {
    classify(Failure::Connect(&ConnectError::new(code, message)))
}

fn cursor(code: Code, error: CursorError) -> Classification {
    let e = ConnectError::new(code, "upstream says no").with_cursor_details(&ErrorDetails {
        error: error as i32,
        details: None,
        is_expected: None,
    });
    classify(Failure::Connect(&e))
}

/// Status, headers (sorted, without content-type, which is checked) and JSON body.
fn rendered(api: ApiKind, error: &ApiError) -> (u16, Vec<(String, String)>, Value) {
    let (status, headers, body) = render_error(api, error).into_parts();
    assert!(
        headers.contains(&("content-type".into(), "application/json".into())),
        "{headers:?}"
    );
    let mut rest: Vec<_> = headers
        .into_iter()
        .filter(|(k, _)| k != "content-type")
        .collect();
    rest.sort();
    (
        status,
        rest,
        serde_json::from_slice(&body).expect("JSON body"),
    )
}

fn no_retry() -> Vec<(String, String)> {
    vec![("x-should-retry".into(), "false".into())]
}

/// One row of the table: the failure, then the expected rendering in each API.
struct Row {
    classification: Classification,
    kind: FailureKind,
    anthropic: (u16, &'static str),
    openai: (u16, &'static str, &'static str),
    headers: Vec<(String, String)>,
}

#[test]
fn every_failure_kind_renders_in_both_shapes_with_status_and_headers() {
    let mut rate_limited_headers = HeaderMap::new();
    rate_limited_headers.insert("retry-after", "1.2".parse().expect("header"));
    let rows = vec![
        Row {
            classification: connect(Code::ResourceExhausted, "usage limit"),
            kind: FailureKind::QuotaExhausted,
            anthropic: (429, "rate_limit_error"),
            openai: (429, "insufficient_quota", "insufficient_quota"),
            headers: vec![],
        },
        Row {
            classification: classify(Failure::HttpResponse {
                status: 429,
                headers: &rate_limited_headers,
                body: b"slow down",
            }),
            kind: FailureKind::RateLimited,
            anthropic: (429, "rate_limit_error"),
            openai: (429, "rate_limit_error", "rate_limit_exceeded"),
            // 1.2 s rounds up to 2: retrying after 1 s would be too early.
            headers: vec![("retry-after".into(), "2".into())],
        },
        Row {
            classification: cursor(Code::Unavailable, CursorError::ProviderError),
            kind: FailureKind::ProviderTransient,
            anthropic: (500, "api_error"),
            openai: (502, "server_error", "provider_transient"),
            headers: vec![],
        },
        Row {
            classification: connect(Code::Unauthenticated, "bad token"),
            kind: FailureKind::Unauthenticated,
            anthropic: (401, "authentication_error"),
            openai: (401, "authentication_error", "unauthenticated"),
            headers: no_retry(),
        },
        Row {
            classification: connect(Code::PermissionDenied, "blocked"),
            kind: FailureKind::PermissionDenied,
            anthropic: (403, "permission_error"),
            openai: (403, "permission_error", "permission_denied"),
            headers: no_retry(),
        },
        Row {
            classification: cursor(Code::FailedPrecondition, CursorError::OutdatedClient),
            kind: FailureKind::OutdatedClient,
            anthropic: (500, "api_error"),
            openai: (502, "server_error", "outdated_client"),
            headers: no_retry(),
        },
        Row {
            classification: connect(Code::InvalidArgument, "bad model"),
            kind: FailureKind::BadRequest,
            anthropic: (400, "invalid_request_error"),
            openai: (400, "invalid_request_error", "bad_request"),
            headers: no_retry(),
        },
        Row {
            classification: classify(Failure::Transport(TransportFailure::ConnectionReset)),
            kind: FailureKind::Transport,
            anthropic: (500, "api_error"),
            openai: (502, "server_error", "transport"),
            headers: vec![],
        },
        Row {
            classification: connect(Code::Internal, "boom"),
            kind: FailureKind::UpstreamInternal,
            anthropic: (500, "api_error"),
            openai: (500, "server_error", "upstream_internal"),
            headers: vec![],
        },
        Row {
            classification: connect(Code::Unavailable, "at capacity"),
            kind: FailureKind::UpstreamInternal,
            anthropic: (529, "overloaded_error"),
            openai: (503, "server_error", "overloaded"),
            headers: vec![],
        },
        Row {
            classification: connect(Code::Canceled, "canceled"),
            kind: FailureKind::Canceled,
            anthropic: (500, "api_error"),
            openai: (502, "server_error", "canceled"),
            headers: vec![],
        },
        Row {
            classification: connect(Code::Unimplemented, "no such method"),
            kind: FailureKind::Other,
            anthropic: (500, "api_error"),
            openai: (502, "server_error", "other"),
            headers: vec![],
        },
    ];
    for row in rows {
        let c = &row.classification;
        assert_eq!(c.kind, row.kind, "{c:?}");
        let error = ApiError::from(c);
        let message = if c.message.is_empty() {
            "upstream error"
        } else {
            c.message.as_str()
        };

        let (status, headers, body) = rendered(ApiKind::Anthropic, &error);
        assert_eq!(status, row.anthropic.0, "{:?}", row.kind);
        assert_eq!(headers, row.headers, "{:?}", row.kind);
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": row.anthropic.1, "message": message}})
        );

        let (status, headers, body) = rendered(ApiKind::OpenAi, &error);
        assert_eq!(status, row.openai.0, "{:?}", row.kind);
        assert_eq!(headers, row.headers, "{:?}", row.kind);
        assert_eq!(
            body,
            json!({"error": {"message": message, "type": row.openai.1, "param": null, "code": row.openai.2}})
        );
    }
}

#[test]
fn client_errors_render_as_400_with_the_path_and_no_retry() {
    let e = ClientError::invalid("messages[3].content[0].source.data", "not valid base64");
    let error = ApiError::from(&e);
    assert_eq!(error.error_type, ErrorType::InvalidRequest);

    let (status, headers, body) = rendered(ApiKind::Anthropic, &error);
    assert_eq!((status, headers), (400, no_retry()));
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "messages[3].content[0].source.data: not valid base64"}})
    );

    let (status, headers, body) = rendered(ApiKind::OpenAi, &error);
    assert_eq!((status, headers), (400, no_retry()));
    assert_eq!(
        body,
        json!({"error": {"message": "messages[3].content[0].source.data: not valid base64",
            "type": "invalid_request_error", "param": "messages[3].content[0].source.data",
            "code": "invalid_request"}})
    );

    for (e, code) in [
        (ClientError::InvalidUtf8 { offset: 3 }, "invalid_utf8"),
        (ClientError::TooDeep { limit: 128 }, "json_too_deep"),
        (
            ClientError::unsupported("n", "only one choice per request is supported"),
            "unsupported",
        ),
        (
            ClientError::Syntax {
                path: String::new(),
                message: "EOF while parsing a value".into(),
                line: 1,
                column: 0,
            },
            "invalid_json",
        ),
    ] {
        let (status, _, body) = rendered(ApiKind::OpenAi, &ApiError::from(&e));
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["message"], e.to_string());
    }
}

#[test]
fn an_oversized_body_is_413_request_too_large() {
    let error = ApiError::from(&ClientError::TooLarge { limit: 32 << 20 });
    let (status, headers, body) = rendered(ApiKind::Anthropic, &error);
    assert_eq!((status, headers), (413, no_retry()));
    assert_eq!(body["error"]["type"], "request_too_large");
    let (status, _, body) = rendered(ApiKind::OpenAi, &error);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[test]
fn a_busy_pool_is_529_overloaded_with_retry_after() {
    let error = ApiError::overloaded("all accounts are busy", Some(Duration::from_millis(2_500)));
    let (status, headers, body) = rendered(ApiKind::Anthropic, &error);
    assert_eq!(status, 529);
    assert_eq!(headers, vec![("retry-after".into(), "3".into())]);
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "all accounts are busy"}})
    );
    let (status, headers, body) = rendered(ApiKind::OpenAi, &error);
    assert_eq!(status, 503);
    assert_eq!(headers, vec![("retry-after".into(), "3".into())]);
    assert_eq!(body["error"]["code"], "overloaded");
}

#[test]
fn unknown_routes_are_404_not_found() {
    let error = ApiError::not_found("no model named gpt-9");
    let (status, headers, body) = rendered(ApiKind::Anthropic, &error);
    assert_eq!((status, headers), (404, no_retry()));
    assert_eq!(body["error"]["type"], "not_found_error");
    let (status, _, body) = rendered(ApiKind::OpenAi, &error);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "not_found");
}

#[test]
fn whole_second_retry_hints_are_not_rounded_up() {
    let mut c = connect(Code::ResourceExhausted, "limit");
    c.retry_after = Some(Duration::from_secs(30));
    let (_, headers, _) = rendered(ApiKind::Anthropic, &ApiError::from(&c));
    assert_eq!(headers, vec![("retry-after".into(), "30".into())]);
}
