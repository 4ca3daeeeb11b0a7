//! Classification tables: Connect codes, Cursor `ErrorDetails` families, transport failures,
//! HTTP statuses and retry hints (spec §4.4, §4.5, §6.6, §7.2, §10).

use std::collections::HashMap;
use std::time::Duration;

use cursorpool_core::classify::{
    Classification, CoolDown, Failure, FailureKind, MAX_RETRY_HINT, TransportFailure, classify,
    kind_of_cursor_error,
};
use cursorpool_core::connect::code::Code;
use cursorpool_core::connect::end_stream::{self, EndStream};
use cursorpool_core::connect::error::ConnectError;
use cursorpool_proto::aiserver_v1::error_details::Error as CursorError;
use cursorpool_proto::aiserver_v1::{CustomErrorDetails, ErrorDetails};

/// A Connect error carrying Cursor details.
fn cursor(code: Code, error: CursorError, is_retryable: Option<bool>) -> ConnectError {
    cursor_with_info(code, error, is_retryable, &[])
}

fn cursor_with_info(
    code: Code,
    error: CursorError,
    is_retryable: Option<bool>,
    info: &[(&str, &str)],
) -> ConnectError {
    ConnectError::new(code, "Error").with_cursor_details(&ErrorDetails {
        error: error as i32,
        details: Some(CustomErrorDetails {
            title: "Title".into(),
            detail: "Detail.".into(),
            is_retryable,
            additional_info: info
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }),
        is_expected: None,
    })
}

fn of(e: &ConnectError) -> Classification {
    classify(Failure::Connect(e))
}

/// (kind, client status, cool-down, try another account, refresh first)
type Row = (FailureKind, u16, CoolDown, bool, bool);

fn row(c: &Classification) -> Row {
    (
        c.kind,
        c.client_status,
        c.cool_down,
        c.try_another_account,
        c.refresh_token_first,
    )
}

fn all_cursor_errors() -> Vec<CursorError> {
    (0..=128)
        .filter_map(|n| CursorError::try_from(n).ok())
        .collect()
}

// ---- Connect codes ----------------------------------------------------------------------------

#[test]
fn every_connect_code_without_details_maps_per_the_module_table() {
    use {CoolDown as D, FailureKind as K};
    #[rustfmt::skip]
    let table: [(Code, Row); 16] = [
        (Code::Canceled,           (K::Canceled,         502, D::None,      true,  false)),
        (Code::Unknown,            (K::UpstreamInternal, 502, D::Short,     true,  false)),
        (Code::InvalidArgument,    (K::BadRequest,       400, D::None,      false, false)),
        (Code::DeadlineExceeded,   (K::UpstreamInternal, 502, D::Short,     true,  false)),
        (Code::NotFound,           (K::BadRequest,       400, D::None,      false, false)),
        (Code::AlreadyExists,      (K::Other,            502, D::None,      false, false)),
        (Code::PermissionDenied,   (K::PermissionDenied, 403, D::Forbidden, true,  false)),
        (Code::ResourceExhausted,  (K::QuotaExhausted,   429, D::Quota,     true,  false)),
        (Code::FailedPrecondition, (K::BadRequest,       400, D::None,      false, false)),
        (Code::Aborted,            (K::UpstreamInternal, 502, D::None,      true,  false)),
        (Code::OutOfRange,         (K::BadRequest,       400, D::None,      false, false)),
        (Code::Unimplemented,      (K::Other,            502, D::None,      false, false)),
        (Code::Internal,           (K::UpstreamInternal, 500, D::Short,     true,  false)),
        (Code::Unavailable,        (K::UpstreamInternal, 503, D::Short,     true,  false)),
        (Code::DataLoss,           (K::UpstreamInternal, 502, D::Short,     true,  false)),
        (Code::Unauthenticated,    (K::Unauthenticated,  401, D::Auth,      true,  true)),
    ];
    for (code, expected) in table {
        let c = of(&ConnectError::new(code, "m"));
        assert_eq!(row(&c), expected, "{code}");
        assert_eq!(c.message, "m");
        assert_eq!(c.retry_after, None);
    }
}

#[test]
fn unauthenticated_refreshes_the_token_once_before_failing_over() {
    let c = of(&ConnectError::new(Code::Unauthenticated, "expired"));
    assert!(c.refresh_token_first);
    assert_eq!(c.client_status, 401);
    assert_eq!(c.cool_down, CoolDown::Auth);
}

#[test]
fn four_hundred_class_results_are_never_replayed_whatever_the_details_say() {
    let mut seen_400 = 0;
    for code in Code::ALL {
        let mut errors = vec![ConnectError::new(code, "m")];
        for e in all_cursor_errors() {
            for r in [None, Some(true), Some(false)] {
                errors.push(cursor(code, e, r));
            }
        }
        for error in &errors {
            let c = of(error);
            if c.is_client_fault() {
                seen_400 += 1;
                assert!(!c.try_another_account, "{error:?} → {c:?}");
                assert_eq!(c.cool_down, CoolDown::None, "{error:?}");
            }
        }
    }
    assert!(seen_400 > 100);
}

#[test]
fn client_fault_connect_codes_stay_400_even_when_marked_retryable() {
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::FailedPrecondition,
        Code::OutOfRange,
    ] {
        let c = of(&cursor(code, CursorError::Unspecified, Some(true)));
        assert_eq!(c.client_status, 400, "{code}");
        assert!(!c.try_another_account, "{code}");
    }
}

// ---- Cursor ErrorDetails families -------------------------------------------------------------

#[test]
fn usage_limit_details_are_quota_exhaustion_cooled_per_model() {
    for e in [
        CursorError::FreeUserUsageLimit,
        CursorError::ProUserUsageLimit,
        CursorError::ResourceExhausted,
        CursorError::UsagePricingRequired,
        CursorError::UsagePricingRequiredChangeable,
    ] {
        let c = of(&cursor(Code::ResourceExhausted, e, Some(false)));
        assert_eq!(
            row(&c),
            (
                FailureKind::QuotaExhausted,
                429,
                CoolDown::Quota,
                true,
                false
            ),
            "{e:?}"
        );
        assert_eq!(c.message, "Title Detail.");
    }
}

#[test]
fn rate_limit_details_are_rate_limited_429() {
    for e in [
        CursorError::FreeUserRateLimitExceeded,
        CursorError::ProUserRateLimitExceeded,
        CursorError::OpenaiRateLimitExceeded,
        CursorError::GenericRateLimitExceeded,
        CursorError::Gpt4VisionPreviewRateLimit,
        CursorError::ApiKeyRateLimit,
        CursorError::RateLimited,
        CursorError::RateLimitedChangeable,
    ] {
        let c = of(&cursor(Code::ResourceExhausted, e, Some(false)));
        assert_eq!(
            row(&c),
            (FailureKind::RateLimited, 429, CoolDown::Quota, true, false),
            "{e:?}"
        );
    }
}

#[test]
fn provider_error_under_resource_exhausted_is_retried_elsewhere_without_cooling_the_account() {
    // The §6.6 form: resource_exhausted + ERROR_PROVIDER_ERROR + isRetryable false.
    let c = of(&cursor(
        Code::ResourceExhausted,
        CursorError::ProviderError,
        Some(false),
    ));
    assert_eq!(
        row(&c),
        (
            FailureKind::ProviderTransient,
            502,
            CoolDown::None,
            true,
            false
        )
    );
    for e in [
        CursorError::Openai,
        CursorError::Timeout,
        CursorError::NetworkError,
    ] {
        assert_eq!(
            of(&cursor(Code::Unknown, e, None)).kind,
            FailureKind::ProviderTransient
        );
    }
}

#[test]
fn outdated_client_with_permission_denied_is_502_and_not_replayed() {
    let c = of(&cursor(
        Code::PermissionDenied,
        CursorError::OutdatedClient,
        Some(false),
    ));
    assert_eq!(
        row(&c),
        (
            FailureKind::OutdatedClient,
            502,
            CoolDown::None,
            false,
            false
        )
    );
}

#[test]
fn auth_details_refresh_first_then_cool_the_account() {
    for e in [
        CursorError::NotLoggedIn,
        CursorError::InvalidAuthId,
        CursorError::NotHighEnoughPermissions,
        CursorError::AgentRequiresLogin,
        CursorError::AuthTokenNotFound,
        CursorError::AuthTokenExpired,
        CursorError::Unauthorized,
        CursorError::BadApiKey,
        CursorError::BadUserApiKey,
        CursorError::UserNotFound,
    ] {
        for code in [Code::Unauthenticated, Code::PermissionDenied, Code::Unknown] {
            let c = of(&cursor(code, e, None));
            assert_eq!(
                row(&c),
                (
                    FailureKind::Unauthenticated,
                    401,
                    CoolDown::Auth,
                    true,
                    true
                ),
                "{e:?} {code}"
            );
        }
    }
}

#[test]
fn suspicious_usage_is_forbidden_for_a_long_time() {
    let c = of(&cursor(
        Code::PermissionDenied,
        CursorError::SuspiciousUsageBlocked,
        None,
    ));
    assert_eq!(
        row(&c),
        (
            FailureKind::PermissionDenied,
            403,
            CoolDown::Forbidden,
            true,
            false
        )
    );
}

#[test]
fn request_details_are_400_and_not_replayed() {
    for e in [
        CursorError::BadModelName,
        CursorError::NotFound,
        CursorError::Deprecated,
        CursorError::BadRequest,
        CursorError::FileNotFound,
        CursorError::ModelBlocked,
        CursorError::ModelNoLongerSupported,
        CursorError::ConversationTooLong,
        CursorError::MaxTokens,
        CursorError::ClaudeImageTooLarge,
    ] {
        let c = of(&cursor(Code::Internal, e, Some(true)));
        assert_eq!(
            row(&c),
            (FailureKind::BadRequest, 400, CoolDown::None, false, false),
            "{e:?}"
        );
    }
}

#[test]
fn user_aborted_and_cursor_internal_details_refine_the_kind() {
    let c = of(&cursor(
        Code::Unknown,
        CursorError::UserAbortedRequest,
        None,
    ));
    assert_eq!(c.kind, FailureKind::Canceled);
    let c = of(&cursor(Code::Unknown, CursorError::Internal, None));
    assert_eq!(
        row(&c),
        (
            FailureKind::UpstreamInternal,
            500,
            CoolDown::Short,
            true,
            false
        )
    );
}

#[test]
fn unspecified_or_unknown_cursor_error_falls_back_to_the_code() {
    assert_eq!(kind_of_cursor_error(CursorError::Unspecified), None);
    assert_eq!(kind_of_cursor_error(CursorError::CustomMessage), None);
    let plain = of(&ConnectError::new(Code::ResourceExhausted, "m"));
    let unspecified = of(&cursor(
        Code::ResourceExhausted,
        CursorError::Unspecified,
        None,
    ));
    assert_eq!(row(&unspecified), row(&plain));
    // A value newer than our enum (999) decodes but does not refine.
    let e = ConnectError::new(Code::PermissionDenied, "Error").with_cursor_details(&ErrorDetails {
        error: 999,
        details: None,
        is_expected: None,
    });
    assert_eq!(
        row(&of(&e)),
        row(&of(&ConnectError::new(Code::PermissionDenied, "m")))
    );
}

#[test]
fn is_retryable_decides_replay_for_generic_kinds() {
    let c = of(&cursor(
        Code::Internal,
        CursorError::Unspecified,
        Some(false),
    ));
    assert!(!c.try_another_account);
    let c = of(&cursor(Code::Internal, CursorError::Unspecified, None));
    assert!(c.try_another_account);
    let c = of(&cursor(
        Code::Unimplemented,
        CursorError::Unspecified,
        Some(true),
    ));
    assert!(c.try_another_account);
    let c = of(&cursor(
        Code::Canceled,
        CursorError::Unspecified,
        Some(false),
    ));
    assert!(!c.try_another_account);
}

#[test]
fn is_retryable_false_on_a_usage_limit_still_tries_another_account() {
    let c = of(&cursor(
        Code::ResourceExhausted,
        CursorError::ProUserUsageLimit,
        Some(false),
    ));
    assert!(c.try_another_account);
    assert_eq!(c.cool_down, CoolDown::Quota);
}

#[test]
fn appendix_c_end_stream_classifies_as_quota_with_the_cursor_message() {
    let json = br#"{"error":{"code":"resource_exhausted","message":"Error","details":[{"type":"aiserver.v1.ErrorDetails","value":"CAoSLQoLVXNhZ2UgbGltaXQSHFlvdSBoYXZlIHJlYWNoZWQgeW91ciBsaW1pdC4gAA=="}]}}"#;
    let end = end_stream::parse(json).expect("fixture parses");
    let c = classify(Failure::from_end_stream(&end).expect("a failure"));
    assert_eq!(
        row(&c),
        (
            FailureKind::QuotaExhausted,
            429,
            CoolDown::Quota,
            true,
            false
        )
    );
    assert_eq!(c.message, "Usage limit You have reached your limit.");
    assert!(Failure::from_end_stream(&EndStream::ok()).is_none());
}

// ---- transport failures -----------------------------------------------------------------------

#[test]
fn every_transport_failure_is_a_retryable_502() {
    use TransportFailure as T;
    let cases = [
        (T::RstStream { code: 0x1 }, CoolDown::Short),
        (T::RstStream { code: 0x2 }, CoolDown::Short),
        (T::RstStream { code: 0x7 }, CoolDown::None),
        (T::RstStream { code: 0x8 }, CoolDown::Short),
        (T::RstStream { code: 0xb }, CoolDown::Short),
        (T::RstStream { code: 0xd }, CoolDown::None),
        (T::RstStream { code: 0x42 }, CoolDown::Short),
        (T::GoAway { code: 0x0 }, CoolDown::None),
        (T::GoAway { code: 0x2 }, CoolDown::Short),
        (T::ConnectionReset, CoolDown::Short),
        (T::ConnectFailed, CoolDown::None),
        (T::TlsFailed, CoolDown::None),
        (T::Stalled, CoolDown::Short),
        (T::MissingEndStream, CoolDown::Short),
        (T::EndedWithoutTurnEnded, CoolDown::Short),
        (T::ProtocolViolation, CoolDown::Short),
        (T::WriteAfterEnd, CoolDown::Short),
    ];
    for (t, cool_down) in cases {
        let c = classify(Failure::Transport(t));
        assert_eq!(
            row(&c),
            (FailureKind::Transport, 502, cool_down, true, false),
            "{t:?}"
        );
        assert!(!c.message.is_empty());
        assert_eq!(c.retry_after, None);
    }
    for code in 0..=0xd {
        assert!(classify(Failure::Transport(T::RstStream { code })).try_another_account);
    }
}

#[test]
fn transport_messages_name_the_http2_code() {
    let c = classify(Failure::Transport(TransportFailure::RstStream {
        code: 0xb,
    }));
    assert!(c.message.contains("ENHANCE_YOUR_CALM"), "{}", c.message);
    let c = classify(Failure::Transport(TransportFailure::GoAway { code: 0x99 }));
    assert!(c.message.contains("0x99"), "{}", c.message);
}

// ---- HTTP statuses ----------------------------------------------------------------------------

#[test]
fn http_statuses_without_connect_json_map_to_proxy_kinds() {
    use {CoolDown as D, FailureKind as K};
    let table: [(u16, Row); 9] = [
        (401, (K::Unauthenticated, 401, D::Auth, true, true)),
        (403, (K::PermissionDenied, 403, D::Forbidden, true, false)),
        (429, (K::RateLimited, 429, D::Quota, true, false)),
        (500, (K::UpstreamInternal, 502, D::Short, true, false)),
        (502, (K::UpstreamInternal, 502, D::Short, true, false)),
        (503, (K::UpstreamInternal, 503, D::Short, true, false)),
        (413, (K::BadRequest, 400, D::None, false, false)),
        (400, (K::Other, 502, D::None, false, false)),
        (302, (K::Other, 502, D::None, false, false)),
    ];
    for (status, expected) in table {
        let c = classify(Failure::HttpStatus {
            status,
            body: b"<html>oops</html>",
        });
        assert_eq!(row(&c), expected, "{status}");
        assert_eq!(c.message, format!("HTTP {status}: <html>oops</html>"));
    }
}

#[test]
fn http_status_with_a_connect_body_is_classified_by_the_body() {
    let body = cursor(
        Code::ResourceExhausted,
        CursorError::ProUserUsageLimit,
        Some(false),
    )
    .to_unary_body();
    let c = classify(Failure::HttpStatus {
        status: 429,
        body: &body,
    });
    assert_eq!(c.kind, FailureKind::QuotaExhausted);
    assert_eq!(c.message, "Title Detail.");
    let body = ConnectError::new(Code::Unauthenticated, "expired").to_unary_body();
    let c = classify(Failure::HttpStatus {
        status: 401,
        body: &body,
    });
    assert!(c.refresh_token_first);
}

// ---- retry hints ------------------------------------------------------------------------------

fn trailer_hint(key: &str, value: &str) -> Option<Duration> {
    let end = EndStream::from_error(ConnectError::new(Code::ResourceExhausted, "m"))
        .with_metadata(key, value);
    classify(Failure::from_end_stream(&end).expect("failure")).retry_after
}

fn info_hint(info: &[(&str, &str)]) -> Option<Duration> {
    of(&cursor_with_info(
        Code::ResourceExhausted,
        CursorError::RateLimited,
        None,
        info,
    ))
    .retry_after
}

#[test]
fn retry_after_trailer_is_read_in_seconds_ignoring_case() {
    assert_eq!(
        trailer_hint("retry-after", "30"),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        trailer_hint("Retry-After", " 1.5 "),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(trailer_hint("retry-after", "0"), Some(Duration::ZERO));
    assert_eq!(
        trailer_hint("retry-after-ms", "250"),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn unusable_retry_after_values_give_no_hint() {
    for value in [
        "",
        "soon",
        "-5",
        "1e3",
        "NaN",
        "inf",
        "Wed, 21 Oct 2015 07:28:00 GMT",
    ] {
        assert_eq!(trailer_hint("retry-after", value), None, "{value:?}");
    }
    assert_eq!(trailer_hint("x-other", "30"), None);
    assert_eq!(
        of(&ConnectError::new(Code::ResourceExhausted, "m")).retry_after,
        None
    );
}

#[test]
fn huge_retry_hints_are_clamped() {
    assert_eq!(
        trailer_hint("retry-after", "99999999999999999999"),
        Some(MAX_RETRY_HINT)
    );
    assert_eq!(
        info_hint(&[("retry_after", "1000000")]),
        Some(MAX_RETRY_HINT)
    );
}

#[test]
fn additional_info_retry_keys_are_read_tolerantly() {
    let secs = Some(Duration::from_secs(12));
    assert_eq!(info_hint(&[("retry_after", "12")]), secs);
    assert_eq!(info_hint(&[("retryAfter", "12")]), secs);
    assert_eq!(info_hint(&[("retry_after_seconds", "12s")]), secs);
    assert_eq!(info_hint(&[("Retry-After", "12")]), secs);
    assert_eq!(
        info_hint(&[("retry_after_ms", "2500")]),
        Some(Duration::from_millis(2500))
    );
    assert_eq!(
        info_hint(&[("retryAfterMs", "2500ms")]),
        Some(Duration::from_millis(2500))
    );
    assert_eq!(info_hint(&[("other", "12"), ("retry_after", "x")]), None);
}

#[test]
fn retry_hint_choice_is_deterministic_and_the_trailer_wins() {
    let info = [
        ("retry_after_ms", "100"),
        ("retryAfterSeconds", "7"),
        ("retry_after", "3"),
    ];
    for _ in 0..20 {
        assert_eq!(info_hint(&info), Some(Duration::from_secs(3)));
    }
    let error = cursor_with_info(
        Code::ResourceExhausted,
        CursorError::RateLimited,
        None,
        &info,
    );
    let metadata = vec![("retry-after".to_owned(), vec!["9".to_owned()])];
    let c = classify(Failure::Trailer {
        error: &error,
        metadata: &metadata,
    });
    assert_eq!(c.retry_after, Some(Duration::from_secs(9)));
}

#[test]
fn retry_after_header_on_an_http_response_is_honoured() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("20"),
    );
    let c = classify(Failure::HttpResponse {
        status: 429,
        headers: &headers,
        body: b"",
    });
    assert_eq!(c.kind, FailureKind::RateLimited);
    assert_eq!(c.retry_after, Some(Duration::from_secs(20)));
    let body = ConnectError::new(Code::ResourceExhausted, "m").to_unary_body();
    let c = classify(Failure::HttpResponse {
        status: 429,
        headers: &headers,
        body: &body,
    });
    assert_eq!(c.retry_after, Some(Duration::from_secs(20)));
}

#[test]
fn failure_kind_names_are_distinct() {
    use FailureKind as K;
    let kinds = [
        K::QuotaExhausted,
        K::RateLimited,
        K::ProviderTransient,
        K::Unauthenticated,
        K::PermissionDenied,
        K::OutdatedClient,
        K::BadRequest,
        K::Transport,
        K::UpstreamInternal,
        K::Canceled,
        K::Other,
    ];
    let names: std::collections::HashSet<_> = kinds.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), kinds.len());
}
