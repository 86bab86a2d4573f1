//! NAT flows across the VRRP pair: the master turns the two NAT flow table
//! entries of each translated flow into one
//! [`NatFlowRecord`](crate::sync::NatFlowRecord) named by addresses and
//! ports; the backup rebuilds both entries with its own VIP
//! and backend ids, its own clock and no next hop (its FIB finds one), and
//! never lets a replicated flow take the place of another flow's entry
//! (but for the master's flow on the backup, over a flow the master ended:
//! [`Over::Replace`]). In a full mesh a copy is merged with this node's
//! entry of the flow ([`Over::Copy`]), and periodic dumps leave the
//! copies out, so flows are not echoed back with stale marks.
//! Pure functions over a [`ReplicaTable`], so the rules are tested without a
//! kernel; [`Replication`](super::Replication) drives them. The sending
//! side ([`scan`]) and the receiving side ([`rebuild`], then [`merge`])
//! are apart.

mod merge;
mod rebuild;
mod scan;
#[cfg(test)]
pub(super) mod tests;

use lb_common::{FlowKey, NatEntry};

use crate::{dataplane::DataplaneError, nat::maps::NatMaps};

pub(crate) use merge::{carry_pair, holds_fresher, Carried};
pub(super) use merge::{install_pair_as, Over, Placed};
pub(crate) use rebuild::{entries_for, NatPair, Unknown};
#[cfg(test)]
pub(super) use scan::nat_records;
pub(crate) use scan::SendRule;
pub(super) use scan::{nat_records_in, nat_records_with_dump};

/// How far before the previous scan's start a NAT entry's `last_seen_ns`
/// may lie and still count as touched since: the coarse clock the data
/// plane stamps with lags by up to a jiffy (10 ms at HZ=100). Every touch
/// is sent about once, not on every tick of the following touch interval
/// (as the DSR flows' wider window does, which would send each active flow
/// four times a second and the backup install it as often).
pub(crate) const SCAN_MARGIN_NS: u64 = 50_000_000;

/// The NAT flow table as replication uses it (and an upgrade's carrying
/// over of an older release's flows, `nat::legacy`): the real table, or a
/// map in tests.
pub(crate) trait ReplicaTable {
    /// The entry under `key`, if any.
    fn get(&self, key: &FlowKey) -> Option<NatEntry>;
    /// Puts `entry` in only if `key` is free; `false` when taken.
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError>;
    /// Puts `entry` in, replacing what is there.
    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError>;
    /// Takes `key` out.
    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError>;
}

impl ReplicaTable for NatMaps {
    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.flow(key)
    }

    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError> {
        self.install_flow_if_free(key, entry)
    }

    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
        self.install_flow(key, entry)
    }

    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        self.remove_flow(key)
    }
}
