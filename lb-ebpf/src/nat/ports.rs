//! Source-port allocation for new NAT flows: the reply entry is the
//! reservation. Candidates are probed linearly from a hash of the flow, so
//! a range of at most `NAT_PORT_ATTEMPTS` ports is searched completely and
//! a busy one spreads its flows. Each candidate is looked up before the
//! no-overwrite insert: a failed insert costs more than a lookup
//! (docs/design/nat.md).

// Map keys and values are passed by reference on purpose: by value they
// would be copied onto the BPF stack (512 bytes for the whole program).
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::bindings::BPF_NOEXIST;
use lb_common::{consts::NAT_PORT_ATTEMPTS, stats::Counter, FlowKey, NatEntry, NatSource};

use crate::maps::NAT_FLOWS;

/// `-EEXIST`: the key is already in the table.
pub const EEXIST: i32 = -17;

/// Inserts `reply` under `reply_key` with the first free port of
/// `source` as its destination port (written into `reply_key`) and
/// returns that port (network order). `DropNatPortsExhausted` when every
/// attempt was taken, `DropNatTableFull` when the table refused.
#[inline(always)]
pub fn reserve(
    reply_key: &mut FlowKey,
    reply: &NatEntry,
    source: &NatSource,
    hash: u32,
) -> Result<u16, Counter> {
    if source.port_max < source.port_min {
        return Err(Counter::DropNatPortsExhausted);
    }
    let range = u64::from(source.port_max - source.port_min) + 1;
    for i in 0..NAT_PORT_ATTEMPTS {
        let offset = (u64::from(hash) + u64::from(i)) % range;
        let port = (source.port_min + offset as u16).to_be();
        reply_key.dport = port;
        // SAFETY: only tested for presence, nothing read.
        if unsafe { NAT_FLOWS.get(&*reply_key) }.is_some() {
            continue;
        }
        match NAT_FLOWS.insert(&*reply_key, reply, u64::from(BPF_NOEXIST)) {
            Ok(()) => return Ok(port),
            Err(EEXIST) => continue,
            Err(_) => return Err(Counter::DropNatTableFull),
        }
    }
    Err(Counter::DropNatPortsExhausted)
}
