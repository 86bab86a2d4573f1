//! The node's traffic, sampled every housekeeping tick: the SYN-flood
//! watch, and the forwarded count that tells `lbctl node drain --wait`
//! when the node's flows have moved.

use std::time::Instant;

use lb_common::stats::Counter;
use tracing::warn;

use super::super::Engine;

impl Engine {
    /// Samples the forwarded count, feeds the SYN-flood watch and gives
    /// the data plane its flood mode (every housekeeping tick).
    pub(crate) fn watch_traffic(&mut self) {
        let Ok(counters) = self.dataplane.counters() else {
            return;
        };
        self.flood.observe(Instant::now(), &counters);
        if let Some(flood) = self.flood.unwritten_mode() {
            match self.dataplane.set_syn_flood(flood) {
                Ok(()) => self.flood.mode_written(flood),
                Err(error) => {
                    warn!(%error, flood, "setting SYN-flood mode in the data plane failed; retried next tick")
                }
            }
        }
        let forwarded = match self.announced_traffic() {
            Some(packets) => packets,
            None => counters
                .iter()
                .find(|(c, _)| *c == Counter::Forwarded)
                .map_or(0, |(_, v)| *v),
        };
        if forwarded != self.node.forwarded {
            self.node.forwarded = forwarded;
            self.node.last_forward = Some(Instant::now());
        }
    }

    /// With `[bgp]`: the packets forwarded for the VIPs on addresses BGP
    /// covers (what a node drain or a stop's withdrawal moves away;
    /// VRRP-held VIPs keep their traffic). None without BGP, or when a
    /// counter cannot be read.
    pub(in crate::daemon::engine) fn announced_traffic(&self) -> Option<u64> {
        let bgp = self.node.announcer.as_ref()?.config();
        self.traffic_to(|address| self.bgp_covers(bgp, address))
    }

    /// The packets forwarded for the VIPs on the addresses `moving` picks
    /// (what a stop withdraws or hands over). None when a counter cannot
    /// be read.
    pub(in crate::daemon::engine) fn traffic_to(
        &self,
        moving: impl Fn(std::net::IpAddr) -> bool,
    ) -> Option<u64> {
        let mut packets: u64 = 0;
        for (id, applied) in self.balancer.vips() {
            if !moving(id.address) {
                continue;
            }
            let traffic = self.dataplane.vip_traffic(applied.id).ok()?;
            packets = packets.wrapping_add(traffic.packets);
        }
        Some(packets)
    }
}
