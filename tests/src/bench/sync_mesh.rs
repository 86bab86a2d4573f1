//! Full-mesh replication's cost per flow and per peer: one node's full
//! dump of a prefilled connection table to 1, 2 and 3 peers over
//! loopback, through lbd's own code on both ends (`Replication::tick` on
//! the sender: table scan, records, one queue per peer; the channel's
//! tasks: encode, seal, write, read, open, decode; `Replication::install`
//! on each peer: translation to its own ids and the freshness check, into
//! a real connection-table map). All nodes run in this process; the
//! sender's scan runs on this thread, so its CPU time is told apart from
//! the rest (the channel and the peers' installs). Also the bytes per
//! flow on the wire and the heap a dump holds per peer.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::mpsc as std_mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};
use lb_common::{
    consts::{AF_INET, IPPROTO_TCP},
    flow_table::{bucket_index, FLOW_WAYS},
    hash::table_hash,
    FlowEntry, FlowKey,
};
use lb_userspace::{
    config::{BackendConfig, Protocol, SyncSettings, VipConfig},
    daemon::replication::Replication,
    dataplane::{Dataplane, MapSizes},
    mac::Mac,
    reconcile::{addr_words, Balancer, DesiredVip},
    sync::{
        wire::{self, Role, Transcript},
        FlowRecord,
    },
};
use serde::{Deserialize, Serialize};

use super::{maglev, Spread};

/// What the runs measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncMeshResults {
    /// Flows in the sender's connection table (each dump sends them all).
    pub flows: u32,
    /// Bytes per IPv4 flow on the wire, in full frames of 4,096 records
    /// (frame header and tag shared by the frame's records).
    pub wire_bytes_per_flow_v4: f64,
    /// The same for IPv6 flows.
    pub wire_bytes_per_flow_v6: f64,
    /// One row per peer count.
    pub cases: Vec<SyncMeshCase>,
}

/// One dump to `peers` peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncMeshCase {
    /// Peers the sender streams to.
    pub peers: u32,
    /// Records installed per second, summed over the peers (tick to the
    /// last peer's last install).
    pub records_per_s: Spread,
    /// Sender's tick (scan, records, queueing for every peer), CPU ns per
    /// flow in the table.
    pub tick_ns_per_flow: Spread,
    /// Everything else (encode, seal, send, receive, open, decode,
    /// install), CPU ns per record delivered to one peer.
    pub channel_ns_per_record: Spread,
    /// Heap held at the peak of the dump beyond what was live before, per
    /// peer and per flow (queued copies, frames, decode buffers).
    pub heap_bytes_per_flow_per_peer: Spread,
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const KEY: &str = "bench-mesh-key-0123456789abcdef\n";

/// Runs `rounds` dumps of `flows` flows to 1, 2 and 3 peers. Needs root
/// (BPF maps).
pub fn run(flows: u32, rounds: u32) -> anyhow::Result<SyncMeshResults> {
    let dir = std::env::temp_dir().join(format!("lb-bench-mesh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_file = dir.join("sync.key");
    std::fs::write(&key_file, KEY)?;
    let result = measure(flows, rounds, &key_file);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(flows: u32, rounds: u32, key_file: &Path) -> anyhow::Result<SyncMeshResults> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sizes = MapSizes {
        max_vips: 2,
        conntrack: flows.saturating_mul(2).max(1024),
        nat_flows: 1024,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    };
    let mut sender = Dataplane::load(sizes).context("loading the sender's data plane")?;
    let balancer = balancer_on(&mut sender)?;
    prefill(&mut sender, &balancer, flows)?;
    let mut cases = Vec::new();
    for peers in 1..=3u32 {
        let mut rate = Vec::new();
        let mut tick = Vec::new();
        let mut channel = Vec::new();
        let mut heap = Vec::new();
        for _ in 0..rounds {
            let r = dump_once(&runtime, &sender, &balancer, sizes, peers, flows, key_file)?;
            let delivered = f64::from(flows) * f64::from(peers);
            rate.push(delivered / r.wall.as_secs_f64());
            tick.push(r.tick_cpu.as_nanos() as f64 / f64::from(flows));
            channel.push(r.rest_cpu.as_nanos() as f64 / delivered);
            heap.push(r.heap as f64 / delivered);
        }
        eprintln!(
            "bench: sync-mesh {peers} peer(s): {:.0} records/s, tick {:.0} ns/flow, channel+install {:.0} ns/record",
            Spread::of(&rate).median,
            Spread::of(&tick).median,
            Spread::of(&channel).median
        );
        cases.push(SyncMeshCase {
            peers,
            records_per_s: Spread::of(&rate),
            tick_ns_per_flow: Spread::of(&tick),
            channel_ns_per_record: Spread::of(&channel),
            heap_bytes_per_flow_per_peer: Spread::of(&heap),
        });
    }
    Ok(SyncMeshResults {
        flows,
        wire_bytes_per_flow_v4: wire_bytes_per_flow(false)?,
        wire_bytes_per_flow_v6: wire_bytes_per_flow(true)?,
        cases,
    })
}

/// One dump's numbers.
struct Dump {
    wall: Duration,
    tick_cpu: Duration,
    rest_cpu: Duration,
    heap: usize,
}

/// Starts `peers` receiving nodes (each on its own thread with its own
/// data plane) and a sending node, waits for every session, then times
/// one full dump until every peer installed every flow.
fn dump_once(
    runtime: &tokio::runtime::Runtime,
    sender_plane: &Dataplane,
    balancer: &Balancer,
    sizes: MapSizes,
    peers: u32,
    flows: u32,
    key_file: &Path,
) -> anyhow::Result<Dump> {
    let (done_tx, done_rx) = std_mpsc::channel::<anyhow::Result<()>>();
    let (ready_tx, ready_rx) = std_mpsc::channel::<anyhow::Result<SocketAddr>>();
    let sender_listen = free_port()?;
    let mut receivers = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    for i in 0..peers {
        let handle = runtime.handle().clone();
        let (done, ready, key_file) = (done_tx.clone(), ready_tx.clone(), key_file.to_owned());
        let mut stop = stop_rx.clone();
        receivers.push(thread::spawn(move || {
            let started = (|| -> anyhow::Result<_> {
                let mut plane = Dataplane::load(sizes).context("loading a peer's data plane")?;
                let balancer = balancer_on(&mut plane)?;
                let listen = free_port()?;
                let settings = SyncSettings {
                    listen,
                    peers: vec![sender_listen],
                    key_file,
                };
                let (replication, rx) =
                    handle.block_on(Replication::start_mesh(&settings, &format!("peer-{i}")))?;
                Ok((plane, balancer, listen, replication, rx))
            })();
            let (mut plane, balancer, listen, mut replication, mut rx) = match started {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            let _ = ready.send(Ok(listen));
            let mut reported = false;
            loop {
                let batch = handle.block_on(async {
                    tokio::select! {
                        b = rx.recv() => b,
                        _ = stop.changed() => None,
                    }
                });
                let Some(batch) = batch else { return };
                replication.received(&batch);
                replication.install(&batch, &mut plane, &balancer);
                let status = replication.status();
                if !reported && status.installed + status.stale >= u64::from(flows) {
                    reported = true;
                    let _ = done.send(if status.installed == u64::from(flows) {
                        Ok(())
                    } else {
                        Err(anyhow!(
                            "peer {i} installed {} of {flows}",
                            status.installed
                        ))
                    });
                }
            }
        }));
    }
    let mut listens = Vec::new();
    for _ in 0..peers {
        listens.push(ready_rx.recv_timeout(Duration::from_secs(30))??);
    }
    let settings = SyncSettings {
        listen: sender_listen,
        peers: listens,
        key_file: key_file.to_owned(),
    };
    let (mut replication, _rx) = runtime.block_on(Replication::start_mesh(&settings, "sender"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replication.status().peers.iter().all(|p| p.connected) {
        if Instant::now() > deadline {
            bail!("the sender did not reach its peers");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let heap_before = maglev::heap_reset_peak();
    let (wall0, process0, thread0) = (
        Instant::now(),
        cpu(libc::CLOCK_PROCESS_CPUTIME_ID),
        cpu(libc::CLOCK_THREAD_CPUTIME_ID),
    );
    replication.tick(sender_plane, balancer);
    let thread1 = cpu(libc::CLOCK_THREAD_CPUTIME_ID);
    for _ in 0..peers {
        done_rx.recv_timeout(Duration::from_secs(120))??;
    }
    let wall = wall0.elapsed();
    let process1 = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
    let heap = maglev::heap_peak().saturating_sub(heap_before);
    let _ = stop_tx.send(true);
    drop(replication);
    for r in receivers {
        r.join().map_err(|_| anyhow!("a peer thread panicked"))?;
    }
    let tick_cpu = thread1.saturating_sub(thread0);
    Ok(Dump {
        wall,
        tick_cpu,
        rest_cpu: process1.saturating_sub(process0).saturating_sub(tick_cpu),
        heap,
    })
}

/// A loopback port free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?)
}

/// The time of `clock` (this process's or this thread's CPU time, or
/// CLOCK_MONOTONIC).
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The VIP with three backends (MACs given: alive at once) on `plane`.
fn balancer_on(plane: &mut Dataplane) -> anyhow::Result<Balancer> {
    let mut vip = VipConfig::new(IpAddr::V4(VIP), 80, Protocol::Tcp);
    vip.backends = (1..=3u8)
        .map(|i| BackendConfig {
            mac: Some(Mac([2, 0, 0, 0, 0, i])),
            ..BackendConfig::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)))
        })
        .collect();
    let mut balancer = Balancer::new(2);
    balancer
        .apply(plane, &[DesiredVip::from_config(&vip, &|_| None)])
        .context("serving the bench VIP")?;
    Ok(balancer)
}

/// Puts `flows` IPv4 flows of distinct clients into the sender's table,
/// spread over the backends, last seen 5 s ago. The table is lbd's bucket
/// table, which keeps `conntrack_size` flows in twice as many slots with
/// two candidate buckets per flow; as a margin, keys whose first bucket
/// (counted on a table of `flow_capacity` flows, so groups of buckets)
/// already got eight are skipped, so the table holds exactly `flows`.
fn prefill(plane: &mut Dataplane, balancer: &Balancer, flows: u32) -> anyhow::Result<()> {
    let backends: Vec<(u32, u32)> = balancer
        .vips()
        .values()
        .flat_map(|v| v.backends.values().map(|b| (b.id, b.generation)))
        .collect();
    let now = cpu(libc::CLOCK_MONOTONIC).as_nanos() as u64; // the data plane's clock
    let (dst, _) = addr_words(IpAddr::V4(VIP));
    // A power of two (`flow_capacity` is `conntrack_size`, which need not
    // be one): groups of the table's buckets.
    let mask = (plane.flow_capacity() / FLOW_WAYS as u64)
        .max(1)
        .next_power_of_two() as u32
        - 1;
    let mut per_bucket: HashMap<u32, usize> = HashMap::new();
    let mut installed = 0;
    // Distinct keys for i below 2^22 (client octets and source port).
    for i in 0..1u32 << 22 {
        if installed == flows {
            break;
        }
        let client = Ipv4Addr::from(0xc612_0000 | ((i >> 14) << 8) | (i & 0xff));
        let (src, _) = addr_words(IpAddr::V4(client));
        let key = FlowKey {
            src,
            dst,
            sport: (1024 + ((i >> 8) & 0x3f) as u16).to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            family: AF_INET,
            _pad: 0,
        };
        let (id, generation) = backends[i as usize % backends.len()];
        let entry = FlowEntry {
            backend_id: id,
            backend_generation: generation,
            last_seen_ns: now.saturating_sub(5_000_000_000),
            flags: 0,
            hash: 0,
        };
        let ways = per_bucket
            .entry(bucket_index(table_hash(&key), mask))
            .or_insert(0);
        if *ways == FLOW_WAYS {
            continue;
        }
        *ways += 1;
        plane.install_flow(&key, &entry)?;
        installed += 1;
    }
    let tracked = plane.flows().count();
    if tracked != flows as usize {
        bail!("the sender's table holds {tracked} flows, not {flows}");
    }
    Ok(())
}

/// Bytes per flow in a full Batch frame of 4,096 records.
fn wire_bytes_per_flow(v6: bool) -> anyhow::Result<f64> {
    let (m, b) = ([1u8; wire::NONCE_LEN], [2u8; wire::NONCE_LEN]);
    let transcript = Transcript {
        master_nonce: &m,
        backup_nonce: &b,
        master_id: "a",
        backup_id: "b",
    };
    let (mut sealer, _) = wire::session(KEY.trim().as_bytes(), Role::Master, &transcript)
        .map_err(|e| anyhow!("sync session keys: {e}"))?;
    let records: Vec<FlowRecord> = (0..4096u32)
        .map(|i| {
            let (vip, client, backend) = if v6 {
                (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100)),
                    IpAddr::V6(Ipv6Addr::from(0x2001_0002_0001u128 << 80 | u128::from(i))),
                    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 11)),
                )
            } else {
                (
                    IpAddr::V4(VIP),
                    IpAddr::V4(Ipv4Addr::from(0xc612_0000 | i)),
                    IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
                )
            };
            FlowRecord {
                vip,
                vip_port: 80,
                protocol: IPPROTO_TCP,
                client,
                client_port: 40_000,
                backend,
                age_ms: 1_000,
                flags: 0,
            }
        })
        .collect();
    let frame = sealer.batch(true, true, &records)?;
    Ok(frame.len() as f64 / records.len() as f64)
}
