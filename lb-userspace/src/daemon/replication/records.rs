//! Flow records and the connection table: which entries a tick sends,
//! an entry as a record with names a peer understands (VIP, backend
//! address, generation), and a received record installed with this
//! node's own ids.

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
    /// Named a VIP or backend this node lacks.
    pub(super) unknown: u64,
    /// Left out: this node's entry was fresher and named another backend
    /// (full mesh).
    pub(super) kept_local: u64,
    /// Left out: this node's entry for the same backend was fresher
    /// (full mesh).
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
        let Some((key, mut entry)) = entry_for(record, balancer, now) else {
            counts.unknown += 1;
            continue;
        };
        let result = match rule(record.vip) {
            Install::Replace => table.put(&key, &entry).map(|()| Outcome::Installed),
            Install::UnlessFresher => install_unless_fresher(table, &key, &entry),
            Install::Replica => {
                entry.last_seen_ns = mark_replica(entry.last_seen_ns);
                install_unless_fresher(table, &key, &entry)
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

/// The connection-table entry for a record, with this node's backend id.
pub(super) fn entry_for(
    record: &FlowRecord,
    balancer: &Balancer,
    now: u64,
) -> Option<(FlowKey, FlowEntry)> {
    let protocol = match record.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    let vip = VipId {
        address: record.vip,
        port: record.vip_port,
        protocol,
    };
    let backend = balancer.vips().get(&vip)?.backends.get(&record.backend)?;
    if !backend.alive {
        return None;
    }
    let (src, family) = addr_words(record.client);
    let (dst, vip_family) = addr_words(record.vip);
    if family != vip_family {
        return None;
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
    Some((key, entry))
}
