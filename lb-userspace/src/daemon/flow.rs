//! `GET /v1/vips/{vip}/flows/{client}` (`lbctl flow`): which backend one
//! flow's next packet goes to, and why. The explanation is a pure function
//! of what lbd knows (the VIP's model, its applied backends and live
//! Maglev table, the flow's connection-table and half-open entries, the
//! time) that follows the data plane's own steps (`lb-ebpf/src/conntrack`
//! and `select.rs`): a tracked entry whose backend is the same live
//! backend wins while its flow is live (no FIN/RST, within its idle
//! timeout: past that a new connection on the tuple, a TCP SYN or any
//! UDP packet, is a new flow, re-pinned to Maglev's pick), and for an
//! open TCP connection idle past its timeout (its own packets still go
//! by the entry; what a new SYN would get is told beside); a flow the
//! connection table does not hold at all goes to
//! its half-open entry's backend (a TCP handshake under way) if that one
//! is the same live backend; otherwise the flow's hash picks a slot of the
//! live table, and an empty slot or a backend that cannot take packets
//! drops it. Only the engine's `explain_flow` reads maps.

use std::{net::SocketAddr, time::Duration};

use lb_common::{
    consts::{
        FLOW_F_FIN, FLOW_F_HALF_OPEN, FLOW_F_RST, FLOW_TOUCH_INTERVAL_NS, IPPROTO_TCP, NO_BACKEND,
    },
    flow_table::{HALF_OPEN_IDLE_TICKS, TICK_SHIFT},
    hash::flow_hash,
    FlowEntry, FlowKey,
};

/// How long a half-open flow counts as live: past it a new SYN of its
/// bucket may take its place (`flow_table::HALF_OPEN_IDLE_TICKS`).
pub(crate) const HALF_OPEN_TIMEOUT: Duration =
    Duration::from_nanos((HALF_OPEN_IDLE_TICKS as u64) << TICK_SHIFT);

use super::engine::check_of;
use crate::{
    api::flow_schema::{
        DropReason, FlowBackend, FlowDecision, FlowExplanation, FlowFlag, MaglevPick,
        NewConnection, TrackedEntry,
    },
    model::VipModel,
    reconcile::{addr_words, AppliedVip, VipId},
};

/// The connection-table key of the flow `client` -> `vip`, built as
/// `lb-ebpf/src/parse.rs` builds it from such a packet: addresses as
/// network-order words, ports in network order, the VIP's protocol, the
/// family tag, zero padding. Its `flow_hash` is the packet's.
pub fn flow_key(vip: &VipId, client: SocketAddr) -> FlowKey {
    let (src, family) = addr_words(client.ip());
    let (dst, _) = addr_words(vip.address);
    FlowKey {
        src,
        dst,
        sport: client.port().to_be(),
        dport: vip.port.to_be(),
        proto: vip.protocol.number(),
        family,
        _pad: 0,
    }
}

/// Everything the explanation depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The VIP.
    pub vip: VipId,
    /// The flow's client end.
    pub client: SocketAddr,
    /// The VIP as lbd serves it (admin states, health).
    pub model: &'a VipModel,
    /// The VIP as the maps hold it (backend ids, generations, alive flags).
    pub applied: &'a AppliedVip,
    /// The live Maglev table (what packets read).
    pub table: &'a [u32],
    /// The flow's connection-table entry.
    pub entry: Option<FlowEntry>,
    /// The flow's half-open entry (TCP; read when `entry` is None).
    pub half_open: Option<FlowEntry>,
    /// CLOCK_MONOTONIC now, ns (the clock of `FlowEntry::last_seen_ns`).
    pub now_ns: u64,
    /// The idle timeout of the VIP's protocol (for `live`).
    pub idle_timeout: Duration,
}

/// Where the flow's next packet goes, and why.
pub fn explain(facts: &Facts<'_>) -> FlowExplanation {
    let key = flow_key(&facts.vip, facts.client);
    // A SYN the connection table took (`FLOW_F_HALF_OPEN`) is a handshake
    // there: shown as half-open, live for the half-open timeout.
    let handshake = facts.entry.is_some_and(|e| e.flags & FLOW_F_HALF_OPEN != 0);
    let timeout = if handshake {
        HALF_OPEN_TIMEOUT
    } else {
        facts.idle_timeout
    };
    // An open TCP connection (no FIN/RST) idle past the TCP timeout: its
    // own packets (no SYN) still go by the entry, which the data plane
    // keeps until a new flow of a full bucket takes its way, after every
    // closed flow and handshake there (never a SYN's insert). Tracked,
    // with where a new connection on the tuple would go beside.
    let tcp = facts.vip.protocol.number() == IPPROTO_TCP;
    let entry = facts.entry.map(|e| {
        let shown = tracked_entry(facts, &e, timeout);
        TrackedEntry {
            idle: tcp && !handshake && !shown.live && shown.flags.is_empty(),
            ..shown
        }
    });
    // A flow that is over (not live: a TCP connection that saw FIN or
    // RST, a UDP flow idle past its timeout) is followed no more by a new
    // one on the tuple: the data plane re-pins a SYN there, and any UDP
    // packet of a flow idle past the UDP timeout (UDP has no SYN), to
    // Maglev's pick whatever its backend (`tracked`'s `reopening`,
    // lb-ebpf/src/conntrack/buckets.rs). The answer is where that new
    // flow goes, the old entry shown; only the ended TCP connection's own
    // late packets (no SYN) still follow the entry.
    let reopening = !handshake && entry.as_ref().is_some_and(|e| !e.live && !e.idle);
    let mut explanation = FlowExplanation {
        vip: facts.vip.to_string(),
        client: facts.client,
        decision: FlowDecision::Dropped,
        backend: None,
        entry: None,
        half_open: None,
        maglev: None,
        dropped: None,
        new_connection: None,
        nat: None,
        tunnel: None,
    };
    if let Some(entry) = entry.as_ref().filter(|e| e.current && !reopening) {
        explanation.backend = entry.backend.clone();
        if handshake {
            explanation.decision = FlowDecision::HalfOpen;
            explanation.half_open = Some(entry.clone());
        } else {
            explanation.decision = FlowDecision::Tracked;
            explanation.entry = Some(entry.clone());
            if entry.idle {
                let (maglev, picked) = maglev_pick(facts, &key);
                explanation.new_connection = Some(NewConnection {
                    maglev,
                    backend: picked.as_ref().ok().cloned(),
                    dropped: picked.err(),
                });
            }
        }
        return explanation;
    }
    // The data plane reads the half-open table only for a flow the
    // connection table does not hold; a stale half-open entry is taken out
    // and the flow hashed again.
    let half_open = facts
        .half_open
        .filter(|_| entry.is_none())
        .map(|e| tracked_entry(facts, &e, HALF_OPEN_TIMEOUT));
    if let Some(held) = half_open.as_ref().filter(|e| e.current) {
        explanation.decision = FlowDecision::HalfOpen;
        explanation.backend = held.backend.clone();
        explanation.half_open = half_open;
        return explanation;
    }
    explanation.entry = entry;
    explanation.half_open = half_open;
    let (maglev, picked) = maglev_pick(facts, &key);
    explanation.maglev = maglev;
    match picked {
        Ok(backend) => {
            explanation.decision = FlowDecision::Maglev;
            explanation.backend = Some(backend);
        }
        Err(reason) => explanation.dropped = Some(reason),
    }
    explanation
}

/// Maglev's pick for the flow of `key`: its slot (None: the VIP has no
/// table lbd knows), and the backend there if it can take packets, else
/// why the flow is dropped.
fn maglev_pick(
    facts: &Facts<'_>,
    key: &FlowKey,
) -> (Option<MaglevPick>, Result<FlowBackend, DropReason>) {
    let size = facts.applied.table_size;
    if size == 0 || facts.table.len() != size as usize {
        return (None, Err(DropReason::NoTable));
    }
    let slot = flow_hash(key) % size;
    let id = facts.table[slot as usize];
    let pick = Some(MaglevPick {
        slot,
        table_size: size,
        backend_id: id,
    });
    if id == NO_BACKEND {
        return (pick, Err(DropReason::EmptySlot));
    }
    match backend_by_id(facts, id, None) {
        Some(backend) if backend.alive => (pick, Ok(backend)),
        // A slot naming a backend lbd does not know, or one that cannot
        // take packets: the data plane finds no live backend there.
        _ => (pick, Err(DropReason::BackendNotAlive)),
    }
}

/// The entry as the explanation shows it: its backend if that backend
/// (id and generation) still exists, its age and flags, and whether the
/// data plane still follows it (the backend is alive; a new flow on the
/// tuple of an entry that is not live takes Maglev's pick all the same,
/// see `explain`); live while
/// no FIN/RST was seen and a packet came within `timeout`.
fn tracked_entry(facts: &Facts<'_>, entry: &FlowEntry, timeout: Duration) -> TrackedEntry {
    let backend = backend_by_id(facts, entry.backend_id, Some(entry.backend_generation));
    let mut flags = Vec::new();
    if entry.flags & FLOW_F_FIN != 0 {
        flags.push(FlowFlag::Fin);
    }
    if entry.flags & FLOW_F_RST != 0 {
        flags.push(FlowFlag::Rst);
    }
    let silent = Duration::from_nanos(facts.now_ns.saturating_sub(entry.last_seen_ns));
    let live = flags.is_empty() && silent <= timeout + Duration::from_nanos(FLOW_TOUCH_INTERVAL_NS);
    TrackedEntry {
        current: backend.as_ref().is_some_and(|b| b.alive),
        backend,
        backend_id: entry.backend_id,
        age_s: silent.as_secs_f64(),
        flags,
        live,
        idle: false,
    }
}

/// The VIP's backend with data-plane id `id` (and `generation`, when
/// given), with its state and health from the model.
pub(super) fn backend_by_id(
    facts: &Facts<'_>,
    id: u32,
    generation: Option<u32>,
) -> Option<FlowBackend> {
    let (address, applied) = facts
        .applied
        .backends
        .iter()
        .find(|(_, b)| b.id == id && generation.is_none_or(|g| g == b.generation))?;
    let model = facts.model.backends.get(address);
    Some(FlowBackend {
        address: *address,
        id,
        state: model.map(|b| b.admin.state()),
        health: model.map(|b| {
            let health = b
                .config
                .health
                .as_ref()
                .unwrap_or(&facts.model.config.health);
            if check_of(*address, facts.vip.port, health, None).is_some() {
                b.health.into()
            } else {
                crate::api::schema::HealthStatus::Unchecked
            }
        }),
        alive: applied.alive,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use lb_common::consts::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};

    use super::*;
    use crate::api::route::parse_client;
    use crate::{
        config::Config,
        dataplane::FakeMaps,
        health::Health,
        model::{AdminState, Model},
        reconcile::Balancer,
    };

    const VIP: &str = "198.18.0.100:80/tcp";
    const UDP_VIP: &str = "198.18.0.100:80/udp";
    const SECOND: u64 = 1_000_000_000;
    const NOW: u64 = 1_000 * SECOND;

    /// A VIP with three backends, MACs known, TCP checks on (the default).
    fn config() -> Config {
        config_of("tcp")
    }

    /// As `config`, the VIP serving `protocol` (a UDP VIP: no checks).
    fn config_of(protocol: &str) -> Config {
        let mut text = format!("interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"{protocol}\"\ntable_size = 1009\n");
        for last in 11..=13 {
            text.push_str(&format!(
                "[[vip.backend]]\naddress = \"198.18.0.{last}\"\nmac = \"02:00:00:00:00:{last}\"\n"
            ));
        }
        Config::from_toml_str(&text, "test").unwrap()
    }

    /// The model and the balancer that applied it to fake maps.
    struct World {
        model: Model,
        balancer: Balancer,
        maps: FakeMaps,
        /// The VIP.
        vip: VipId,
    }

    impl World {
        fn new() -> Self {
            Self::of(&config(), vip())
        }

        /// The VIP serving UDP (`UDP_VIP`).
        fn udp() -> Self {
            Self::of(&config_of("udp"), UDP_VIP.parse().unwrap())
        }

        fn of(config: &Config, vip: VipId) -> Self {
            let mut world = Self {
                model: Model::from_config(config),
                balancer: Balancer::new(4),
                maps: FakeMaps::default(),
                vip,
            };
            world.apply();
            world
        }

        fn apply(&mut self) {
            let desired = self.model.desired(&|_| None);
            self.balancer.apply(&mut self.maps, &desired).unwrap();
        }

        fn set_admin(&mut self, address: &str, admin: AdminState) {
            let id = self.vip;
            self.model
                .set_admin(&id, address.parse().unwrap(), admin)
                .unwrap();
            self.apply();
        }

        fn applied(&self) -> &AppliedVip {
            &self.balancer.vips()[&self.vip]
        }

        /// The data-plane id and generation of a backend.
        fn id(&self, address: &str) -> (u32, u32) {
            let b = &self.applied().backends[&address.parse::<IpAddr>().unwrap()];
            (b.id, b.generation)
        }

        /// The table as the (fake) maps hold it: what packets read.
        fn live_table(&self) -> Vec<u32> {
            self.maps.live_table(&self.vip.key()).unwrap()
        }

        fn explain(&self, client: &str, entry: Option<FlowEntry>) -> FlowExplanation {
            self.explain_with(client, entry, None)
        }

        /// As `explain`, with the flow's half-open entry.
        fn explain_with(
            &self,
            client: &str,
            entry: Option<FlowEntry>,
            half_open: Option<FlowEntry>,
        ) -> FlowExplanation {
            self.explain_at(client, entry, half_open, Duration::from_secs(900))
        }

        /// As `explain_with`, with the VIP's protocol's idle timeout
        /// `idle_timeout`.
        fn explain_at(
            &self,
            client: &str,
            entry: Option<FlowEntry>,
            half_open: Option<FlowEntry>,
            idle_timeout: Duration,
        ) -> FlowExplanation {
            let table = self.live_table();
            explain(&Facts {
                vip: self.vip,
                client: client.parse().unwrap(),
                model: self.model.vip(&self.vip).unwrap(),
                applied: self.applied(),
                table: &table,
                entry,
                half_open,
                now_ns: NOW,
                idle_timeout,
            })
        }

        /// A backend (address) other than the one Maglev gives `client`.
        fn not_maglevs(&self, client: &str) -> &'static str {
            ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
                .into_iter()
                .find(|a| a.parse::<IpAddr>().unwrap() != self.maglev_address(client))
                .unwrap()
        }

        /// The backend (address) the fake maps' live table gives `client`.
        fn maglev_address(&self, client: &str) -> IpAddr {
            let key = flow_key(&self.vip, client.parse().unwrap());
            let table = self.live_table();
            let id = table[(flow_hash(&key) % table.len() as u32) as usize];
            *self
                .applied()
                .backends
                .iter()
                .find(|(_, b)| b.id == id)
                .unwrap()
                .0
        }
    }

    fn vip() -> VipId {
        VIP.parse().unwrap()
    }

    fn entry(id: (u32, u32), age_s: u64, flags: u32) -> FlowEntry {
        FlowEntry {
            backend_id: id.0,
            backend_generation: id.1,
            last_seen_ns: NOW - age_s * SECOND,
            flags,
            hash: 0,
        }
    }

    #[test]
    fn the_key_is_the_one_the_parser_builds() {
        let key = flow_key(&vip(), "198.18.1.10:40000".parse().unwrap());
        assert_eq!(key.src, [u32::from_ne_bytes([198, 18, 1, 10]), 0, 0, 0]);
        assert_eq!(key.dst, [u32::from_ne_bytes([198, 18, 0, 100]), 0, 0, 0]);
        assert_eq!(key.sport.to_ne_bytes(), 40000u16.to_be_bytes());
        assert_eq!(key.dport.to_ne_bytes(), 80u16.to_be_bytes());
        assert_eq!((key.proto, key.family, key._pad), (IPPROTO_TCP, AF_INET, 0));

        let v6: VipId = "[2001:2::100]:53/udp".parse().unwrap();
        let key = flow_key(&v6, "[2001:2::10]:5353".parse().unwrap());
        let words = |a: &str| {
            let o = a.parse::<std::net::Ipv6Addr>().unwrap().octets();
            [0, 4, 8, 12].map(|i| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
        };
        assert_eq!(key.src, words("2001:2::10"));
        assert_eq!(key.dst, words("2001:2::100"));
        assert_eq!((key.proto, key.family), (IPPROTO_UDP, AF_INET6));
    }

    #[test]
    fn clients_of_the_other_family_or_port_zero_are_refused() {
        let v4 = vip();
        let v6: VipId = "[2001:2::100]:80/tcp".parse().unwrap();
        assert!(parse_client(&v4, "198.18.1.10:40000").is_ok());
        assert!(parse_client(&v6, "[2001:2::10]:40000").is_ok());
        let error = parse_client(&v4, "[2001:2::10]:40000").unwrap_err();
        assert!(
            error.contains("2001:2::10") && error.contains("IPv6") && error.contains(VIP),
            "{error}"
        );
        let error = parse_client(&v6, "198.18.1.10:40000").unwrap_err();
        assert!(
            error.contains("IPv4") && error.contains("2001:2::100"),
            "{error}"
        );
        let error = parse_client(&v4, "198.18.1.10:0").unwrap_err();
        assert!(error.contains("port 0"), "{error}");
        for bad in [
            "198.18.1.10",
            "2001:2::10:80",
            "x:1",
            "198.18.1.10:65536",
            "",
        ] {
            assert!(parse_client(&v4, bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn an_untracked_flow_goes_to_maglevs_pick() {
        let world = World::new();
        for port in [40000, 40001, 40002, 50000] {
            let client = format!("198.18.1.10:{port}");
            let answer = world.explain(&client, None);
            assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
            let pick = answer.maglev.unwrap();
            let key = flow_key(&vip(), client.parse().unwrap());
            assert_eq!(pick.slot, flow_hash(&key) % 1009);
            assert_eq!(pick.table_size, 1009);
            let backend = answer.backend.unwrap();
            assert_eq!(backend.address, world.maglev_address(&client));
            assert_eq!(backend.id, pick.backend_id);
            assert_eq!(
                backend.state,
                Some(crate::api::schema::BackendState::Enabled)
            );
            assert_eq!(
                backend.health,
                Some(crate::api::schema::HealthStatus::Unknown)
            );
            assert!(backend.alive);
            assert_eq!((answer.entry, answer.dropped), (None, None));
        }
    }

    #[test]
    fn a_tracked_flow_goes_to_its_pinned_backend_whatever_maglev_says() {
        let mut world = World::new();
        let client = "198.18.1.10:40000";
        // Pin it to a backend Maglev would not pick.
        let other = world.not_maglevs(client);
        world
            .model
            .set_health(&vip(), other.parse().unwrap(), Health::Up);
        world.apply();
        let answer = world.explain(client, Some(entry(world.id(other), 3, 0)));
        assert_eq!(answer.decision, FlowDecision::Tracked, "{answer:?}");
        let backend = answer.backend.clone().unwrap();
        assert_eq!(backend.address.to_string(), other);
        assert_eq!(backend.health, Some(crate::api::schema::HealthStatus::Up));
        let tracked = answer.entry.unwrap();
        assert!(tracked.current);
        assert_eq!(tracked.backend, Some(backend));
        assert!((tracked.age_s - 3.0).abs() < 1e-9, "{}", tracked.age_s);
        assert!(tracked.flags.is_empty());
        assert!(tracked.live);
        assert_eq!((answer.maglev, answer.dropped), (None, None));
    }

    #[test]
    fn a_draining_backend_keeps_its_tracked_flows_and_says_so() {
        let mut world = World::new();
        let since = std::time::Instant::now();
        world.set_admin(
            "198.18.0.12",
            AdminState::Draining {
                since,
                deadline: None,
            },
        );
        let answer = world.explain(
            "198.18.1.10:40000",
            Some(entry(world.id("198.18.0.12"), 1, 0)),
        );
        assert_eq!(answer.decision, FlowDecision::Tracked);
        let backend = answer.backend.unwrap();
        assert_eq!(
            backend.state,
            Some(crate::api::schema::BackendState::Draining)
        );
        assert!(answer.entry.unwrap().live);
        // A new flow never lands on it.
        for port in 1000..1100 {
            let answer = world.explain(&format!("198.18.1.10:{port}"), None);
            assert_ne!(
                answer.backend.unwrap().address.to_string(),
                "198.18.0.12",
                "port {port}"
            );
        }
    }

    #[test]
    fn an_entry_of_a_backend_in_maintenance_is_stale_and_the_flow_is_hashed_again() {
        let mut world = World::new();
        let client = "198.18.1.10:40000";
        let pinned = world.maglev_address(client).to_string();
        let id = world.id(&pinned);
        world.set_admin(&pinned, AdminState::Maintenance);
        let answer = world.explain(client, Some(entry(id, 2, 0)));
        assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
        let stale = answer.entry.unwrap();
        assert!(!stale.current);
        let old = stale.backend.unwrap();
        assert_eq!(old.address.to_string(), pinned);
        assert_eq!(
            old.state,
            Some(crate::api::schema::BackendState::Maintenance)
        );
        assert!(!old.alive);
        let new = answer.backend.unwrap();
        assert_ne!(new.address.to_string(), pinned);
        assert_eq!(new.address, world.maglev_address(client));
    }

    #[test]
    fn an_entry_of_a_removed_backend_is_stale_even_if_its_id_is_reused() {
        let mut world = World::new();
        let client = "198.18.1.10:40000";
        let (id, generation) = world.id("198.18.0.13");
        let answer = world.explain(client, Some(entry((id, generation + 100), 5, 0)));
        assert_eq!(answer.decision, FlowDecision::Maglev);
        let stale = answer.entry.unwrap();
        assert!(!stale.current);
        assert_eq!(stale.backend, None, "the generation does not match");
        assert_eq!(stale.backend_id, id);

        // Removed for real: no backend of the VIP has that id any more.
        let vip_id = vip();
        world
            .model
            .remove_backend(&vip_id, "198.18.0.13".parse().unwrap())
            .unwrap();
        world.apply();
        let answer = world.explain(client, Some(entry((id, generation), 5, 0)));
        assert_eq!(answer.decision, FlowDecision::Maglev);
        assert!(!answer.entry.unwrap().current);
    }

    #[test]
    fn with_every_backend_in_maintenance_flows_are_dropped() {
        let mut world = World::new();
        let tracked = world.id("198.18.0.11");
        for address in ["198.18.0.11", "198.18.0.12", "198.18.0.13"] {
            world.set_admin(address, AdminState::Maintenance);
        }
        let answer = world.explain("198.18.1.10:40000", None);
        assert_eq!(answer.decision, FlowDecision::Dropped, "{answer:?}");
        assert_eq!(answer.dropped, Some(DropReason::EmptySlot));
        assert_eq!(answer.backend, None);
        assert_eq!(answer.maglev.unwrap().backend_id, NO_BACKEND);

        // A tracked flow too: its entry is stale, the table has nothing.
        let answer = world.explain("198.18.1.10:40001", Some(entry(tracked, 1, 0)));
        assert_eq!(answer.decision, FlowDecision::Dropped);
        let stale = answer.entry.unwrap();
        assert!(!stale.current);
        assert_eq!(
            stale.backend.unwrap().state,
            Some(crate::api::schema::BackendState::Maintenance)
        );
    }

    #[test]
    fn a_slot_whose_backend_cannot_take_packets_drops_the_flow() {
        let world = World::new();
        let client = "198.18.1.10:40000";
        let address = world.maglev_address(client);
        // The record says the slot's backend is dead (as after a MAC loss
        // the table has not caught up with).
        let mut applied = world.applied().clone();
        if let Some(b) = applied.backends.get_mut(&address) {
            b.alive = false;
        }
        let table = world.live_table();
        let answer = explain(&Facts {
            vip: vip(),
            client: client.parse().unwrap(),
            model: world.model.vip(&vip()).unwrap(),
            applied: &applied,
            table: &table,
            entry: None,
            half_open: None,
            now_ns: NOW,
            idle_timeout: Duration::from_secs(900),
        });
        assert_eq!(answer.decision, FlowDecision::Dropped);
        assert_eq!(answer.dropped, Some(DropReason::BackendNotAlive));

        // No table known at all.
        let answer = explain(&Facts {
            table: &[],
            ..Facts {
                vip: vip(),
                client: client.parse().unwrap(),
                model: world.model.vip(&vip()).unwrap(),
                applied: world.applied(),
                table: &table,
                entry: None,
                half_open: None,
                now_ns: NOW,
                idle_timeout: Duration::from_secs(900),
            }
        });
        assert_eq!(answer.dropped, Some(DropReason::NoTable));
    }

    /// A TCP flow that saw FIN or RST is over: the data plane re-pins the
    /// next SYN there to Maglev's pick (`tracked`'s `reopening`,
    /// lb-ebpf/src/conntrack/buckets.rs). The answer is that pick, as for
    /// a UDP flow idle past its timeout, with the old entry shown as it is
    /// (its backend alive, itself not live). An open connection idle past
    /// the TCP timeout (no FIN/RST: a pooled database session) is not
    /// over: its next packet (no SYN) goes by its entry, so the answer is
    /// `tracked` on its backend, marked idle, with where a new connection
    /// (SYN) on the tuple would go beside. Before, it answered Maglev's
    /// pick, which the connection's next query did not take.
    #[test]
    fn a_tcp_flow_that_ended_follows_maglev_for_a_new_connection_an_idle_one_stays_tracked() {
        let mut world = World::new();
        let client = "198.18.1.10:40000";
        let other = world.not_maglevs(client);
        world
            .model
            .set_health(&vip(), other.parse().unwrap(), Health::Up);
        world.apply();
        for (age_s, flags, shown) in [
            (3, FLOW_F_FIN, vec![FlowFlag::Fin]),
            (3, FLOW_F_RST, vec![FlowFlag::Rst]),
            (
                3,
                FLOW_F_FIN | FLOW_F_RST,
                vec![FlowFlag::Fin, FlowFlag::Rst],
            ),
            (902, FLOW_F_FIN, vec![FlowFlag::Fin]),
        ] {
            let answer = world.explain(client, Some(entry(world.id(other), age_s, flags)));
            assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
            let backend = answer.backend.clone().unwrap();
            assert_eq!(backend.address, world.maglev_address(client));
            assert_ne!(backend.address.to_string(), other);
            assert!(answer.maglev.is_some(), "{answer:?}");
            assert_eq!(answer.dropped, None);
            assert_eq!(answer.new_connection, None);
            let ended = answer.entry.unwrap();
            assert_eq!(ended.backend.unwrap().address.to_string(), other);
            assert!(
                ended.current && !ended.live && !ended.idle,
                "{flags:#x} {age_s}"
            );
            assert_eq!(ended.flags, shown);
            assert!((ended.age_s - age_s as f64).abs() < 1e-9, "{}", ended.age_s);
        }
        // Idle 902 s, no FIN/RST: tracked on its backend, idle; a new
        // SYN would take Maglev's pick.
        let idle = world.explain(client, Some(entry(world.id(other), 902, 0)));
        assert_eq!(idle.decision, FlowDecision::Tracked, "{idle:?}");
        assert_eq!(idle.backend.clone().unwrap().address.to_string(), other);
        assert_eq!(idle.maglev, None);
        let held = idle.entry.clone().unwrap();
        assert!(held.current && !held.live && held.idle, "{held:?}");
        assert!((held.age_s - 902.0).abs() < 1e-9, "{}", held.age_s);
        let new = idle.new_connection.clone().expect("a new SYN's pick");
        assert_eq!(
            new.backend.as_ref().unwrap().address,
            world.maglev_address(client)
        );
        assert!(new.maglev.is_some() && new.dropped.is_none(), "{new:?}");
        let json = serde_json::to_value(&idle).unwrap();
        assert_eq!(json["decision"], "tracked");
        assert_eq!(json["entry"]["idle"], true);
        assert!(
            json["new_connection"]["maglev"]["slot"].is_number(),
            "{json}"
        );
        // Live (no FIN/RST, within the timeout): tracked, on its backend.
        let live = world.explain(client, Some(entry(world.id(other), 898, 0)));
        assert_eq!(live.decision, FlowDecision::Tracked, "{live:?}");
        assert_eq!(live.backend.unwrap().address.to_string(), other);
        assert_eq!(live.maglev, None);
        assert_eq!(live.new_connection, None);
        assert!(!live.entry.unwrap().idle);
    }

    /// A UDP flow idle past the UDP timeout: its next packet is a new
    /// flow, which the data plane re-pins to Maglev's pick (UDP has no
    /// SYN); within the timeout it keeps its backend. A TCP connection's
    /// next SYN does the same once it is over
    /// (`a_tcp_flow_that_ended_follows_maglev_for_a_new_connection_an_idle_one_stays_tracked`).
    #[test]
    fn a_udp_flow_idle_past_its_timeout_follows_maglev_again() {
        let world = World::udp();
        let client = "198.18.1.10:40000";
        let other = world.not_maglevs(client);
        let timeout = Duration::from_secs(30);
        let answer = world.explain_at(client, Some(entry(world.id(other), 40, 0)), None, timeout);
        assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
        let backend = answer.backend.unwrap();
        assert_eq!(backend.address, world.maglev_address(client));
        assert_ne!(backend.address.to_string(), other);
        assert!(answer.maglev.is_some());
        // The entry is shown as it is: its backend alive, itself not live.
        let idle = answer.entry.unwrap();
        assert_eq!(idle.backend.unwrap().address.to_string(), other);
        assert!(idle.current && !idle.live);
        assert!((idle.age_s - 40.0).abs() < 1e-9, "{}", idle.age_s);

        // Within the timeout: tracked, on its backend.
        let answer = world.explain_at(client, Some(entry(world.id(other), 20, 0)), None, timeout);
        assert_eq!(answer.decision, FlowDecision::Tracked, "{answer:?}");
        assert_eq!(answer.backend.unwrap().address.to_string(), other);
        assert!(answer.entry.unwrap().live);
        assert_eq!(answer.maglev, None);
    }

    /// The path lbctl sends, decoded by the server, routed.
    fn routed(vip: &str, client: &str) -> Result<crate::api::route::Route, crate::api::Response> {
        let path = crate::api::client::api_path(&["vips", vip, "flows", client]);
        let (head, ()) = hyper::Request::get(path.as_str())
            .body(())
            .unwrap()
            .into_parts();
        let request = crate::api::server::parse_request(&head, b"")?;
        crate::api::route::Call::decode(&request).map(|call| call.route)
    }

    #[test]
    fn the_route_takes_encoded_clients_of_both_families() {
        use crate::api::route::Route;
        assert_eq!(
            routed(VIP, "198.18.1.10:40000"),
            Ok(Route::Flow(vip(), "198.18.1.10:40000".parse().unwrap()))
        );
        let v6: VipId = "[2001:2::100]:80/tcp".parse().unwrap();
        assert_eq!(
            routed("[2001:2::100]:80/tcp", "[2001:2::10]:40000"),
            Ok(Route::Flow(v6, "[2001:2::10]:40000".parse().unwrap()))
        );
        for (vip, client) in [
            (VIP, "[2001:2::10]:40000"),
            (VIP, "198.18.1.10:0"),
            (VIP, "198.18.1.10"),
            ("198.18.0.100:0/tcp", "198.18.1.10:40000"),
        ] {
            let answer = routed(vip, client).unwrap_err();
            assert_eq!(answer.status, 400, "{vip} {client}: {:?}", answer.body);
        }
    }

    #[test]
    fn a_half_open_flow_goes_to_its_syns_backend_whatever_maglev_says() {
        let world = World::new();
        let client = "198.18.1.10:40000";
        let other = world.not_maglevs(client);
        let held = entry(world.id(other), 2, 0);
        let answer = world.explain_with(client, None, Some(held));
        assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
        assert_eq!(answer.backend.as_ref().unwrap().address.to_string(), other);
        let half_open = answer.half_open.unwrap();
        assert!(half_open.current && half_open.live);
        assert!((half_open.age_s - 2.0).abs() < 1e-9);
        assert_eq!((answer.entry, answer.maglev), (None, None));

        // Past the half-open timeout it still steers until a SYN takes
        // its place, but is no longer live.
        let old = world.explain_with(client, None, Some(entry(world.id(other), 12, 0)));
        assert_eq!(old.decision, FlowDecision::HalfOpen);
        assert!(!old.half_open.unwrap().live);

        // The connection table's entry, when there is one, decides: the
        // data plane does not read the half-open table then.
        let tracked = entry(world.id(&world.maglev_address(client).to_string()), 1, 0);
        let answer = world.explain_with(client, Some(tracked), Some(held));
        assert_eq!(answer.decision, FlowDecision::Tracked);
        assert_eq!(answer.half_open, None);
    }

    #[test]
    fn a_syn_the_connection_table_took_is_shown_half_open_with_its_timeout() {
        let world = World::new();
        let client = "198.18.1.10:40000";
        let other = world.not_maglevs(client);
        let handshake = entry(world.id(other), 2, FLOW_F_HALF_OPEN);
        let answer = world.explain(client, Some(handshake));
        assert_eq!(answer.decision, FlowDecision::HalfOpen, "{answer:?}");
        assert_eq!(answer.backend.as_ref().unwrap().address.to_string(), other);
        let held = answer.half_open.unwrap();
        assert!(held.current && held.live);
        assert_eq!((answer.entry, answer.maglev), (None, None));

        // Past the half-open timeout (not the connection's idle timeout)
        // it is no longer live; it still steers.
        let old = world.explain(client, Some(entry(world.id(other), 12, FLOW_F_HALF_OPEN)));
        assert_eq!(old.decision, FlowDecision::HalfOpen);
        assert!(!old.half_open.unwrap().live);

        // Once its ACK made it established, it is a tracked flow.
        let established = world.explain(client, Some(entry(world.id(other), 12, 0)));
        assert_eq!(established.decision, FlowDecision::Tracked);
        assert!(established.entry.unwrap().live);
    }

    #[test]
    fn a_half_open_entry_of_a_backend_gone_is_stale_and_the_flow_is_hashed_again() {
        let mut world = World::new();
        let client = "198.18.1.10:40000";
        let pinned = world.maglev_address(client).to_string();
        let id = world.id(&pinned);
        world.set_admin(&pinned, AdminState::Maintenance);
        let answer = world.explain_with(client, None, Some(entry(id, 1, 0)));
        assert_eq!(answer.decision, FlowDecision::Maglev, "{answer:?}");
        let stale = answer.half_open.unwrap();
        assert!(!stale.current);
        assert_eq!(stale.backend.unwrap().address.to_string(), pinned);
        assert_ne!(answer.backend.unwrap().address.to_string(), pinned);
        assert!(answer.maglev.is_some());
    }

    #[test]
    fn decisions_serialise_lower_case() {
        let text = serde_json::to_string(&[
            FlowDecision::Tracked,
            FlowDecision::HalfOpen,
            FlowDecision::Maglev,
            FlowDecision::Dropped,
        ])
        .unwrap();
        assert_eq!(text, r#"["tracked","half_open","maglev","dropped"]"#);
        assert_eq!(
            serde_json::to_string(&DropReason::EmptySlot).unwrap(),
            r#""empty_slot""#
        );
    }

    /// A NAT VIP's packets never read the connection table (nor the
    /// half-open table): an entry left there from before the VIP switched
    /// to NAT (a DSR VIP's flow) says nothing of where its next packet
    /// goes. Without a translation, a SYN (a UDP packet) opens one to
    /// Maglev's pick and any other TCP packet is dropped
    /// (`drop_nat_no_flow`): the explanation is Maglev's pick, as for a
    /// flow no table holds.
    #[test]
    fn a_nat_vip_without_a_translation_ignores_the_connection_table() {
        let world = World::new();
        let client = "198.18.1.10:40000";
        let other = world.not_maglevs(client);
        let table = world.live_table();
        for (entry, half_open) in [
            (Some(entry(world.id(other), 5, 0)), None),
            (None, Some(entry(world.id(other), 1, 0))),
        ] {
            let facts = Facts {
                vip: world.vip,
                client: client.parse().unwrap(),
                model: world.model.vip(&world.vip).unwrap(),
                applied: world.applied(),
                table: &table,
                entry,
                half_open,
                now_ns: NOW,
                idle_timeout: Duration::from_secs(900),
            };
            let dsr = explain(&facts);
            assert_ne!(dsr.decision, FlowDecision::Maglev, "{dsr:?}");
            let key = flow_key(&facts.vip, facts.client);
            let nat = crate::daemon::nat_flow::with_translation(dsr, &facts, &key, None, None);
            assert_eq!(nat.decision, FlowDecision::Maglev, "{nat:?}");
            assert_eq!(
                nat.backend.as_ref().map(|b| b.address),
                Some(world.maglev_address(client)),
                "{nat:?}"
            );
            assert!(nat.maglev.is_some(), "{nat:?}");
            assert_eq!((nat.entry, nat.half_open, nat.nat), (None, None, None));
        }
    }

    /// A backend id freed by a removal is given to the next backend added
    /// at once, while the removed backend's NAT flows wait for the
    /// reaper: their translation names the id, but still sends to the
    /// removed backend's address. The explanation names no backend then
    /// (lbctl: "removed"), not the id's new owner.
    #[test]
    fn a_translation_whose_backend_id_went_to_another_backend_names_none() {
        let world = World::new();
        let client = "198.18.1.10:40000";
        let table = world.live_table();
        let facts = Facts {
            vip: world.vip,
            client: client.parse().unwrap(),
            model: world.model.vip(&world.vip).unwrap(),
            applied: world.applied(),
            table: &table,
            entry: None,
            half_open: None,
            now_ns: NOW,
            idle_timeout: Duration::from_secs(900),
        };
        let key = flow_key(&facts.vip, facts.client);
        let (id, _) = world.id("198.18.0.12");
        let to = |address: &str| lb_common::NatEntry {
            dst: addr_words(address.parse().unwrap()).0,
            backend_id: id,
            last_seen_ns: NOW,
            direction: lb_common::consts::NAT_DIR_FORWARD,
            ..lb_common::NatEntry::default()
        };
        let nat = |forward| {
            crate::daemon::nat_flow::with_translation(
                explain(&facts),
                &facts,
                &key,
                Some(&forward),
                None,
            )
        };
        let own = nat(to("198.18.0.12"));
        assert_eq!(own.decision, FlowDecision::Tracked);
        assert_eq!(
            own.backend.map(|b| b.address.to_string()).as_deref(),
            Some("198.18.0.12")
        );
        // The id now belongs to 198.18.0.12; the flow goes to 198.18.0.14.
        let reused = nat(to("198.18.0.14"));
        assert_eq!(reused.decision, FlowDecision::Tracked);
        assert_eq!(reused.backend, None, "{reused:?}");
        assert_eq!(reused.nat.map(|n| n.backend_id), Some(id));
    }
}
