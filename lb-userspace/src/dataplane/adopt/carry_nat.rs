//! Carrying the flows of a previous lbd's NAT flow table (a kernel hash
//! map, or a bucket table of another size) into this lbd's, both entries
//! of each flow together.

use tracing::{info, warn};

use super::super::Dataplane;
use super::CarryPhase;
use crate::daemon::replication::nat::{carry_pair, Carried};

impl Dataplane {
    /// Installs the flows of a previous lbd's NAT flow table (a kernel
    /// hash map, or a bucket table of another size; see `nat::legacy`)
    /// into this one, both entries of each together: after the load, just
    /// before the attach (`CarryPhase::Attaching`: the old program has opened flows
    /// since, and a backend's packet of a flow the new program does not
    /// know would go up the stack and be reset), and after the swap
    /// (`CarryPhase::Swapped`), when the caller closes the old table and removes its
    /// pin (`LegacyNat::finish`). After the swap a flow the old program
    /// forwarded after this lbd loaded wins over a flow this lbd's program
    /// opened on its NAT port before the final copy (`carry_pair`). The old
    /// table is opened only with the state maps adopted: without them the
    /// entries' VIP and backend ids mean nothing here, and its pin goes
    /// with the state maps' at the swap (`promote_staged`).
    pub(in crate::dataplane) fn carry_legacy_nat(&mut self, phase: CarryPhase) {
        let Some(legacy) = &self.legacy_nat else {
            return;
        };
        let swapped = phase == CarryPhase::Swapped;
        // Each bucket table is read in place: the carry holds only the
        // order of its flows (`nat::legacy::Carry`), each pair read back
        // from its table as it is installed.
        let carry = legacy.carry();
        let loaded_ns = legacy.loaded_ns;
        let (mut installed, mut superseded, mut conflicts, mut failed, mut gone) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for placement in carry.order() {
            let Some(pair) = carry.pair(placement) else {
                gone += 1;
                continue;
            };
            let supersede = swapped && crate::nat::legacy::last_seen(&pair) >= loaded_ns;
            match carry_pair(&mut self.nat, &pair, supersede) {
                Ok(Carried::Yes) => installed += 1,
                Ok(Carried::Superseded) => superseded += 1,
                Ok(Carried::Conflict) => conflicts += 1,
                Err(_) => failed += 1,
            }
        }
        info!(
            phase = phase.name(),
            flows = carry.flows(),
            installed,
            superseded,
            conflicts,
            failed,
            gone,
            unpaired = carry.unpaired(),
            "NAT flows carried over from the previous lbd's NAT flow table (superseded: a flow this lbd's program had opened on the NAT port of a flow the old program forwarded since the load, removed; conflicts: left out for a flow of this table on one of their keys; gone: no longer a whole flow in the old table when read again to be installed; unpaired: entries without their flow's other one, left behind)"
        );
        if superseded > 0 {
            warn!(
                superseded,
                "flows this lbd's program opened during the swap on the NAT port of a connection the previous lbd's program was forwarding were removed: their clients' next packets are dropped and they reconnect"
            );
        }
        if swapped && conflicts > 0 {
            warn!(
                conflicts,
                "some NAT flows of the previous lbd's table were left out: this table holds another flow on their NAT port (one the old program had stopped forwarding before this lbd loaded); their connections are lost"
            );
        }
        if failed > 0 {
            warn!(failed, "some NAT flows could not be carried over (their buckets were full): their connections are lost");
        }
    }
}
