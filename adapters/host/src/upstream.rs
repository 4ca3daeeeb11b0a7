//! The seam between the host and a runtime adapter: what the host needs from a runtime
//! ([`Platform`]: spawn, sleep, connect) and from an account's upstream ([`Upstream`]: drive one
//! run, make one unary call). The tokio adapter answers with `h2` (`Run`), the smol adapter with
//! HTTP/1.1 (`RunSSE` + `BidiAppend`); everything above this seam is shared.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cursorpool_core::classify::TransportFailure;
use cursorpool_core::headers::CallKind;
use http::{HeaderMap, Method, Uri};

use crate::relay::{Outcome, RunCall};

/// A boxed, sendable future (the trait objects below return these).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which of Cursor's two transports an upstream speaks (spec §2.4, §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// One full-duplex HTTP/2 `Run` stream per turn.
    Run,
    /// `RunSSE` (server stream) plus one `BidiAppend` unary call per client message, over
    /// HTTP/1.1.
    RunSse,
}

impl Pairing {
    /// The call kind of the stream that carries the run's answer.
    pub fn stream_kind(self) -> CallKind {
        match self {
            Self::Run => CallKind::Run,
            Self::RunSse => CallKind::RunSse,
        }
    }

    /// The RPC path of that stream.
    pub fn stream_path(self) -> &'static str {
        match self {
            Self::Run => cursorpool_core::headers::path::RUN,
            Self::RunSse => cursorpool_core::headers::path::RUN_SSE,
        }
    }
}

/// What a runtime adapter provides to the host.
pub trait Platform: Send + Sync + std::fmt::Debug + 'static {
    /// Runs `fut` in the background.
    fn spawn(&self, fut: BoxFuture<'static, ()>);
    /// Resolves after `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    /// The upstream of one account at `base_url` (`extra_roots_pem`: trusted CA certificates
    /// on top of the webpki roots, e.g. the sim's self-signed one). Makes no connection yet.
    fn upstream(
        &self,
        base_url: &str,
        extra_roots_pem: Option<&[u8]>,
    ) -> Result<Arc<dyn Upstream>, UpstreamError>;
    /// Which pairing this adapter's upstreams speak.
    fn pairing(&self) -> Pairing;
}

/// A whole response of a unary call: status, headers, body.
pub type UnaryAnswer = (u16, HeaderMap, Bytes);

/// One account's connection(s) to Cursor (or the sim), pooled by the adapter.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// Drives one run to its end (finished, failed, or abandoned by every reader).
    fn drive(self: Arc<Self>, call: RunCall) -> BoxFuture<'static, Outcome>;
    /// One unary call (`path` may carry a query); the answer's body is bounded by `max_len`.
    /// The path and headers may carry credentials: never logged.
    fn unary<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        headers: &'a HeaderMap,
        body: Bytes,
        max_len: usize,
    ) -> BoxFuture<'a, Result<UnaryAnswer, UpstreamError>>;
    /// Connections made so far (TCP + TLS + protocol handshakes).
    fn connects(&self) -> u64;
    /// Connections open now, and how many of them rest in the pool (leak checks).
    fn connections(&self) -> crate::live::Connections;
}

/// Why an upstream call could not be made. Blame: the configuration (base URL), or the
/// network path and the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The base URL is not an `http://` or `https://` URL with a host.
    #[error("invalid upstream base URL {0:?}")]
    BadBaseUrl(String),
    /// TCP connect failed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// host:port.
        authority: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TLS handshake failed or the server did not agree to the protocol.
    #[error("TLS with {authority} failed: {reason}")]
    Tls {
        /// host:port.
        authority: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP layer failed (reset, GOAWAY, a broken or malformed response).
    #[error("{message}")]
    Transport {
        /// Core's name for it.
        failure: TransportFailure,
        /// What the HTTP library said.
        message: String,
    },
    /// The call took longer than allowed.
    #[error("the upstream call timed out")]
    TimedOut,
}

impl UpstreamError {
    /// Core's transport failure kind for this error (for classification).
    pub fn failure(&self) -> TransportFailure {
        match self {
            Self::BadBaseUrl(_) | Self::Connect { .. } => TransportFailure::ConnectFailed,
            Self::Tls { .. } => TransportFailure::TlsFailed,
            Self::Transport { failure, .. } => *failure,
            Self::TimedOut => TransportFailure::ConnectionReset,
        }
    }
}

/// A parsed upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (default 443 / 80).
    pub port: u16,
    /// Prefix to put before RPC paths (a base URL may carry one).
    pub path_prefix: String,
}

impl Target {
    /// Parses `http://host[:port][/prefix]` or `https://…`.
    pub fn parse(base_url: &str) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError::BadBaseUrl(base_url.to_owned());
        let uri: Uri = base_url.parse().map_err(|_| bad())?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            tls,
            host,
            port,
            path_prefix,
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The path (with the base URL's prefix) of an RPC path on this target.
    pub fn path(&self, path: &str) -> String {
        format!("{}{path}", self.path_prefix)
    }

    /// The absolute URI of an RPC path on this target.
    pub fn uri(&self, path: &str) -> Result<Uri, UpstreamError> {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}{path}", self.authority(), self.path_prefix)
            .parse()
            .map_err(|_| UpstreamError::BadBaseUrl(path.to_owned()))
    }
}

/// The rustls client configuration for an upstream: webpki roots plus `extra_roots_pem`,
/// offering `alpn` (`h2` or `http/1.1`).
pub fn tls_config(
    extra_roots_pem: Option<&[u8]>,
    target: &Target,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_roots_pem {
        for cert in CertificateDer::pem_slice_iter(pem).filter_map(Result::ok) {
            roots.add(cert).map_err(|e| UpstreamError::Tls {
                authority: target.authority(),
                reason: format!("extra root certificate: {e}"),
            })?;
        }
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// `fut`, or [`UpstreamError::TimedOut`] after `limit`.
pub async fn timeout<T>(
    platform: &dyn Platform,
    limit: Duration,
    fut: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    let sleep = platform.sleep(limit);
    futures_lite::future::or(fut, async move {
        sleep.await;
        Err(UpstreamError::TimedOut)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_into_scheme_host_port_and_prefix() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert!(!t.tls);
        assert_eq!(t.authority(), "127.0.0.1:8080");
        assert_eq!(
            t.uri("/agent.v1.AgentService/Run").unwrap().to_string(),
            "http://127.0.0.1:8080/agent.v1.AgentService/Run"
        );
        let t = Target::parse("https://api2.cursor.sh/").unwrap();
        assert!(t.tls);
        assert_eq!(t.authority(), "api2.cursor.sh:443");
        let t = Target::parse("http://h:1/prefix/").unwrap();
        assert_eq!(t.path("/x"), "/prefix/x");
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
