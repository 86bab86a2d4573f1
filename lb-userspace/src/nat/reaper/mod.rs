//! The NAT flow reaper: frees the translations (and so the source ports)
//! of NAT-mode flows that went quiet, as the data plane never deletes
//! them itself (the NAT flow table never evicts, see docs/design/nat.md).
//!
//! Pure: the table is reached through [`NatTable`] (the real table in
//! `nat::maps`, a `BTreeMap` in tests) and time is passed in. Each call to
//! [`Reaper::tick`] visits at most a budget of entries from where the last
//! one stopped (a cursor: the table's bucket, which removals do not move),
//! read in batches, so a table of a million entries costs lbd tens
//! of milliseconds a tick instead of one long stall; a whole pass over
//! the table (a *sweep*) takes `entries / budget` ticks. How often a tick
//! runs is `pace`'s: once a second while there is little to free, ten
//! times a second while the walk finds much to free, the table is under
//! [`pressure`], or a backend was removed (a sweep is owed), so steady
//! churn above what one tick a second frees does not fill the table.
//!
//! A flow is two entries (forward: client -> VIP, reply: backend -> NAT
//! address) paired by `lb_common::nat::counterpart_key`. It is judged from
//! its forward entry: its state comes from both entries' flags
//! (`NatFlowState::of`), its idle time from the newer of both
//! `last_seen_ns`; past the state's timeout both entries go, the forward
//! entry first. An entry counts as the other's counterpart only if it
//! points back (after an lbd killed between a flow's two removals, the
//! key may hold another flow's entry). An entry without its counterpart
//! (the other insert failed, half of a flow replicated, or an lbd killed
//! between the removals) goes once it is older than the SYN timeout; a
//! younger forward entry gets its reply back (its port reserved again)
//! when that key is free, and goes at once when another flow holds it.
//!
//! Flows of a backend that is no longer one of its VIP's backends (or of a
//! VIP that is gone, replaced or no longer in NAT mode) go as soon as the
//! walk reaches them, within a sweep at the fast pace (see `pace`).
//! Decision: removing
//! a backend is lbd's "cut" (draining is the graceful way out, and a drain
//! that times out puts the backend in maintenance, not out of the VIP);
//! entries carry no backend generation, so backend ids being reused by the
//! next backend added would otherwise count the old flows as the new
//! backend's (status, port usage) until they timed out, and their ports stay
//! taken. The entry's own backend address and its VIP's address, port and
//! protocol are compared too, so a reused id (of a backend, or of a VIP
//! replaced by another in one change) never adopts another's flows. The
//! client of a cut flow is not told: its next packet (not a SYN) finds no
//! translation and is dropped (`drop_nat_no_flow`), so its TCP retransmits
//! until it gives up (`tcp_retries2`, about 15 minutes on Linux), unlike
//! DSR's rehash, where the new backend answers with an RST. The data plane
//! sends none: an RST would also end flows a planned switchover's final
//! flush is about to install.

mod fate;
#[cfg(test)]
mod in_memory;
mod owners;
pub(crate) mod pace;
pub mod pressure;
mod stats;
#[cfg(test)]
mod tests;
mod walk;

pub use fate::{fate, timeout_of, Fate};
#[cfg(test)]
pub(crate) use in_memory::FlowKeyOrd;
pub use owners::{Owner, Owners};
pub use stats::{PortUser, Reaped, SweepStats, TickReport};
pub use walk::Reaper;

use lb_common::{FlowKey, NatEntry};

/// Entries visited per tick at most; lbd also stops a tick after
/// [`TICK_TIME`]. Each entry costs a few microseconds (a forward entry one
/// lookup of its counterpart), so a tick of a full budget stays within
/// tens of milliseconds; tests/tests/nat_runtime.rs measures a sweep of a
/// million entries. Ticks come once a second, or every `pace::FAST`
/// while there is much to free (`pace`).
pub const TICK_BUDGET: usize = 16_384;
/// How long lbd lets one tick run (checked between batches): the bound of
/// the stall a tick can cause, whatever the machine.
pub const TICK_TIME: std::time::Duration = std::time::Duration::from_millis(50);
/// Entries read per batch (one system call).
pub const BATCH: usize = 1024;

/// The flow table as the reaper needs it.
pub trait NatTable {
    /// Where a walk stands between batches; removals do not move it.
    type Cursor: Copy + std::fmt::Debug;
    /// Appends to `out` up to `max` entries from `cursor` (None: the
    /// start); returns the cursor of the next batch, None at the end.
    fn batch(
        &self,
        cursor: Option<Self::Cursor>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<Self::Cursor>>;
    /// The entry at `key`, if present.
    fn get(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Removes `key`; returns false when that failed (an absent key is
    /// not a failure).
    fn remove(&mut self, key: &FlowKey) -> bool;
    /// Puts `entry` in under `key` only if no entry holds the key (as the
    /// data plane inserts); false when another entry holds it. The reaper
    /// puts a lone forward entry's reply back with it, which reserves its
    /// port again. An error leaves the entry to wait out the SYN timeout
    /// as an orphan.
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> std::io::Result<bool>;
}
