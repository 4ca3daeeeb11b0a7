//! The small text forms of accounts and fault rules used on the `cursor-sim` command line, so
//! a test harness can write `--fault rst:after=3:account=a` instead of JSON.
//!
//! Fault: `KIND[:key=value]…` with `KIND` one of
//!
//! | kind | fault | keys (default) |
//! |---|---|---|
//! | `rst` | `RST_STREAM` (HTTP/1.1: connection abort) | `after` (0), `code` (`internal_error`) |
//! | `goaway` | `GOAWAY` on the run's connection | `after` (0), `code` (`internal_error`) |
//! | `drop` | TCP close without goodbye | `after` (0) |
//! | `stall` | nothing more is sent, ever | `after` (0) |
//! | `trickle` | every message sent alone, spaced | `interval` ms (100) |
//! | `delay` | first byte held back | `ms` (1000) |
//! | `error` | end-stream Connect error | `after` (0), `code` (`unavailable`), `cursor_error` (none) |
//!
//! and, for every kind, `account=LABEL` (default: every account) and `runs=N|all` (default
//! `all`). `after` counts the `AgentServerMessage`s sent before the fault. HTTP/2 codes are
//! numbers or names (`refused_stream`, `ENHANCE_YOUR_CALM`, …). A spec starting with `{` is
//! the JSON form of [`FaultRule`].
//!
//! Account: `LABEL:API_KEY[:QUOTA]`, `QUOTA` = `unlimited` | `N` (runs) | a comma list of
//! `requests=N` and `tokens=N`. Neither the label nor the key may contain `:`.

use std::time::Duration;

use cursorpool_core::connect::code::Code;

use crate::model::{AccountConfig, Fault, FaultRule, FaultRuns, Quota};

/// A command-line spec that does not parse. Blame: whoever wrote the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The fault kind is not one of the table's.
    #[error("unknown fault kind {0:?} (rst, goaway, drop, stall, trickle, delay, error)")]
    UnknownKind(String),
    /// A `key=value` part is malformed or not valid for this kind.
    #[error("bad fault option {0:?}")]
    BadOption(String),
    /// The JSON form does not decode.
    #[error("bad fault JSON: {0}")]
    Json(String),
    /// An account spec is malformed.
    #[error("bad account {0:?}: expected LABEL:API_KEY[:QUOTA]")]
    BadAccount(String),
    /// A quota is malformed.
    #[error("bad quota {0:?}: expected unlimited, N, or requests=N,tokens=N")]
    BadQuota(String),
}

/// Parses a fault rule (see the module docs).
pub fn parse_fault(spec: &str) -> Result<FaultRule, SpecError> {
    let spec = spec.trim();
    if spec.starts_with('{') {
        return serde_json::from_str(spec).map_err(|e| SpecError::Json(e.to_string()));
    }
    let mut parts = spec.split(':');
    let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
    let mut after = 0u32;
    let mut code: Option<String> = None;
    let mut account = None;
    let mut runs = FaultRuns::All;
    let mut ms: Option<u64> = None;
    let mut cursor_error = None;
    for part in parts {
        let bad = || SpecError::BadOption(part.to_owned());
        let (key, value) = part.split_once('=').ok_or_else(bad)?;
        match key {
            "after" => after = value.parse().map_err(|_| bad())?,
            "code" => code = Some(value.to_owned()),
            "account" => account = Some(value.to_owned()),
            "runs" if value == "all" => runs = FaultRuns::All,
            "runs" => runs = FaultRuns::Next(value.parse().map_err(|_| bad())?),
            "interval" | "ms" => ms = Some(value.parse().map_err(|_| bad())?),
            "cursor_error" => cursor_error = Some(value.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    let h2_code = |code: Option<String>| match code {
        None => Ok(2),
        Some(c) => h2_reason(&c).ok_or(SpecError::BadOption(format!("code={c}"))),
    };
    let fault = match kind.as_str() {
        "rst" => Fault::RstStream {
            after_updates: after,
            code: h2_code(code)?,
        },
        "goaway" => Fault::GoAway {
            after_updates: after,
            code: h2_code(code)?,
        },
        "drop" => Fault::DropConnection {
            after_updates: after,
        },
        "stall" => Fault::Stall {
            after_updates: after,
        },
        "trickle" => Fault::Trickle {
            interval: Duration::from_millis(ms.unwrap_or(100)),
        },
        "delay" => Fault::DelayFirstByte(Duration::from_millis(ms.unwrap_or(1000))),
        "error" => {
            let code = match code {
                None => Code::Unavailable,
                Some(c) => Code::parse(&c).ok_or(SpecError::BadOption(format!("code={c}")))?,
            };
            Fault::ErrorAfter {
                after_updates: after,
                code,
                cursor_error,
            }
        }
        _ => return Err(SpecError::UnknownKind(kind)),
    };
    Ok(FaultRule {
        account,
        runs,
        fault,
    })
}

/// An HTTP/2 error code by number or name (`refused_stream`, `REFUSED-STREAM`, `7`).
pub fn h2_reason(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse() {
        return Some(n);
    }
    const NAMES: [&str; 14] = [
        "no_error",
        "protocol_error",
        "internal_error",
        "flow_control_error",
        "settings_timeout",
        "stream_closed",
        "frame_size_error",
        "refused_stream",
        "cancel",
        "compression_error",
        "connect_error",
        "enhance_your_calm",
        "inadequate_security",
        "http_1_1_required",
    ];
    let name = s.to_ascii_lowercase().replace('-', "_");
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Parses `LABEL:API_KEY[:QUOTA]`.
pub fn parse_account(spec: &str) -> Result<AccountConfig, SpecError> {
    let bad = || SpecError::BadAccount(spec.to_owned());
    let mut parts = spec.splitn(3, ':');
    let label = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let api_key = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let quota = match parts.next() {
        None => Quota::default(),
        Some(q) => parse_quota(q)?,
    };
    Ok(AccountConfig {
        label: label.to_owned(),
        api_key: api_key.to_owned(),
        quota,
    })
}

/// Parses a quota: `unlimited` (or empty), `N` (runs), or `requests=N,tokens=N`.
pub fn parse_quota(spec: &str) -> Result<Quota, SpecError> {
    let bad = || SpecError::BadQuota(spec.to_owned());
    let mut quota = Quota::default();
    if spec.is_empty() || spec == "unlimited" {
        return Ok(quota);
    }
    for item in spec.split(',') {
        match item.split_once('=') {
            None => quota.requests = Some(item.parse().map_err(|_| bad())?),
            Some(("requests", n)) => quota.requests = Some(n.parse().map_err(|_| bad())?),
            Some(("tokens", n)) => quota.tokens = Some(n.parse().map_err(|_| bad())?),
            Some(_) => return Err(bad()),
        }
    }
    Ok(quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_spec_with_account_and_named_code() {
        let rule = parse_fault("rst:after=3:account=a:code=refused_stream").unwrap();
        assert_eq!(rule.account.as_deref(), Some("a"));
        assert_eq!(rule.runs, FaultRuns::All);
        assert_eq!(
            rule.fault,
            Fault::RstStream {
                after_updates: 3,
                code: 7
            }
        );
    }

    #[test]
    fn error_spec_takes_a_connect_code_and_run_count() {
        let rule =
            parse_fault("error:after=2:code=resource_exhausted:cursor_error=10:runs=1").unwrap();
        assert_eq!(rule.runs, FaultRuns::Next(1));
        assert_eq!(
            rule.fault,
            Fault::ErrorAfter {
                after_updates: 2,
                code: Code::ResourceExhausted,
                cursor_error: Some(10)
            }
        );
    }

    #[test]
    fn unknown_kinds_and_options_are_refused() {
        assert!(matches!(
            parse_fault("boom"),
            Err(SpecError::UnknownKind(_))
        ));
        assert!(matches!(
            parse_fault("rst:after=x"),
            Err(SpecError::BadOption(_))
        ));
        assert!(matches!(
            parse_fault("rst:code=nope"),
            Err(SpecError::BadOption(_))
        ));
    }

    #[test]
    fn account_with_and_without_quota() {
        let a = parse_account("a:key-a").unwrap();
        assert_eq!(a.quota, Quota::default());
        let b = parse_account("b:key-b:requests=2,tokens=500").unwrap();
        assert_eq!(b.quota.requests, Some(2));
        assert_eq!(b.quota.tokens, Some(500));
        assert_eq!(parse_account("c:k:3").unwrap().quota.requests, Some(3));
        assert!(parse_account("nokey").is_err());
        assert!(parse_account("d:k:lots").is_err());
    }
}
