//! The HTTP/2 send-window ledger against RFC 9113 §6.9.

use cursorpool_core::flow::window::{
    Accounting, DEFAULT_INITIAL_WINDOW_SIZE, ErrorCode, Fault, FlowError, MAX_WINDOW_SIZE,
    SendWindow, Window,
};
use proptest::prelude::*;

const MAX: i64 = MAX_WINDOW_SIZE as i64;

fn window(initial: u32) -> Window {
    Window::new(initial).expect("initial window within range")
}

fn ledger(initial: u32, streams: &[u32]) -> SendWindow {
    let mut ledger = SendWindow::new(initial).expect("initial window within range");
    for &id in streams {
        ledger.open_stream(id).expect("fresh stream id");
    }
    ledger
}

#[test]
fn error_codes_are_rfc_wire_values_and_blame_the_peer() {
    let zero = FlowError::InvalidIncrement { increment: 0 };
    assert_eq!(zero.code(), ErrorCode::ProtocolError);
    assert_eq!(zero.code().to_u32(), 0x1);
    assert_eq!(zero.fault(), Fault::Peer);
    let overflow = FlowError::WindowOverflow {
        window: MAX,
        increment: 1,
    };
    assert_eq!(overflow.code(), ErrorCode::FlowControlError);
    assert_eq!(overflow.code().to_u32(), 0x3);
    assert_eq!(overflow.fault(), Fault::Peer);
    let overdraw = FlowError::InsufficientCapacity {
        requested: 2,
        available: 1,
    };
    assert_eq!(overdraw.fault(), Fault::Local);
    assert_eq!(overdraw.code().to_u32(), 0x2);
}

#[test]
fn zero_increment_is_protocol_error_on_stream_and_connection() {
    let mut w = window(10);
    let err = w.handle_window_update(0).unwrap_err();
    assert_eq!(err.code(), ErrorCode::ProtocolError);
    assert_eq!(w, window(10));

    let mut l = ledger(10, &[1]);
    assert_eq!(
        l.handle_window_update(1, 0).unwrap_err().code(),
        ErrorCode::ProtocolError
    );
    assert_eq!(
        l.handle_window_update(0, 0).unwrap_err().code(),
        ErrorCode::ProtocolError
    );
}

#[test]
fn window_update_to_exactly_max_is_accepted_and_one_more_is_flow_control_error() {
    let mut w = window(0);
    w.handle_window_update(MAX_WINDOW_SIZE)
        .expect("reaches the maximum");
    assert_eq!(w.available(), MAX_WINDOW_SIZE);
    let err = w.handle_window_update(1).unwrap_err();
    assert_eq!(
        err,
        FlowError::WindowOverflow {
            window: MAX,
            increment: 1
        }
    );
    assert_eq!(err.code(), ErrorCode::FlowControlError);
    assert_eq!(w.available(), MAX_WINDOW_SIZE);
}

#[test]
fn connection_window_update_overflow_is_flow_control_error() {
    let mut l = SendWindow::default();
    let err = l.handle_window_update(0, MAX_WINDOW_SIZE).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FlowControlError);
    assert_eq!(
        l.connection_window().map(|w| w.available()),
        Some(DEFAULT_INITIAL_WINDOW_SIZE)
    );
}

#[test]
fn initial_window_above_max_is_flow_control_error() {
    let too_big = MAX_WINDOW_SIZE + 1;
    let expected = FlowError::InvalidInitialWindowSize { value: too_big };
    assert_eq!(Window::new(too_big), Err(expected));
    assert_eq!(SendWindow::new(too_big).unwrap_err(), expected);
    assert_eq!(
        window(5).apply_initial_window_change(5, too_big),
        Err(expected)
    );
    let mut l = ledger(5, &[]);
    assert_eq!(l.handle_settings_initial_window(too_big), Err(expected));
    assert_eq!(expected.code(), ErrorCode::FlowControlError);
    assert_eq!(l.initial_window(), 5);
}

#[test]
fn settings_change_overflowing_a_stream_window_is_flow_control_error_and_changes_nothing() {
    let mut l = ledger(MAX_WINDOW_SIZE - 10, &[1, 3]);
    l.handle_window_update(3, 10)
        .expect("stream 3 at the maximum");
    let before = l.clone();
    let err = l
        .handle_settings_initial_window(MAX_WINDOW_SIZE)
        .unwrap_err();
    assert!(matches!(err, FlowError::SettingsOverflow { delta: 10, .. }));
    assert_eq!(err.code(), ErrorCode::FlowControlError);
    assert_eq!(l, before, "all-or-nothing: stream 1 untouched too");
}

#[test]
fn settings_decrease_makes_window_negative_and_sends_stop_until_positive() {
    let mut l = ledger(100, &[1]);
    l.consume(1, 80).expect("within window");
    l.handle_settings_initial_window(10)
        .expect("legal decrease");
    assert_eq!(l.stream_window(1).map(|w| w.size()), Some(-70));
    assert_eq!(l.capacity(1), 0);
    assert!(matches!(
        l.consume(1, 1),
        Err(FlowError::InsufficientCapacity { available: 0, .. })
    ));
    l.handle_window_update(1, 70).expect("back to zero");
    assert_eq!(l.capacity(1), 0);
    l.handle_window_update(1, 5).expect("positive again");
    assert_eq!(l.capacity(1), 5);
    l.consume(1, 5).expect("sends resume");
}

#[test]
fn initial_window_zero_allows_no_send_until_window_update() {
    let mut l = ledger(0, &[1]);
    assert_eq!(l.capacity(1), 0);
    assert!(l.consume(1, 1).is_err());
    l.consume(1, 0)
        .expect("an empty DATA frame needs no window");
    l.handle_window_update(1, 7).expect("legal update");
    assert_eq!(l.capacity(1), 7);
}

#[test]
fn capacity_is_min_of_stream_and_connection_and_sends_drain_both() {
    let mut l = ledger(50_000, &[1, 3]);
    assert_eq!(l.capacity(1), 50_000);
    l.consume(1, 40_000).expect("within window");
    assert_eq!(l.capacity(3), (DEFAULT_INITIAL_WINDOW_SIZE - 40_000));
    l.consume(3, 25_535).expect("drains the connection");
    assert_eq!(l.capacity(1), 0);
    assert_eq!(l.capacity(3), 0);
    l.handle_window_update(0, 1_000).expect("legal update");
    assert_eq!(l.capacity(1), 1_000);
    assert_eq!(l.capacity(3), 1_000);
}

#[test]
fn connection_window_ignores_settings_changes() {
    let mut l = ledger(100, &[1]);
    l.handle_settings_initial_window(0).expect("legal decrease");
    assert_eq!(
        l.connection_window().map(|w| w.available()),
        Some(DEFAULT_INITIAL_WINDOW_SIZE)
    );
    l.open_stream(3).expect("fresh id");
    assert_eq!(
        l.capacity(3),
        0,
        "new streams open with the new initial window"
    );
}

#[test]
fn window_update_for_a_closed_or_unknown_stream_is_ignored() {
    let mut l = ledger(10, &[1]);
    assert!(l.close_stream(1));
    assert!(!l.close_stream(1));
    l.handle_window_update(1, 5).expect("ignored");
    l.handle_window_update(9, 5).expect("ignored");
    assert_eq!(l.capacity(1), 0);
    assert_eq!(l.consume(1, 1), Err(FlowError::UnknownStream { id: 1 }));
}

#[test]
fn stream_zero_and_duplicate_ids_cannot_be_opened() {
    let mut l = ledger(10, &[1]);
    assert_eq!(l.open_stream(0), Err(FlowError::StreamInUse { id: 0 }));
    assert_eq!(l.open_stream(1), Err(FlowError::StreamInUse { id: 1 }));
}

#[test]
fn granted_capacity_accumulates_and_is_consumed_by_sends() {
    let mut l = SendWindow::granted();
    assert_eq!(l.accounting(), Accounting::Granted);
    assert_eq!(l.connection_window(), None);
    l.open_stream(1).expect("fresh id");
    assert_eq!(l.capacity(1), 0);
    l.handle_capacity_granted(1, 0).expect("h2 may report 0");
    l.handle_capacity_granted(1, 100_000).expect("grant");
    l.handle_capacity_granted(1, 50_000).expect("grant");
    assert_eq!(l.capacity(1), 150_000, "no connection window caps a grant");
    l.consume(1, 120_000).expect("within grant");
    assert_eq!(l.capacity(1), 30_000);
    assert!(l.consume(1, 30_001).is_err());
}

#[test]
fn capacity_assigned_takes_h2s_reported_total() {
    let mut l = SendWindow::granted();
    l.open_stream(1).expect("fresh id");
    l.handle_capacity_assigned(1, 16_384).expect("total");
    l.consume(1, 10_000).expect("within grant");
    // h2 subtracted the same 10,000 and then assigned 9,616 more: it reports 16,000.
    l.handle_capacity_assigned(1, 16_000).expect("total");
    assert_eq!(l.capacity(1), 16_000);
}

#[test]
fn grants_past_max_are_a_local_error() {
    let mut l = SendWindow::granted();
    l.open_stream(1).expect("fresh id");
    l.handle_capacity_granted(1, MAX_WINDOW_SIZE)
        .expect("at the maximum");
    let err = l.handle_capacity_granted(1, 1).unwrap_err();
    assert_eq!(err.fault(), Fault::Local);
    assert!(l.handle_capacity_assigned(1, MAX_WINDOW_SIZE + 1).is_err());
    assert_eq!(l.capacity(1), MAX_WINDOW_SIZE);
}

#[test]
fn inputs_for_the_other_accounting_mode_are_rejected() {
    let mut granted = SendWindow::granted();
    granted.open_stream(1).expect("fresh id");
    let expected = Err(FlowError::WrongAccounting {
        ledger: Accounting::Granted,
    });
    assert_eq!(granted.handle_window_update(1, 5), expected);
    assert_eq!(granted.handle_settings_initial_window(5), expected);

    let mut rfc = ledger(10, &[1]);
    let expected = Err(FlowError::WrongAccounting {
        ledger: Accounting::Rfc,
    });
    assert_eq!(rfc.handle_capacity_granted(1, 5), expected);
    assert_eq!(rfc.handle_capacity_assigned(1, 5), expected);
}

/// One input to an RFC-accounting ledger.
#[derive(Debug, Clone)]
enum Input {
    Open(u32),
    Close(u32),
    /// Consume a fraction (per mille) of the capacity, or more than it when > 1000.
    Consume(u32, u32),
    Update(u32, u32),
    Settings(u32),
}

fn input() -> impl Strategy<Value = Input> {
    let id = 1u32..5;
    let any_increment = prop_oneof![
        Just(0u32),
        1u32..70_000,
        (MAX_WINDOW_SIZE - 70_000)..=MAX_WINDOW_SIZE,
        Just(MAX_WINDOW_SIZE + 1),
    ];
    let any_initial = prop_oneof![
        0u32..70_000,
        (MAX_WINDOW_SIZE - 70_000)..=MAX_WINDOW_SIZE,
        Just(u32::MAX),
    ];
    prop_oneof![
        id.clone().prop_map(Input::Open),
        id.clone().prop_map(Input::Close),
        (id.clone(), 0u32..1_200).prop_map(|(id, f)| Input::Consume(id, f)),
        (0u32..5, any_increment).prop_map(|(id, inc)| Input::Update(id, inc)),
        any_initial.prop_map(Input::Settings),
    ]
}

proptest! {
    #[test]
    fn window_update_overflow_past_max_is_flow_control_error(
        initial in 0..=MAX_WINDOW_SIZE,
        increment in 1..=MAX_WINDOW_SIZE,
    ) {
        let mut w = window(initial);
        let result = w.handle_window_update(increment);
        if i64::from(initial) + i64::from(increment) > MAX {
            let err = result.unwrap_err();
            prop_assert_eq!(err.code(), ErrorCode::FlowControlError);
            prop_assert_eq!(err.fault(), Fault::Peer);
            prop_assert_eq!(w, window(initial));
        } else {
            prop_assert!(result.is_ok());
            prop_assert_eq!(i64::from(w.size()), i64::from(initial) + i64::from(increment));
        }
    }

    #[test]
    fn settings_decrease_below_bytes_in_flight_goes_negative_then_updates_restore_sends(
        initial in 1u32..1_000_000,
        sent_permille in 0u32..=1_000,
        new_initial in 0u32..1_000_000,
        updates in proptest::collection::vec(1u32..100_000, 1..40),
    ) {
        let mut l = ledger(initial, &[1]);
        l.handle_window_update(0, MAX_WINDOW_SIZE - DEFAULT_INITIAL_WINDOW_SIZE).unwrap();
        let sent = u32::try_from(u64::from(initial) * u64::from(sent_permille) / 1_000).unwrap();
        l.consume(1, sent).unwrap();
        l.handle_settings_initial_window(new_initial).unwrap();
        let mut expected = i64::from(new_initial) - i64::from(sent);
        prop_assert_eq!(l.stream_window(1).map(|w| i64::from(w.size())), Some(expected));
        for inc in updates {
            prop_assert_eq!(i64::from(l.capacity(1)), expected.max(0));
            if expected <= 0 {
                prop_assert!(l.consume(1, 1).is_err(), "sends stop while the window is not positive");
            }
            l.handle_window_update(1, inc).unwrap();
            expected += i64::from(inc);
        }
        prop_assert_eq!(i64::from(l.capacity(1)), expected.max(0));
    }

    #[test]
    fn window_never_leaves_rfc_bounds_and_failed_inputs_change_nothing(
        initial in 0u32..70_000,
        inputs in proptest::collection::vec(input(), 0..80),
    ) {
        let mut l = ledger(initial, &[1]);
        for input in inputs {
            let before = l.clone();
            let result = match input {
                Input::Open(id) => l.open_stream(id),
                Input::Close(id) => { l.close_stream(id); Ok(()) }
                Input::Consume(id, permille) => {
                    let capacity = l.capacity(id);
                    let n = u32::try_from(u64::from(capacity) * u64::from(permille) / 1_000)
                        .unwrap_or(u32::MAX);
                    let result = l.consume(id, n);
                    prop_assert_eq!(result.is_ok(), before.is_open(id) && n <= capacity);
                    result
                }
                Input::Update(id, inc) => l.handle_window_update(id, inc),
                Input::Settings(new) => l.handle_settings_initial_window(new),
            };
            if let Err(err) = result {
                prop_assert_eq!(&l, &before, "{} must leave the ledger unchanged", err);
                if let Input::Update(_, inc) = input {
                    let code = if inc == 0 || inc > MAX_WINDOW_SIZE {
                        ErrorCode::ProtocolError
                    } else {
                        ErrorCode::FlowControlError
                    };
                    prop_assert_eq!(err.code(), code);
                }
            }
            let connection = l.connection_window().unwrap();
            prop_assert!((0..=MAX).contains(&i64::from(connection.size())));
            for id in 1u32..5 {
                if let Some(stream) = l.stream_window(id) {
                    let size = i64::from(stream.size());
                    prop_assert!(size <= MAX);
                    // Sends never push a window below zero; only a SETTINGS decrease does, by at
                    // most the initial window, so a window stays above new initial − 2^31+1.
                    prop_assert!(size >= i64::from(l.initial_window()) - MAX);
                    prop_assert!(size >= -MAX);
                    prop_assert_eq!(
                        l.capacity(id),
                        stream.available().min(connection.available())
                    );
                } else {
                    prop_assert_eq!(l.capacity(id), 0);
                }
            }
        }
    }

    #[test]
    fn granted_ledger_never_allows_more_than_granted_minus_sent(
        steps in proptest::collection::vec((0u32..100_000, 0u32..=1_200), 0..60),
    ) {
        let mut l = SendWindow::granted();
        l.open_stream(1).unwrap();
        let (mut granted, mut sent) = (0u64, 0u64);
        for (grant, permille) in steps {
            l.handle_capacity_granted(1, grant).unwrap();
            granted += u64::from(grant);
            let n = u32::try_from((granted - sent) * u64::from(permille) / 1_000).unwrap();
            let ok = l.consume(1, n).is_ok();
            prop_assert_eq!(ok, u64::from(n) <= granted - sent);
            if ok {
                sent += u64::from(n);
            }
            prop_assert_eq!(u64::from(l.capacity(1)), granted - sent);
        }
    }
}
