//! Flow records and the connection table: which entries a tick sends,
//! an entry as a record with names a peer understands (VIP, backend
//! address, generation), and a received record installed with this
//! node's own ids.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// What a tick's scan sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// Between full dumps: entries touched since `since`.
    Recent {
        /// The previous scan's time less the touch interval.
        since: u64,
    },
    /// The periodic full dump.
    Periodic,
    /// A full dump for a new session (a peer joined, restarted or came
    /// back).
    Session,
}

impl Scan {
    /// The batch this scan makes, for the sender's queue: a periodic dump
    /// never takes the place of a session's (see [`sync::Dump`]).
    pub(super) fn dump(self) -> sync::Dump {
        match self {
            Scan::Recent { .. } => sync::Dump::Incremental,
            Scan::Periodic => sync::Dump::Periodic,
            Scan::Session => sync::Dump::Session,
        }
    }
}

/// Whether a tick's `scan` sends an entry last seen at `last_seen_ns`.
/// A VRRP master sends every entry of a dump and every recent one. A
/// full-mesh node streams the flows it forwards, not the copies it holds
/// from peers and has not forwarded since (see
/// [`flow_table::mark_replica`]; each node streams its own, so peers
/// already have them), except in a dump for a new session: a node that
/// joins or comes back learns every flow its peer knows, also those of a
/// node that is gone.
pub(super) fn sends(topology: Topology, scan: Scan, last_seen_ns: u64) -> bool {
    let copy = topology == Topology::FullMesh && is_replica(last_seen_ns);
    match scan {
        Scan::Session => true,
        Scan::Periodic => !copy,
        Scan::Recent { since } => last_seen_ns >= since && !copy,
    }
}

/// What became of the flow records a node received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FlowCounts {
    /// Installed.
    pub(super) installed: u64,
    /// Not placeable here (see [`Unplaced`]).
    pub(super) unknown: u64,
    /// Left out: this node's entry was fresher and named another backend
    /// (full mesh).
    pub(super) kept_local: u64,
    /// Left out: this node's entry for the same backend was fresher, or
    /// at most `ECHO_MARGIN_NS` older (full mesh).
    pub(super) stale: u64,
    /// Left out: writing the entry failed (a map error); the rest of the
    /// batch still goes in.
    pub(super) failed: u64,
}

/// How a received record is installed, as this node's role for its VIP
/// says (see [`Replication::install`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Install {
    /// A pair's backup for the VIP: the master's copy replaces its entry.
    Replace,
    /// A pair's master for the VIP (batches its peer queued before this
    /// node took over, or while both were master): only where this node
    /// holds nothing fresher.
    UnlessFresher,
    /// A full mesh: marked as a copy (see [`flow_table`]), and only where
    /// this node holds nothing fresher.
    Replica,
}

/// Installs flow records into `table` with this node's ids, each as
/// `rule` says for its VIP; counts what became of each. A record whose
/// install fails is counted and left out, the others still go in; the
/// failures are logged at most as often as `warnings` lets through (a
/// failing table fails every record of every batch).
pub(super) fn install_flows(
    rule: impl Fn(IpAddr) -> Install,
    records: &[FlowRecord],
    table: &mut impl flow_table::FlowTable,
    balancer: &Balancer,
    now: u64,
    counts: &mut FlowCounts,
    warnings: &mut LogLimit,
) {
    for record in records {
        let (key, mut entry) = match placed(record, balancer, now) {
            Ok(placed) => placed,
            Err(why) => {
                counts.unknown += 1;
                log_unplaced(record, why);
                continue;
            }
        };
        let result = match rule(record.vip) {
            Install::Replace => table.put(&key, &entry).map(|()| Outcome::Installed),
            Install::UnlessFresher => install_unless_fresher(table, &key, &entry),
            Install::Replica => {
                entry.last_seen_ns = mark_replica(entry.last_seen_ns);
                install_copy(table, &key, &entry)
            }
        };
        match result {
            Ok(Outcome::Installed) => counts.installed += 1,
            Ok(Outcome::Stale) => counts.stale += 1,
            Ok(Outcome::KeptLocal) => {
                counts.kept_local += 1;
                debug!(
                    client = %record.client,
                    client_port = record.client_port,
                    backend = %record.backend,
                    "replicated flow left out: this node forwards it, more recently, to another backend"
                );
            }
            Err(error) => {
                counts.failed += 1;
                if let Some(suppressed) = warnings.allow(Instant::now()) {
                    warn!(%error, client = %record.client, client_port = record.client_port, suppressed, "installing a replicated flow failed; it is left out (lbd_replication_flows_left_out_total{{reason=\"error\"}}), the rest of the batch goes on");
                }
            }
        }
    }
}

/// Backend id -> (VIP, backend address, generation) as this node has them.
pub(super) fn backend_names(balancer: &Balancer) -> HashMap<u32, (VipId, IpAddr, u32)> {
    balancer
        .vips()
        .iter()
        .flat_map(|(vip, applied)| {
            applied
                .backends
                .iter()
                .map(move |(address, b)| (b.id, (*vip, *address, b.generation)))
        })
        .collect()
}

/// The record for one tracked flow, if its backend is current and it is
/// a connection, not a handshake (`FLOW_F_HALF_OPEN`: half-open flows
/// stay on the node that saw the SYN, as in the half-open table; the ACK
/// makes the flow established and recent, and the next scan sends it).
pub(super) fn record(
    key: &FlowKey,
    entry: &FlowEntry,
    names: &HashMap<u32, (VipId, IpAddr, u32)>,
    now: u64,
) -> Option<FlowRecord> {
    if entry.flags & FLOW_F_HALF_OPEN != 0 {
        return None;
    }
    let (vip, backend, generation) = names.get(&entry.backend_id)?;
    if *generation != entry.backend_generation {
        return None;
    }
    let age = Duration::from_nanos(now.saturating_sub(entry.last_seen_ns));
    Some(FlowRecord {
        vip: vip.address,
        vip_port: u16::from_be(key.dport),
        protocol: key.proto,
        client: words_addr(key.src, key.family),
        client_port: u16::from_be(key.sport),
        backend: *backend,
        age_ms: u32::try_from(age.as_millis()).unwrap_or(u32::MAX),
        // Only the state marks mean the same on a peer (the ACL mark is
        // this node's).
        flags: u8::try_from(entry.flags & FLOW_F_STATE).unwrap_or(0),
    })
}

/// Why a peer's flow record has no place on this node (counted as
/// `unknown`: `lbd_replication_flows_left_out_total{reason="unknown"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unplaced {
    /// Neither TCP nor UDP.
    Protocol,
    /// This node has no such VIP (address, port and protocol).
    Vip,
    /// This node's VIP has no backend at that address.
    Backend,
    /// This node does not send the backend packets (its health check
    /// failed here, or its MAC is not resolved yet): a flow pinned to it
    /// would be re-pinned at its next packet anyway.
    BackendDown,
    /// The client's and the VIP's address families differ (a peer bug).
    Family,
}

impl Unplaced {
    /// Every kind, in `index` order.
    const ALL: [Unplaced; 5] = [
        Unplaced::Protocol,
        Unplaced::Vip,
        Unplaced::Backend,
        Unplaced::BackendDown,
        Unplaced::Family,
    ];

    /// For the log.
    pub(super) fn name(self) -> &'static str {
        match self {
            Unplaced::Protocol => "protocol neither TCP nor UDP",
            Unplaced::Vip => "unknown VIP",
            Unplaced::Backend => "unknown backend",
            Unplaced::BackendDown => "backend not alive here",
            Unplaced::Family => "client and VIP of different address families",
        }
    }

    fn index(self) -> usize {
        Unplaced::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// Kinds of [`Unplaced`] already logged at info by this process.
static UNPLACED_LOGGED: [AtomicBool; Unplaced::ALL.len()] =
    [const { AtomicBool::new(false) }; Unplaced::ALL.len()];

/// Logs a record left out as `why`: the first of each kind at info (a
/// peer configured with a VIP or backend this node lacks sends such
/// records on every tick), every one at debug.
fn log_unplaced(record: &FlowRecord, why: Unplaced) {
    let first = !UNPLACED_LOGGED[why.index()].swap(true, Ordering::Relaxed);
    if first {
        info!(
            vip = %record.vip,
            vip_port = record.vip_port,
            protocol = record.protocol,
            backend = %record.backend,
            reason = why.name(),
            "a peer's replicated flow has no place here, left out; such flows are counted (lbd_replication_flows_left_out_total{{reason=\"unknown\"}}), later ones of this kind logged at debug"
        );
    } else {
        debug!(
            vip = %record.vip,
            vip_port = record.vip_port,
            protocol = record.protocol,
            backend = %record.backend,
            reason = why.name(),
            "replicated flow left out"
        );
    }
}

/// The connection-table entry for a record, with this node's backend id.
#[cfg(test)]
pub(super) fn entry_for(
    record: &FlowRecord,
    balancer: &Balancer,
    now: u64,
) -> Option<(FlowKey, FlowEntry)> {
    placed(record, balancer, now).ok()
}

/// The connection-table entry for a record, with this node's backend id,
/// or why the record has no place here.
pub(super) fn placed(
    record: &FlowRecord,
    balancer: &Balancer,
    now: u64,
) -> Result<(FlowKey, FlowEntry), Unplaced> {
    let protocol = match record.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return Err(Unplaced::Protocol),
    };
    let vip = VipId {
        address: record.vip,
        port: record.vip_port,
        protocol,
    };
    let backend = balancer
        .vips()
        .get(&vip)
        .ok_or(Unplaced::Vip)?
        .backends
        .get(&record.backend)
        .ok_or(Unplaced::Backend)?;
    if !backend.alive {
        return Err(Unplaced::BackendDown);
    }
    let (src, family) = addr_words(record.client);
    let (dst, vip_family) = addr_words(record.vip);
    if family != vip_family {
        return Err(Unplaced::Family);
    }
    let key = FlowKey {
        src,
        dst,
        sport: record.client_port.to_be(),
        dport: record.vip_port.to_be(),
        proto: record.protocol,
        family,
        _pad: 0,
    };
    let entry = FlowEntry {
        backend_id: backend.id,
        backend_generation: backend.generation,
        last_seen_ns: now.saturating_sub(u64::from(record.age_ms) * 1_000_000),
        flags: u32::from(record.flags) & FLOW_F_STATE,
        hash: 0,
    };
    Ok((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{BackendConfig, VipConfig},
        dataplane::FakeMaps,
        reconcile::DesiredVip,
    };

    /// A balancer serving `vip` (TCP 198.18.0.100:80).
    fn serving(vip: &VipConfig) -> Balancer {
        let mut balancer = Balancer::new(2);
        balancer
            .apply(
                &mut FakeMaps::default(),
                &[DesiredVip::from_config(vip, &|_| None)],
            )
            .unwrap();
        balancer
    }

    /// A fresh record of a flow to backend 198.18.0.11 of that VIP.
    fn to_b11() -> FlowRecord {
        FlowRecord {
            vip: "198.18.0.100".parse().unwrap(),
            vip_port: 80,
            protocol: IPPROTO_TCP,
            client: "198.18.0.10".parse().unwrap(),
            client_port: 40_000,
            backend: "198.18.0.11".parse().unwrap(),
            age_ms: 0,
            flags: 0,
        }
    }

    #[test]
    fn a_record_without_a_place_here_says_why() {
        let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        // .11 alive; .12 without a MAC yet (DSR: no packets for it).
        vip.backends = vec![
            BackendConfig {
                mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 1])),
                ..BackendConfig::new("198.18.0.11".parse().unwrap())
            },
            BackendConfig::new("198.18.0.12".parse().unwrap()),
        ];
        let balancer = serving(&vip);
        let good = to_b11();
        assert!(placed(&good, &balancer, 0).is_ok());
        let why = |record: FlowRecord| placed(&record, &balancer, 0).err();
        for (record, expected) in [
            (
                FlowRecord {
                    protocol: 47,
                    ..good
                },
                Unplaced::Protocol,
            ),
            (
                FlowRecord {
                    vip_port: 81,
                    ..good
                },
                Unplaced::Vip,
            ),
            (
                FlowRecord {
                    protocol: IPPROTO_UDP,
                    ..good
                },
                Unplaced::Vip,
            ),
            (
                FlowRecord {
                    backend: "198.18.0.99".parse().unwrap(),
                    ..good
                },
                Unplaced::Backend,
            ),
            (
                FlowRecord {
                    backend: "198.18.0.12".parse().unwrap(),
                    ..good
                },
                Unplaced::BackendDown,
            ),
            (
                FlowRecord {
                    client: "2001:2::10".parse().unwrap(),
                    ..good
                },
                Unplaced::Family,
            ),
        ] {
            assert_eq!(why(record), Some(expected), "{record:?}");
        }
        // Each kind has its own once-at-info slot.
        let slots: std::collections::BTreeSet<usize> =
            Unplaced::ALL.iter().map(|k| k.index()).collect();
        assert_eq!(slots.len(), Unplaced::ALL.len());
    }

    #[test]
    fn unplaced_records_are_counted_and_the_rest_installed() {
        let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
        vip.backends = vec![BackendConfig {
            mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 1])),
            ..BackendConfig::new("198.18.0.11".parse().unwrap())
        }];
        let balancer = serving(&vip);
        let good = to_b11();
        let records = [
            FlowRecord {
                vip_port: 81,
                ..good
            },
            good,
            FlowRecord {
                vip_port: 81,
                client_port: 40_001,
                ..good
            },
        ];
        let mut table = flow_table::tests::Table::default();
        let mut counts = FlowCounts::default();
        install_flows(
            |_| Install::Replica,
            &records,
            &mut table,
            &balancer,
            1_000_000_000,
            &mut counts,
            &mut LogLimit::new(Duration::from_secs(60)),
        );
        assert_eq!((counts.installed, counts.unknown), (1, 2));
        assert_eq!(table.0.len(), 1);
    }
}
