//! The driver's tests, one file per topic; here what they share: a
//! balancer and its flow records, tables in memory for walks, and
//! replications whose peers never answer (what is queued stays countable).

mod dumps;
mod install;
mod node_ids;
mod peer_set;
mod records;
mod schedule;
mod shutdown;
mod step_down;
mod sync_key;
mod walking;

use std::sync::atomic::AtomicBool;

use super::records::{backend_names, entry_for, install_flows, Install, Scan};
use super::ticks::due;
use super::walks::collect;
use super::*;
use crate::{
    clock::monotonic_ns,
    config::{BackendConfig, VipConfig},
    dataplane::FakeMaps,
    reconcile::DesiredVip,
    test_scratch::ScratchDir,
};

fn balancer(backends: &[&str]) -> Balancer {
    let mut v = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    v.backends = backends
        .iter()
        .map(|a| BackendConfig {
            mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 1])),
            ..BackendConfig::new(a.parse().unwrap())
        })
        .collect();
    let mut b = Balancer::new(2);
    b.apply(
        &mut FakeMaps::default(),
        &[DesiredVip::from_config(&v, &|_| None)],
    )
    .unwrap();
    b
}

fn flow_record(client_port: u16, backend: &str, age_ms: u32) -> FlowRecord {
    FlowRecord {
        vip: "198.18.0.100".parse().unwrap(),
        vip_port: 80,
        protocol: IPPROTO_TCP,
        client: "198.18.0.10".parse().unwrap(),
        client_port,
        backend: backend.parse().unwrap(),
        age_ms,
        flags: 0,
    }
}

fn backend_id(b: &Balancer, address: &str) -> u32 {
    b.vips().values().next().unwrap().backends[&address.parse::<IpAddr>().unwrap()].id
}

const S: u64 = 1_000_000_000;

/// A flow of `client_port` to the backend with `backend_id` of
/// `names`, last seen at `last_seen_ns`.
fn tracked(
    names: &HashMap<u32, (VipId, IpAddr, u32)>,
    backend: &str,
    client_port: u16,
    last_seen_ns: u64,
) -> (FlowKey, FlowEntry) {
    let backend: IpAddr = backend.parse().unwrap();
    let (&id, &(vip, _, generation)) = names.iter().find(|(_, (_, b, _))| *b == backend).unwrap();
    let (dst, family) = addr_words(vip.address);
    let (src, _) = addr_words("198.18.0.10".parse().unwrap());
    let key = FlowKey {
        src,
        dst,
        sport: client_port.to_be(),
        dport: vip.port.to_be(),
        proto: IPPROTO_TCP,
        family,
        _pad: 0,
    };
    let entry = FlowEntry {
        backend_id: id,
        backend_generation: generation,
        last_seen_ns,
        flags: 0,
        hash: 0,
    };
    (key, entry)
}

/// A replication with one peer that never answers (so what is given to
/// it stays queued, countable), and nothing listening for it.
async fn with_silent_peer(name: &str, topology: Topology) -> Replication {
    with_peer_down(name, topology).await.0
}

/// [`with_silent_peer`], and the peer's address (to listen there later).
async fn with_peer_down(name: &str, topology: Topology) -> (Replication, std::net::SocketAddr) {
    let scratch = ScratchDir::new(&format!("lbr-{name}"));
    let key_file = scratch.join("sync.key");
    std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
    // A port nothing listens on: the sender retries, its queue holds.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = free.local_addr().unwrap();
    drop(free);
    let (replication, _incoming) = Replication::start(
        topology,
        "127.0.0.1:0".parse().unwrap(),
        &[peer],
        &key_file,
        "lb-a",
    )
    .await
    .unwrap();
    std::fs::remove_file(&key_file).unwrap();
    (replication, peer)
}

/// A walk's outcome: `flows`, no NAT scan.
fn flows_only(flows: Vec<FlowRecord>) -> walks::Walked {
    Some(walks::Collected {
        flows: walks::Split::rest(flows),
        nat: None,
    })
}

/// Starts a walk off the loop as a tick does (its NAT scan left out).
fn launch(replication: &mut Replication, walk: walks::OffWalk) -> walks::Planned {
    let peers = &mut replication.peers;
    let planned = replication
        .walks
        .start(|| due(peers), monotonic_ns(), Instant::now())
        .unwrap();
    replication.walker.launch(walk);
    planned
}

/// Tables in memory for walks, counting the NAT entries read (and by
/// which thread: lbd's loop, here the test's, or another).
struct Counted {
    flows: Vec<(FlowKey, FlowEntry)>,
    nat: Vec<(FlowKey, lb_common::NatEntry)>,
    nat_by_key: HashMap<FlowKey, lb_common::NatEntry>,
    loop_thread: std::thread::ThreadId,
    nat_read_on_loop: std::sync::atomic::AtomicUsize,
    nat_read: std::sync::atomic::AtomicUsize,
}

impl Counted {
    /// `flows` NAT'd flows (two entries each), a tracked flow each.
    fn with(flows: u32) -> Self {
        let b = balancer(&["198.18.0.11"]);
        let names = backend_names(&b);
        let mut nat = Vec::new();
        let mut tracked_flows = Vec::new();
        for i in 0..flows {
            let client = format!("198.18.{}.{}", 1 + i / 60_000 % 200, 1 + i / 240 % 250);
            let port = u16::try_from(1024 + i % 60_000).unwrap();
            nat.extend(nat::tests::flow(&client, port, port, "198.19.2.11", 5));
            tracked_flows.push(tracked(&names, "198.18.0.11", port, S));
        }
        Self {
            flows: tracked_flows,
            nat_by_key: nat.iter().copied().collect(),
            nat,
            loop_thread: std::thread::current().id(),
            nat_read_on_loop: 0.into(),
            nat_read: 0.into(),
        }
    }

    fn read(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.nat_read_on_loop.load(Relaxed),
            self.nat_read.load(Relaxed),
        )
    }
}

impl walks::Tables for Counted {
    fn flows(&self) -> Box<dyn Iterator<Item = (FlowKey, FlowEntry)> + '_> {
        Box::new(self.flows.iter().copied())
    }

    fn nat_flows(&self) -> Box<dyn Iterator<Item = (FlowKey, lb_common::NatEntry)> + '_> {
        let on_loop = std::thread::current().id() == self.loop_thread;
        Box::new(self.nat.iter().copied().inspect(move |_| {
            use std::sync::atomic::Ordering::Relaxed;
            self.nat_read.fetch_add(1, Relaxed);
            if on_loop {
                self.nat_read_on_loop.fetch_add(1, Relaxed);
            }
        }))
    }

    /// A read by key on lbd's loop counts as a read there too.
    fn nat_flow(&self, key: &FlowKey) -> Option<lb_common::NatEntry> {
        if std::thread::current().id() == self.loop_thread {
            use std::sync::atomic::Ordering::Relaxed;
            self.nat_read_on_loop.fetch_add(1, Relaxed);
        }
        self.nat_by_key.get(key).copied()
    }
}
