//! Connect codes, errors and end-stream trailers against the spec's tables (§4.1–§4.3, §4.5)
//! and the Appendix C fixtures.

use bytes::Bytes;
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::end_stream::{self, EndStream, EndStreamError};
use cursorpool_core::connect::error::{
    CURSOR_ERROR_DETAILS_TYPE, ConnectError, ErrorDetail, ErrorJsonError, MAX_JSON_DEPTH,
};
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_proto::aiserver_v1::{CustomErrorDetails, ErrorDetails};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::json;

/// Appendix C: `ErrorDetails{ERROR_PRO_USER_USAGE_LIMIT, details{"Usage limit",
/// "You have reached your limit.", is_retryable false}}`.
const APPENDIX_C_DETAILS_HEX: &str = "080a122d0a0b5573616765206c696d6974121c596f752068617665207265616368656420796f7572206c696d69742e2000";

/// Appendix C: the end-stream JSON carrying those details.
const APPENDIX_C_END_STREAM: &str = r#"{"error":{"code":"resource_exhausted","message":"Error","details":[{"type":"aiserver.v1.ErrorDetails","value":"CAoSLQoLVXNhZ2UgbGltaXQSHFlvdSBoYXZlIHJlYWNoZWQgeW91ciBsaW1pdC4gAA=="}]}}"#;

fn appendix_c_details() -> ErrorDetails {
    ErrorDetails {
        error: CursorError::ProUserUsageLimit as i32,
        details: Some(CustomErrorDetails {
            title: "Usage limit".into(),
            detail: "You have reached your limit.".into(),
            is_retryable: Some(false),
            ..Default::default()
        }),
        is_expected: None,
    }
}

fn parse_err(json: &str) -> EndStreamError {
    match end_stream::parse(json.as_bytes()) {
        Ok(end) => panic!("{json} parsed as {end:?}"),
        Err(e) => e,
    }
}

// ---- codes -----------------------------------------------------------------------------------

#[test]
fn every_code_round_trips_through_as_str_and_parse() {
    for code in Code::ALL {
        assert_eq!(Code::parse(code.as_str()), Some(code));
        assert_eq!(code.to_string(), code.as_str());
    }
}

#[test]
fn code_numbers_are_one_through_sixteen_in_all_order() {
    for (i, code) in Code::ALL.into_iter().enumerate() {
        assert_eq!(code.number() as usize, i + 1);
        assert_eq!(Code::from_number(code.number()), Some(code));
    }
    assert_eq!(Code::from_number(0), None);
    assert_eq!(Code::from_number(17), None);
}

#[test]
fn every_code_has_the_spec_4_2_name_number_and_http_status() {
    let table = [
        ("canceled", 1, 499),
        ("unknown", 2, 500),
        ("invalid_argument", 3, 400),
        ("deadline_exceeded", 4, 504),
        ("not_found", 5, 404),
        ("already_exists", 6, 409),
        ("permission_denied", 7, 403),
        ("resource_exhausted", 8, 429),
        ("failed_precondition", 9, 400),
        ("aborted", 10, 409),
        ("out_of_range", 11, 400),
        ("unimplemented", 12, 501),
        ("internal", 13, 500),
        ("unavailable", 14, 503),
        ("data_loss", 15, 500),
        ("unauthenticated", 16, 401),
    ];
    assert_eq!(table.len(), Code::ALL.len());
    for (name, number, status) in table {
        let code = Code::parse(name).unwrap_or_else(|| panic!("{name} does not parse"));
        assert_eq!(code.number(), number, "{name}");
        assert_eq!(code.http_status(), status, "{name}");
    }
}

#[test]
fn http_status_maps_to_code_exactly_as_the_spec_4_3_connect_es_table() {
    let table = [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
    ];
    for (status, code) in table {
        assert_eq!(Code::from_http_status(status), code, "{status}");
    }
    for status in 0..=999u16 {
        if !table.iter().any(|(s, _)| *s == status) {
            assert_eq!(Code::from_http_status(status), Code::Unknown, "{status}");
        }
    }
}

#[test]
fn code_parse_rejects_other_spellings() {
    for s in [
        "",
        "ok",
        "Canceled",
        "RESOURCE_EXHAUSTED",
        "8",
        " canceled",
        "cancelled",
    ] {
        assert_eq!(Code::parse(s), None, "{s:?}");
    }
}

// ---- Appendix C ------------------------------------------------------------------------------

#[test]
fn appendix_c_error_details_bytes_decode_to_pro_user_usage_limit() {
    let bytes = hex::decode(APPENDIX_C_DETAILS_HEX).expect("fixture is hex");
    let d = ErrorDetails::decode(&bytes[..]).expect("fixture decodes");
    assert_eq!(d.error(), CursorError::ProUserUsageLimit);
    let custom = d.details.as_ref().expect("custom details");
    assert_eq!(custom.title, "Usage limit");
    assert_eq!(custom.detail, "You have reached your limit.");
    assert_eq!(custom.is_retryable, Some(false));
    assert_eq!(d, appendix_c_details());
    assert_eq!(d.encode_to_vec(), bytes);
}

#[test]
fn appendix_c_end_stream_parses_to_resource_exhausted_with_its_cursor_details() {
    let end = end_stream::parse(APPENDIX_C_END_STREAM.as_bytes()).expect("fixture parses");
    assert!(end.metadata.is_empty());
    let error = end.error.as_ref().expect("an error");
    assert_eq!(error.code, Code::ResourceExhausted);
    assert_eq!(error.message, "Error");
    assert_eq!(error.details.len(), 1);
    assert_eq!(error.details[0].type_name, CURSOR_ERROR_DETAILS_TYPE);
    assert_eq!(error.cursor_details(), Some(appendix_c_details()));
    assert_eq!(
        error.user_message(),
        "Usage limit You have reached your limit."
    );
}

#[test]
fn appendix_c_end_stream_round_trips_byte_for_byte() {
    let end = end_stream::parse(APPENDIX_C_END_STREAM.as_bytes()).expect("fixture parses");
    assert_eq!(
        String::from_utf8(end.to_json_bytes()).expect("utf-8"),
        APPENDIX_C_END_STREAM
    );
    assert_eq!(end_stream::parse(&end.to_json_bytes()), Ok(end));
}

// ---- end-stream: accepted shapes --------------------------------------------------------------

#[test]
fn empty_end_stream_is_success_and_ok_serializes_as_empty_object() {
    let end = end_stream::parse(b"{}").expect("parses");
    assert_eq!(end, EndStream::ok());
    assert!(end.is_ok());
    assert_eq!(EndStream::ok().to_json_bytes(), b"{}");
}

#[test]
fn metadata_only_end_stream_parses_and_round_trips() {
    let json = br#"{"metadata":{"some-trailer":["v1","v2"],"x-other":[]}}"#;
    let end = end_stream::parse(json).expect("parses");
    assert!(end.error.is_none());
    assert_eq!(end.metadata_value("some-trailer"), Some("v1"));
    assert_eq!(end.metadata_value("x-other"), None);
    assert_eq!(end.to_json_bytes(), json.to_vec());
}

#[test]
fn error_with_metadata_end_stream_parses_both() {
    let json = br#"{"error":{"code":"unauthenticated","message":"bad token"},"metadata":{"Retry-After":["5"]}}"#;
    let end = end_stream::parse(json).expect("parses");
    let error = end.error.as_ref().expect("error");
    assert_eq!(error.code, Code::Unauthenticated);
    assert_eq!(error.message, "bad token");
    assert_eq!(end.metadata_value("retry-after"), Some("5"));
    assert_eq!(end.to_json_bytes(), json.to_vec());
}

#[test]
fn unknown_keys_are_ignored_at_every_level() {
    let json = br#"{"x":1,"error":{"code":"internal","message":"Blob not found: ab","y":[1],"details":[{"type":"t","value":"","z":null}]},"metadata":{}}"#;
    let end = end_stream::parse(json).expect("parses");
    let error = end.error.expect("error");
    assert_eq!(error.code, Code::Internal);
    assert_eq!(error.details[0].type_name, "t");
    assert!(error.details[0].value.is_empty());
}

#[test]
fn detail_base64_is_accepted_with_or_without_padding_and_in_url_safe_alphabet() {
    // 0xfb 0xff encodes as "+/8=" (standard) and "-_8=" (URL-safe).
    for value in ["+/8=", "+/8", "-_8=", "-_8"] {
        let json = format!(
            r#"{{"error":{{"code":"unknown","details":[{{"type":"t","value":"{value}"}}]}}}}"#
        );
        let end = end_stream::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{value}: {e}"));
        let error = end.error.expect("error");
        assert_eq!(
            error.details[0].value,
            Bytes::from_static(&[0xfb, 0xff]),
            "{value}"
        );
    }
    let unpadded = APPENDIX_C_END_STREAM.replace("AA==", "AA");
    let end = end_stream::parse(unpadded.as_bytes()).expect("unpadded parses");
    assert_eq!(
        end.error.and_then(|e| e.cursor_details()),
        Some(appendix_c_details())
    );
}

#[test]
fn detail_debug_json_is_kept_and_written_back() {
    let json = br#"{"error":{"code":"resource_exhausted","message":"Error","details":[{"type":"aiserver.v1.ErrorDetails","value":"CDk","debug":{"error":"ERROR_PROVIDER_ERROR"}}]}}"#;
    let end = end_stream::parse(json).expect("parses");
    let error = end.error.as_ref().expect("error");
    assert_eq!(
        error.details[0].debug,
        Some(json!({"error": "ERROR_PROVIDER_ERROR"}))
    );
    assert_eq!(
        error.cursor_details().map(|d| d.error()),
        Some(CursorError::ProviderError)
    );
    let again = end_stream::parse(&end.to_json_bytes()).expect("re-parses");
    assert_eq!(again, end);
}

#[test]
fn unknown_code_string_becomes_unknown_and_keeps_the_original_in_the_message() {
    let end = end_stream::parse(br#"{"error":{"code":"teapot","message":"short and stout"}}"#)
        .expect("parses");
    let error = end.error.expect("error");
    assert_eq!(error.code, Code::Unknown);
    assert_eq!(error.message, r#"short and stout (upstream code "teapot")"#);
}

#[test]
fn upper_case_code_string_is_accepted() {
    let end = end_stream::parse(br#"{"error":{"code":"RESOURCE_EXHAUSTED"}}"#).expect("parses");
    let error = end.error.expect("error");
    assert_eq!(error.code, Code::ResourceExhausted);
    assert_eq!(error.message, "");
}

#[test]
fn metadata_lookup_ignores_case_and_serialization_merges_case_variants() {
    let end = EndStream::ok()
        .with_metadata("Retry-After", "7")
        .with_metadata("retry-after", "8");
    assert_eq!(end.metadata.len(), 1);
    assert_eq!(end.metadata_value("RETRY-AFTER"), Some("7"));
    let raw = EndStream {
        error: None,
        metadata: vec![
            ("A".into(), vec!["1".into()]),
            ("a".into(), vec!["2".into()]),
        ],
    };
    assert_eq!(
        raw.to_json_bytes(),
        br#"{"metadata":{"A":["1","2"]}}"#.to_vec()
    );
}

// ---- end-stream: rejected shapes --------------------------------------------------------------

#[test]
fn null_error_is_a_typed_error_not_success() {
    assert_eq!(
        parse_err(r#"{"error":null}"#),
        EndStreamError::InvalidError(ErrorJsonError::NotAnObject { found: "null" })
    );
}

#[test]
fn empty_error_object_is_missing_code() {
    assert_eq!(
        parse_err(r#"{"error":{}}"#),
        EndStreamError::InvalidError(ErrorJsonError::MissingCode)
    );
}

#[test]
fn error_without_a_string_code_is_a_typed_error() {
    assert_eq!(
        parse_err(r#"{"error":{"message":"x"}}"#),
        EndStreamError::InvalidError(ErrorJsonError::MissingCode)
    );
    assert_eq!(
        parse_err(r#"{"error":{"code":null}}"#),
        EndStreamError::InvalidError(ErrorJsonError::MissingCode)
    );
    assert_eq!(
        parse_err(r#"{"error":{"code":8}}"#),
        EndStreamError::InvalidError(ErrorJsonError::CodeNotString { found: "a number" })
    );
}

#[test]
fn malformed_error_fields_are_typed_errors() {
    let cases = [
        (
            r#"{"error":"boom"}"#,
            ErrorJsonError::NotAnObject { found: "a string" },
        ),
        (
            r#"{"error":{"code":"internal","message":5}}"#,
            ErrorJsonError::MessageNotString { found: "a number" },
        ),
        (
            r#"{"error":{"code":"internal","details":{}}}"#,
            ErrorJsonError::DetailsNotArray { found: "an object" },
        ),
        (
            r#"{"error":{"code":"internal","details":[1]}}"#,
            ErrorJsonError::DetailNotObject { index: 0 },
        ),
        (
            r#"{"error":{"code":"internal","details":[{"type":"t","value":""},{"value":""}]}}"#,
            ErrorJsonError::DetailTypeNotString { index: 1 },
        ),
        (
            r#"{"error":{"code":"internal","details":[{"type":"t"}]}}"#,
            ErrorJsonError::DetailValueNotString { index: 0 },
        ),
        (
            r#"{"error":{"code":"internal","details":[{"type":"t","value":"!!!"}]}}"#,
            ErrorJsonError::DetailValueNotBase64 { index: 0 },
        ),
    ];
    for (json, expected) in cases {
        assert_eq!(
            parse_err(json),
            EndStreamError::InvalidError(expected),
            "{json}"
        );
    }
}

#[test]
fn garbage_bytes_are_not_json() {
    for bytes in [
        &b""[..],
        b"\xff\xfe",
        b"{",
        b"{}{}",
        b"hello",
        b"{\"error\":}",
    ] {
        match end_stream::parse(bytes) {
            Err(EndStreamError::NotJson { .. }) => {}
            other => panic!("{bytes:?}: {other:?}"),
        }
    }
}

#[test]
fn non_object_payloads_are_typed_errors() {
    assert_eq!(
        parse_err("[1,2]"),
        EndStreamError::NotAnObject { found: "an array" }
    );
    assert_eq!(
        parse_err("null"),
        EndStreamError::NotAnObject { found: "null" }
    );
    assert_eq!(
        parse_err(r#""{}""#),
        EndStreamError::NotAnObject { found: "a string" }
    );
}

#[test]
fn wrongly_shaped_metadata_is_a_typed_error() {
    assert_eq!(
        parse_err(r#"{"metadata":null}"#),
        EndStreamError::MetadataNotAnObject { found: "null" }
    );
    assert_eq!(
        parse_err(r#"{"metadata":[["k","v"]]}"#),
        EndStreamError::MetadataNotAnObject { found: "an array" }
    );
    for json in [
        r#"{"metadata":{"k":"v"}}"#,
        r#"{"metadata":{"k":[1]}}"#,
        r#"{"metadata":{"k":["v",null]}}"#,
    ] {
        assert_eq!(
            parse_err(json),
            EndStreamError::MetadataValueNotStrings { key: "k".into() },
            "{json}"
        );
    }
}

#[test]
fn pathologically_deep_nesting_is_rejected_without_panicking() {
    for depth in [MAX_JSON_DEPTH + 1, 100, 129, 100_000] {
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            parse_err(&json),
            EndStreamError::TooDeep {
                limit: MAX_JSON_DEPTH
            }
        );
        let unclosed = format!(r#"{{"error":{}"#, "{\"a\":".repeat(depth));
        assert_eq!(
            parse_err(&unclosed),
            EndStreamError::TooDeep {
                limit: MAX_JSON_DEPTH
            }
        );
    }
}

#[test]
fn brackets_inside_strings_do_not_count_as_nesting() {
    let json = format!(
        r#"{{"metadata":{{"k":["{}\"{}"]}}}}"#,
        "[".repeat(1000),
        "{".repeat(1000)
    );
    let end = end_stream::parse(json.as_bytes()).expect("parses");
    assert_eq!(end.metadata_value("k").map(str::len), Some(2001));
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let debug = format!(
        "{}{}",
        "[".repeat(MAX_JSON_DEPTH - 4),
        "]".repeat(MAX_JSON_DEPTH - 4)
    );
    let json = format!(
        r#"{{"error":{{"code":"internal","details":[{{"type":"t","value":"","debug":{debug}}}]}}}}"#
    );
    assert!(end_stream::parse(json.as_bytes()).is_ok());
}

// ---- ConnectError ---------------------------------------------------------------------------

#[test]
fn with_cursor_details_is_found_again_by_cursor_details() {
    let e = ConnectError::new(Code::ResourceExhausted, "Error")
        .with_cursor_details(&appendix_c_details());
    assert_eq!(e.details[0].type_name, CURSOR_ERROR_DETAILS_TYPE);
    assert_eq!(
        e.details[0].value,
        Bytes::from(hex::decode(APPENDIX_C_DETAILS_HEX).expect("hex"))
    );
    assert_eq!(e.cursor_details(), Some(appendix_c_details()));
    let debug = e.details[0].debug.as_ref().expect("debug form");
    assert_eq!(debug["error"], "ERROR_PRO_USER_USAGE_LIMIT");
    assert_eq!(debug["details"]["isRetryable"], false);
    let end = EndStream::from_error(e.clone());
    assert_eq!(end_stream::parse(&end.to_json_bytes()), Ok(end));
}

#[test]
fn cursor_details_skips_foreign_and_undecodable_details() {
    let e = ConnectError::new(Code::Internal, "x")
        .with_detail(ErrorDetail {
            type_name: "google.rpc.RetryInfo".into(),
            value: Bytes::from_static(b"\x08\x0a"),
            debug: None,
        })
        .with_detail(ErrorDetail {
            type_name: CURSOR_ERROR_DETAILS_TYPE.into(),
            value: Bytes::from_static(b"\xff\xff\xff"),
            debug: None,
        });
    assert_eq!(e.cursor_details(), None);
    let e = e.with_detail(ErrorDetail {
        type_name: format!("type.googleapis.com/{CURSOR_ERROR_DETAILS_TYPE}"),
        value: Bytes::from(appendix_c_details().encode_to_vec()),
        debug: None,
    });
    assert_eq!(e.cursor_details(), Some(appendix_c_details()));
}

#[test]
fn user_message_prefers_title_and_detail_then_message_then_code() {
    let custom = |title: &str, detail: &str| ErrorDetails {
        error: CursorError::ProviderError as i32,
        details: Some(CustomErrorDetails {
            title: title.into(),
            detail: detail.into(),
            ..Default::default()
        }),
        is_expected: None,
    };
    let err =
        |msg: &str, d: ErrorDetails| ConnectError::new(Code::Internal, msg).with_cursor_details(&d);
    assert_eq!(err("Error", custom("T", "D")).user_message(), "T D");
    assert_eq!(err("Error", custom("T", "")).user_message(), "T");
    assert_eq!(err("", custom("", "D")).user_message(), "D");
    assert_eq!(
        err("real text", custom("T", "")).user_message(),
        "real text"
    );
    assert_eq!(
        ConnectError::new(Code::Internal, "Blob not found").user_message(),
        "Blob not found"
    );
    assert_eq!(
        ConnectError::new(Code::Aborted, "").user_message(),
        "aborted"
    );
}

#[test]
fn to_json_has_code_message_and_padded_base64_details() {
    let e = ConnectError::new(Code::ResourceExhausted, "Error").with_detail(ErrorDetail {
        type_name: "t".into(),
        value: Bytes::from_static(&[0xfb, 0xff]),
        debug: None,
    });
    assert_eq!(
        e.to_json(),
        json!({"code": "resource_exhausted", "message": "Error", "details": [{"type": "t", "value": "+/8="}]})
    );
    assert_eq!(
        ConnectError::new(Code::Unauthenticated, "m").to_json(),
        json!({"code": "unauthenticated", "message": "m"})
    );
    assert_eq!(
        ConnectError::new(Code::Unauthenticated, "m").to_string(),
        "[unauthenticated] m"
    );
}

#[test]
fn unary_body_round_trips_through_from_unary() {
    let e = ConnectError::new(Code::PermissionDenied, "nope")
        .with_cursor_details(&appendix_c_details());
    let body = e.to_unary_body();
    assert_eq!(ConnectError::from_unary(e.code.http_status(), &body), e);
    assert_eq!(ConnectError::parse_unary_body(&body), Some(e));
}

#[test]
fn from_unary_without_connect_json_uses_the_status_table_and_a_bounded_snippet() {
    let html = b"<html>\n  <body>502   Bad Gateway</body>\n</html>";
    let e = ConnectError::from_unary(502, html);
    assert_eq!(e.code, Code::Unavailable);
    assert_eq!(
        e.message,
        "HTTP 502: <html> <body>502 Bad Gateway</body> </html>"
    );
    assert!(e.details.is_empty());

    assert_eq!(
        ConnectError::from_unary(503, b""),
        ConnectError::new(Code::Unavailable, "HTTP 503")
    );
    assert_eq!(ConnectError::from_unary(418, b"").code, Code::Unknown);

    let long = "x".repeat(10_000);
    let e = ConnectError::from_unary(500, long.as_bytes());
    assert!(e.message.len() < 300, "{}", e.message.len());
}

#[test]
fn from_unary_takes_a_json_message_when_the_code_is_missing() {
    let e = ConnectError::from_unary(401, br#"{"error":{"message":"invalid key"}}"#);
    assert_eq!(e, ConnectError::new(Code::Unauthenticated, "invalid key"));
    let e = ConnectError::from_unary(400, br#"{"message":"bad"}"#);
    assert_eq!(e, ConnectError::new(Code::Internal, "bad"));
}

#[test]
fn from_unary_unknown_code_string_falls_back_to_the_status_code() {
    let e = ConnectError::from_unary(429, br#"{"code":"slow_down","message":"wait"}"#);
    assert_eq!(e.code, Code::Unavailable);
    assert_eq!(e.message, r#"wait (upstream code "slow_down")"#);
}

#[test]
fn from_unary_survives_deep_nesting() {
    let deep = "[".repeat(200_000);
    assert_eq!(
        ConnectError::from_unary(400, deep.as_bytes()).code,
        Code::Internal
    );
}

#[test]
fn end_stream_errors_display_without_panicking() {
    for json in [
        &b"x"[..],
        b"[]",
        b"{\"error\":null}",
        b"{\"metadata\":{\"k\":1}}",
    ] {
        let e = end_stream::parse(json).expect_err("invalid");
        assert!(!e.to_string().is_empty());
    }
}

// ---- properties ------------------------------------------------------------------------------

proptest! {
    #[test]
    fn end_stream_parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = end_stream::parse(&bytes);
        let _ = ConnectError::from_unary(400, &bytes);
    }

    #[test]
    fn end_stream_parse_never_panics_on_json_like_text(text in "[\\[\\]{}\":,a-z0-9 \\\\=+/_-]{0,256}") {
        let _ = end_stream::parse(text.as_bytes());
        let wrapped = format!(r#"{{"error":{{"code":"internal","details":[{{"type":"t","value":"{text}"}}]}}}}"#);
        let _ = end_stream::parse(wrapped.as_bytes());
    }

    #[test]
    fn any_error_end_stream_round_trips(
        code in proptest::sample::select(Code::ALL.to_vec()),
        message in "\\PC{0,40}",
        details in proptest::collection::vec(("[a-z.]{1,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..3),
        metadata in proptest::collection::vec(("[a-z-]{1,10}", proptest::collection::vec("\\PC{0,10}", 1..3)), 0..3),
    ) {
        let mut error = ConnectError::new(code, message);
        for (type_name, value) in details {
            error = error.with_detail(ErrorDetail { type_name, value: Bytes::from(value), debug: None });
        }
        let mut end = EndStream::from_error(error);
        for (key, values) in metadata {
            for value in values {
                end = end.with_metadata(key.clone(), value);
            }
        }
        end.metadata.sort();
        let parsed = end_stream::parse(&end.to_json_bytes()).expect("own output parses");
        prop_assert_eq!(parsed, end);
    }
}
