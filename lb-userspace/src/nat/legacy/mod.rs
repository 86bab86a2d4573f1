//! Carrying NAT'd flows over from a table this lbd cannot adopt as it is,
//! so established NAT'd connections keep their source ports and backends
//! across the restart; a flow lost here would be dropped (a TCP packet
//! other than a SYN finds no translation). Two such tables:
//! - a kernel hash map (`NAT_FLOWS`) that a previous release (before
//!   `NAT_BUCKETS`) kept its flows in;
//! - a bucket table (`NAT_BUCKETS`) of another size: `[nat]
//!   flow_table_size` changed, which takes effect at a restart. Its pin is
//!   moved aside (`NAT_BUCKETS_RESIZED`) so this lbd pins its own table
//!   of the new size under the name.
//!
//! The old map is opened from its pin; the old program keeps running on
//! it until the new one is swapped in on the link, and the pin is removed
//! only then (`finish`): an lbd that stops or fails between its load and
//! the swap leaves it for the next one, which carries the flows over
//! again (the new object has no map of that name, so the pin can wait).
//! Both entries of each flow are installed
//! together, by the rule a peer's replicated flows follow
//! (`install_pair`: a key another flow holds keeps its entry and the flow
//! is left out, a key holding this same flow is refreshed), twice: right
//! after the load (the bulk, into the empty table) and after the swap
//! (what the old program added or marked meanwhile; it no longer runs, so
//! the map is final). Carried only when the state maps (VIPs, backends,
//! NAT sources) are adopted too: the entries name their VIP and backend by
//! those ids. The load decides that first (`pending`); without the state
//! adopted nothing is moved, and the old tables' pins stay as they are
//! until the new program runs, then go with the state they belong to
//! (`PinDir::promote_staged`). A table set aside of another layout than
//! this release's buckets is refused and its pin removed (it would be
//! read at the wrong stride).
//!
//! Both may be there at once: an upgrade from the hash-map release that
//! stopped before its swap left `NAT_FLOWS` (still written by the old
//! program on the link) and its own bucket table, and this lbd's
//! `flow_table_size` differs from that one's. Both are carried over, a
//! flow both hold as the table that saw it more recently holds it, the
//! most recently seen flows first (a key two flows claim goes to the one
//! installed first: the live one), and both pins go after the swap.
//!
//! So may two bucket tables: a resize that stopped after its load left
//! the table it set aside (`NAT_BUCKETS_RESIZED`) and its own, pinned
//! (which its program writes if it got to its swap), and this lbd's size
//! is a third one. The pinned one is set aside too
//! (`NAT_BUCKETS_RESIZED_AGAIN`), both are carried over as above, and
//! both pins go after the swap; a third table of another size on top of
//! those two refuses the load, as the connection table's does
//! (`conntrack::legacy`).
//!
//! Here: finding and opening the old tables (`old_tables`), reading one
//! as a carry does (`source`), and the order the flows go in (`carry`).

mod carry;
mod old_tables;
mod source;

use lb_common::{FlowKey, NatEntry};

pub(crate) use old_tables::LegacyNat;

/// The name a resized bucket table's pin is moved to while its flows are
/// carried over (bpffs refuses names with a dot).
pub const RESIZED_PIN: &str = "NAT_BUCKETS_RESIZED";

/// The name the pinned bucket table of another size is moved to when a
/// table set aside by an earlier resize still waits under `RESIZED_PIN`:
/// the later of the two.
pub const RESIZED_AGAIN_PIN: &str = "NAT_BUCKETS_RESIZED_AGAIN";

/// Both entries of a flow (forward, then reply), as `install_pair` takes
/// them.
pub(crate) type Pair = [(FlowKey, NatEntry); 2];

/// When a pair's entries were last seen (the later of the two).
pub(crate) fn last_seen(pair: &Pair) -> u64 {
    pair[0].1.last_seen_ns.max(pair[1].1.last_seen_ns)
}

#[cfg(test)]
mod tests;
