//! What a person or a scraper looks at while the proxy runs: the status page (`GET /status`,
//! one self-contained HTML page: inline CSS and JS, no build step) and the Prometheus metrics
//! (`GET /metrics`, see [`crate::metrics`]).
//!
//! The page carries no data itself: it asks for the management secret (kept in the tab's
//! `sessionStorage` only) and reads the management API with it — accounts with their state,
//! rests and usage, recent upstream errors — refreshing every few seconds; its login button
//! starts a browser login through `cursor-auth-url` and shows the link. Without a management
//! secret configured the page is off (404), like the API it reads.

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::app::App;
use crate::body::{HttpResponse, ResponseBody};

/// The page.
const PAGE: &str = include_str!("status.html");

/// Answers `GET /status` and `GET /metrics`; `None` for every other request.
pub(crate) fn handle(app: &App, parts: &Parts) -> Option<HttpResponse> {
    let path = parts.uri.path();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return None;
    }
    match path {
        "/status" | "/status/" => Some(match app.live().management_secret {
            Some(_) => text(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()),
            None => text(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "the status page needs a management secret (management-secret in the \
                 configuration, or --management-secret)\n"
                    .into(),
            ),
        }),
        "/metrics" => {
            if app.live().management_secret.is_some()
                && let Some(resp) = crate::management::refusal(app, parts)
            {
                return Some(resp);
            }
            let body = app.metrics().render(app);
            Some(text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body.into(),
            ))
        }
        _ => None,
    }
}

fn text(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}
