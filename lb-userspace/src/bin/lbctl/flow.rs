//! `lbctl flow VIP CLIENT_ADDR:PORT`: which backend that flow's next packet
//! goes to and why — its connection-table entry (backend, age, flags), its
//! half-open entry (a TCP handshake under way: the SYN's backend), or
//! Maglev's pick (slot and backend), or dropped for want of a healthy
//! backend. Asks lbd; changes nothing.

use std::net::SocketAddr;

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        flow_schema::{
            DropReason, FlowBackend, FlowDecision, FlowExplanation, FlowFlag, MaglevPick,
        },
        route,
    },
    vip_id::VipId,
};

use crate::{output, Failure};

/// `lbctl flow`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// ADDRESS:PORT[/tcp|udp].
    vip: VipId,
    /// The client end of the flow: ADDRESS:PORT ([ADDRESS]:PORT for IPv6),
    /// of the VIP's family.
    client: SocketAddr,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Asks lbd about the flow and prints the answer.
pub(crate) async fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    // What lbd would refuse (port 0, the other family than the VIP's) is
    // bad usage whether or not lbd runs.
    route::parse_client(&args.vip, &args.client.to_string())
        .map_err(|why| Failure::new(ClientError::EXIT_USAGE, why))?;
    let answer = client.flow(args.vip, args.client).await?;
    if args.json {
        output::json(&answer);
    } else {
        outln!("{}", describe(&answer));
    }
    Ok(())
}

/// One line: the flow, what happens to its next packet, and why (with
/// its outer header for a tunnelled VIP).
fn describe(answer: &FlowExplanation) -> String {
    let line = decision(answer);
    match &answer.tunnel {
        Some(t) => {
            let port = t
                .gue_port
                .map_or_else(String::new, |p| format!(" UDP port {p}"));
            format!(
                "{line}; encapsulated ({}) {} -> {}{port}",
                t.mode.name(),
                t.outer_src,
                t.outer_dst
            )
        }
        None => line,
    }
}

/// Maglev's pick in words: the slot, and what was hashed when it was the
/// client's address alone (source affinity: every connection of the
/// client falls in this slot).
fn maglev_slot(pick: &MaglevPick) -> String {
    let by = match pick.affinity {
        lb_common::Affinity::Connection => "",
        lb_common::Affinity::Source => " (source affinity: the client's slot)",
    };
    format!("Maglev slot {} of {}{by}", pick.slot, pick.table_size)
}

/// For an open TCP connection idle past its timeout, tracked: that its
/// own packets still go by the entry, that a full bucket may evict it
/// before live flows, and where a new connection (SYN) on its tuple
/// would go. Empty for any other answer.
fn idle_note(answer: &FlowExplanation) -> String {
    if !answer.entry.as_ref().is_some_and(|e| e.idle) {
        return String::new();
    }
    let new = answer
        .new_connection
        .as_ref()
        .map_or_else(String::new, |n| {
            let pick = n
                .maglev
                .map_or_else(String::new, |m| format!("{} -> ", maglev_slot(&m)));
            let to = n.backend.as_ref().map_or_else(
                || "dropped: no healthy backend".to_owned(),
                |b| format!("backend {} {}", b.address, state(b)),
            );
            format!("; a new connection (SYN) on it would be a new flow: {pick}{to}")
        });
    format!(
        " (idle past its timeout: its packets still go by this entry, which a new flow may take before a live one when the table is full){new}"
    )
}

/// The flow and what happens to its next packet.
fn decision(answer: &FlowExplanation) -> String {
    let flow = format!("{} -> {}", answer.client, answer.vip);
    let stale = answer.entry.as_ref().filter(|e| !e.current).map(|e| {
        let backend = e.backend.as_ref().map_or_else(
            || format!("backend id {} was removed", e.backend_id),
            |b| format!("backend {} {} no longer takes packets", b.address, state(b)),
        );
        format!(
            "tracked entry is stale ({backend}; last packet {:.1} s ago); hashed again: ",
            e.age_s
        )
    });
    let stale_half_open = answer.half_open.as_ref().filter(|e| !e.current).map(|e| {
        let backend = e.backend.as_ref().map_or_else(
            || format!("backend id {} was removed", e.backend_id),
            |b| format!("backend {} {} no longer takes packets", b.address, state(b)),
        );
        format!(
            "half-open entry is stale ({backend}; SYN {:.1} s ago); hashed again: ",
            e.age_s
        )
    });
    // An entry whose flow is over (FIN/RST seen, or a UDP flow idle past
    // its timeout) still steers that flow's late packets to its backend,
    // but a new flow on the tuple (a TCP SYN, any UDP packet) is hashed
    // again. (An idle open TCP connection is tracked: see `idle_note`.)
    let ended = answer
        .entry
        .as_ref()
        .filter(|e| e.current && !e.live && !e.idle)
        .map(|e| {
            let why = if e.flags.is_empty() {
                "idle past its timeout".to_owned()
            } else {
                format!("flags {}", flags(&e.flags))
            };
            let backend = e.backend.as_ref().map_or_else(
                || format!("id {}", e.backend_id),
                |b| format!("{} {}", b.address, state(b)),
            );
            let new = if answer.vip.ends_with("/udp") {
                "its next packet is a new flow"
            } else {
                "a new connection (SYN) on it is a new flow"
            };
            format!(
                "tracked entry is over ({why}; last packet {:.1} s ago, to backend {backend}); {new}: ",
                e.age_s
            )
        });
    let stale = stale.or(stale_half_open).or(ended).unwrap_or_default();
    let pick = answer.maglev.map(|m| maglev_slot(&m));
    if let Some(nat) = &answer.nat {
        let backend = answer.backend.as_ref().map_or_else(
            || format!("id {} (removed)", nat.backend_id),
            |b| format!("{} {}", b.address, state(b)),
        );
        let replies = if nat.reply_entry {
            // A reply leaves as the VIP's answer to the client.
            let vip = answer.vip.split('/').next().unwrap_or(&answer.vip);
            format!(
                "replies {} -> {} go back as {vip} -> {}",
                nat.reply.src, nat.reply.dst, answer.client
            )
        } else {
            "no reply entry: replies are not translated".to_owned()
        };
        return format!(
            "{flow}: NAT {} -> backend {backend}, sent as {} -> {}; {replies}; last packet {:.1} s ago",
            nat.state.name(),
            nat.forward.src,
            nat.forward.dst,
            nat.age_s
        );
    }
    match answer.decision {
        FlowDecision::Tracked => {
            let backend = answer
                .backend
                .as_ref()
                .map_or_else(|| "?".to_owned(), |b| format!("{} {}", b.address, state(b)));
            let (age, flags) = answer
                .entry
                .as_ref()
                .map_or((0.0, "-".to_owned()), |e| (e.age_s, flags(&e.flags)));
            format!(
                "{flow}: tracked -> backend {backend}, last packet {age:.1} s ago, flags {flags}{}",
                idle_note(answer)
            )
        }
        FlowDecision::HalfOpen => {
            let backend = answer
                .backend
                .as_ref()
                .map_or_else(|| "?".to_owned(), |b| format!("{} {}", b.address, state(b)));
            let age = answer.half_open.as_ref().map_or(0.0, |e| e.age_s);
            let expired = if answer.half_open.as_ref().is_some_and(|e| !e.live) {
                " (past the half-open timeout: a new SYN may take its place)"
            } else {
                ""
            };
            format!(
                "{flow}: half-open (SYN seen, handshake not complete) -> backend {backend}, SYN {age:.1} s ago{expired}; its ACK makes it established on that backend"
            )
        }
        FlowDecision::Maglev => {
            let backend = answer
                .backend
                .as_ref()
                .map_or_else(|| "?".to_owned(), |b| format!("{} {}", b.address, state(b)));
            let not = if stale.is_empty() {
                "not tracked: "
            } else {
                ""
            };
            format!(
                "{flow}: {stale}{not}{} -> backend {backend}",
                pick.unwrap_or_default()
            )
        }
        FlowDecision::Dropped => {
            let why = match (answer.dropped, answer.maglev) {
                (Some(DropReason::EmptySlot), Some(_)) => format!(
                    " ({} is empty: no backend takes new flows)",
                    pick.unwrap_or_default()
                ),
                (Some(DropReason::BackendNotAlive), Some(m)) => format!(
                    " ({} names backend id {}, which cannot take packets)",
                    pick.unwrap_or_default(),
                    m.backend_id
                ),
                (Some(DropReason::NoTable), _) => " (the VIP has no Maglev table)".to_owned(),
                _ => String::new(),
            };
            format!("{flow}: {stale}dropped: no healthy backend{why}")
        }
    }
}

/// `(enabled, up)`: the backend's admin state and health.
fn state(backend: &FlowBackend) -> String {
    format!(
        "({}, {})",
        backend
            .state
            .map_or_else(|| "removed".to_owned(), |s| s.to_string()),
        backend
            .health
            .map_or_else(|| "-".to_owned(), |h| h.to_string())
    )
}

/// `fin,rst` or `-`.
fn flags(flags: &[FlowFlag]) -> String {
    if flags.is_empty() {
        return "-".to_owned();
    }
    flags
        .iter()
        .map(|f| match f {
            FlowFlag::Fin => "fin",
            FlowFlag::Rst => "rst",
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use lb_userspace::api::flow_schema::TrackedEntry;

    use super::*;

    fn backend(address: &str, state: &str, alive: bool) -> FlowBackend {
        FlowBackend {
            address: address.parse().unwrap(),
            id: 2,
            state: Some(serde_json::from_value(serde_json::Value::from(state)).unwrap()),
            health: Some(lb_userspace::api::schema::HealthStatus::Up),
            alive,
        }
    }

    fn answer(decision: FlowDecision) -> FlowExplanation {
        FlowExplanation {
            vip: "198.18.0.100:80/tcp".to_owned(),
            client: "198.18.1.10:40000".parse().unwrap(),
            decision,
            backend: None,
            entry: None,
            half_open: None,
            maglev: None,
            dropped: None,
            new_connection: None,
            nat: None,
            tunnel: None,
        }
    }

    /// A client lbd would refuse (port 0, the other family than the
    /// VIP's) is refused before lbd is asked: exit 2 (bad usage) naming
    /// the client, not 5 ("try again later") when lbd is down, which
    /// trying again would never mend.
    #[tokio::test]
    async fn a_client_no_flow_can_have_is_refused_before_lbd_is_asked() {
        use clap::Parser as _;
        let lbd = Client::new(
            std::path::Path::new("/nonexistent/lbd.sock"),
            std::time::Duration::from_millis(200),
        );
        let run_with = |vip: &str, client: &str| {
            let cli = crate::Cli::try_parse_from(["lbctl", "flow", vip, client]).unwrap();
            let crate::Command::Flow(args) = cli.command else {
                panic!("not a flow command");
            };
            args
        };
        for (vip, client, named) in [
            ("198.18.0.100:80", "198.18.1.10:0", "port 0"),
            ("198.18.0.100:80", "[2001:2::10]:4000", "is IPv6 but VIP"),
            ("[2001:2::100]:80", "198.18.1.10:4000", "is IPv4 but VIP"),
        ] {
            let failure = run(&lbd, &run_with(vip, client)).await.unwrap_err();
            assert_eq!(
                failure.code,
                ClientError::EXIT_USAGE,
                "{client}: {}",
                failure.message
            );
            assert!(
                failure.message.contains(named),
                "{client}: {}",
                failure.message
            );
        }
        // A client that may be is asked about: lbd is not there (5).
        let failure = run(&lbd, &run_with("198.18.0.100:80", "198.18.1.10:4000"))
            .await
            .unwrap_err();
        assert_eq!(
            failure.code,
            ClientError::EXIT_UNAVAILABLE,
            "{}",
            failure.message
        );
    }

    const PICK: MaglevPick = MaglevPick {
        slot: 1234,
        table_size: 65537,
        backend_id: 1,
        affinity: lb_common::Affinity::Connection,
    };

    #[test]
    fn a_nat_flow_reads_with_its_translation() {
        use lb_userspace::api::flow_schema::{NatTranslation, NatTuple};
        let nat = FlowExplanation {
            backend: Some(backend("198.19.2.11", "enabled", true)),
            nat: Some(NatTranslation {
                forward: NatTuple {
                    src: "198.18.0.50:2001".parse().unwrap(),
                    dst: "198.19.2.11:8080".parse().unwrap(),
                },
                reply: NatTuple {
                    src: "198.19.2.11:8080".parse().unwrap(),
                    dst: "198.18.0.50:2001".parse().unwrap(),
                },
                state: lb_common::nat::NatFlowState::TcpEstablished,
                age_s: 2.5,
                backend_id: 4,
                reply_entry: true,
            }),
            ..answer(FlowDecision::Tracked)
        };
        assert_eq!(
            describe(&nat),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: NAT established -> backend 198.19.2.11 (enabled, up), sent as 198.18.0.50:2001 -> 198.19.2.11:8080; replies 198.19.2.11:8080 -> 198.18.0.50:2001 go back as 198.18.0.100:80 -> 198.18.1.10:40000; last packet 2.5 s ago"
        );
    }

    #[test]
    fn a_tunnelled_flow_names_its_outer_header() {
        let mut tunnelled = answer(FlowDecision::Maglev);
        tunnelled.backend = Some(backend("2001:2:0:2::12", "enabled", true));
        tunnelled.tunnel = Some(lb_userspace::api::flow_schema::FlowTunnel {
            mode: lb_common::Mode::Gue,
            outer_src: "2001:2:0:f0::1234".parse().unwrap(),
            outer_dst: "2001:2:0:2::12".parse().unwrap(),
            gue_port: Some(6080),
        });
        assert!(
            describe(&tunnelled).ends_with(
                "-> backend 2001:2:0:2::12 (enabled, up); encapsulated (gue) 2001:2:0:f0::1234 -> 2001:2:0:2::12 UDP port 6080"
            ),
            "{}",
            describe(&tunnelled)
        );
    }

    #[test]
    fn each_outcome_reads_as_one_line() {
        let tracked = FlowExplanation {
            backend: Some(backend("198.18.0.12", "enabled", true)),
            entry: Some(TrackedEntry {
                backend: Some(backend("198.18.0.12", "enabled", true)),
                backend_id: 2,
                age_s: 1.23,
                flags: Vec::new(),
                current: true,
                live: true,
                idle: false,
            }),
            ..answer(FlowDecision::Tracked)
        };
        assert_eq!(
            describe(&tracked),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: tracked -> backend 198.18.0.12 (enabled, up), last packet 1.2 s ago, flags -"
        );

        let maglev = FlowExplanation {
            backend: Some(backend("198.18.0.11", "enabled", true)),
            maglev: Some(PICK),
            ..answer(FlowDecision::Maglev)
        };
        assert_eq!(
            describe(&maglev),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: not tracked: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );
        let by_client = FlowExplanation {
            maglev: Some(MaglevPick {
                affinity: lb_common::Affinity::Source,
                ..PICK
            }),
            ..maglev.clone()
        };
        assert_eq!(
            describe(&by_client),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: not tracked: Maglev slot 1234 of 65537 (source affinity: the client's slot) -> backend 198.18.0.11 (enabled, up)"
        );
        // An lbd before affinity sends none: the flow's own slot.
        let old: MaglevPick =
            serde_json::from_str(r#"{"slot": 7, "table_size": 251, "backend_id": 1}"#).unwrap();
        assert_eq!(old.affinity, lb_common::Affinity::Connection);

        let stale = FlowExplanation {
            entry: Some(TrackedEntry {
                backend: Some(backend("198.18.0.12", "maintenance", false)),
                backend_id: 2,
                age_s: 3.0,
                flags: vec![FlowFlag::Fin, FlowFlag::Rst],
                current: false,
                live: false,
                idle: false,
            }),
            ..maglev.clone()
        };
        assert_eq!(
            describe(&stale),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: tracked entry is stale (backend 198.18.0.12 (maintenance, up) no longer takes packets; last packet 3.0 s ago); hashed again: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );

        // A TCP connection that is over: a new one on the tuple takes
        // Maglev's pick, the entry still shown.
        let ended = FlowExplanation {
            entry: Some(TrackedEntry {
                backend: Some(backend("198.18.0.12", "draining", true)),
                backend_id: 2,
                age_s: 3.0,
                flags: vec![FlowFlag::Fin],
                current: true,
                live: false,
                idle: false,
            }),
            ..maglev.clone()
        };
        assert_eq!(
            describe(&ended),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: tracked entry is over (flags fin; last packet 3.0 s ago, to backend 198.18.0.12 (draining, up)); a new connection (SYN) on it is a new flow: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );
        let idle_udp = FlowExplanation {
            vip: "198.18.0.100:53/udp".to_owned(),
            entry: ended.entry.clone().map(|e| TrackedEntry {
                flags: Vec::new(),
                age_s: 40.0,
                ..e
            }),
            ..maglev.clone()
        };
        assert_eq!(
            describe(&idle_udp),
            "198.18.1.10:40000 -> 198.18.0.100:53/udp: tracked entry is over (idle past its timeout; last packet 40.0 s ago, to backend 198.18.0.12 (draining, up)); its next packet is a new flow: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );

        let dropped = FlowExplanation {
            maglev: Some(MaglevPick {
                backend_id: 0,
                ..PICK
            }),
            dropped: Some(DropReason::EmptySlot),
            ..answer(FlowDecision::Dropped)
        };
        assert!(describe(&dropped).starts_with(
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: dropped: no healthy backend (Maglev slot 1234 of 65537 is empty"
        ));
        assert_eq!(flags(&[FlowFlag::Fin, FlowFlag::Rst]), "fin,rst");
    }

    #[test]
    fn a_half_open_flow_reads_as_half_open() {
        let held = TrackedEntry {
            backend: Some(backend("198.18.0.12", "enabled", true)),
            backend_id: 2,
            age_s: 0.42,
            flags: Vec::new(),
            current: true,
            live: true,
            idle: false,
        };
        let half_open = FlowExplanation {
            backend: Some(backend("198.18.0.12", "enabled", true)),
            half_open: Some(held.clone()),
            ..answer(FlowDecision::HalfOpen)
        };
        assert_eq!(
            describe(&half_open),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: half-open (SYN seen, handshake not complete) -> backend 198.18.0.12 (enabled, up), SYN 0.4 s ago; its ACK makes it established on that backend"
        );
        let json = serde_json::to_value(&half_open).unwrap();
        assert_eq!(json["decision"], "half_open");
        assert_eq!(json["half_open"]["backend_id"], 2);

        let stale = FlowExplanation {
            backend: Some(backend("198.18.0.11", "enabled", true)),
            maglev: Some(PICK),
            half_open: Some(TrackedEntry {
                backend: Some(backend("198.18.0.12", "maintenance", false)),
                current: false,
                ..held
            }),
            ..answer(FlowDecision::Maglev)
        };
        assert_eq!(
            describe(&stale),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: half-open entry is stale (backend 198.18.0.12 (maintenance, up) no longer takes packets; SYN 0.4 s ago); hashed again: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );
    }

    /// An open TCP connection idle past its timeout is tracked on its
    /// backend: the line says so, and where a new SYN on its tuple would
    /// go. (It once read "tracked entry is over" with Maglev's pick,
    /// which the connection's next packet did not take.)
    #[test]
    fn an_idle_open_connection_reads_as_tracked_with_a_new_syns_pick() {
        let idle = FlowExplanation {
            backend: Some(backend("198.18.0.12", "draining", true)),
            entry: Some(TrackedEntry {
                backend: Some(backend("198.18.0.12", "draining", true)),
                backend_id: 2,
                age_s: 1200.0,
                flags: Vec::new(),
                current: true,
                live: false,
                idle: true,
            }),
            new_connection: Some(lb_userspace::api::flow_schema::NewConnection {
                maglev: Some(PICK),
                backend: Some(backend("198.18.0.11", "enabled", true)),
                dropped: None,
            }),
            ..answer(FlowDecision::Tracked)
        };
        assert_eq!(
            describe(&idle),
            "198.18.1.10:40000 -> 198.18.0.100:80/tcp: tracked -> backend 198.18.0.12 (draining, up), last packet 1200.0 s ago, flags - (idle past its timeout: its packets still go by this entry, which a new flow may take before a live one when the table is full); a new connection (SYN) on it would be a new flow: Maglev slot 1234 of 65537 -> backend 198.18.0.11 (enabled, up)"
        );
        // An answer of an older lbd (no `idle`): read as before.
        let json = serde_json::json!({
            "backend_id": 2, "backend": null, "age_s": 3.0, "flags": [],
            "current": true, "live": true
        });
        let old: TrackedEntry = serde_json::from_value(json).unwrap();
        assert!(!old.idle);
    }
}
