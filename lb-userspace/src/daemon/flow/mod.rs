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
    hash::{flow_hash, maglev_hash},
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
    let slot = maglev_hash(facts.applied.affinity as u32, key, flow_hash(key)) % size;
    let id = facts.table[slot as usize];
    let pick = Some(MaglevPick {
        slot,
        table_size: size,
        backend_id: id,
        affinity: facts.applied.affinity,
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
mod tests;
