//! Handing this node's traffic over at a stop: VRRP steps down, BGP
//! withdraws, and the program forwards on, streaming the flows it still
//! opens to the peer, until the moving addresses are quiet. Apart from
//! `stop`, which decides what of the data plane stays.

use std::net::IpAddr;

use tracing::{info, warn};

use super::Engine;
use crate::daemon::replication::Roles;

/// What a stop handed over to the peer (see [`Engine::hand_over`]). Why:
/// until the peer has announced the addresses, their traffic still
/// arrives here and the program still opens flows (and NAT translations)
/// for it; these must reach the peer as well, which takes the roles this
/// node streamed with before it stepped down (see
/// [`Engine::stream_handed_over`]).
#[derive(Debug, Default)]
pub(crate) struct HandedOver {
    /// The addresses this node was master of.
    pub(crate) addresses: Vec<IpAddr>,
    /// The replication roles this node had before it stepped down.
    roles: Roles,
}

/// Longest the last replication after a handover waits for its flows to
/// be written to the peer (as `final_sync` does before it).
const HANDOVER_FLUSH: std::time::Duration = std::time::Duration::from_millis(500);

impl Engine {
    /// For a stop after which nothing of this node forwards for VRRP's
    /// addresses (a stop for good; a restart with `pin_dir = "off"`, whose
    /// program goes with lbd, or one whose program is not left forwarding,
    /// see [`Self::left_forwarding`]), once the last flows went to the peer (see
    /// [`Self::final_sync`]): steps down from every instance (priority 0, so the backup takes over after
    /// its skew time, not the master-down interval; addresses released;
    /// "stopped" recorded, so the next lbd does not resume mastership with
    /// an empty data plane while the peer holds the flows). Returns the
    /// addresses this node was master of, whose traffic still arrives here
    /// until the peer announced them (see [`Self::withdraw_for_stop`]),
    /// with the replication roles it had, so the flows opened meanwhile
    /// still stream to the peer. The "stopped" notify commands are kept
    /// in `stepped_down`, for the exit to wait for. Nothing to do once
    /// done.
    pub(crate) async fn hand_over(&mut self) -> HandedOver {
        let roles = self.replication_roles();
        let mut addresses = Vec::new();
        for instance in std::mem::take(&mut self.vrrp) {
            if instance.is_master() {
                addresses.extend(instance.config().addresses.iter().copied());
            }
            self.stepped_down.push(instance.notifies());
            instance.stop().await;
        }
        HandedOver { addresses, roles }
    }

    /// A stop's withdrawal of every BGP announcement (the program goes
    /// next): once BIRD took it, the program forwards on while the
    /// routers move the node's flows away (see `bgp::converge`), so the
    /// packets of established flows that still arrive meanwhile are not
    /// handed to the kernel. Without `[bgp]` there is nothing to wait for;
    /// a withdrawal BIRD did not take fails at once (the caller decides).
    /// `handed` are the VRRP addresses the stop just handed over (priority
    /// 0): until the peer has taken them over and announced them (its
    /// skew time, then gratuitous ARP / NA), the neighbours still send
    /// their packets here, so the program forwards those too until they
    /// are quiet.
    pub(crate) async fn withdraw_for_stop(&mut self, handed: &HandedOver) -> anyhow::Result<()> {
        self.withdraw_announcements().await?;
        let bgp = self.node.announcer.is_some();
        if bgp || !handed.addresses.is_empty() {
            self.forward_while_traffic_moves(bgp, handed).await;
        }
        Ok(())
    }

    /// Waits until the moving addresses' traffic (the withdrawn ones if
    /// `bgp`, and `handed`) is quiet for `converge::QUIET`, or
    /// `converge::CAP` at most, sampling it every `converge::POLL`; logs
    /// what it waited for. Meanwhile the program opens flows for the new
    /// connections that still arrive here: every sample streams them to
    /// the peers, and a last replication once quiet sends the rest, so
    /// the node that takes the traffic over knows every one of them.
    pub(super) async fn forward_while_traffic_moves(&mut self, bgp: bool, handed: &HandedOver) {
        use crate::bgp::converge::{Converged, Convergence, CAP, POLL, QUIET};
        let traffic = |engine: &Self| {
            let withdrawn = if bgp { engine.announced_traffic()? } else { 0 };
            let handed = engine.traffic_to(|address| handed.addresses.contains(&address))?;
            Some(withdrawn.wrapping_add(handed))
        };
        let mut wait = Convergence::new(std::time::Instant::now(), traffic(self));
        info!(
            quiet_ms = QUIET.as_millis(),
            cap_ms = CAP.as_millis(),
            bgp,
            vrrp_addresses = handed.addresses.len(),
            "withdrawn (BGP) / handed over (VRRP); forwarding on while this node's flows move away (until those addresses are quiet), replicating the flows it still opens"
        );
        let ended = loop {
            tokio::time::sleep(POLL).await;
            self.stream_handed_over(&handed.roles);
            let now = std::time::Instant::now();
            if let Some(ended) = wait.observe(traffic(self), now) {
                break ended;
            }
        };
        let packets = wait.forwarded_since();
        match ended {
            Converged::Quiet { waited } => info!(
                waited_ms = waited.as_millis(),
                ?packets,
                "the withdrawn / handed-over addresses went quiet; the program goes"
            ),
            Converged::Capped => warn!(
                waited_ms = CAP.as_millis(),
                ?packets,
                "the withdrawn / handed-over addresses still receive packets; the program goes anyway (routers or neighbours still send some flows here)"
            ),
        }
        self.last_handover_sync(&handed.roles).await;
    }

    /// Runs `work` (a wait of the stop) while streaming the flows of the
    /// addresses just handed over every `converge::POLL`, as
    /// [`Self::forward_while_traffic_moves`] does: their new connections
    /// keep arriving here until the peer announced them, and must not
    /// wait for the end of `work` to reach it.
    pub(super) async fn streaming_while<T>(
        &mut self,
        handed: &HandedOver,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let mut tick = tokio::time::interval(crate::bgp::converge::POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: the caller just replicated.
        tick.tick().await;
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => self.stream_handed_over(&handed.roles),
            }
        }
    }

    /// One replication tick after a handover, with the roles of before
    /// (`before`) and after it combined: after the step-down this node
    /// streams nothing by its own roles, yet until the peer announced the
    /// addresses the program keeps opening flows for the new connections
    /// that reach it, which break once the addresses moved unless the new
    /// master has them (the peer installs them as master only where it
    /// holds nothing fresher: see `Replication::install_with`). Sends the
    /// records of a walk that ended, then starts the next one off this
    /// task (see `replication::walks`).
    fn stream_handed_over(&mut self, before: &Roles) {
        let roles = before.union(&self.replication_roles());
        let Some(replication) = &mut self.replication else {
            return;
        };
        replication.walk_ended();
        if let Some(roles) = replication.roles_for_walk(roles) {
            if replication.topology().sends(roles.any_master()) {
                replication.start_walk(&self.dataplane, &self.balancer, &roles);
            }
        }
    }

    /// The last replication of a stop, once the moving addresses went
    /// quiet (or the wait was capped): the walk in flight is waited for,
    /// then one more walk (NAT scan forced) sends what the program opened
    /// since, and the peer is given [`HANDOVER_FLUSH`] at most to take it
    /// all, before the program goes.
    async fn last_handover_sync(&mut self, before: &Roles) {
        let roles = before.union(&self.replication_roles());
        let Some(replication) = &mut self.replication else {
            return;
        };
        replication.wait_walk().await;
        if let Some(roles) = replication.roles_for_walk(roles) {
            if replication.topology().sends(roles.any_master()) {
                replication.scan_nat_now();
                replication.start_walk(&self.dataplane, &self.balancer, &roles);
                replication.wait_walk().await;
                info!("the last flows this node opened after stepping down were handed to the connection-table replication");
            }
        }
        replication.flush(HANDOVER_FLUSH).await;
    }
}
