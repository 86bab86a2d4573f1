//! Fail-open holds as the model changes: settled after each change, held
//! for a restart that cannot tell, and timed out once their grace passes.

use std::{net::IpAddr, time::Instant};

use super::super::{FailOpenHold, Model, VipModel};
use crate::reconcile::VipId;

impl Model {
    /// Whether VIP `id` fails open now, to tell after a change whether
    /// it stopped (see [`VipModel::settle_fail_open_holds`]).
    pub(super) fn fails_open(&self, id: &VipId) -> bool {
        self.vips.get(id).is_some_and(VipModel::fails_open)
    }

    /// Settles VIP `id`'s fail-open holds after a change made when it
    /// failed open or not (`was_failing_open`).
    pub(super) fn settle_fail_open_holds(&mut self, id: &VipId, was_failing_open: bool) {
        if let Some(vip) = self.vips.get_mut(id) {
            vip.settle_fail_open_holds(was_failing_open);
        }
    }

    /// Holds backend `address` of VIP `id` as one that may have taken
    /// flows only because its VIP failed open (see [`FailOpenHold`]):
    /// for a restart that cannot tell whether it did. False if there is
    /// no such backend.
    pub(crate) fn hold_as_if_failing_open(&mut self, id: &VipId, address: IpAddr) -> bool {
        match self.backend_mut(id, address) {
            Ok(backend) => {
                backend.fail_open_hold = Some(FailOpenHold::Pending);
                true
            }
            Err(_) => false,
        }
    }

    /// Starts the grace of fail-open holds that have none yet (at `now`)
    /// and ends those whose grace passed; returns the backends whose hold
    /// ended while it kept them alive (their established flows move now).
    pub(crate) fn time_fail_open_holds(&mut self, now: Instant) -> Vec<(VipId, IpAddr)> {
        let mut ended = Vec::new();
        for (id, vip) in &mut self.vips {
            let grace = FailOpenHold::grace(&vip.config);
            for (address, backend) in &mut vip.backends {
                match backend.fail_open_hold {
                    Some(FailOpenHold::Pending) => {
                        backend.fail_open_hold = Some(FailOpenHold::Until(now + grace));
                    }
                    Some(FailOpenHold::Until(deadline)) if now >= deadline => {
                        if backend.held_after_fail_open() {
                            ended.push((*id, *address));
                        }
                        backend.fail_open_hold = None;
                    }
                    _ => {}
                }
            }
        }
        ended
    }
}
