//! Limits on one downstream connection, whatever the HTTP library: a request head larger than
//! `max_header_bytes` is answered 431 in the client API's error shape and the connection
//! closed; a head not complete within `header_timeout` of its first byte (slow-loris), a
//! request body with no byte for `header_timeout`, and a connection with no request for
//! `idle_timeout` are closed.
//!
//! The adapter wraps the socket so that every read passes through [`ConnWatch::on_read`],
//! holds a [`RequestGuard`] from a request's head until its response is written (or dropped),
//! and polls [`ConnWatch::check`] every [`ConnWatch::tick`] to close an expired connection.
//! No runtime and no HTTP library here: only the bytes and the clock the adapter passes in.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use cursorpool_core::api::{self, ApiError, ErrorType};
use cursorpool_core::chat::ApiKind;

/// A connection's limits (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// How long a request head may take from its first byte, and how long a request body may
    /// go without a byte.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What the adapter does with bytes it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadVerdict {
    /// Hand them to the HTTP library.
    Pass,
    /// The head is too large: write these bytes (a complete 431 response), then close.
    Reject(Vec<u8>),
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head did not complete in time.
    HeaderTimeout,
    /// A request body stopped arriving.
    BodyStalled,
    /// No request came on a kept-alive connection.
    Idle,
}

/// The HTTP/2 client preface's start (a connection that begins so carries no HTTP/1.1 heads).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// Bytes of a head's request line kept to choose the error shape of a 431.
const FIRST_LINE: usize = 256;

/// One downstream connection's clock and head accounting, shared by its socket wrapper, its
/// requests and its watcher.
#[derive(Debug, Clone)]
pub struct ConnWatch {
    limits: ConnLimits,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Requests from head to written response.
    in_flight: usize,
    /// Of those, the ones whose body is still being read.
    reading_body: usize,
    /// Since when no request is in flight (the idle clock).
    quiet_since: Instant,
    /// The last byte read.
    last_read: Instant,
    /// The first byte of a head read while no request is in flight.
    head_started: Option<Instant>,
    /// Bytes of that head so far.
    head_bytes: usize,
    /// Its request line (up to [`FIRST_LINE`] bytes).
    first_line: Vec<u8>,
    /// The last bytes read, to find `\r\n\r\n` across reads.
    tail: Vec<u8>,
    /// A complete head was read; the HTTP library has yet to start the request.
    head_done: bool,
    /// Decided on the connection's first bytes: HTTP/2 (no heads to count).
    http2: Option<bool>,
    /// Bytes seen at the connection's start, until HTTP/2 is decided.
    start: Vec<u8>,
}

impl ConnWatch {
    /// A new connection accepted at `now`.
    pub fn new(limits: ConnLimits, now: Instant) -> Self {
        Self {
            limits,
            state: Arc::new(Mutex::new(State {
                in_flight: 0,
                reading_body: 0,
                quiet_since: now,
                last_read: now,
                head_started: None,
                head_bytes: 0,
                first_line: Vec::new(),
                tail: Vec::new(),
                head_done: false,
                http2: None,
                start: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often the adapter should call [`ConnWatch::check`].
    pub fn tick(&self) -> Duration {
        (self.limits.header_timeout.min(self.limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// Accounts for `data`, just read from the client.
    pub fn on_read(&self, data: &[u8], now: Instant) -> ReadVerdict {
        if data.is_empty() {
            return ReadVerdict::Pass;
        }
        let mut s = self.lock();
        s.last_read = now;
        if s.http2.is_none() {
            let want = H2_PREFACE.len() - s.start.len().min(H2_PREFACE.len());
            let take = want.min(data.len());
            s.start.extend_from_slice(&data[..take]);
            let n = s.start.len();
            if s.start[..] != H2_PREFACE[..n] {
                s.http2 = Some(false);
            } else if n == H2_PREFACE.len() {
                s.http2 = Some(true);
            }
            if s.http2.is_some() {
                s.start = Vec::new();
            }
        }
        if s.http2 == Some(true) || s.in_flight > 0 || s.head_done {
            return ReadVerdict::Pass;
        }
        if s.head_started.is_none() {
            s.head_started = Some(now);
        }
        // Scan the head for its end (across reads, through the kept tail).
        let mut window = std::mem::take(&mut s.tail);
        let tail_len = window.len();
        window.extend_from_slice(data);
        let end = window.windows(4).position(|w| w == b"\r\n\r\n");
        let used = match end {
            Some(i) => i + 4 - tail_len,
            None => data.len(),
        };
        if s.first_line.len() < FIRST_LINE && !s.first_line.contains(&b'\n') {
            let room = FIRST_LINE - s.first_line.len();
            s.first_line
                .extend_from_slice(&data[..used.min(room).min(data.len())]);
        }
        s.head_bytes += used;
        if s.head_bytes > self.limits.max_header_bytes {
            let line = String::from_utf8_lossy(&s.first_line).into_owned();
            return ReadVerdict::Reject(head_too_large(&line, self.limits.max_header_bytes));
        }
        if end.is_some() {
            s.head_done = true;
        } else {
            let keep = window.len().min(3);
            s.tail = window[window.len() - keep..].to_vec();
        }
        ReadVerdict::Pass
    }

    /// The HTTP library read a request head; the guard lives until its response is written.
    pub fn request(&self) -> RequestGuard {
        let mut s = self.lock();
        s.in_flight += 1;
        s.reading_body += 1;
        s.reset_head();
        RequestGuard {
            watch: self.clone(),
            reading_body: true,
        }
    }

    /// Resolves when the connection must close (checked every [`ConnWatch::tick`] on the
    /// adapter's timers).
    pub async fn expired(&self, platform: &dyn crate::upstream::Platform) -> Expired {
        loop {
            platform.sleep(self.tick()).await;
            if let Some(e) = self.check(Instant::now()) {
                return e;
            }
        }
    }

    /// Whether the connection should be closed now, and why.
    pub fn check(&self, now: Instant) -> Option<Expired> {
        let s = self.lock();
        let l = &self.limits;
        if s.in_flight == 0 {
            if let Some(t) = s.head_started {
                return (now.saturating_duration_since(t) >= l.header_timeout)
                    .then_some(Expired::HeaderTimeout);
            }
            return (now.saturating_duration_since(s.quiet_since) >= l.idle_timeout)
                .then_some(Expired::Idle);
        }
        (s.reading_body > 0 && now.saturating_duration_since(s.last_read) >= l.header_timeout)
            .then_some(Expired::BodyStalled)
    }
}

impl State {
    fn reset_head(&mut self) {
        self.head_started = None;
        self.head_bytes = 0;
        self.first_line.clear();
        self.tail.clear();
        self.head_done = false;
    }
}

/// One request on a watched connection, from its head until its response is written.
#[derive(Debug)]
pub struct RequestGuard {
    watch: ConnWatch,
    reading_body: bool,
}

impl RequestGuard {
    /// The request's body was read (its timeouts no longer apply).
    pub fn body_read(&mut self) {
        if std::mem::take(&mut self.reading_body) {
            let mut s = self.watch.lock();
            s.reading_body = s.reading_body.saturating_sub(1);
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.body_read();
        let mut s = self.watch.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            // The host's clock, like the adapters': this is IO-side time, not core's.
            s.quiet_since = Instant::now();
            s.last_read = s.quiet_since;
            s.reset_head();
        }
    }
}

/// A rejection on its way out of a watched socket: its response bytes, then the close of our
/// half of the connection. The adapters' socket wrappers drive it with their own IO traits.
#[derive(Debug, Default)]
pub struct Rejection {
    /// The response and how many of its bytes are out.
    pending: Option<(Vec<u8>, usize)>,
    /// The response is out and our half closed.
    closed: bool,
}

impl Rejection {
    /// Starts sending `response`.
    pub fn start(&mut self, response: Vec<u8>) {
        self.pending = Some((response, 0));
    }

    /// Whether the HTTP library's writes must fail (a rejection is pending or out).
    pub fn blocks_writes(&self) -> bool {
        self.closed || self.pending.is_some()
    }

    /// Writes what is left with `io(Some(bytes))` (bytes written), then closes with `io(None)`.
    /// `Ready(Ok(true))` once the rejection is out (reads end there), `Ready(Ok(false))` when
    /// there is none.
    pub fn poll_out(
        &mut self,
        mut io: impl FnMut(Option<&[u8]>) -> Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<bool>> {
        while let Some((bytes, sent)) = self.pending.as_mut() {
            if *sent == bytes.len() {
                // A failed close still ends the connection.
                let _ = std::task::ready!(io(None));
                self.pending = None;
                self.closed = true;
                break;
            }
            let n = std::task::ready!(io(Some(&bytes[*sent..])))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(self.closed))
    }
}

/// A complete HTTP/1.1 431 response in the API shape the request line points to (OpenAI for
/// `/v1/chat/…`, Anthropic otherwise), closing the connection.
pub fn head_too_large(first_line: &str, limit: usize) -> Vec<u8> {
    let path = first_line.split_whitespace().nth(1).unwrap_or("");
    let kind = if path.starts_with("/v1/chat/") {
        ApiKind::OpenAi
    } else {
        ApiKind::Anthropic
    };
    let err = ApiError::new(
        ErrorType::InvalidRequest,
        format!("request headers exceed {limit} bytes"),
    );
    let (_, _, body) = api::render_error(kind, &err).into_parts();
    let mut out = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max_header_bytes: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(20),
        }
    }

    #[test]
    fn a_head_over_the_limit_is_rejected_with_a_431_in_the_api_shape() {
        let t = Instant::now();
        let w = ConnWatch::new(limits(), t);
        assert_eq!(
            w.on_read(b"POST /v1/chat/completions HTTP/1.1\r\n", t),
            ReadVerdict::Pass
        );
        let ReadVerdict::Reject(resp) = w.on_read(&[b'x'; 64], t) else {
            panic!("not rejected");
        };
        let text = String::from_utf8(resp).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains(r#"{"error":{"#), "OpenAI shape: {text}");
        let anthropic = String::from_utf8(head_too_large("GET /v1/messages HTTP/1.1", 1)).unwrap();
        assert!(anthropic.contains(r#""type":"error""#), "{anthropic}");
    }

    #[test]
    fn a_complete_head_within_the_limit_passes_even_split_across_reads() {
        let t = Instant::now();
        let w = ConnWatch::new(limits(), t);
        assert_eq!(
            w.on_read(b"GET / HTTP/1.1\r\nhost: a\r", t),
            ReadVerdict::Pass
        );
        assert_eq!(w.on_read(b"\n\r\n", t), ReadVerdict::Pass);
        // The body that follows is not head.
        assert_eq!(w.on_read(&[b'x'; 500], t), ReadVerdict::Pass);
    }

    #[test]
    fn http2_connections_carry_no_heads_to_count() {
        let t = Instant::now();
        let w = ConnWatch::new(limits(), t);
        assert_eq!(
            w.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", t),
            ReadVerdict::Pass
        );
        assert_eq!(w.on_read(&[0u8; 1000], t), ReadVerdict::Pass);
        assert_eq!(w.check(t + Duration::from_secs(15)), None);
        assert_eq!(w.check(t + Duration::from_secs(20)), Some(Expired::Idle));
    }

    #[test]
    fn a_slow_head_expires_after_the_header_timeout() {
        let t = Instant::now();
        let w = ConnWatch::new(limits(), t);
        let later = t + Duration::from_secs(5);
        w.on_read(b"GET / HT", later);
        assert_eq!(w.check(later + Duration::from_secs(9)), None);
        assert_eq!(
            w.check(later + Duration::from_secs(10)),
            Some(Expired::HeaderTimeout)
        );
    }

    #[test]
    fn a_request_in_flight_is_never_idle_but_its_body_may_stall() {
        let t = Instant::now();
        let w = ConnWatch::new(limits(), t);
        w.on_read(b"POST / HTTP/1.1\r\n\r\n", t);
        let mut req = w.request();
        assert_eq!(
            w.check(t + Duration::from_secs(10)),
            Some(Expired::BodyStalled)
        );
        req.body_read();
        assert_eq!(w.check(t + Duration::from_secs(3600)), None);
        drop(req);
        let after = Instant::now();
        assert_eq!(w.check(after + Duration::from_secs(19)), None);
        assert_eq!(
            w.check(after + Duration::from_secs(20)),
            Some(Expired::Idle)
        );
    }

    #[test]
    fn a_rejection_is_written_in_pieces_then_closed_and_blocks_writes() {
        let mut r = Rejection::default();
        assert!(!r.blocks_writes());
        assert_eq!(
            r.poll_out(|_| panic!("no io")).map(Result::ok),
            Poll::Ready(Some(false))
        );
        r.start(b"HTTP/1.1 431\r\n\r\n".to_vec());
        assert!(r.blocks_writes());
        let (mut out, mut closed, mut busy) = (Vec::new(), false, true);
        // The socket is busy once, then takes 3 bytes at a time.
        let mut io = |b: Option<&[u8]>| match b {
            Some(_) if std::mem::take(&mut busy) => Poll::Pending,
            Some(b) => {
                let n = b.len().min(3);
                out.extend_from_slice(&b[..n]);
                Poll::Ready(Ok(n))
            }
            None => {
                closed = true;
                Poll::Ready(Ok(0))
            }
        };
        assert!(r.poll_out(&mut io).is_pending());
        let done = r.poll_out(&mut io);
        assert_eq!(done.map(Result::ok), Poll::Ready(Some(true)));
        assert_eq!(out, b"HTTP/1.1 431\r\n\r\n");
        assert!(closed && r.blocks_writes());
    }
}
