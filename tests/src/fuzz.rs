//! What the fuzz targets in `fuzz/` check, one function per target, each
//! taking the raw input and panicking when a property fails. They live
//! here, not in the fuzz crate, so that the corpus test replays every
//! committed input (crashes found earlier included) with plain `cargo test`
//! on stable, and clippy and rustfmt see them; the targets are one-liners.
//! [`seeds`] makes the starting corpora from our own encoders.

use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use lb_userspace::{
    api::route::{vip_id, Call, Route},
    api::{
        client::api_path,
        code, convert,
        schema::{BackendSpec, NodeChange, StateChange, VipSpec, WeightChange},
        server::parse_request,
        Request, Response,
    },
    bgp::NodeState,
    config::{self, Config, VipConfig},
    mac::Mac,
    sync::{
        wire::{self, Message, Role, Transcript},
        FlowRecord, NatFlowRecord, NatHalf, NatTuple,
    },
    vip_id::VipId,
    vrrp::{
        machine::{Machine, Settings},
        net::parse_ipv4,
        packet::{checksum, validate, Advertisement, ChecksumMode, EncodeError, Family},
        VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL,
    },
};

use lb_common::stats::Counter;

use crate::{
    oracle::{check_verdict, Service},
    packet::{self, Flow, LB_MAC},
    testbed::{action, vip4_tcp, vip4_udp, vip6_tcp, TestBed},
};

/// The check of one fuzz target: panics on a property that fails.
pub type Check = fn(&[u8]);

/// The fuzz targets: name (the `fuzz/fuzz_targets/NAME.rs` and
/// `fuzz/corpus/NAME/` it goes with) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("vrrp_advert", vrrp_advert),
    ("api_request", api_request),
    ("config", config),
    ("sync_frame", sync_frame),
    ("packet", packet),
];

// ---------------------------------------------------------------------------
// vrrp_advert

/// Flag bits of the first byte of a `vrrp_advert` input.
pub mod vrrp_flags {
    /// IPv6 (else IPv4) addresses.
    pub const V6: u8 = 0x01;
    /// The destination is the family's multicast group (else it follows
    /// the source in the input).
    pub const MULTICAST: u8 = 0x02;
    /// Write the right checksum into the payload before decoding, so the
    /// fuzzer gets past the checksum to the fields behind it.
    pub const FIX_CHECKSUM: u8 = 0x04;
    /// With [`FIX_CHECKSUM`]: the IPv4 form without pseudo-header.
    pub const NO_PSEUDO_HEADER: u8 = 0x08;
    /// The rest is a whole IPv4 packet as the raw socket delivers it, read
    /// by lbd's own `parse_ipv4` (addresses and TTL from it).
    pub const IPV4_PACKET: u8 = 0x10;
    /// Our priority in the state machine fed the advert: 255 (owner) if
    /// set, else 100.
    pub const OWNER: u8 = 0x20;
    /// The machine preempts.
    pub const PREEMPT: u8 = 0x40;
}

/// An input of the `vrrp_advert` target: `flags | ttl | vrid | src | [dst] |
/// payload` (addresses 4 or 16 bytes; no dst with
/// [`vrrp_flags::MULTICAST`]), or `flags | IPv4 packet` with
/// [`vrrp_flags::IPV4_PACKET`].
pub fn vrrp_input(
    flags: u8,
    ttl: u8,
    vrid: u8,
    src: IpAddr,
    dst: Option<IpAddr>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![flags, ttl, vrid];
    for addr in std::iter::once(src).chain(dst) {
        match addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Takes `N` bytes off the front of `data`.
fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fn take_addr(data: &mut &[u8], v6: bool) -> Option<IpAddr> {
    Some(if v6 {
        IpAddr::V6(Ipv6Addr::from(take::<16>(data)?))
    } else {
        IpAddr::V4(Ipv4Addr::from(take::<4>(data)?))
    })
}

/// Advert decoding, the receive checks and the state machine on arbitrary
/// packets: never a panic; whatever decodes has the fields' ranges, encodes
/// back to a packet that decodes to the same advert (byte for byte the
/// same when the reserved bits were clear), passes [`validate`] against
/// itself, and drives a [`Machine`] without trouble.
pub fn vrrp_advert(data: &[u8]) {
    let mut data = data;
    let Some([flags]) = take::<1>(&mut data) else {
        return;
    };
    let (ttl, our_vrid, src, dst, mut payload) = if flags & vrrp_flags::IPV4_PACKET != 0 {
        let Some(received) = parse_ipv4(data) else {
            return;
        };
        (
            received.ttl,
            0,
            received.src,
            received.dst,
            received.payload,
        )
    } else {
        let Some([ttl, vrid]) = take::<2>(&mut data) else {
            return;
        };
        let v6 = flags & vrrp_flags::V6 != 0;
        let Some(src) = take_addr(&mut data, v6) else {
            return;
        };
        let dst = if flags & vrrp_flags::MULTICAST != 0 {
            Family::of(&src).multicast_group()
        } else {
            let Some(dst) = take_addr(&mut data, v6) else {
                return;
            };
            dst
        };
        (ttl, vrid, src, dst, data.to_vec())
    };
    if flags & vrrp_flags::FIX_CHECKSUM != 0 && payload.len() >= 8 {
        let mode = if flags & vrrp_flags::NO_PSEUDO_HEADER != 0 {
            ChecksumMode::NoPseudoHeader
        } else {
            ChecksumMode::PseudoHeader
        };
        payload[6] = 0;
        payload[7] = 0;
        let sum = checksum(&payload, src, dst, mode);
        payload[6..8].copy_from_slice(&sum.to_be_bytes());
    }

    let Ok((ad, mode)) = Advertisement::decode(&payload, src, dst) else {
        return;
    };
    assert_ne!(ad.vrid, 0, "decoded VRID 0");
    assert!(
        (1..=0x0fff).contains(&ad.max_adver_int_cs),
        "interval {}",
        ad.max_adver_int_cs
    );
    assert_eq!(ad.addresses.len(), usize::from(payload[3]), "address count");
    assert!(
        ad.addresses
            .iter()
            .all(|a| Family::of(a) == Family::of(&src)),
        "address of another family: {ad:?}"
    );
    match ad.encode(src, dst, mode) {
        Err(EncodeError::NoAddresses) => assert!(ad.addresses.is_empty()),
        Err(e) => panic!("a decoded advert does not encode: {e} ({ad:?})"),
        Ok(bytes) => {
            assert_eq!(
                Advertisement::decode(&bytes, src, dst),
                Ok((ad.clone(), mode)),
                "re-encoded advert decodes differently"
            );
            if payload[4] & 0xf0 == 0 {
                assert_eq!(bytes, payload, "re-encoding changed the packet");
            }
        }
    }

    // The receive checks against an arbitrary configuration, and against
    // the advert's own.
    let verdict = validate(
        &ad,
        ttl,
        our_vrid,
        &[IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))],
    );
    if verdict.is_ok() {
        assert!(ttl == VRRP_TTL && ad.vrid == our_vrid);
    }
    assert_eq!(validate(&ad, VRRP_TTL, ad.vrid, &ad.addresses), Ok(()));

    // The state machine, as the driver feeds it a checked advert.
    let settings = Settings {
        vrid: ad.vrid,
        priority: if flags & vrrp_flags::OWNER != 0 {
            255
        } else {
            100
        },
        adver_interval_cs: 100,
        preempt: flags & vrrp_flags::PREEMPT != 0,
        preempt_delay: Duration::from_secs(u64::from(ttl % 4)),
        accept_mode: false,
    };
    let primary = match src {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
    };
    let mut machine = Machine::new(settings, primary);
    let now = Instant::now();
    machine.startup(now);
    machine.on_advert(&ad, src, now);
    for later in [1, 50, 5000] {
        machine.on_timer(now + Duration::from_millis(later));
        machine.on_advert(&ad, src, now + Duration::from_millis(later));
    }
    machine.shutdown(now + Duration::from_secs(10));
}

// ---------------------------------------------------------------------------
// api_request

/// An admin API request as lbctl sends it, raw: the input of `api_request`.
pub fn http_request(method: &str, target: &str, body: Option<&str>) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\naccept: application/json\r\n");
    if let Some(body) = body {
        out.push_str("content-type: application/json\r\n");
        out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    } else {
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The head (as hyper would hand it to the server) and body of a raw
/// HTTP/1.1 request; None for what hyper itself would refuse or wait on.
fn split_http(data: &[u8]) -> Option<(hyper::http::request::Parts, &[u8])> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = parsed.parse(data).ok()? else {
        return None;
    };
    let mut builder = hyper::Request::builder()
        .method(parsed.method?)
        .uri(parsed.path?);
    let mut content_length = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                std::str::from_utf8(header.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()?,
            );
        }
        builder = builder.header(header.name, header.value);
    }
    let parts = builder.body(()).ok()?.into_parts().0;
    let rest = data.get(head_len..)?;
    let body = match content_length {
        Some(len) => rest.get(..len.min(rest.len()))?,
        None => rest,
    };
    Some((parts, body))
}

/// Asserts `answer` is an error answer with the standard body.
fn assert_error_answer(answer: &Response, allowed: &[u16]) {
    assert!(
        allowed.contains(&answer.status),
        "status {} for a bad request: {}",
        answer.status,
        answer.body
    );
    assert!(
        answer.body["error"]["code"].is_string() && answer.body["error"]["message"].is_string(),
        "not an error body: {}",
        answer.body
    );
}

/// The admin API on arbitrary HTTP requests: [`parse_request`] (what the
/// server answers with) either decodes a request whose path survives
/// re-encoding, or gives an error answer (400, 404, 405, 413, 415) with the
/// standard body; [`Call::decode`] either names an endpoint whose VIP and
/// backend arguments print and parse back the same, or answers 400 or 404;
/// every schema type read from any body is the value or a 400; never a
/// panic.
pub fn api_request(data: &[u8]) {
    let Some((head, body)) = split_http(data) else {
        return;
    };
    let request = match parse_request(&head, body) {
        Ok(request) => request,
        Err(answer) => {
            assert_error_answer(&answer, &[400, 404, 405, 413, 415]);
            return;
        }
    };
    // The path as the server shows it decodes to the same segments.
    let shown = request.display_path();
    let again = hyper::Request::builder()
        .method(head.method.clone())
        .uri(&shown)
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|e| panic!("the shown path {shown:?} is no URI: {e}"));
    match parse_request(&again, b"") {
        Ok(r) => assert_eq!(r.path, request.path, "path shown as {shown:?}"),
        Err(answer) => panic!("the shown path {shown:?} is refused: {}", answer.body),
    }

    // Every body shape, whatever the path.
    check_body::<VipSpec>(&request);
    check_body::<BackendSpec>(&request);
    check_body::<StateChange>(&request);
    check_body::<WeightChange>(&request);
    check_body::<NodeChange>(&request);

    let reparsed = |id: &VipId| {
        let shown = id.to_string();
        assert_eq!(vip_id(&shown).ok(), Some(*id), "VIP shown as {shown}");
    };
    match Call::decode(&request).map(|call| call.route) {
        Err(answer) => assert_error_answer(&answer, &[400, 404]),
        Ok(Route::AddVip(spec)) => match VipConfig::try_from(&spec) {
            Ok(vip) => {
                reparsed(&VipId::of(&vip));
                assert_vip_config(&vip);
            }
            Err(error) => assert_error_answer(&Response::from(error), &[400]),
        },
        Ok(Route::AddBackend(id, spec)) => {
            reparsed(&id);
            for mode in lb_common::Mode::ALL {
                match convert::backend_config(&id, mode, &spec) {
                    Ok(backend) => assert_eq!(backend.address, spec.address),
                    Err(error) => assert_error_answer(&Response::from(error), &[400]),
                }
            }
        }
        Ok(
            Route::GetVip(id)
            | Route::RemoveVip(id)
            | Route::RemoveBackend(id, _)
            | Route::SetState(id, _, _)
            | Route::SetWeight(id, _, _)
            | Route::Flows(id, _),
        ) => reparsed(&id),
        Ok(Route::Flow(id, client)) => {
            reparsed(&id);
            assert!(
                client.port() != 0 && client.is_ipv4() == id.address.is_ipv4(),
                "flow {client} of {id} accepted"
            );
            assert_eq!(
                client.to_string().parse(),
                Ok(client),
                "client shown as {client}"
            );
        }
        Ok(Route::SetNode(change)) => {
            let name = change.state.name();
            assert_eq!(NodeState::from_name(name), Some(change.state), "{name}");
        }
        Ok(Route::AddAcl(rule) | Route::RemoveAcl(rule)) => {
            // An accepted rule reads back from its own words (what the
            // path and `lbctl acl list` show).
            assert_eq!(rule.scope.to_string().parse().ok(), Some(rule.scope));
            assert_eq!(rule.action.to_string().parse().ok(), Some(rule.action));
            assert_eq!(rule.source.to_string().parse().ok(), Some(rule.source));
        }
        Ok(Route::SetLimits(scope, _) | Route::ClearLimits(scope)) => {
            assert_eq!(scope.to_string().parse().ok(), Some(scope));
        }
        Ok(
            Route::Status
            | Route::ListVips
            | Route::Reload
            | Route::Config
            | Route::Node
            | Route::Acl,
        ) => {}
    }
}

fn check_body<T: serde::de::DeserializeOwned>(request: &Request) {
    if let Err(answer) = request.body_as::<T>() {
        assert_eq!(answer.status, 400);
        assert_eq!(answer.body["error"]["code"], code::BAD_REQUEST);
    }
}

/// A VIP accepted from the API is one the config file accepts too: dumped
/// into a file, it loads back the same.
fn assert_vip_config(vip: &VipConfig) {
    let mut file = Config::from_toml_str("interface = \"lo\"\n", "fuzz").expect("minimal config");
    file.vips.push(vip.clone());
    let text = config::to_toml(&file);
    match Config::from_toml_str(&text, "dump") {
        Ok(again) => assert_eq!(again, file, "dumped as:\n{text}"),
        Err(e) => panic!("a VIP the API accepts does not load from its dump: {e}\n{text}"),
    }
}

// ---------------------------------------------------------------------------
// config

/// The config file parser on arbitrary text: never a panic (errors print);
/// a config that loads, dumped as `lbctl config dump` does, loads back equal,
/// and dumps to the same text again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match Config::from_toml_str(text, "fuzz.toml") {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = e.to_string();
            let _ = e.location();
            return;
        }
    };
    let dumped = config::to_toml(&loaded);
    let again = Config::from_toml_str(&dumped, "dump")
        .unwrap_or_else(|e| panic!("the dump of a valid config does not load: {e}\n{dumped}"));
    assert_eq!(again, loaded, "dump changed the config:\n{dumped}");
    assert_eq!(config::to_toml(&again), dumped, "dump is not stable");
}

// ---------------------------------------------------------------------------
// sync_frame

/// The shared key of the `sync_frame` target's session.
const SYNC_KEY: &[u8] = b"lbd fuzz sync key, 32 bytes long";
/// The handshake of the `sync_frame` target's session.
const SYNC_MASTER_NONCE: wire::Nonce = [1; wire::NONCE_LEN];
const SYNC_BACKUP_NONCE: wire::Nonce = [2; wire::NONCE_LEN];

fn sync_transcript() -> Transcript<'static> {
    Transcript {
        master_nonce: &SYNC_MASTER_NONCE,
        backup_nonce: &SYNC_BACKUP_NONCE,
        master_id: "lb-a",
        backup_id: "lb-b",
    }
}

/// The replication channel's decoder on an arbitrary byte stream: frames
/// are split off one by one; each body opens (as the backup's opener of the
/// fixed test session would) or fails without a panic, and decodes to a
/// message that encodes back to the same bytes, or fails; a decoded Batch,
/// NatBatch or Heartbeat sealed by the master's side opens on the backup's side to
/// the same message.
pub fn sync_frame(data: &[u8]) {
    let transcript = sync_transcript();
    let (mut sealer, _) = wire::session(SYNC_KEY, Role::Master, &transcript).expect("session");
    let (_, mut opener) = wire::session(SYNC_KEY, Role::Backup, &transcript).expect("session");
    let (_, mut reopener) = wire::session(SYNC_KEY, Role::Backup, &transcript).expect("session");
    let mut rest = data;
    while let Ok((body, after)) = wire::split_frame(rest) {
        rest = after;
        let _ = opener.open(body);
        let Ok(message) = Message::decode(body) else {
            continue;
        };
        assert_eq!(
            message.encode().as_deref(),
            Ok(body),
            "{} re-encodes differently",
            message.kind()
        );
        let sealed = match &message {
            Message::Batch {
                full_sync,
                last,
                records,
                ..
            } => sealer.batch(*full_sync, *last, records),
            Message::NatBatch {
                full_sync,
                last,
                records,
                ..
            } => sealer.nat_batch(*full_sync, *last, records),
            Message::Heartbeat { .. } => sealer.heartbeat(),
            Message::Hello { .. } | Message::HelloAck { .. } => continue,
        }
        .expect("a decoded message seals");
        let seq = sealer.next_seq() - 1;
        let (sealed_body, tail) = wire::split_frame(&sealed).expect("a sealed frame splits");
        assert!(tail.is_empty());
        let opened = reopener.open(sealed_body).expect("a sealed frame opens");
        let expected = match message {
            Message::Batch {
                full_sync,
                last,
                records,
                ..
            } => Message::Batch {
                seq,
                full_sync,
                last,
                records,
            },
            Message::NatBatch {
                full_sync,
                last,
                records,
                ..
            } => Message::NatBatch {
                seq,
                full_sync,
                last,
                records,
            },
            _ => Message::Heartbeat { seq },
        };
        assert_eq!(opened, expected);
    }
}

// ---------------------------------------------------------------------------
// packet

/// Largest frame fed to the program (BPF_PROG_TEST_RUN takes up to about a
/// page less head- and tailroom).
pub const MAX_FRAME: usize = 2048;

/// The loaded program and the node counters as they were after its last
/// run.
struct Bed {
    bed: TestBed,
    counters: Vec<(Counter, u64)>,
}

thread_local! {
    /// The loaded program with the test bed's three VIPs, loaded once per
    /// process: loading takes far longer than a run.
    static BED: RefCell<Option<Bed>> = const { RefCell::new(None) };
}

/// The test bed's VIPs.
fn bed_vips() -> [VipConfig; 3] {
    [vip4_tcp(), vip4_udp(), vip6_tcp()]
}

/// The XDP action a verdict counter stands for (None for events).
fn counted_action(counter: Counter) -> Option<u32> {
    match counter {
        Counter::Forwarded
        | Counter::ForwardedIcmpError
        | Counter::ForwardedNatReply
        | Counter::ForwardedNatIcmpError
        | Counter::SentIcmpTooBig => Some(action::TX),
        Counter::DropMalformed
        | Counter::DropNoBackend
        | Counter::DropTcpFlags
        | Counter::DropNatPortsExhausted
        | Counter::DropNatTableFull
        | Counter::DropNoRoute
        | Counter::DropNoNeighbour
        | Counter::DropNatNoFlow
        | Counter::DropTtlExceeded
        | Counter::DropAclDenied
        | Counter::DropAclNotAllowed
        | Counter::DropRateLimited => Some(action::DROP),
        Counter::PassNotIp
        | Counter::PassNotVip
        | Counter::PassFragment
        | Counter::PassUnsupportedL4
        | Counter::PassIpv6Ext => Some(action::PASS),
        Counter::ConntrackHit
        | Counter::ConntrackNew
        | Counter::ConntrackRehash
        | Counter::ConntrackInsertFailed
        | Counter::ConntrackHalfOpenNew
        | Counter::ConntrackHalfOpenPromoted
        | Counter::ConntrackHalfOpenEvicted
        | Counter::ConntrackHalfOpenExpired
        | Counter::NatNew
        | Counter::NatHit
        | Counter::TunnelEncap
        | Counter::HcEncap
        | Counter::HcDrop => None,
    }
}

/// One branch per counter, so that libFuzzer, which sees only userspace
/// code, tells inputs apart by the path they took inside the program.
#[inline(never)]
fn reached(counter: Counter) {
    let n = match counter {
        Counter::Forwarded => 0,
        Counter::PassNotIp => 1,
        Counter::PassNotVip => 2,
        Counter::PassFragment => 3,
        Counter::PassUnsupportedL4 => 4,
        Counter::DropMalformed => 5,
        Counter::DropNoBackend => 6,
        Counter::ConntrackHit => 7,
        Counter::ConntrackNew => 8,
        Counter::ConntrackRehash => 9,
        Counter::ConntrackInsertFailed => 10,
        Counter::ForwardedIcmpError => 11,
        Counter::DropTcpFlags => 12,
        Counter::PassIpv6Ext => 13,
        Counter::DropNatPortsExhausted => 14,
        Counter::DropNatTableFull => 15,
        Counter::DropNoRoute => 16,
        Counter::DropNoNeighbour => 17,
        Counter::DropNatNoFlow => 18,
        Counter::DropTtlExceeded => 19,
        Counter::ForwardedNatReply => 20,
        Counter::ForwardedNatIcmpError => 21,
        Counter::NatNew => 22,
        Counter::NatHit => 23,
        Counter::SentIcmpTooBig => 24,
        Counter::TunnelEncap => 25,
        Counter::HcEncap => 26,
        Counter::HcDrop => 27,
        Counter::DropAclDenied => 28,
        Counter::DropAclNotAllowed => 29,
        Counter::DropRateLimited => 30,
        Counter::ConntrackHalfOpenNew => 31,
        Counter::ConntrackHalfOpenPromoted => 32,
        Counter::ConntrackHalfOpenEvicted => 33,
        Counter::ConntrackHalfOpenExpired => 34,
    };
    std::hint::black_box(n);
}

/// The compiled XDP program (the test bed's, with its three VIPs) on an
/// arbitrary frame, under BPF_PROG_TEST_RUN: judged by
/// [`crate::oracle::check_verdict`] — never XDP_ABORTED, XDP_TX only for
/// what the independent reference parser allows, only the MACs rewritten —
/// and every verdict counted once, under a reason of the same verdict.
/// Needs root.
pub fn packet(data: &[u8]) {
    if data.len() < 14 || data.len() > MAX_FRAME {
        return;
    }
    BED.with(|cell| {
        let mut cell = cell.borrow_mut();
        let state = cell.get_or_insert_with(|| {
            let bed = TestBed::new(&bed_vips()).expect("loading the test bed (run as root)");
            let counters = bed.dataplane.counters().expect("reading the counters");
            Bed { bed, counters }
        });
        let (verdict, out) = state.bed.run(data).expect("BPF_PROG_TEST_RUN");
        let vips = bed_vips();
        let services: Vec<Service> = vips.iter().map(Service::of).collect();
        let macs: Vec<[u8; 6]> = vips
            .iter()
            .flat_map(|v| &v.backends)
            .filter_map(|b| b.mac.map(Mac::octets))
            .collect();
        if let Err(why) = check_verdict(data, verdict, &out, &services, LB_MAC, &macs) {
            panic!("{why}\ninput:  {data:02x?}\noutput: {out:02x?}");
        }

        let counters = state
            .bed
            .dataplane
            .counters()
            .expect("reading the counters");
        let mut verdicts = Vec::new();
        for ((counter, after), (_, before)) in counters.iter().zip(&state.counters) {
            if after != before {
                reached(*counter);
                if let Some(counted) = counted_action(*counter) {
                    verdicts.push((*counter, after - before, counted));
                }
            }
        }
        assert!(
            matches!(verdicts.as_slice(), [(_, 1, counted)] if *counted == verdict),
            "verdict {verdict} counted as {verdicts:?}\ninput: {data:02x?}"
        );
        state.counters = counters;
    });
}

// ---------------------------------------------------------------------------
// Seeds

/// The seed corpora: (target, file name, input), small valid inputs made
/// by our own encoders and the test suite's frame builders, so the fuzzer
/// starts from deep inside each format. `cargo run -p lb-tests --bin
/// lb-fuzz-seeds` writes them under `fuzz/corpus/`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, format!("seed-{name}"), bytes));
    };

    // VRRP adverts, encoded by lbd's encoder.
    let ip = |s: &str| -> IpAddr { s.parse().expect("seed address") };
    let src4 = ip("198.18.0.2");
    let src6 = ip("fe80::2");
    let advert = |vrid, priority, addresses: Vec<IpAddr>| Advertisement {
        vrid,
        priority,
        max_adver_int_cs: 100,
        addresses,
    };
    let vip4 = ip("198.18.0.100");
    let dst4 = IpAddr::V4(VRRP_MCAST_V4);
    let dst6 = IpAddr::V6(VRRP_MCAST_V6);
    for (name, flags, src, dst, ad, mode) in [
        (
            "v4-pseudo",
            vrrp_flags::MULTICAST,
            src4,
            dst4,
            advert(51, 100, vec![vip4]),
            ChecksumMode::PseudoHeader,
        ),
        (
            "v4-plain",
            vrrp_flags::MULTICAST,
            src4,
            dst4,
            advert(51, 150, vec![vip4, ip("198.18.0.101")]),
            ChecksumMode::NoPseudoHeader,
        ),
        (
            "v4-stop-unicast",
            0,
            src4,
            ip("198.18.0.3"),
            advert(51, 0, vec![vip4]),
            ChecksumMode::PseudoHeader,
        ),
        (
            "v6",
            vrrp_flags::MULTICAST | vrrp_flags::V6,
            src6,
            dst6,
            advert(7, 200, vec![ip("2001:2::100")]),
            ChecksumMode::PseudoHeader,
        ),
    ] {
        let payload = ad.encode(src, dst, mode).expect("seed advert encodes");
        let dst = (flags & vrrp_flags::MULTICAST == 0).then_some(dst);
        add(
            "vrrp_advert",
            name,
            vrrp_input(flags, VRRP_TTL, ad.vrid, src, dst, &payload),
        );
    }
    let payload = advert(51, 100, vec![vip4])
        .encode(src4, dst4, ChecksumMode::PseudoHeader)
        .expect("seed advert encodes");
    let mut raw = vec![
        0x45,
        0,
        0,
        20 + payload.len() as u8,
        0,
        0,
        0,
        0,
        VRRP_TTL,
        112,
        0,
        0,
    ];
    raw.extend_from_slice(&[198, 18, 0, 2, 224, 0, 0, 18]);
    raw.extend_from_slice(&payload);
    let mut packet_input = vec![vrrp_flags::IPV4_PACKET];
    packet_input.extend_from_slice(&raw);
    add("vrrp_advert", "v4-ip-packet", packet_input);

    // Admin API requests, as lbctl sends them.
    let vip = api_path(&["vips", "198.18.0.100:80/tcp"]);
    let vip6 = api_path(&["vips", "[2001:2::100]:443/tcp"]);
    let backend = |rest: &str| format!("{vip}/backends/198.18.0.11{rest}");
    for (name, method, target, body) in [
        ("status", "GET", "/v1/status".to_owned(), None),
        ("vips", "GET", "/v1/vips".to_owned(), None),
        ("vip-get", "GET", vip6.clone(), None),
        (
            "vip-add",
            "POST",
            "/v1/vips?dry_run=true".to_owned(),
            Some(
                r#"{"address":"198.18.0.101","port":80,"protocol":"tcp","backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":50,"mac":"02:00:00:00:00:12"}]}"#,
            ),
        ),
        ("vip-remove", "DELETE", vip.clone(), None),
        (
            "backend-add",
            "POST",
            format!("{vip}/backends"),
            Some(r#"{"address":"198.18.0.14","weight":100}"#),
        ),
        ("backend-remove", "DELETE", backend(""), None),
        (
            "backend-drain",
            "PUT",
            backend("/state"),
            Some(r#"{"state":"draining","timeout_s":300}"#),
        ),
        (
            "backend-weight",
            "PUT",
            backend("/weight"),
            Some(r#"{"weight":50}"#),
        ),
        ("backend-flows", "GET", backend("/flows"), None),
        (
            "vip-flow",
            "GET",
            api_path(&[
                "vips",
                "[2001:2::100]:443/tcp",
                "flows",
                "[2001:2::10]:40000",
            ]),
            None,
        ),
        ("reload", "POST", "/v1/reload?dry_run=true".to_owned(), None),
        ("config", "GET", "/v1/config".to_owned(), None),
    ] {
        add("api_request", name, http_request(method, &target, body));
    }

    // Config files: the example, and the README's VRRP section.
    add(
        "config",
        "example",
        include_bytes!("../../examples/lbd.toml").to_vec(),
    );
    add("config", "vrrp", SEED_VRRP_CONFIG.as_bytes().to_vec());

    // Replication frames: a handshake and a sealed session.
    let hello = Message::Hello {
        version: wire::PROTOCOL_VERSION,
        node_id: "lb-a".into(),
        nonce: SYNC_MASTER_NONCE,
    };
    let ack = Message::HelloAck {
        proof: [7; wire::TAG_LEN],
    };
    let mut handshake = Vec::new();
    for m in [hello, ack] {
        let body = m.encode().expect("seed message encodes");
        handshake.extend(wire::encode_frame(&body).expect("seed frame"));
    }
    add("sync_frame", "handshake", handshake);
    let record = |client: &str, vip: &str, backend: &str| FlowRecord {
        vip: ip(vip),
        vip_port: 80,
        protocol: 6,
        client: ip(client),
        client_port: 40000,
        backend: ip(backend),
        age_ms: 1500,
        flags: 0,
    };
    let (mut sealer, _) =
        wire::session(SYNC_KEY, Role::Master, &sync_transcript()).expect("session");
    let mut session = Vec::new();
    session.extend(
        sealer
            .batch(
                true,
                true,
                &[
                    record("198.18.0.10", "198.18.0.100", "198.18.0.11"),
                    record("2001:2::10", "2001:2::100", "2001:2::11"),
                ],
            )
            .expect("seed batch"),
    );
    session.extend(sealer.heartbeat().expect("seed heartbeat"));
    add("sync_frame", "session", session);
    let tuple = |src: &str, dst: &str, sport, dport| NatTuple {
        src: ip(src),
        dst: ip(dst),
        sport,
        dport,
    };
    let nat = |client: &str, vip: &str, nat: &str, backend: &str| NatFlowRecord {
        vip: ip(vip),
        vip_port: 80,
        protocol: 6,
        backend: ip(backend),
        backend_port: 8080,
        forward: NatHalf {
            key: tuple(client, vip, 40000, 80),
            translated: tuple(nat, backend, 20000, 8080),
            flags: 1,
            age_ms: 1500,
        },
        reply: NatHalf {
            key: tuple(backend, nat, 8080, 20000),
            translated: tuple(vip, client, 80, 40000),
            flags: 9,
            age_ms: 1400,
        },
    };
    // A session of its own, so the frame opens as the first one.
    let (mut nat_sealer, _) =
        wire::session(SYNC_KEY, Role::Master, &sync_transcript()).expect("session");
    let nat_batch = nat_sealer
        .nat_batch(
            true,
            true,
            &[
                nat("198.18.1.10", "198.18.0.100", "198.18.0.50", "198.19.2.11"),
                nat("2001:2:1::10", "2001:2::100", "2001:2::50", "2001:2:2::11"),
            ],
        )
        .expect("seed nat batch");
    add("sync_frame", "nat-session", nat_batch);
    let batch = Message::Batch {
        seq: 9,
        full_sync: false,
        last: true,
        records: vec![record("198.18.0.10", "198.18.0.100", "198.18.0.12")],
    };
    let body = batch.encode().expect("seed batch");
    add(
        "sync_frame",
        "batch-bare",
        wire::encode_frame(&body).expect("seed frame"),
    );

    // Frames for the data plane: the test suite's, and the shapes the
    // parser is growing into.
    let flow = |src: &str, dst: &str, dport| Flow {
        src: ip(src),
        dst: ip(dst),
        sport: 40000,
        dport,
    };
    let tcp4 = flow("198.18.0.10", "198.18.0.100", 80);
    let tcp6 = flow("2001:2::10", "2001:2::100", 80);
    let syn4 = packet::tcp(&tcp4, packet::SYN, None, b"");
    let syn6 = packet::tcp(&tcp6, packet::SYN, None, b"");
    let tagged = packet::tcp(&tcp4, packet::ACK, Some(7), b"GET / HTTP/1.1\r\n\r\n");
    add("packet", "tcp4-syn", syn4.clone());
    add(
        "packet",
        "tcp4-ack-payload",
        packet::tcp(&tcp4, packet::ACK, None, b"GET / HTTP/1.1\r\n\r\n"),
    );
    add("packet", "tcp4-vlan", tagged.clone());
    add(
        "packet",
        "udp4",
        packet::udp(&flow("198.18.0.10", "198.18.0.100", 53), None, b"query"),
    );
    add("packet", "tcp6-syn", syn6.clone());
    add(
        "packet",
        "udp6-not-a-service",
        packet::udp(&tcp6, None, b"x"),
    );
    add(
        "packet",
        "tcp4-options",
        packet::with_ipv4_options(&syn4, &[1, 1, 1, 0]),
    );
    add(
        "packet",
        "tcp4-fragment",
        packet::as_ipv4_fragment(&syn4, true, 0),
    );
    add(
        "packet",
        "icmp4-echo",
        packet::icmp_echo([198, 18, 0, 10], [198, 18, 0, 100]),
    );
    add("packet", "arp", packet::arp_request());
    add("packet", "tcp4-qinq", qinq(&tagged));
    add("packet", "tcp6-hop-by-hop", ipv6_hop_by_hop(&syn6));
    add("packet", "icmp4-unreachable", icmp4_unreachable(&syn4));
    add("packet", "icmp6-too-big", icmp6_too_big(&syn6));
    out
}

/// A VRRP pair's config, as in the README.
const SEED_VRRP_CONFIG: &str = r#"interface = "eth0"

[[vip]]
address = "198.18.0.100"
port = 80

  [[vip.backend]]
  address = "198.18.0.11"
  mac = "02:00:00:00:00:11"

[[vrrp]]
vrid = 51
priority = 150
advert_interval_ms = 100
preempt = true
preempt_delay_ms = 0
addresses = ["198.18.0.100"]
unicast_peers = ["198.18.0.3"]
announce_count = 3
announce_interval_ms = 1000
notify = "/usr/local/bin/lbd-notify"
track_dataplane = 100
track_interface = 100
track_no_backend = 50
sync_listen = "198.18.0.2:7540"
sync_peer = "198.18.0.3:7540"
sync_key_file = "/etc/lbd/sync.key"
"#;

/// A single-tagged frame with an 802.1ad S-tag in front (QinQ).
fn qinq(tagged: &[u8]) -> Vec<u8> {
    let mut out = tagged[..12].to_vec();
    out.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
    out.extend_from_slice(&tagged[12..]);
    out
}

/// An untagged IPv6 frame with an empty hop-by-hop options header (PadN)
/// before its upper-layer header.
fn ipv6_hop_by_hop(frame: &[u8]) -> Vec<u8> {
    const L3: usize = 14;
    let mut out = frame[..L3 + 40].to_vec();
    let next = out[L3 + 6];
    out[L3 + 6] = 0;
    let len = u16::from_be_bytes([out[L3 + 4], out[L3 + 5]]) + 8;
    out[L3 + 4..L3 + 6].copy_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&frame[L3 + 40..]);
    out
}

/// An ICMP "port unreachable" to the VIP quoting a packet the VIP sent
/// (the reverse of `syn`, an untagged IPv4 frame).
fn icmp4_unreachable(syn: &[u8]) -> Vec<u8> {
    let mut quoted = syn[14..14 + 28].to_vec();
    quoted[12..16].copy_from_slice(&syn[30..34]);
    quoted[16..20].copy_from_slice(&syn[26..30]);
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(packet::CLIENT_MAC, LB_MAC)
        .ipv4([198, 18, 0, 1], [198, 18, 0, 100], 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut out, &quoted)
        .expect("writing a crafted ICMP frame");
    out
}

/// An ICMPv6 "packet too big" to the VIP quoting the start of `syn` (an
/// untagged IPv6 frame).
fn icmp6_too_big(syn: &[u8]) -> Vec<u8> {
    let quoted = &syn[14..];
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2(packet::CLIENT_MAC, LB_MAC)
        .ipv6(v6_octets("2001:2::1"), v6_octets("2001:2::100"), 64)
        .icmpv6_raw(2, 0, 1280u32.to_be_bytes())
        .write(&mut out, quoted)
        .expect("writing a crafted ICMPv6 frame");
    out
}

fn v6_octets(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("seed address").octets()
}
