use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::*;
use crate::sync::{nat_record::tests::nat_record, SyncError};

fn v4(i: u32) -> FlowRecord {
    FlowRecord {
        vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        vip_port: 443,
        protocol: 6,
        client: IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | i)),
        client_port: u16::try_from(i % 65536).unwrap(),
        backend: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        age_ms: i.wrapping_mul(31),
        flags: 0b01,
    }
}

fn v6(i: u32) -> FlowRecord {
    FlowRecord {
        vip: "2001:db8::1".parse().unwrap(),
        vip_port: 53,
        protocol: 17,
        client: IpAddr::V6(Ipv6Addr::from(
            0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i),
        )),
        client_port: 65535,
        backend: "2001:db8:ffff::beef".parse().unwrap(),
        age_ms: u32::MAX,
        flags: 0xff,
    }
}

fn transcript<'a>(m: &'a Nonce, b: &'a Nonce) -> Transcript<'a> {
    Transcript {
        master_nonce: m,
        backup_nonce: b,
        master_id: "lb-a",
        backup_id: "lb-b",
    }
}

const KEY: &[u8] = b"0123456789abcdef-shared";

fn every_message() -> Vec<Message> {
    vec![
        Message::Hello {
            version: PROTOCOL_VERSION,
            node_id: "lb-a.example".into(),
            nonce: [0xa5; NONCE_LEN],
        },
        Message::Hello {
            version: 0xfffe,
            node_id: "é".repeat(32),
            nonce: new_nonce(),
        },
        Message::HelloAck {
            proof: [0x3c; TAG_LEN],
        },
        Message::Batch {
            seq: 1,
            full_sync: true,
            last: true,
            records: vec![],
        },
        Message::Batch {
            seq: u64::MAX,
            full_sync: false,
            last: false,
            records: vec![v4(1), v6(2), v4(3)],
        },
        Message::Batch {
            seq: 77,
            full_sync: true,
            last: false,
            records: (0..4096)
                .map(|i| if i % 2 == 0 { v4(i) } else { v6(i) })
                .collect(),
        },
        Message::Heartbeat { seq: 0 },
        Message::Heartbeat {
            seq: 12_345_678_901,
        },
        Message::NatBatch {
            seq: 2,
            full_sync: true,
            last: true,
            records: vec![],
        },
        Message::NatBatch {
            seq: 3,
            full_sync: false,
            last: true,
            records: vec![nat_record(0), nat_record(1)],
        },
        Message::NatBatch {
            seq: 78,
            full_sync: true,
            last: false,
            records: (0..4096).map(nat_record).collect(),
        },
        Message::ConfigDigest {
            seq: 4,
            vips: vec![],
        },
        Message::ConfigDigest {
            seq: 5,
            vips: vec![vip_digest(0), vip_digest(1)],
        },
        Message::ConfigDigest {
            seq: 79,
            vips: (0..4096).map(vip_digest).collect(),
        },
        Message::BackendStates {
            seq: 6,
            states: vec![],
        },
        Message::BackendStates {
            seq: 7,
            states: (0..6).map(backend_states::tests::backend_state).collect(),
        },
        Message::BackendStates {
            seq: 80,
            states: (0..4096)
                .map(backend_states::tests::backend_state)
                .collect(),
        },
    ]
}

/// The `i`th VIP's digest, IPv4 and IPv6 in turn.
fn vip_digest(i: u32) -> VipDigest {
    let vip = if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i))
    } else {
        IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
    };
    VipDigest {
        vip,
        port: u16::try_from(i % 65_536).unwrap(),
        protocol: if i.is_multiple_of(3) { 17 } else { 6 },
        digest: [u8::try_from(i % 251).unwrap(); digest::DIGEST_LEN],
    }
}

#[test]
fn config_digests_have_a_fixed_layout_and_a_limit() {
    let message = Message::ConfigDigest {
        seq: 9,
        vips: vec![vip_digest(0)],
    };
    let bytes = message.encode().unwrap();
    // type, seq, count, then one VIP: family, address, port, protocol, digest.
    assert_eq!(bytes.len(), 1 + 8 + 2 + digest::VIP_DIGEST_LEN);
    assert_eq!(digest::VIP_DIGEST_LEN, 17 + 2 + 1 + 16);
    assert_eq!(&bytes[..12], &[6, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 4]);
    assert_eq!(Message::decode(&bytes).unwrap(), message);
    let too_many = Message::ConfigDigest {
        seq: 1,
        vips: (0..4097).map(vip_digest).collect(),
    };
    assert_eq!(
        too_many.encode(),
        Err(WireError::TooManyRecords {
            count: 4097,
            max: 4096
        })
    );
    let mut forged = bytes.clone();
    forged[9..11].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(
        Message::decode(&forged),
        Err(WireError::TooManyRecords {
            count: 4097,
            max: 4096
        })
    );
    forged[9..11].copy_from_slice(&2u16.to_be_bytes());
    assert!(matches!(
        Message::decode(&forged),
        Err(WireError::Truncated {
            what: "config digests",
            ..
        })
    ));
}

#[test]
fn a_session_before_version_3_has_no_config_digests() {
    let (m, b) = ([5; NONCE_LEN], [6; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut v3, _) = session_at(KEY, Role::Master, &t, CONFIG_DIGEST_VERSION).unwrap();
    assert_eq!(v3.version(), CONFIG_DIGEST_VERSION);
    let (mut v2, _) = session_at(KEY, Role::Master, &t, 2).unwrap();
    let (_, mut opener_v2) = session_at(KEY, Role::Backup, &t, 2).unwrap();
    let (_, mut opener_v3) = session_at(KEY, Role::Backup, &t, CONFIG_DIGEST_VERSION).unwrap();
    let vips = [vip_digest(0)];
    assert_eq!(
        v2.config_digest(&vips),
        Err(WireError::NotInVersion {
            what: "ConfigDigest",
            version: 2
        })
    );
    // Heartbeats and batches are the same bytes at versions 2 and 3: a
    // peer of the release before reads them.
    let (hb2, hb3) = (v2.heartbeat().unwrap(), v3.heartbeat().unwrap());
    assert_eq!(hb2, hb3);
    let digest = v3.config_digest(&vips).unwrap();
    let body = |frame: &[u8]| split_frame(frame).unwrap().0.to_vec();
    assert_eq!(
        opener_v3.open(&body(&hb3)).ok(),
        Some(Message::Heartbeat { seq: 1 })
    );
    assert_eq!(
        opener_v3.open(&body(&digest)).ok(),
        Some(Message::ConfigDigest {
            seq: 2,
            vips: vips.to_vec()
        })
    );
    // One that comes anyway over a version-2 session is refused.
    opener_v2.open(&body(&hb2)).unwrap();
    assert!(matches!(
        opener_v2.open(&body(&digest)),
        Err(SyncError::Wire(WireError::NotInVersion { version: 2, .. }))
    ));
}

#[test]
fn nat_batches_seal_and_open_and_say_what_is_wrong() {
    let (m, b) = ([5; NONCE_LEN], [6; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
    let (_, mut opener) = session(KEY, Role::Backup, &t).unwrap();
    let records = vec![nat_record(2), nat_record(3)];
    let frame = sealer.nat_batch(true, true, &records).unwrap();
    let (body, _) = split_frame(&frame).unwrap();
    assert_eq!(
        opener.open(body).unwrap(),
        Message::NatBatch {
            seq: 1,
            full_sync: true,
            last: true,
            records
        }
    );
    let bytes = Message::NatBatch {
        seq: 1,
        full_sync: false,
        last: true,
        records: vec![nat_record(2)],
    }
    .encode()
    .unwrap();
    assert_eq!(bytes.first(), Some(&MSG_NAT_BATCH));
    assert_eq!(bytes.len(), BATCH_HEADER_LEN + NAT_RECORD_LEN);
    let mut bad = bytes.clone();
    *bad.get_mut(9).unwrap() = 0x80;
    assert_eq!(Message::decode(&bad), Err(WireError::UnknownFlags(0x80)));
    let mut bad = bytes.clone();
    bad.splice(10..12, 2u16.to_be_bytes());
    assert!(matches!(
        Message::decode(&bad),
        Err(WireError::Truncated {
            what: "nat batch records",
            ..
        })
    ));
    let mut bad = bytes.clone();
    bad.push(0);
    assert!(matches!(
        Message::decode(&bad),
        Err(WireError::TrailingBytes {
            what: "NatBatch",
            extra: 1
        })
    ));
}

#[test]
fn a_version_1_session_has_no_nat_batches_and_seals_as_version_2() {
    let (m, b) = ([5; NONCE_LEN], [6; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut v2, _) = session(KEY, Role::Master, &t).unwrap();
    let (mut v1, _) = session_at(KEY, Role::Master, &t, 1).unwrap();
    let (_, mut opener) = session_at(KEY, Role::Backup, &t, 1).unwrap();
    assert_eq!((v1.version(), v2.version()), (1, PROTOCOL_VERSION));
    assert_eq!(
        v1.nat_batch(false, true, &[nat_record(1)]),
        Err(WireError::NotInVersion {
            what: "NatBatch",
            version: 1
        })
    );
    // Flows and heartbeats are the same bytes at both versions: a
    // version-1 peer reads them.
    let flows = [v4(1)];
    let frame = v1.batch(false, true, &flows).unwrap();
    assert_eq!(frame, v2.batch(false, true, &flows).unwrap());
    let (body, _) = split_frame(&frame).unwrap();
    assert!(matches!(
        opener.open(body),
        Ok(Message::Batch { seq: 1, .. })
    ));
    // A NatBatch that comes anyway is refused, as a version-1 node did.
    let nat = v2.nat_batch(false, true, &[nat_record(1)]).unwrap();
    let (body, _) = split_frame(&nat).unwrap();
    assert!(matches!(
        opener.open(body),
        Err(SyncError::Wire(WireError::NotInVersion { version: 1, .. }))
    ));
}

#[test]
fn record_round_trip_v4_and_v6() {
    let mixed = FlowRecord {
        backend: "2001:db8::2".parse().unwrap(),
        ..v4(9)
    };
    for record in [v4(0), v4(u32::MAX >> 16), v6(0), v6(u32::MAX), mixed] {
        let mut out = Vec::new();
        encode_record(&mut out, &record);
        assert_eq!(out.len(), RECORD_LEN);
        let mut r = Reader::new(&out);
        assert_eq!(decode_record(&mut r).unwrap(), record);
        r.finish("record").unwrap();
    }
}

#[test]
fn record_layout_is_fixed_and_big_endian() {
    let mut out = Vec::new();
    encode_record(&mut out, &v4(0x0102));
    assert_eq!(out.first(), Some(&FAMILY_V4));
    assert_eq!(out.get(1..5), Some(&[10, 0, 0, 1][..]));
    assert_eq!(out.get(5..17), Some(&[0; 12][..]));
    assert_eq!(out.get(17..19), Some(&443u16.to_be_bytes()[..]));
    assert_eq!(out.get(19), Some(&6));
    assert_eq!(out.last(), Some(&0b01));
}

#[test]
fn every_message_round_trips() {
    for message in every_message() {
        let bytes = message.encode().unwrap();
        assert_eq!(
            Message::decode(&bytes).unwrap(),
            message,
            "{}",
            message.kind()
        );
        let frame = encode_frame(&bytes).unwrap();
        let (body, rest) = split_frame(&frame).unwrap();
        assert_eq!(body, &bytes[..]);
        assert!(rest.is_empty());
    }
}

#[test]
fn frames_split_one_at_a_time() {
    let a = encode_frame(&Message::Heartbeat { seq: 1 }.encode().unwrap()).unwrap();
    let b = encode_frame(&Message::HelloAck { proof: [1; 32] }.encode().unwrap()).unwrap();
    let joined = [a.clone(), b.clone()].concat();
    let (first, rest) = split_frame(&joined).unwrap();
    assert_eq!(
        Message::decode(first).unwrap(),
        Message::Heartbeat { seq: 1 }
    );
    let (second, rest) = split_frame(rest).unwrap();
    assert_eq!(
        Message::decode(second).unwrap(),
        Message::HelloAck { proof: [1; 32] }
    );
    assert!(rest.is_empty());
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    let too_many = Message::Batch {
        seq: 1,
        full_sync: false,
        last: true,
        records: vec![v4(0); MAX_BATCH_RECORDS + 1],
    };
    assert!(matches!(
        too_many.encode(),
        Err(WireError::TooManyRecords { count: 4097, .. })
    ));
    for node_id in [String::new(), "x".repeat(MAX_NODE_ID_LEN + 1)] {
        let hello = Message::Hello {
            version: 1,
            node_id,
            nonce: [0; NONCE_LEN],
        };
        assert!(matches!(
            hello.encode(),
            Err(WireError::NodeIdLength { .. })
        ));
    }
    assert!(matches!(
        encode_frame(&[]),
        Err(WireError::FrameLength { len: 0, .. })
    ));
    assert!(encode_frame(&vec![0; MAX_FRAME_LEN + 1]).is_err());
    assert!(encode_frame(&vec![0; MAX_FRAME_LEN]).is_ok());
}

#[test]
fn every_truncation_of_every_message_errors() {
    for message in every_message() {
        let bytes = message.encode().unwrap();
        let frame = encode_frame(&bytes).unwrap();
        for len in 0..bytes.len() {
            let cut = bytes.get(..len).unwrap();
            assert!(
                Message::decode(cut).is_err(),
                "{} cut at {len}",
                message.kind()
            );
        }
        for len in 0..frame.len() {
            let cut = frame.get(..len).unwrap();
            assert!(
                matches!(split_frame(cut), Err(WireError::Truncated { .. })),
                "{} frame cut at {len}",
                message.kind()
            );
        }
    }
}

#[test]
fn every_truncation_of_a_sealed_frame_errors() {
    let (m, b) = ([1; NONCE_LEN], [2; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
    let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
    let frame = sealer.batch(false, true, &[v4(1), v6(2)]).unwrap();
    let (body, _) = split_frame(&frame).unwrap();
    for len in 0..body.len() {
        let mut fresh = opener.clone();
        let cut = body.get(..len).unwrap();
        assert!(fresh.open(cut).is_err(), "cut at {len}");
    }
    let mut fresh = opener.clone();
    assert!(fresh.open(body).is_ok());
}

#[test]
fn malformed_messages_say_what_is_wrong() {
    let batch = Message::Batch {
        seq: 5,
        full_sync: false,
        last: true,
        records: vec![v4(1)],
    }
    .encode()
    .unwrap();
    let with = |at: usize, byte: u8| {
        let mut b = batch.clone();
        *b.get_mut(at).unwrap() = byte;
        Message::decode(&b)
    };
    // Offsets: type 0, seq 1..9, flags 9, count 10..12, record 12...
    assert_eq!(with(0, 99), Err(WireError::UnknownMessage(99)));
    assert_eq!(with(9, 0x04), Err(WireError::UnknownFlags(0x04)));
    assert!(matches!(
        with(12, 5),
        Err(WireError::UnknownFamily {
            what: "record vip",
            family: 5
        })
    ));
    assert!(matches!(
        with(20, 1),
        Err(WireError::AddressPadding { what: "record vip" })
    ));
    // Count says 2, one record present.
    assert!(matches!(
        with(11, 2),
        Err(WireError::Truncated {
            what: "batch records",
            ..
        })
    ));
    // Count says 0, one record present.
    assert!(matches!(
        with(11, 0),
        Err(WireError::TrailingBytes { what: "Batch", .. })
    ));
    // Count beyond the limit.
    let mut big = batch.clone();
    big.splice(10..12, 4097u16.to_be_bytes());
    assert!(matches!(
        Message::decode(&big),
        Err(WireError::TooManyRecords { count: 4097, .. })
    ));
    // Trailing byte after a heartbeat.
    let mut hb = Message::Heartbeat { seq: 1 }.encode().unwrap();
    hb.push(0);
    assert!(matches!(
        Message::decode(&hb),
        Err(WireError::TrailingBytes {
            what: "Heartbeat",
            extra: 1
        })
    ));
    // Hello with a non-UTF-8 id and with a zero-length id.
    let mut hello = Message::Hello {
        version: 1,
        node_id: "ab".into(),
        nonce: [0; NONCE_LEN],
    }
    .encode()
    .unwrap();
    *hello.last_mut().unwrap() = 0xff;
    assert_eq!(Message::decode(&hello), Err(WireError::NodeIdUtf8));
    let mut empty = hello.clone();
    empty.truncate(hello.len() - 3);
    empty.push(0);
    assert!(matches!(
        Message::decode(&empty),
        Err(WireError::NodeIdLength { len: 0, .. })
    ));
    // Frame lengths.
    assert!(matches!(
        frame_len([0, 0, 0, 0]),
        Err(WireError::FrameLength { len: 0, .. })
    ));
    assert!(matches!(
        frame_len([0, 0x10, 0, 1]),
        Err(WireError::FrameLength { .. })
    ));
    assert!(matches!(
        frame_len([0xff; 4]),
        Err(WireError::FrameLength { .. })
    ));
    assert_eq!(frame_len([0, 0x10, 0, 0]), Ok(MAX_FRAME_LEN));
    // Errors read well.
    let shown = with(12, 5).unwrap_err().to_string();
    assert_eq!(shown, "record vip: unknown address family 5");
}

/// A small deterministic generator for garbage (no rand crate).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_never_panics() {
    let (m, b) = ([1; NONCE_LEN], [2; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Small valid messages to corrupt (the 4096-record batch would
    // only slow this down: its checks are the same).
    let valid: Vec<Vec<u8>> = every_message()
        .iter()
        .map(|m| m.encode().unwrap())
        .filter(|b| b.len() < 1000)
        .collect();
    for round in 0..20_000 {
        let len = usize::try_from(rng.next() % 300).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half the time, start from a valid message and corrupt it, so
        // the decoder gets past the first checks.
        if round % 2 == 0 {
            bytes = valid[round / 2 % valid.len()].clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = usize::try_from(rng.next()).unwrap() % bytes.len();
                bytes[at] ^= rng.next() as u8 | 1;
            }
        }
        let _ = Message::decode(&bytes);
        let _ = split_frame(&bytes);
        let _ = opener.clone().open(&bytes);
        if let Some(header) = bytes.first_chunk::<4>() {
            let _ = frame_len(*header);
        }
    }
}

#[test]
fn sealed_frames_open_in_order_only() {
    let (m, b) = (new_nonce(), new_nonce());
    let t = transcript(&m, &b);
    let (mut master_sealer, mut master_opener) = session(KEY, Role::Master, &t).unwrap();
    let (mut backup_sealer, mut backup_opener) = session(KEY, Role::Backup, &t).unwrap();

    let records = vec![v4(1), v6(2)];
    let f1 = master_sealer.batch(true, false, &records).unwrap();
    let f2 = master_sealer.heartbeat().unwrap();
    let f3 = master_sealer.batch(true, true, &[]).unwrap();
    let body = |f: &[u8]| split_frame(f).unwrap().0.to_vec();
    let (b1, b2, b3) = (body(&f1), body(&f2), body(&f3));

    // Reordered: frame 2 before frame 1.
    let mut o = backup_opener.clone();
    assert!(matches!(
        o.open(&b2),
        Err(SyncError::Auth(AuthError::Sequence {
            expected: 1,
            got: 2
        }))
    ));

    assert_eq!(
        backup_opener.open(&b1).unwrap(),
        Message::Batch {
            seq: 1,
            full_sync: true,
            last: false,
            records
        }
    );
    // Replayed.
    assert!(matches!(
        backup_opener.clone().open(&b1),
        Err(SyncError::Auth(AuthError::Sequence {
            expected: 2,
            got: 1
        }))
    ));
    assert_eq!(
        backup_opener.open(&b2).unwrap(),
        Message::Heartbeat { seq: 2 }
    );
    assert!(matches!(
        backup_opener.open(&b3).unwrap(),
        Message::Batch {
            seq: 3,
            last: true,
            ..
        }
    ));
    assert_eq!(backup_opener.expected_seq(), 4);

    // Reflected: the master's own frame back to the master.
    let mut reflected = master_opener.clone();
    assert!(matches!(
        reflected.open(&b1),
        Err(SyncError::Auth(AuthError::BadTag { seq: 1 }))
    ));
    // The other direction works.
    let hb = backup_sealer.heartbeat().unwrap();
    assert_eq!(
        master_opener.open(split_frame(&hb).unwrap().0).unwrap(),
        Message::Heartbeat { seq: 1 }
    );

    // Another session (other nonces) or another key rejects it.
    let other_nonce = new_nonce();
    let t2 = transcript(&m, &other_nonce);
    let (_, mut other_session) = session(KEY, Role::Backup, &t2).unwrap();
    assert!(matches!(
        other_session.open(&b1),
        Err(SyncError::Auth(AuthError::BadTag { .. }))
    ));
    let (_, mut other_key) = session(b"another-key-0123456789", Role::Backup, &t).unwrap();
    assert!(matches!(
        other_key.open(&b1),
        Err(SyncError::Auth(AuthError::BadTag { .. }))
    ));
}

#[test]
fn any_flipped_byte_is_rejected() {
    let (m, b) = ([3; NONCE_LEN], [4; NONCE_LEN]);
    let t = transcript(&m, &b);
    let (mut sealer, _) = session(KEY, Role::Master, &t).unwrap();
    let (_, opener) = session(KEY, Role::Backup, &t).unwrap();
    let frame = sealer.batch(false, true, &[v4(1), v6(1)]).unwrap();
    let (body, _) = split_frame(&frame).unwrap();
    for at in 0..body.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = body.to_vec();
            *bad.get_mut(at).unwrap() ^= bit;
            assert!(opener.clone().open(&bad).is_err(), "flip {bit:#x} at {at}");
        }
    }
}

#[test]
fn hello_proofs_bind_key_role_nonces_and_ids() {
    let (m, b) = (new_nonce(), new_nonce());
    let t = transcript(&m, &b);
    let proof = hello_proof(KEY, Role::Master, &t).unwrap();
    verify_hello_proof(KEY, Role::Master, &t, &proof).unwrap();
    let fail = |r: Result<(), AuthError>| assert_eq!(r, Err(AuthError::BadProof));
    fail(verify_hello_proof(
        b"wrong-key-wrong-key",
        Role::Master,
        &t,
        &proof,
    ));
    // Reflected as the backup's proof.
    fail(verify_hello_proof(KEY, Role::Backup, &t, &proof));
    // Nonces swapped or replaced.
    fail(verify_hello_proof(
        KEY,
        Role::Master,
        &transcript(&b, &m),
        &proof,
    ));
    let fresh = new_nonce();
    fail(verify_hello_proof(
        KEY,
        Role::Master,
        &transcript(&m, &fresh),
        &proof,
    ));
    // Ids changed, including moving bytes between them.
    let moved = Transcript {
        master_id: "lb-ab",
        backup_id: "-b",
        ..t
    };
    fail(verify_hello_proof(KEY, Role::Master, &moved, &proof));
}

#[test]
fn nonces_differ() {
    let nonces: HashSet<Nonce> = (0..1000).map(|_| new_nonce()).collect();
    assert_eq!(nonces.len(), 1000);
    let from_thread = std::thread::spawn(new_nonce).join().unwrap();
    assert!(!nonces.contains(&from_thread));
}
