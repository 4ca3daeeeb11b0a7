//! `GET /v1/models` (and `/v1/models/{id}`) bodies in both APIs' shapes, from model ids.
//!
//! Core has no clock: the adapter passes the creation time to report (Unix seconds; e.g. its
//! start time, or a fixed date), rendered as RFC 3339 for Anthropic and as seconds for OpenAI.

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::api::sse::write_json;
use crate::chat::ApiKind;

#[derive(Serialize)]
struct AnthropicModel<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'a str,
}

#[derive(Serialize)]
struct AnthropicList<'a> {
    data: Vec<AnthropicModel<'a>>,
    has_more: bool,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
}

#[derive(Serialize)]
struct OpenAiModel<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct OpenAiList<'a> {
    object: &'static str,
    data: Vec<OpenAiModel<'a>>,
}

/// The model list for `api`: Anthropic
/// `{"data":[{"type":"model","id","display_name","created_at"}],"has_more":false,"first_id","last_id"}`
/// or OpenAI `{"object":"list","data":[{"id","object":"model","created","owned_by":"cursor"}]}`.
/// The display name is the id (Cursor gives no other).
pub fn models_body<S: AsRef<str>>(api: ApiKind, ids: &[S], created: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + ids.len() * 96);
    match api {
        ApiKind::Anthropic => {
            let created_at = rfc3339(created);
            let data: Vec<_> = ids
                .iter()
                .map(|id| anthropic_model(id.as_ref(), &created_at))
                .collect();
            let list = AnthropicList {
                has_more: false,
                first_id: ids.first().map(AsRef::as_ref),
                last_id: ids.last().map(AsRef::as_ref),
                data,
            };
            write_json(&mut out, &list);
        }
        ApiKind::OpenAi => {
            let data = ids
                .iter()
                .map(|id| openai_model(id.as_ref(), created))
                .collect();
            write_json(
                &mut out,
                &OpenAiList {
                    object: "list",
                    data,
                },
            );
        }
    }
    out.freeze()
}

/// One model object for `api` (`GET /v1/models/{id}`).
pub fn model_body(api: ApiKind, id: &str, created: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    match api {
        ApiKind::Anthropic => write_json(&mut out, &anthropic_model(id, &rfc3339(created))),
        ApiKind::OpenAi => write_json(&mut out, &openai_model(id, created)),
    }
    out.freeze()
}

fn anthropic_model<'a>(id: &'a str, created_at: &'a str) -> AnthropicModel<'a> {
    AnthropicModel {
        kind: "model",
        id,
        display_name: id,
        created_at,
    }
}

fn openai_model(id: &str, created: u64) -> OpenAiModel<'_> {
    OpenAiModel {
        id,
        object: "model",
        created,
        owned_by: "cursor",
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian, UTC).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
