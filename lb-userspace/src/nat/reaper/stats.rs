//! What the reaper reports: a complete sweep's findings (flows by state,
//! source ports in use, flows per backend), the removals since start, and
//! what one tick did. Plain data, read by the status, the metrics and the
//! pace and pressure machines.

use std::{collections::BTreeMap, net::IpAddr};

use crate::model::FlowCount;

/// Source ports in use towards one backend port from one NAT address:
/// the unit the data plane allocates in (a reply key must be unique).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortUser {
    /// The NAT address.
    pub nat_address: IpAddr,
    /// The backend.
    pub backend: IpAddr,
    /// The backend's port (host order).
    pub backend_port: u16,
    /// IP protocol.
    pub proto: u8,
}

/// What a complete sweep found: the live flows by state, and source ports
/// in use per (NAT address, backend, port, protocol).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Flows kept, by state.
    pub flows: BTreeMap<&'static str, u64>,
    /// Forward entries kept per allocation unit (= ports in use).
    pub ports: BTreeMap<PortUser, u64>,
    /// Flows kept per backend id: live (SYN sent, established, UDP) or
    /// closing (a FIN or RST seen), as `lbctl status` and `drain --wait`
    /// count them.
    pub by_backend: BTreeMap<u32, FlowCount>,
    /// Ticks the sweep took.
    pub ticks: u64,
    /// When its first tick ran (`CLOCK_MONOTONIC` ns): a flow that ended
    /// before then is not in it, one that started after may be missing.
    pub started_ns: u64,
}

impl SweepStats {
    /// Entries the kept flows hold (two per flow).
    pub fn entries(&self) -> u64 {
        2 * self.flows.values().sum::<u64>()
    }

    /// Ports in use at the busiest (NAT address, backend) of all, the
    /// range closest to running out.
    pub fn busiest_of_all(&self) -> u64 {
        self.ports.values().max().copied().unwrap_or(0)
    }

    /// Ports in use from `nat_address`, at the busiest backend (the one
    /// closest to running out).
    pub fn busiest(&self, nat_address: IpAddr) -> u64 {
        self.ports
            .iter()
            .filter(|(u, _)| u.nat_address == nat_address)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(0)
    }

    /// Ports in use from `nat_address` towards one VIP's backends, at the
    /// busiest of them. Each backend is named with the port the VIP sends
    /// it to: another VIP on the same NAT address and backend host but
    /// another backend port draws on a range of its own, and its use says
    /// nothing about this VIP's.
    pub fn busiest_towards(
        &self,
        nat_address: IpAddr,
        proto: u8,
        backends: impl IntoIterator<Item = (IpAddr, u16)>,
    ) -> u64 {
        backends
            .into_iter()
            .filter_map(|(backend, backend_port)| {
                self.ports.get(&PortUser {
                    nat_address,
                    backend,
                    backend_port,
                    proto,
                })
            })
            .max()
            .copied()
            .unwrap_or(0)
    }
}

/// Entries removed since start, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Flows idle past their timeout (both entries).
    pub expired: u64,
    /// Entries without a counterpart.
    pub orphans: u64,
    /// Flows of removed backends (both entries).
    pub backend_gone: u64,
    /// Removals the table refused (retried next sweep).
    pub failed: u64,
}

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Entries visited (judged; not the second entry of a flow removed
    /// earlier in the same batch).
    pub visited: usize,
    /// Entries removed.
    pub removed: usize,
    /// Whether a sweep ended in this tick.
    pub sweep_done: bool,
}
