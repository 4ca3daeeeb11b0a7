//! HTTP/2 send-window accounting (RFC 9113 §6.9) as plain values.
//!
//! Core must never emit more DATA than the peer allowed: a Claude Code run request can be 1 MiB
//! and Cursor's edge may advertise a 16 KiB initial window. [`SendWindow`] is the ledger that
//! answers "how many bytes may stream N send right now" and is told about every send.
//!
//! It is driven in one of two ways, chosen at construction ([`Accounting`]):
//!
//! - **RFC accounting** ([`SendWindow::new`]): whoever parses the frames (the simulated backend,
//!   a raw HTTP/2 peer) feeds `WINDOW_UPDATE` and `SETTINGS_INITIAL_WINDOW_SIZE` in. The ledger
//!   does the RFC arithmetic on the connection window and every stream window, lets a stream
//!   window go negative after a SETTINGS decrease (sends stop until updates lift it above zero),
//!   and reports peer violations as [`FlowError`]s carrying the HTTP/2 error code they imply.
//! - **Granted accounting** ([`SendWindow::granted`]): the adapter sits on the `h2` crate, which
//!   already does all of that arithmetic and hands out capacity through
//!   `SendStream::poll_capacity`. Here the ledger is deliberately dumb: capacity granted by h2
//!   accumulates per stream, sends consume it, and there is no connection window or RFC
//!   validation (h2 did it). Keeping the ledger in this mode still lets core decide chunk sizes
//!   and guarantees it never hands h2 more than h2 granted, so h2 never buffers unboundedly.
//!
//! The type is a value: inputs that fail leave it exactly as it was.

use std::collections::BTreeMap;

/// Largest legal flow-control window, 2^31−1 (RFC 9113 §6.9.1).
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Initial window of every stream and of the connection until SETTINGS say otherwise.
pub const DEFAULT_INITIAL_WINDOW_SIZE: u32 = 65_535;

const MAX: i64 = MAX_WINDOW_SIZE as i64;

/// The HTTP/2 error code (RFC 9113 §7) a [`FlowError`] implies when the connection or stream is
/// torn down because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `PROTOCOL_ERROR` (0x1).
    ProtocolError,
    /// `INTERNAL_ERROR` (0x2): our own bug, not the peer's.
    InternalError,
    /// `FLOW_CONTROL_ERROR` (0x3).
    FlowControlError,
}

impl ErrorCode {
    /// The wire value, e.g. for `h2::Reason::from(u32)`.
    pub const fn to_u32(self) -> u32 {
        match self {
            Self::ProtocolError => 0x1,
            Self::InternalError => 0x2,
            Self::FlowControlError => 0x3,
        }
    }
}

/// Who caused a [`FlowError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The remote endpoint sent something RFC 9113 forbids.
    Peer,
    /// This process asked for something impossible (a bug in core or an adapter).
    Local,
}

/// How a [`SendWindow`] learns about capacity; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accounting {
    /// WINDOW_UPDATE and SETTINGS arithmetic per RFC 9113, connection and stream windows.
    Rfc,
    /// Capacity granted by an HTTP/2 library (h2's `poll_capacity`), per stream only.
    Granted,
}

/// A flow-control failure.
///
/// Peer faults ([`Fault::Peer`]) are what RFC 9113 tells the receiver of the offending frame to
/// treat as an error: on a stream id they are stream errors (`RST_STREAM`), on stream 0 and for
/// SETTINGS they are connection errors (`GOAWAY`). Local faults mean the caller broke the
/// ledger's contract; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// A WINDOW_UPDATE increment of 0 (or one that does not fit the 31-bit field).
    #[error("WINDOW_UPDATE increment {increment} is outside 1..=2^31-1")]
    InvalidIncrement {
        /// The increment received.
        increment: u32,
    },
    /// A WINDOW_UPDATE that would raise a window past 2^31−1.
    #[error("WINDOW_UPDATE of {increment} would raise a window of {window} past 2^31-1")]
    WindowOverflow {
        /// The window before the update.
        window: i64,
        /// The increment received.
        increment: u32,
    },
    /// A SETTINGS_INITIAL_WINDOW_SIZE above 2^31−1.
    #[error("SETTINGS_INITIAL_WINDOW_SIZE {value} exceeds 2^31-1")]
    InvalidInitialWindowSize {
        /// The value received.
        value: u32,
    },
    /// A SETTINGS_INITIAL_WINDOW_SIZE change that would push a stream window out of range.
    #[error(
        "SETTINGS_INITIAL_WINDOW_SIZE change of {delta} would move a window of {window} outside ±(2^31-1)"
    )]
    SettingsOverflow {
        /// The stream window before the change.
        window: i64,
        /// New initial window minus old.
        delta: i64,
    },
    /// A SETTINGS_MAX_FRAME_SIZE outside 16_384..=16_777_215 (RFC 9113 §6.5.2).
    #[error("SETTINGS_MAX_FRAME_SIZE {value} is outside 16384..=16777215")]
    InvalidMaxFrameSize {
        /// The value received.
        value: u32,
    },
    /// A send larger than the capacity the peer allowed.
    #[error("cannot send {requested} bytes: only {available} available")]
    InsufficientCapacity {
        /// Bytes the caller tried to send.
        requested: u32,
        /// Bytes it could have sent.
        available: u32,
    },
    /// A send on a stream the ledger does not know.
    #[error("stream {id} is not open in the send ledger")]
    UnknownStream {
        /// The stream id.
        id: u32,
    },
    /// Opening stream 0 (the connection) or a stream that is already open.
    #[error("stream id {id} is the connection or already open")]
    StreamInUse {
        /// The stream id.
        id: u32,
    },
    /// Granted capacity adding up past 2^31−1, which no HTTP/2 window can hold; usually a
    /// total from h2 fed as an increment.
    #[error("granted capacity would reach {total}, past 2^31-1")]
    GrantOverflow {
        /// The capacity the grant would have produced.
        total: u64,
    },
    /// An input meant for the other [`Accounting`] mode.
    #[error("this input does not apply to a ledger using {ledger:?} accounting")]
    WrongAccounting {
        /// The ledger's mode.
        ledger: Accounting,
    },
}

impl FlowError {
    /// The HTTP/2 error code this failure implies.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidIncrement { .. } | Self::InvalidMaxFrameSize { .. } => {
                ErrorCode::ProtocolError
            }
            Self::WindowOverflow { .. }
            | Self::InvalidInitialWindowSize { .. }
            | Self::SettingsOverflow { .. } => ErrorCode::FlowControlError,
            Self::InsufficientCapacity { .. }
            | Self::UnknownStream { .. }
            | Self::StreamInUse { .. }
            | Self::GrantOverflow { .. }
            | Self::WrongAccounting { .. } => ErrorCode::InternalError,
        }
    }

    /// Who is to blame.
    pub const fn fault(&self) -> Fault {
        match self.code() {
            ErrorCode::InternalError => Fault::Local,
            ErrorCode::ProtocolError | ErrorCode::FlowControlError => Fault::Peer,
        }
    }
}

/// One HTTP/2 send window: signed, within ±(2^31−1), held wider so overflow is detectable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    size: i64,
}

impl Window {
    /// A window of `initial` bytes; above 2^31−1 is a `FLOW_CONTROL_ERROR`.
    pub fn new(initial: u32) -> Result<Self, FlowError> {
        check_initial(initial)?;
        Ok(Self {
            size: i64::from(initial),
        })
    }

    /// The signed window; negative after a SETTINGS decrease outran the bytes in flight.
    pub fn size(&self) -> i32 {
        i32::try_from(self.size).unwrap_or(if self.size < 0 { i32::MIN } else { i32::MAX })
    }

    /// Bytes that may be sent now: the window, or 0 while it is negative.
    pub fn available(&self) -> u32 {
        u32::try_from(self.size.max(0)).unwrap_or(MAX_WINDOW_SIZE)
    }

    /// Records `n` bytes sent; refuses to send more than [`available`](Self::available).
    pub fn consume(&mut self, n: u32) -> Result<(), FlowError> {
        let available = self.available();
        if n > available {
            return Err(FlowError::InsufficientCapacity {
                requested: n,
                available,
            });
        }
        self.size -= i64::from(n);
        Ok(())
    }

    /// Applies a WINDOW_UPDATE: 0 is a `PROTOCOL_ERROR`, past 2^31−1 a `FLOW_CONTROL_ERROR`.
    pub fn handle_window_update(&mut self, increment: u32) -> Result<(), FlowError> {
        if increment == 0 || increment > MAX_WINDOW_SIZE {
            return Err(FlowError::InvalidIncrement { increment });
        }
        let size = self.size + i64::from(increment);
        if size > MAX {
            return Err(FlowError::WindowOverflow {
                window: self.size,
                increment,
            });
        }
        self.size = size;
        Ok(())
    }

    /// Applies a SETTINGS_INITIAL_WINDOW_SIZE change from `old` to `new` to a stream window.
    ///
    /// The window moves by `new − old` and may go negative. Either value above 2^31−1, or a
    /// result outside ±(2^31−1), is a `FLOW_CONTROL_ERROR`. Only stream windows take this
    /// change; the connection window never does.
    pub fn apply_initial_window_change(&mut self, old: u32, new: u32) -> Result<(), FlowError> {
        check_initial(new)?;
        check_initial(old)?;
        let delta = i64::from(new) - i64::from(old);
        let size = self.size + delta;
        if !(-MAX..=MAX).contains(&size) {
            return Err(FlowError::SettingsOverflow {
                window: self.size,
                delta,
            });
        }
        self.size = size;
        Ok(())
    }

    /// Adds capacity granted by an HTTP/2 library; 0 is allowed (h2 can report it).
    fn grant(&mut self, n: u32) -> Result<(), FlowError> {
        let total = self.size + i64::from(n);
        if total > MAX {
            return Err(FlowError::GrantOverflow {
                total: total.unsigned_abs(),
            });
        }
        self.size = total;
        Ok(())
    }
}

fn check_initial(value: u32) -> Result<(), FlowError> {
    if value > MAX_WINDOW_SIZE {
        return Err(FlowError::InvalidInitialWindowSize { value });
    }
    Ok(())
}

/// The send-side ledger of one HTTP/2 connection: the connection window plus one window per
/// open stream. Stream ids are HTTP/2's, 0 naming the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    accounting: Accounting,
    connection: Window,
    initial_window: u32,
    streams: BTreeMap<u32, Window>,
}

impl Default for SendWindow {
    /// RFC accounting with the RFC's default windows of 65,535 bytes.
    fn default() -> Self {
        Self {
            accounting: Accounting::Rfc,
            connection: Window {
                size: i64::from(DEFAULT_INITIAL_WINDOW_SIZE),
            },
            initial_window: DEFAULT_INITIAL_WINDOW_SIZE,
            streams: BTreeMap::new(),
        }
    }
}

impl SendWindow {
    /// RFC accounting for a peer whose SETTINGS_INITIAL_WINDOW_SIZE is `initial_window`.
    ///
    /// The connection window starts at 65,535 as RFC 9113 fixes; raise it with
    /// `handle_window_update(0, …)`.
    pub fn new(initial_window: u32) -> Result<Self, FlowError> {
        check_initial(initial_window)?;
        Ok(Self {
            initial_window,
            ..Self::default()
        })
    }

    /// Granted accounting for adapters on the `h2` crate: streams open with 0 capacity and
    /// only [`handle_capacity_granted`](Self::handle_capacity_granted) or
    /// [`handle_capacity_assigned`](Self::handle_capacity_assigned) add to it.
    pub fn granted() -> Self {
        Self {
            accounting: Accounting::Granted,
            initial_window: 0,
            ..Self::default()
        }
    }

    /// Which inputs this ledger takes.
    pub fn accounting(&self) -> Accounting {
        self.accounting
    }

    /// The peer's current SETTINGS_INITIAL_WINDOW_SIZE (0 under granted accounting).
    pub fn initial_window(&self) -> u32 {
        self.initial_window
    }

    /// The connection window, or `None` under granted accounting where h2 owns it.
    pub fn connection_window(&self) -> Option<Window> {
        match self.accounting {
            Accounting::Rfc => Some(self.connection),
            Accounting::Granted => None,
        }
    }

    /// The window of an open stream.
    pub fn stream_window(&self, id: u32) -> Option<Window> {
        self.streams.get(&id).copied()
    }

    /// Whether `id` is open in the ledger.
    pub fn is_open(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Starts tracking stream `id` with the current initial window.
    pub fn open_stream(&mut self, id: u32) -> Result<(), FlowError> {
        if id == 0 || self.streams.contains_key(&id) {
            return Err(FlowError::StreamInUse { id });
        }
        let window = Window {
            size: i64::from(self.initial_window),
        };
        self.streams.insert(id, window);
        Ok(())
    }

    /// Stops tracking stream `id`; returns whether it was open. Bytes it sent stay consumed
    /// from the connection window.
    pub fn close_stream(&mut self, id: u32) -> bool {
        self.streams.remove(&id).is_some()
    }

    /// Bytes stream `id` may send now: the smaller of its window and the connection window
    /// (its grant alone under granted accounting); 0 for a stream that is not open.
    pub fn capacity(&self, id: u32) -> u32 {
        let Some(stream) = self.streams.get(&id) else {
            return 0;
        };
        match self.accounting {
            Accounting::Rfc => stream.available().min(self.connection.available()),
            Accounting::Granted => stream.available(),
        }
    }

    /// Records `n` bytes of DATA sent on stream `id`; refuses more than
    /// [`capacity`](Self::capacity).
    pub fn consume(&mut self, id: u32, n: u32) -> Result<(), FlowError> {
        let available = self.capacity(id);
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(FlowError::UnknownStream { id })?;
        if n > available {
            return Err(FlowError::InsufficientCapacity {
                requested: n,
                available,
            });
        }
        stream.consume(n)?;
        if self.accounting == Accounting::Rfc {
            self.connection.consume(n)?;
        }
        Ok(())
    }

    /// Applies a WINDOW_UPDATE for `stream_id` (0: the connection). RFC accounting only.
    ///
    /// An update for a stream that is not open is ignored: the peer may legitimately send one
    /// after the stream ended (RFC 9113 §6.9).
    pub fn handle_window_update(
        &mut self,
        stream_id: u32,
        increment: u32,
    ) -> Result<(), FlowError> {
        self.require(Accounting::Rfc)?;
        if stream_id == 0 {
            return self.connection.handle_window_update(increment);
        }
        match self.streams.get_mut(&stream_id) {
            Some(window) => window.handle_window_update(increment),
            None => Ok(()),
        }
    }

    /// Applies a new SETTINGS_INITIAL_WINDOW_SIZE to every open stream (not the connection).
    /// RFC accounting only; all-or-nothing: on error no window changed.
    pub fn handle_settings_initial_window(&mut self, new: u32) -> Result<(), FlowError> {
        self.require(Accounting::Rfc)?;
        check_initial(new)?;
        let old = self.initial_window;
        for window in self.streams.values() {
            let mut trial = *window;
            trial.apply_initial_window_change(old, new)?;
        }
        for window in self.streams.values_mut() {
            window.apply_initial_window_change(old, new)?;
        }
        self.initial_window = new;
        Ok(())
    }

    /// Adds `n` bytes of capacity h2 granted stream `id`. Granted accounting only.
    ///
    /// Grants accumulate and sends consume them. h2's `poll_capacity` reports the stream's
    /// *total* assigned capacity, not an increment: feed that value to
    /// [`handle_capacity_assigned`](Self::handle_capacity_assigned) instead. A grant for a
    /// stream that is not open is ignored (it raced the stream's end).
    pub fn handle_capacity_granted(&mut self, id: u32, n: u32) -> Result<(), FlowError> {
        self.require(Accounting::Granted)?;
        match self.streams.get_mut(&id) {
            Some(window) => window.grant(n),
            None => Ok(()),
        }
    }

    /// Sets stream `id`'s capacity to the `total` h2 reports as assigned (what
    /// `SendStream::poll_capacity` and `SendStream::capacity` return). Granted accounting only;
    /// a total for a stream that is not open is ignored.
    pub fn handle_capacity_assigned(&mut self, id: u32, total: u32) -> Result<(), FlowError> {
        self.require(Accounting::Granted)?;
        if total > MAX_WINDOW_SIZE {
            return Err(FlowError::GrantOverflow {
                total: u64::from(total),
            });
        }
        if let Some(window) = self.streams.get_mut(&id) {
            window.size = i64::from(total);
        }
        Ok(())
    }

    fn require(&self, accounting: Accounting) -> Result<(), FlowError> {
        if self.accounting != accounting {
            return Err(FlowError::WrongAccounting {
                ledger: self.accounting,
            });
        }
        Ok(())
    }
}
