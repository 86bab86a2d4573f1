//! NAT-flow replication end to end: two lbd nodes in a VRRP pair with a
//! NAT VIP; the master's NAT flow table (`NAT_BUCKETS`, mapped into this
//! test as lbd maps it) is filled with flows through its maps
//! (as its data plane would write them), and the backup must hold both
//! entries of each within seconds, with its own VIP and backend ids, the
//! same ages, no next hop, and in place of a stale flow of its own that
//! held the same NAT port (the master ended it and reused the port).
//! Needs root.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use lb_common::{
    consts::{
        names, AF_INET, IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED,
        NAT_F_SYN,
    },
    Backend, FlowKey, NatEntry, VipKey, VipMeta,
};
use lb_tests::{
    lab::{Host, Lab, LabSpec, HTTP_PORT, VIP4},
    lbd_maps::open_map,
    support::{status_on, wait_replication, wait_until},
};
use lb_userspace::vrrp::State;
use lb_userspace::{nat::table::NatFlowTable, reconcile::addr_words};

use aya::maps::{Array, HashMap, Map, MapData};

/// The NAT address of the pair (on the LB network, moves with the VIP).
const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// How much longer ago than the forward entry the reply entry saw a
/// packet: an age the backup must carry over, not reset.
const REPLY_AGE_NS: u64 = 3_000_000_000;
/// The port the backends listen on behind the NAT VIP.
const BACKEND_PORT: u16 = 8080;
/// How long the backup may take to learn a FIN from the replication
/// ticks (250 ms each): slack for a loaded machine, and with the half
/// second looked at after it, short of the 10 s full sync.
const FIN_WAIT: Duration = Duration::from_millis(8500);

/// Complete full syncs (flows and NAT'd flows) `node` received from its
/// peer.
fn full_dumps(lab: &Lab, node: &Host) -> u64 {
    status_on(lab, node)
        .replication
        .map_or(0, |r| r.peers.iter().map(|p| p.full_dumps_received).sum())
}

/// A VRRP-pair config for `node` with the NAT VIP and `backends` (lab
/// backend names) on port 8080; no health checks (nothing listens on
/// 8080: the flows are synthetic).
fn nat_config(lab: &Lab, node: &Host, peer: &Host, backends: &[&str], priority: u8) -> String {
    let key = lab.dir.join("sync.key");
    if !key.exists() {
        std::fs::write(&key, "lab-sync-key-0123456789abcdef\n").expect("key file");
    }
    let mut config = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT4}\"\n\n\
         [[vip]]\naddress = \"{VIP4}\"\nport = {HTTP_PORT}\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"none\"\n",
        lab.admin_socket_of(node).display()
    );
    for name in backends {
        let host = lab
            .backends
            .iter()
            .find(|b| b.name == *name)
            .expect("lab backend");
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"{}\"\n  port = {BACKEND_PORT}\n",
            host.ipv4
        ));
    }
    config.push_str(&format!(
        "\n[[vrrp]]\nvrid = 51\npriority = {priority}\nadvert_interval_ms = 100\npreempt = true\n\
         announce_count = 3\n\
         sync_listen = \"{}:7540\"\nsync_peer = \"{}:7540\"\nsync_key_file = \"{}\"\n",
        node.ipv4,
        peer.ipv4,
        key.display()
    ));
    config
}

/// A running lbd's maps this test reads and writes.
struct Maps {
    flows: NatFlowTable,
    vips: HashMap<MapData, VipKey, VipMeta>,
    backends: Array<MapData, Backend>,
}

impl Maps {
    fn of(pid: u32) -> Self {
        let open = |name| open_map(pid, name).expect(name);
        let table = open(names::MAP_NAT_BUCKETS);
        let buckets = table.info().expect("NAT_BUCKETS info").max_entries();
        Self {
            flows: NatFlowTable::new(table, buckets).expect("NAT_BUCKETS mapped"),
            vips: HashMap::try_from(Map::HashMap(open(names::MAP_VIPS))).expect("VIPS"),
            backends: Array::try_from(Map::Array(open(names::MAP_BACKENDS))).expect("BACKENDS"),
        }
    }

    /// This node's id of the lab's VIP.
    fn vip_id(&self) -> u32 {
        let (addr, family) = addr_words(IpAddr::V4(VIP4));
        let key = VipKey {
            addr,
            port: HTTP_PORT.to_be(),
            proto: IPPROTO_TCP,
            family,
        };
        self.vips.get(&key, 0).expect("the VIP in VIPS").id
    }

    /// The address of this node's backend `id`.
    fn backend_addr(&self, id: u32) -> IpAddr {
        let b = self.backends.get(&id, 0).expect("backend id");
        lb_userspace::reconcile::words_addr(b.addr, b.family)
    }

    /// This node's id of the backend at `addr` (of the lab's VIP).
    fn backend_id(&self, addr: Ipv4Addr) -> u32 {
        let vip = self.vip_id();
        (0..lb_common::consts::MAX_BACKENDS)
            .find(|&id| {
                self.backends.get(&id, 0).is_ok_and(|b| {
                    u32::from(b.vip_id) == vip && b.addr[0] == u32::from_ne_bytes(addr.octets())
                })
            })
            .expect("backend in BACKENDS")
    }

    fn insert(&mut self, pair: &[(FlowKey, NatEntry); 2]) {
        for (k, e) in pair {
            self.flows.install(k, e).expect("writing NAT_BUCKETS");
        }
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.flows.get(key)
    }

    /// The flow table read in batches of buckets (as the reaper walks
    /// it) and whole in place (as replication reads it), each with how
    /// long it took.
    fn read_both_ways(&self) -> [(std::collections::HashMap<FlowKey, NatEntry>, Duration); 2] {
        let start = Instant::now();
        let mut batched = Vec::new();
        let mut cursor = None;
        loop {
            cursor = self.flows.batch(cursor, 1024, &mut batched);
            if cursor.is_none() {
                break;
            }
        }
        let batched_took = start.elapsed();
        let start = Instant::now();
        let walked = self.flows.iter().collect::<Vec<_>>();
        let walked_took = start.elapsed();
        let n = batched.len();
        let batched: std::collections::HashMap<_, _> = batched.into_iter().collect();
        assert_eq!(batched.len(), n, "a key read twice");
        [
            (batched, batched_took),
            (walked.into_iter().collect(), walked_took),
        ]
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).expect("time") * 1_000_000_000
        + u64::try_from(ts.tv_nsec).expect("time")
}

fn key(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src: [u32::from_ne_bytes(src.octets()), 0, 0, 0],
        dst: [u32::from_ne_bytes(dst.octets()), 0, 0, 0],
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        _pad: 0,
    }
}

/// Both entries of client:cport -> VIP:80, NAT'd from NAT4:nport to
/// backend:8080, as a data plane writes them (with a next hop cached).
fn flow(
    client: Ipv4Addr,
    cport: u16,
    nport: u16,
    backend: Ipv4Addr,
    ids: (u32, u16),
    last_seen_ns: u64,
) -> [(FlowKey, NatEntry); 2] {
    let fk = key(client, VIP4, cport, HTTP_PORT);
    let rk = key(backend, NAT4, BACKEND_PORT, nport);
    let fe = NatEntry {
        src: rk.dst,
        dst: rk.src,
        sport: rk.dport,
        dport: rk.sport,
        backend_id: ids.0,
        last_seen_ns,
        ifindex: 2,
        dmac: [2, 0, 0, 0, 0, 9],
        smac: [2, 0, 0, 0, 0, 1],
        flags: NAT_F_SYN,
        direction: NAT_DIR_FORWARD,
        vip_id: ids.1,
        mtu: 0,
    };
    let re = NatEntry {
        src: fk.dst,
        dst: fk.src,
        sport: fk.dport,
        dport: fk.sport,
        last_seen_ns: last_seen_ns.saturating_sub(REPLY_AGE_NS),
        flags: NAT_F_SYN | NAT_F_REPLIED,
        direction: NAT_DIR_REPLY,
        ..fe
    };
    [(fk, fe), (rk, re)]
}

#[test]
fn nat_flows_reach_the_backup_translated_to_its_ids_and_clock() {
    let mut lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends: 3,
        static_vip: false,
    })
    .expect("lab");
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let (b2, b3) = (lab.backends[1].ipv4, lab.backends[2].ipv4);
    // Other backend sets, so ids differ between the nodes; b3 is unknown
    // to the backup.
    let config_a = nat_config(&lab, &a, &b, &["b2", "b3"], 150);
    let config_b = nat_config(&lab, &b, &a, &["b1", "b2"], 100);
    let pid_a = lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    let pid_b = lab
        .start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
    wait_until("lb to be master", Duration::from_secs(10), || {
        status_on(&lab, &a).vrrp[0].state == State::Master
    });
    wait_until("lb2 to be backup", Duration::from_secs(10), || {
        status_on(&lab, &b).vrrp[0].state == State::Backup
    });
    wait_replication(&lab, &a);

    let mut master = Maps::of(pid_a);
    let mut backup = Maps::of(pid_b);
    let ids_a = (
        master.backend_id(b2),
        u16::try_from(master.vip_id()).expect("vip id"),
    );
    let ids_b = (
        backup.backend_id(b2),
        u16::try_from(backup.vip_id()).expect("vip id"),
    );
    println!(
        "backend b2: id {} on the master, {} on the backup",
        ids_a.0, ids_b.0
    );
    assert_ne!(ids_a.0, ids_b.0, "the configs should give b2 other ids");

    // The backup's stale flow (the master ended it and reused its NAT
    // port for flow 0; the backup's reaper has not freed it yet) holds the
    // reply key the master's flow 0 uses: same NAT port, same backend.
    let now = monotonic_ns();
    let client = |i: u8| Ipv4Addr::new(198, 18, 5, i);
    let own = flow(Ipv4Addr::new(198, 18, 6, 1), 5555, 20_000, b2, ids_b, now);
    backup.insert(&own);

    // 20 flows to b2 (the first on the stale flow's port), 5 to b3
    // (unknown there);
    // the forward entries just touched, so they go out with the next tick.
    let seen = monotonic_ns();
    let to_b2: Vec<_> = (0..20)
        .map(|i| {
            flow(
                client(i + 1),
                40_000 + u16::from(i),
                20_000 + u16::from(i),
                b2,
                ids_a,
                seen,
            )
        })
        .collect();
    let to_b3: Vec<_> = (0..5)
        .map(|i| {
            flow(
                client(i + 100),
                41_000 + u16::from(i),
                30_000 + u16::from(i),
                b3,
                (master.backend_id(b3), ids_a.1),
                seen,
            )
        })
        .collect();
    let start = Instant::now();
    for pair in to_b2.iter().chain(&to_b3) {
        master.insert(pair);
    }
    // The walk in batches of buckets (the reaper's) sees what the whole
    // read (replication's) sees.
    let [(batched, _), (walked, _)] = master.read_both_ways();
    assert_eq!(batched.len(), 50);
    assert_eq!(batched, walked);

    // Every flow to b2 arrives, both entries.
    wait_until("the flows on the backup", Duration::from_secs(5), || {
        to_b2
            .iter()
            .all(|[(fk, _), (rk, _)]| backup.get(fk).is_some() && backup.get(rk).is_some())
    });
    println!("replicated within {} ms", start.elapsed().as_millis());
    for pair in &to_b2 {
        for (k, sent) in pair {
            let got = backup.get(k).expect("entry");
            assert_eq!(
                (
                    got.src,
                    got.dst,
                    got.sport,
                    got.dport,
                    got.flags,
                    got.direction
                ),
                (
                    sent.src,
                    sent.dst,
                    sent.sport,
                    sent.dport,
                    sent.flags,
                    sent.direction
                ),
                "translation"
            );
            assert_eq!(backup.backend_addr(got.backend_id), IpAddr::V4(b2));
            assert_eq!((got.backend_id, got.vip_id), ids_b, "the backup's own ids");
            assert_eq!(
                (got.ifindex, got.dmac, got.smac),
                (0, [0; 6], [0; 6]),
                "no next hop"
            );
            // One clock on this machine: the copy is as old as the
            // original, give or take the time the record took to travel
            // (ages go in whole ms, so never older).
            assert!(
                got.last_seen_ns + 1_000_000 >= sent.last_seen_ns
                    && got.last_seen_ns - sent.last_seen_ns < REPLY_AGE_NS / 3,
                "last_seen {} on the backup, {} on the master",
                got.last_seen_ns,
                sent.last_seen_ns
            );
        }
    }
    // The master's flow took the stale flow's place: its reply key now
    // sends replies to flow 0's client (checked above), and the stale
    // flow's forward entry went with it.
    assert!(
        backup.get(&own[0].0).is_none(),
        "the stale flow's forward entry removed"
    );
    assert_ne!(backup.get(&own[1].0), Some(own[1].1));
    // Flows to a backend the backup lacks are left out.
    for [(fk, _), (rk, _)] in &to_b3 {
        assert!(backup.get(fk).is_none() && backup.get(rk).is_none());
    }
    // The client's FIN, marked by the data plane, which stamps the entry
    // as it changes its marks (not only once a second,
    // `nat_dataplane::translation::a_change_of_marks_stamps_the_entry_at_once`):
    // the backup learns it from the ticks (250 ms each), not at the next
    // full sync (10 s). (Its last touch before lies a few ticks back, so
    // only the stamp sends it.) The mark goes in just
    // after a full sync reached the backup, so the next one is ten
    // seconds away: the wait may be long (slack for a loaded 2-core
    // machine) and still end before it, and the full syncs counted on
    // the backup show that none came in between.
    std::thread::sleep(Duration::from_secs(1));
    let synced = full_dumps(&lab, &b);
    wait_until(
        "a full sync to reach the backup",
        Duration::from_secs(15),
        || full_dumps(&lab, &b) > synced,
    );
    let dumps = full_dumps(&lab, &b);
    let (fin_key, mut fin) = to_b2[1][0];
    fin.flags |= NAT_F_FIN;
    fin.last_seen_ns = monotonic_ns();
    master
        .flows
        .install(&fin_key, &fin)
        .expect("writing NAT_BUCKETS");
    let marked = Instant::now();
    wait_until("the FIN on the backup", FIN_WAIT, || {
        backup
            .get(&fin_key)
            .is_some_and(|e| e.flags & NAT_F_FIN != 0)
    });
    let fin_took = marked.elapsed();
    // A full sync sends the NAT'd flows first and counts once its flows
    // follow: look again a moment later.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        full_dumps(&lab, &b),
        dumps,
        "a full sync reached the backup while it waited {fin_took:?} for the FIN: the ticks did not tell it apart"
    );
    println!("FIN replicated within {} ms", fin_took.as_millis());

    wait_until("the skips counted", Duration::from_secs(5), || {
        status_on(&lab, &b)
            .replication
            .is_some_and(|r| r.nat_installed >= 20 && r.nat_unknown >= 5)
    });
    let r = status_on(&lab, &b).replication.expect("replication");
    println!(
        "backup: {} NAT flows installed, {} unknown, {} conflicting",
        r.nat_installed, r.nat_unknown, r.nat_conflicts
    );
    assert_eq!(r.nat_conflicts, 0, "the stale flow is no conflict");
}

/// CPU time (user + system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command (which may hold spaces) start after ")".
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf reads a constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("clock ticks");
    Duration::from_millis(ticks * 1000 / hz)
}

/// How many NAT flows the replication-load tests fill the master with.
const MANY_FLOWS: u32 = 60_000;

/// A VRRP pair with the NAT VIP, lbd running on both (the first node
/// master, the second its backup, replication connected); the master's
/// maps; the lbd pids (master, backup).
struct LoadedPair {
    lab: Lab,
    a: Host,
    b: Host,
    pids: (u32, u32),
    master: Maps,
}

impl LoadedPair {
    fn start() -> Self {
        let mut lab = Lab::start_spec(LabSpec {
            lbs: 2,
            backends: 2,
            static_vip: false,
        })
        .expect("lab");
        let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
        let pid_a = lab
            .start_lbd_on(&a, "lbd-a", &nat_config(&lab, &a, &b, &["b2"], 150))
            .expect("lbd on lb");
        let pid_b = lab
            .start_lbd_on(&b, "lbd-b", &nat_config(&lab, &b, &a, &["b1", "b2"], 100))
            .expect("lbd on lb2");
        wait_until("replication to connect", Duration::from_secs(10), || {
            status_on(&lab, &a).replication.is_some_and(|r| r.connected)
                && status_on(&lab, &b).vrrp[0].state == State::Backup
        });
        Self {
            master: Maps::of(pid_a),
            lab,
            a,
            b,
            pids: (pid_a, pid_b),
        }
    }

    /// How many times the backup has become master so far.
    fn takeovers(&self) -> u64 {
        status_on(&self.lab, &self.b).vrrp[0].counters.became_master
    }

    /// Writes `MANY_FLOWS` NAT flows (both entries each) to b2 into the
    /// master's table; returns how long that took.
    fn fill(&mut self) -> Duration {
        let b2 = self.lab.backends[1].ipv4;
        let ids = (
            self.master.backend_id(b2),
            u16::try_from(self.master.vip_id()).expect("vip id"),
        );
        let filled = Instant::now();
        for i in 0..MANY_FLOWS {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 8, 0)) + i / 30_000);
            let cport = u16::try_from(10_000 + i % 30_000).expect("port");
            let nport = u16::try_from(1024 + i).expect("port");
            self.master
                .insert(&flow(client, cport, nport, b2, ids, monotonic_ns()));
        }
        filled.elapsed()
    }

    /// Waits until the backup holds every flow.
    fn wait_all_on_backup(&self) {
        wait_until("every flow on the backup", Duration::from_secs(60), || {
            status_on(&self.lab, &self.b)
                .replication
                .is_some_and(|r| r.nat_installed >= u64::from(MANY_FLOWS))
        });
    }

    /// Asserts the backup never took over since `before` takeovers, and
    /// is backup still, the master master.
    fn assert_no_takeover(&self, before: u64) {
        let takeovers = self.takeovers() - before;
        assert_eq!(
            takeovers, 0,
            "the backup took over {takeovers} times while {MANY_FLOWS} NAT flows replicated: \
             the master's adverts were late under replication load"
        );
        assert_eq!(status_on(&self.lab, &self.b).vrrp[0].state, State::Backup);
        assert_eq!(status_on(&self.lab, &self.a).vrrp[0].state, State::Master);
    }
}

/// Replicating many NAT flows must not cost the master its adverts: with
/// 60,000 flows (120,000 entries) in its table, through the backup
/// learning them all and the next full sync of them all, the backup never
/// takes over (a takeover under replication load would move the VIP
/// from a healthy master).
#[test]
fn the_backup_never_takes_over_while_sixty_thousand_flows_replicate() {
    let mut pair = LoadedPair::start();
    let before = pair.takeovers();
    pair.fill();
    pair.wait_all_on_backup();
    // The master sends its whole table every 10 s: wait through one
    // such full sync of all the flows after the backup holds them.
    let dumps = full_dumps(&pair.lab, &pair.b);
    wait_until("a full sync of every flow", Duration::from_secs(30), || {
        full_dumps(&pair.lab, &pair.b) > dumps
    });
    pair.assert_no_takeover(before);
}

/// What replicating many NAT flows costs the daemons: 60,000 flows
/// (120,000 entries) in the master's table, how long until the backup
/// holds them all, and the CPU both lbd processes use while the master
/// re-scans its table every tick. Ignored: the CPU and times are only
/// printed, a measurement and no pass/fail check (timings belong to the
/// bench, whose `sync-mesh` section measures replication's cost per flow;
/// this prints the whole daemons' share in the lab when that is in
/// question). It still fails if the backup ever takes over; the
/// non-ignored `the_backup_never_takes_over_while_sixty_thousand_flows_replicate`
/// checks that on every run.
#[test]
#[ignore = "a measurement: lbd CPU with 60,000 replicated NAT flows"]
fn replication_cost_with_sixty_thousand_flows() {
    let mut pair = LoadedPair::start();
    let (pid_a, pid_b) = pair.pids;
    let (cpu_a, cpu_b) = (cpu_time(pid_a), cpu_time(pid_b));
    let idle = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let idle_a = (cpu_time(pid_a) - cpu_a).as_secs_f64() / idle.elapsed().as_secs_f64();
    let idle_b = (cpu_time(pid_b) - cpu_b).as_secs_f64() / idle.elapsed().as_secs_f64();

    let takeovers_before = pair.takeovers();
    let fill = pair.fill();
    let [(batched, batched_took), (walked, walked_took)] = pair.master.read_both_ways();
    assert_eq!(batched.len(), 2 * MANY_FLOWS as usize);
    assert_eq!(batched, walked);
    let start = Instant::now();
    pair.wait_all_on_backup();
    let arrived = start.elapsed();
    // Steady state: the flows idle, the master still scans every tick and
    // sends everything every 10 s.
    let (cpu_a, cpu_b) = (cpu_time(pid_a), cpu_time(pid_b));
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let busy_a = (cpu_time(pid_a) - cpu_a).as_secs_f64() / window.elapsed().as_secs_f64();
    let busy_b = (cpu_time(pid_b) - cpu_b).as_secs_f64() / window.elapsed().as_secs_f64();
    println!(
        "MEASURED: {MANY_FLOWS} NAT flows written in {} ms, read back in batches of buckets in {} ms, whole in {} ms; all on the backup {} ms later; \
         lbd CPU idle: master {:.1} %, backup {:.1} %; with the flows (20 s): master {:.1} %, backup {:.1} %",
        fill.as_millis(),
        batched_took.as_millis(),
        walked_took.as_millis(),
        arrived.as_millis(),
        idle_a * 100.0,
        idle_b * 100.0,
        busy_a * 100.0,
        busy_b * 100.0
    );
    pair.assert_no_takeover(takeovers_before);
}
