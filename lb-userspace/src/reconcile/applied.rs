//! What the data plane holds, as the balancer wrote it: ids, generations,
//! tables and the desired state each VIP was last applied from.

use std::{collections::BTreeMap, net::IpAddr};

use lb_common::{Affinity, Mode, VipMeta};

use super::DesiredVip;
use crate::{config::VipNat, maglev};

/// A backend as applied: its data-plane id and what was written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedBackend {
    /// Data-plane id.
    pub id: u32,
    /// Generation written with the id.
    pub generation: u32,
    /// MAC written (None: not known yet, so not alive).
    pub mac: Option<[u8; 6]>,
    /// Port written (None: the VIP's).
    pub port: Option<u16>,
    /// Weight in the table.
    pub weight: u32,
    /// Alive flag written.
    pub alive: bool,
}

/// A VIP as applied.
#[derive(Debug, Clone)]
pub struct AppliedVip {
    /// Index in the table and stats arrays.
    pub id: u32,
    /// Maglev table size.
    pub table_size: u32,
    /// Copy that packets read.
    pub active: u32,
    /// Forwarding mode written.
    pub mode: Mode,
    /// Client affinity written.
    pub affinity: Affinity,
    /// NAT source written (NAT mode).
    pub nat: Option<VipNat>,
    /// What both table copies hold (None: unknown, e.g. after a failed
    /// write; the next change then rewrites every slot).
    pub(super) table: Option<Vec<u32>>,
    /// Backends by address.
    pub backends: BTreeMap<IpAddr, AppliedBackend>,
    /// The desired state last applied in full: an unchanged VIP is skipped
    /// (no table rebuilt), so a change costs only the VIPs it touches.
    pub(super) applied: Option<DesiredVip>,
    /// What packets read, when known but `table` is not (adopted from a
    /// previous lbd, or after a failed commit): the basis of a minimal
    /// update.
    pub(super) basis: Option<Vec<u32>>,
    /// A failed commit's last write of this entry (`active`, `mode`) was
    /// the one that failed, so the maps may still name the other copy: the
    /// next apply writes it again before anything else, so that the copy it
    /// writes tables into is not the one packets read.
    pub(super) meta_unsure: bool,
    /// Entries of this VIP the maps hold that the record dropped: adopted
    /// ones of an address another entry of the VIP also holds (one is
    /// kept). The live table may name them, so, like a removed backend,
    /// they are retired after the VIP's next flip (or removal), which
    /// frees their ids; until then the ids are in use.
    pub(super) dropped: Vec<AppliedBackend>,
}

impl AppliedVip {
    /// The `VIPS` entry this record stands for: one place to build it, so
    /// a flip, a mode or affinity change and a rewrite after a failed commit agree.
    pub(super) fn meta(&self) -> VipMeta {
        VipMeta::new(self.id, self.table_size, self.active, self.mode).with_affinity(self.affinity)
    }

    /// The ids of the entries this record holds for the VIP: its
    /// backends' and those it dropped, not yet retired.
    pub(super) fn held_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.backends
            .values()
            .chain(&self.dropped)
            .map(|backend| backend.id)
    }

    /// The live table (what packets read).
    pub fn live_table(&self) -> Option<&[u32]> {
        self.table.as_deref()
    }

    /// Each backend's share of new flows in the live table, by address.
    pub(crate) fn shares_by_address(&self) -> BTreeMap<IpAddr, f64> {
        let shares = self.live_table().map(maglev::shares).unwrap_or_default();
        self.backends
            .iter()
            .map(|(address, b)| (*address, shares.get(&b.id).copied().unwrap_or(0.0)))
            .collect()
    }
}
