//! Seeds: the starting corpora, made from our own encoders.

use super::sync_frame::{sync_transcript, SYNC_KEY, SYNC_MASTER_NONCE};
use super::*;

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
                r#"{"address":"198.18.0.101","port":80,"protocol":"tcp","health":{"check":"http","path":"/healthz","host":"example.test","port":8080,"expect_status":204,"interval_ms":1000,"fast_interval_ms":200,"timeout_ms":300,"rise":3,"fall":4,"through_tunnel":false},"backends":[{"address":"198.18.0.11"},{"address":"198.18.0.12","weight":50,"mac":"02:00:00:00:00:12","health":{"rise":5}}]}"#,
            ),
        ),
        ("vip-remove", "DELETE", vip.clone(), None),
        (
            "backend-add",
            "POST",
            format!("{vip}/backends"),
            Some(
                r#"{"address":"198.18.0.14","weight":100,"health":{"check":"tcp","timeout_ms":500}}"#,
            ),
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
        include_bytes!("../../../examples/lbd.toml").to_vec(),
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
    session.extend(
        sealer
            .config_digest(&[wire::VipDigest {
                vip: ip("198.18.0.100"),
                port: 80,
                protocol: 6,
                digest: [0x5a; wire::digest::DIGEST_LEN],
            }])
            .expect("seed config digest"),
    );
    let state = |backend: &str, state, started, deadline| wire::BackendStateRecord {
        vip: ip("198.18.0.100"),
        port: 80,
        protocol: 6,
        backend: ip(backend),
        state,
        changed_unix_ms: 1_700_000_000_000,
        drain_started_unix_ms: started,
        drain_deadline_unix_ms: deadline,
        drain_timed_out: false,
    };
    session.extend(
        sealer
            .backend_states(&[
                state("198.18.0.11", wire::SharedState::Enabled, 0, None),
                state(
                    "198.18.0.12",
                    wire::SharedState::Draining,
                    1_700_000_000_000,
                    Some(1_700_000_300_000),
                ),
                wire::BackendStateRecord {
                    drain_timed_out: true,
                    ..state("198.18.0.13", wire::SharedState::Maintenance, 0, None)
                },
            ])
            .expect("seed backend states"),
    );
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
                nat(
                    "2001:2:0:1::10",
                    "2001:2::100",
                    "2001:2::50",
                    "2001:2:0:2::11",
                ),
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
announce_refresh_ms = 30000
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
