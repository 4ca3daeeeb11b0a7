//! Credentials without IO: file naming, the credential file, JWT claims and refresh timing,
//! PKCE (RFC 7636 known answer), the login URLs and poll schedule, and token renewal
//! requests and answers.

mod conductor_support;

use std::time::Duration;

use conductor_support::*;
use cursorpool_core::conductor::account::{
    self, AccountError, AccountRecord, JwtClaims, RefreshMethod, Secret, TokenGrant,
};
use cursorpool_core::conductor::login::{
    LoginError, LoginPoller, PkceLogin, PollResponse, PollSchedule, PollStep, parse_poll_response,
    pkce_challenge,
};
use cursorpool_core::conductor::refresh::{self, OAUTH_CLIENT_ID, RefreshFailure, parse_refresh};

/// RFC 7636 Appendix B: the verifier's 32 octets.
const RFC7636_OCTETS: [u8; 32] = [
    116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77,
    105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
];
const RFC7636_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC7636_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[test]
fn file_names_use_the_label_or_8_hex_of_the_subject_hash() {
    assert_eq!(
        account::file_name(Some("work"), "auth0|user_123"),
        "cursor.work.json"
    );
    // sha256("auth0|user_123") = b009ca21…
    assert_eq!(
        account::file_name(None, "auth0|user_123"),
        "cursor.b009ca21.json"
    );
    assert_eq!(
        account::file_name(Some(""), "auth0|user_123"),
        "cursor.b009ca21.json"
    );
    // Pure: same inputs, same name (logging in twice rewrites one file).
    assert_eq!(
        account::file_name(None, "auth0|user_123"),
        account::file_name(None, "auth0|user_123")
    );
    // A hostile label can never leave the auth directory.
    let name = account::file_name(Some("../../etc/passwd"), "x");
    assert!(!name.contains('/'), "{name}");
    assert!(name.starts_with("cursor._"), "{name}");
    assert_eq!(account::key_of_file_name("cursor.work.json"), Some("work"));
    assert_eq!(
        account::key_of_file_name("cursor.b009ca21.json"),
        Some("b009ca21")
    );
    assert_eq!(account::key_of_file_name("notes.json"), None);
    assert_eq!(account::key_of_file_name("cursor..json"), None);
}

#[test]
fn labels_are_validated_for_file_names() {
    assert!(account::validate_label("work-2_b.x").is_ok());
    for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
        assert!(
            matches!(
                account::validate_label(bad),
                Err(AccountError::InvalidLabel(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn jwt_exp_and_sub_are_read_from_the_payload() {
    let token = access_token("github|user_9", 1_800_000_000);
    let claims = JwtClaims::parse(&token).unwrap();
    assert_eq!(claims.exp, Some(1_800_000_000));
    assert_eq!(claims.sub.as_deref(), Some("github|user_9"));
    assert_eq!(claims.token_type.as_deref(), Some("session"));
    assert_eq!(account::token_expiry(&token, UNIX0), 1_800_000_000);
    // Padding and the standard alphabet are tolerated.
    let payload = base64_std(br#"{"sub":"s?>","exp":42}"#);
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
    assert_eq!(JwtClaims::parse(&token).unwrap().exp, Some(42));
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn an_unparsable_token_is_assumed_to_live_one_hour() {
    for token in ["not a jwt", "a.b.c", "a.e30.c", ""] {
        assert_eq!(
            account::token_expiry(token, UNIX0),
            UNIX0 + 3600,
            "{token:?}"
        );
    }
}

#[test]
fn a_token_needs_refresh_five_minutes_before_it_expires() {
    let mut r = record("a", 0);
    r.expires_at = UNIX0 + 3600;
    assert!(!r.needs_refresh(UNIX0 + 3600 - 301));
    assert!(r.needs_refresh(UNIX0 + 3600 - 300));
    assert!(r.needs_refresh(UNIX0 + 4000));
    assert!(!r.is_expired(UNIX0 + 3599));
    assert!(r.is_expired(UNIX0 + 3600));
}

#[test]
fn a_record_is_built_from_a_login_and_round_trips_through_its_file() {
    let grant = TokenGrant {
        access_token: access_token("auth0|user_123", UNIX0 + 7200).into(),
        refresh_token: Some("rt-1".into()),
        auth_id: Some("auth0|user_123".into()),
    };
    let r = AccountRecord::from_grant(grant, None, UNIX0).unwrap();
    assert_eq!(r.subject, "auth0|user_123");
    assert_eq!(r.expires_at, UNIX0 + 7200);
    assert_eq!(r.file_name(), "cursor.b009ca21.json");
    assert_eq!(r.refresh_method(), Some(RefreshMethod::OAuthRefresh));
    let bytes = r.to_json();
    let back = AccountRecord::from_json(&bytes).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for field in [
        "subject",
        "access_token",
        "refresh_token",
        "expires_at",
        "priority",
    ] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    // A minimal hand-written file works (label, disabled flag, priority).
    let file = br#"{"label":"w","subject":"s","access_token":"t","expires_at":5,"disabled":"off","priority":3}"#;
    let r = AccountRecord::from_json(file).unwrap();
    assert_eq!(
        (r.disabled.as_deref(), r.priority, r.refresh_method()),
        (Some("off"), 3, None)
    );
    assert!(AccountRecord::from_json(br#"{"subject":"s"}"#).is_err());
}

#[test]
fn the_subject_falls_back_to_the_login_auth_id_and_is_required() {
    let grant = TokenGrant {
        access_token: "opaque-token".into(),
        refresh_token: None,
        auth_id: Some("google|42".into()),
    };
    let r = AccountRecord::from_grant(grant.clone(), Some("g".into()), UNIX0).unwrap();
    assert_eq!(
        (r.subject.as_str(), r.expires_at),
        ("google|42", UNIX0 + 3600)
    );
    let no_subject = TokenGrant {
        auth_id: None,
        ..grant
    };
    assert_eq!(
        AccountRecord::from_grant(no_subject, None, UNIX0),
        Err(AccountError::NoSubject)
    );
}

#[test]
fn credentials_never_appear_in_debug_output() {
    let r = record("a", 0);
    let debug = format!("{r:?}");
    assert!(!debug.contains(r.access_token.expose()), "{debug}");
    assert!(!debug.contains("refresh-a"), "{debug}");
    let login = PkceLogin::new(RFC7636_OCTETS, [7; 16]);
    assert!(!format!("{login:?}").contains(RFC7636_VERIFIER));
    let req = refresh::refresh_request(&r).unwrap();
    let debug = format!("{req:?}");
    assert!(!debug.contains("refresh-a"), "{debug}");
    assert_eq!(format!("{:?}", Secret::new("x")), "Secret(<redacted>)");
}

#[test]
fn pkce_challenge_matches_rfc7636_appendix_b() {
    assert_eq!(pkce_challenge(RFC7636_VERIFIER), RFC7636_CHALLENGE);
    let login = PkceLogin::new(RFC7636_OCTETS, [0; 16]);
    assert_eq!(login.verifier().expose(), RFC7636_VERIFIER);
    assert_eq!(login.challenge(), RFC7636_CHALLENGE);
    assert_eq!(login.uuid(), "00000000-0000-4000-8000-000000000000");
}

#[test]
fn login_and_poll_urls_follow_spec_7_1() {
    let login = PkceLogin::from_parts(RFC7636_VERIFIER, "u-1");
    assert_eq!(
        login.login_url("https://cursor.com/"),
        format!(
            "https://cursor.com/loginDeepControl?challenge={RFC7636_CHALLENGE}&uuid=u-1&mode=login&redirectTarget=cli"
        )
    );
    assert_eq!(
        login.poll_url("https://api2.cursor.sh"),
        format!("https://api2.cursor.sh/auth/poll?uuid=u-1&verifier={RFC7636_VERIFIER}")
    );
}

#[test]
fn the_poll_schedule_starts_at_1s_grows_by_1_2_caps_at_10s_and_ends() {
    let delays: Vec<Duration> = PollSchedule::new().collect();
    assert_eq!(delays.len(), 150);
    assert_eq!(delays[0], Duration::from_secs(1));
    assert_eq!(delays[1], Duration::from_millis(1200));
    assert_eq!(delays[2], Duration::from_millis(1440));
    assert!(delays.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*delays.last().unwrap(), Duration::from_secs(10));
    assert_eq!(
        delays
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count(),
        13
    );
    let total: Duration = delays.iter().sum();
    assert!(total > Duration::from_secs(20 * 60) && total < Duration::from_secs(30 * 60));
}

#[test]
fn poll_answers_are_read_per_spec() {
    assert_eq!(parse_poll_response(404, b""), PollResponse::Pending);
    let body = br#"{"accessToken":"at","refreshToken":"rt","authId":"auth0|u"}"#;
    let PollResponse::Done(grant) = parse_poll_response(200, body) else {
        panic!("expected tokens");
    };
    assert_eq!(grant.access_token.expose(), "at");
    assert_eq!(grant.refresh_token.unwrap().expose(), "rt");
    assert_eq!(grant.auth_id.as_deref(), Some("auth0|u"));
    assert_eq!(
        parse_poll_response(403, br#"{"error":"sign_in_policy_violation"}"#),
        PollResponse::PolicyViolation
    );
    assert_eq!(
        parse_poll_response(200, br#"{"accessToken":""}"#),
        PollResponse::Unexpected { status: 200 }
    );
}

#[test]
fn the_login_poller_waits_tolerates_a_few_errors_and_finishes() {
    let mut poller = LoginPoller::new();
    assert_eq!(poller.first_delay(), PollStep::Wait(Duration::from_secs(1)));
    assert_eq!(
        poller.on_response(404, b""),
        PollStep::Wait(Duration::from_millis(1200))
    );
    for _ in 0..5 {
        assert!(matches!(poller.on_network_error(), PollStep::Wait(_)));
    }
    assert!(
        matches!(poller.on_response(404, b""), PollStep::Wait(_)),
        "errors reset"
    );
    let done = poller.on_response(200, br#"{"accessToken":"at","refreshToken":"rt"}"#);
    assert!(matches!(done, PollStep::Done(_)));

    let mut failing = LoginPoller::new();
    for _ in 0..5 {
        assert!(matches!(failing.on_response(500, b""), PollStep::Wait(_)));
    }
    assert_eq!(
        failing.on_response(500, b""),
        PollStep::Failed(LoginError::PollFailed {
            last: "HTTP 500".into()
        })
    );

    let mut patient = LoginPoller::with_schedule(
        PollSchedule::custom(Duration::from_millis(10), Duration::from_millis(50), 3),
        5,
    );
    for _ in 0..3 {
        assert!(matches!(patient.on_response(404, b""), PollStep::Wait(_)));
    }
    assert_eq!(
        patient.on_response(404, b""),
        PollStep::Failed(LoginError::TimedOut)
    );
}

#[test]
fn refresh_requests_follow_spec_7_3_and_7_4() {
    let r = record("a", 0);
    let req = refresh::refresh_request(&r).unwrap();
    assert_eq!(req.path, "/oauth/token");
    assert!(req.bearer.is_none());
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["grant_type"], "refresh_token");
    assert_eq!(body["client_id"], OAUTH_CLIENT_ID);
    assert_eq!(body["refresh_token"], "refresh-a");

    let mut keyed = record("k", 0);
    keyed.refresh_token = None;
    keyed.api_key = Some("crsr_abc".into());
    let req = refresh::refresh_request(&keyed).unwrap();
    assert_eq!(req.path, "/auth/exchange_user_api_key");
    assert_eq!(req.bearer.unwrap().expose(), "crsr_abc");
    assert_eq!(req.body, b"{}");

    keyed.api_key = None;
    assert!(refresh::refresh_request(&keyed).is_none());
}

#[test]
fn refresh_answers_give_tokens_or_say_whether_to_log_in_again() {
    let oauth = RefreshMethod::OAuthRefresh;
    let ok = parse_refresh(
        oauth,
        200,
        br#"{"access_token":"new","shouldLogout":false}"#,
    )
    .unwrap();
    assert_eq!((ok.access_token.expose(), ok.refresh_token), ("new", None));
    assert!(matches!(
        parse_refresh(oauth, 200, br#"{"access_token":"","shouldLogout":true}"#),
        Err(RefreshFailure::Rejected(_))
    ));
    assert!(matches!(
        parse_refresh(oauth, 403, b"{}"),
        Err(RefreshFailure::Rejected(_))
    ));
    assert!(matches!(
        parse_refresh(oauth, 503, b""),
        Err(RefreshFailure::Transient(_))
    ));
    assert!(matches!(
        parse_refresh(oauth, 200, b"<html>"),
        Err(RefreshFailure::Transient(_))
    ));

    let exchange = RefreshMethod::ApiKeyExchange;
    let ok = parse_refresh(
        exchange,
        200,
        br#"{"accessToken":"a2","refreshToken":"r2"}"#,
    )
    .unwrap();
    assert_eq!(ok.refresh_token.unwrap().expose(), "r2");
    assert!(matches!(
        parse_refresh(exchange, 401, br#"{"error":{"message":"Invalid API key"}}"#),
        Err(RefreshFailure::Rejected(_))
    ));

    // Applying a grant keeps the refresh token unless it was rotated.
    let mut r = record("a", 0);
    let grant = TokenGrant {
        access_token: access_token("auth0|user_a", UNIX0 + 99).into(),
        refresh_token: None,
        auth_id: None,
    };
    assert!(r.apply_grant(&grant, UNIX0));
    assert_eq!(r.expires_at, UNIX0 + 99);
    assert_eq!(r.refresh_token.as_ref().unwrap().expose(), "refresh-a");
}
