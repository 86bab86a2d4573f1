//! The BackendStates message's bytes: its layout, each state and flag
//! round trip, what decoding refuses (and encoding with it), and its
//! absence below version 4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::sync::{
    wire::{session, session_at, split_frame, Message, Nonce, Role, Transcript, NONCE_LEN},
    SyncError,
};

const KEY: &[u8] = b"0123456789abcdef-shared";

/// The `i`th backend's state, IPv4 and IPv6 in turn, going through every
/// state, with and without a drain deadline, with and without the
/// timed-out flag.
pub(crate) fn backend_state(i: u32) -> BackendStateRecord {
    // The family alternates apart from the state: each state comes in both.
    let (vip, backend) = if (i + i / 6).is_multiple_of(2) {
        (
            IpAddr::V4(Ipv4Addr::from(0xc612_0064)),
            IpAddr::V4(Ipv4Addr::from(0xc613_0000 + i)),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | 0x100)),
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0002_u128 << 80 | u128::from(i))),
        )
    };
    let changed = 1_700_000_000_000 + u64::from(i);
    let (state, started, deadline, timed_out) = match i % 6 {
        0 | 5 => (SharedState::Enabled, 0, None, false),
        1 => (SharedState::Draining, changed, None, false),
        2 => (
            SharedState::Draining,
            changed,
            Some(changed + 300_000),
            false,
        ),
        3 => (SharedState::Maintenance, 0, None, true),
        _ => (SharedState::Maintenance, 0, None, false),
    };
    BackendStateRecord {
        vip,
        port: 80,
        protocol: if i.is_multiple_of(3) { 17 } else { 6 },
        backend,
        state,
        changed_unix_ms: changed,
        drain_started_unix_ms: started,
        drain_deadline_unix_ms: deadline,
        drain_timed_out: timed_out,
    }
}

fn message(states: Vec<BackendStateRecord>) -> Message {
    Message::BackendStates { seq: 9, states }
}

/// One record's message, encoded, with byte `at` set to `byte`, decoded.
fn with(record: BackendStateRecord, at: usize, byte: u8) -> Result<Message, WireError> {
    let mut bytes = message(vec![record]).encode().unwrap();
    *bytes.get_mut(at).unwrap() = byte;
    Message::decode(&bytes)
}

// Offsets in a one-record message: type 0, seq 1..9, count 9..11, then
// the record: vip 11..28, port 28..30, protocol 30, backend 31..48,
// state 48, flags 49, changed 50..58, drain start 58..66, deadline 66..74.
const STATE_AT: usize = 48;
const FLAGS_AT: usize = 49;
const STARTED_AT: usize = 58;
const DEADLINE_AT: usize = 66;

#[test]
fn backend_states_have_a_fixed_layout_and_a_limit() {
    let record = backend_state(2);
    let bytes = message(vec![record]).encode().unwrap();
    assert_eq!(BACKEND_STATE_LEN, 17 + 2 + 1 + 17 + 1 + 1 + 8 + 8 + 8);
    assert_eq!(bytes.len(), 1 + 8 + 2 + BACKEND_STATE_LEN);
    assert_eq!(&bytes[..12], &[7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 4]);
    assert_eq!(&bytes[28..32], &[0, 80, 6, 4]);
    assert_eq!((bytes[STATE_AT], bytes[FLAGS_AT]), (1, 0));
    let at = |from: usize| u64::from_be_bytes(bytes[from..from + 8].try_into().unwrap());
    assert_eq!(at(50), record.changed_unix_ms);
    assert_eq!(at(STARTED_AT), record.drain_started_unix_ms);
    assert_eq!(Some(at(DEADLINE_AT)), record.drain_deadline_unix_ms);
    let too_many = message((0..4097).map(backend_state).collect());
    let limit = WireError::TooManyRecords {
        count: 4097,
        max: MAX_BACKEND_STATES,
    };
    assert_eq!(too_many.encode(), Err(limit.clone()));
    let mut forged = bytes.clone();
    forged[9..11].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(Message::decode(&forged), Err(limit));
}

#[test]
fn every_state_round_trips_v4_and_v6() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..12 {
        let record = backend_state(i);
        seen.insert((
            record.state,
            record.vip.is_ipv4(),
            record.drain_deadline_unix_ms.is_some(),
            record.drain_timed_out,
        ));
        let sent = message(vec![record]);
        assert_eq!(Message::decode(&sent.encode().unwrap()), Ok(sent), "{i}");
    }
    // Each state in both families; a drain with a deadline and without;
    // maintenance with the timed-out flag and without.
    for v4 in [true, false] {
        for key in [
            (SharedState::Enabled, v4, false, false),
            (SharedState::Draining, v4, false, false),
            (SharedState::Draining, v4, true, false),
            (SharedState::Maintenance, v4, false, true),
            (SharedState::Maintenance, v4, false, false),
        ] {
            assert!(seen.contains(&key), "{key:?} not covered");
        }
    }
    let bytes = message(vec![backend_state(3)]).encode().unwrap();
    assert_eq!(
        (bytes[STATE_AT], bytes[FLAGS_AT]),
        (2, FLAG_DRAIN_TIMED_OUT)
    );
    let all = message((0..4096).map(backend_state).collect());
    assert_eq!(Message::decode(&all.encode().unwrap()), Ok(all));
}

#[test]
fn malformed_backend_states_say_what_is_wrong() {
    let enabled = backend_state(0);
    let draining = backend_state(2);
    assert_eq!(
        with(enabled, STATE_AT, 3),
        Err(WireError::UnknownBackendState(3))
    );
    assert_eq!(
        with(enabled, FLAGS_AT, 0x02),
        Err(WireError::UnknownBackendStateFlags(0x02))
    );
    // A drain start, or a deadline, on a record not draining.
    let not_draining = Err(WireError::DrainTimes {
        why: "drain times on a record that is not draining",
    });
    assert_eq!(with(enabled, STARTED_AT + 7, 1), not_draining);
    assert_eq!(with(enabled, DEADLINE_AT + 7, 1), not_draining);
    assert_eq!(with(draining, STATE_AT, 2), not_draining);
    // A deadline without a drain start.
    let mut no_start = message(vec![draining]).encode().unwrap();
    no_start[STARTED_AT..STARTED_AT + 8].fill(0);
    assert_eq!(
        Message::decode(&no_start),
        Err(WireError::DrainTimes {
            why: "a drain deadline without a drain start"
        })
    );
    // An IPv4 VIP with an IPv6 backend.
    let mut mixed = message(vec![enabled]).encode().unwrap();
    mixed[31] = 6;
    assert_eq!(
        Message::decode(&mixed),
        Err(WireError::MixedFamilies {
            what: "backend state"
        })
    );
    // Count says 2, one record present; count says 0, one present.
    let bytes = message(vec![enabled]).encode().unwrap();
    let mut short = bytes.clone();
    short[10] = 2;
    assert!(matches!(
        Message::decode(&short),
        Err(WireError::Truncated {
            what: "backend states",
            ..
        })
    ));
    let mut none = bytes.clone();
    none[10] = 0;
    assert_eq!(
        Message::decode(&none),
        Err(WireError::TrailingBytes {
            what: "BackendStates",
            extra: BACKEND_STATE_LEN
        })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Message::decode(&trailing),
        Err(WireError::TrailingBytes {
            what: "BackendStates",
            extra: 1
        })
    );
    for len in 0..bytes.len() {
        assert!(Message::decode(&bytes[..len]).is_err(), "cut at {len}");
    }
    // Errors read well.
    assert_eq!(
        with(enabled, STATE_AT, 3).unwrap_err().to_string(),
        "backend state: unknown state 3 (0 enabled, 1 draining, 2 maintenance)"
    );
    assert_eq!(
        with(enabled, FLAGS_AT, 0x82).unwrap_err().to_string(),
        "backend state flags 0x82 have unknown bits"
    );
}

#[test]
fn encode_refuses_backend_states_decode_would_refuse() {
    let refused = |record: BackendStateRecord| message(vec![record]).encode().unwrap_err();
    let mixed = BackendStateRecord {
        backend: "2001:db8::11".parse().unwrap(),
        ..backend_state(0)
    };
    assert_eq!(
        refused(mixed),
        WireError::MixedFamilies {
            what: "backend state"
        }
    );
    let started_not_draining = BackendStateRecord {
        drain_started_unix_ms: 5,
        ..backend_state(0)
    };
    let deadline_not_draining = BackendStateRecord {
        drain_deadline_unix_ms: Some(5),
        ..backend_state(4)
    };
    for record in [started_not_draining, deadline_not_draining] {
        assert!(matches!(refused(record), WireError::DrainTimes { .. }));
    }
    let zero_deadline = BackendStateRecord {
        drain_deadline_unix_ms: Some(0),
        ..backend_state(2)
    };
    let no_start = BackendStateRecord {
        drain_started_unix_ms: 0,
        ..backend_state(2)
    };
    for record in [zero_deadline, no_start] {
        assert!(matches!(refused(record), WireError::DrainTimes { .. }));
    }
    // A drain without a deadline may have any start.
    let draining = backend_state(1);
    assert!(message(vec![draining]).encode().is_ok());
}

fn transcript<'a>(m: &'a Nonce, b: &'a Nonce) -> Transcript<'a> {
    Transcript {
        master_nonce: m,
        backup_nonce: b,
        master_id: "lb-a",
        backup_id: "lb-b",
    }
}

#[test]
fn a_session_before_version_4_has_no_backend_states() {
    let (m, b) = ([5; NONCE_LEN], [6; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut v4, _) = session(KEY, Role::Master, &t).unwrap();
    assert_eq!(v4.version(), BACKEND_STATES_VERSION);
    let (mut v3, _) = session_at(KEY, Role::Master, &t, 3).unwrap();
    let (_, mut opener_v3) = session_at(KEY, Role::Backup, &t, 3).unwrap();
    let (_, mut opener_v4) = session(KEY, Role::Backup, &t).unwrap();
    let states = [backend_state(1), backend_state(2)];
    assert_eq!(
        v3.backend_states(&states),
        Err(WireError::NotInVersion {
            what: "BackendStates",
            version: 3
        })
    );
    // Refused before a sequence number is taken: the session goes on.
    let (hb3, hb4) = (v3.heartbeat().unwrap(), v4.heartbeat().unwrap());
    assert_eq!(hb3, hb4);
    let frame = v4.backend_states(&states).unwrap();
    let body = |frame: &[u8]| split_frame(frame).unwrap().0.to_vec();
    assert_eq!(
        opener_v4.open(&body(&hb4)).ok(),
        Some(Message::Heartbeat { seq: 1 })
    );
    assert_eq!(
        opener_v4.open(&body(&frame)).ok(),
        Some(Message::BackendStates {
            seq: 2,
            states: states.to_vec()
        })
    );
    // One that comes anyway over a version-3 session is refused.
    opener_v3.open(&body(&hb3)).unwrap();
    assert!(matches!(
        opener_v3.open(&body(&frame)),
        Err(SyncError::Wire(WireError::NotInVersion {
            what: "BackendStates",
            version: 3
        }))
    ));
    // A record the encoding refuses seals nothing.
    let bad = BackendStateRecord {
        drain_started_unix_ms: 1,
        ..backend_state(0)
    };
    assert!(matches!(
        v4.backend_states(&[bad]),
        Err(WireError::DrainTimes { .. })
    ));
    assert_eq!(v4.next_seq(), 3);
}
