//! How lbd stops (for a restart or for good): what of the data plane,
//! the replication and the health checks goes, what is left for the next
//! lbd, and whether the stop fails naming BIRD. Handing the traffic over
//! to the peer meanwhile is `handover`'s.

use anyhow::Context as _;
use tracing::warn;

use super::{running_state, Engine, HandedOver};
use crate::{
    dataplane::Released,
    vrrp::driver::{wait_for_notifies, NOTIFY_GRACE},
};

/// Longest a stop waits for its replication peers to read what was sent
/// and close their ends of the sessions (see `Replication::close`): on
/// a LAN they do within milliseconds of the last frame.
const REPLICATION_CLOSE: std::time::Duration = std::time::Duration::from_millis(500);

impl Engine {
    /// Hands the VIPs over (VRRP priority 0), stops checks and detaches the
    /// program. A stop for good whose BGP withdrawal BIRD did not take
    /// keeps a pinned program attached, as a restart does (BIRD may still
    /// announce this node, and the routers keep sending it flows, the
    /// established ones too), and fails naming BIRD and what to do. A
    /// BIRD that is not running announces nothing: the stop goes ahead
    /// and succeeds, as `lbd --cleanup` does (see [`keeps_program`]).
    pub async fn shutdown(mut self, stop: Stop) -> anyhow::Result<Released> {
        if stop == Stop::Clean {
            self.final_sync().await;
            // A stop for good ends the running configuration: the next
            // start is from the file, as after `lbd --cleanup`.
            running_state::forget(&self.config);
        }
        // The addresses a stop for good hands over (priority 0): their
        // traffic still arrives until the peer has announced them. A
        // restart with `pin_dir = "off"` hands them over too (the caller
        // normally did, with its BGP withdrawal: see `hand_over`).
        // A restart with a pinned data plane releases it first: its
        // instances are left for the next lbd to resume (a restart record)
        // only while the program is left forwarding.
        let mut released_for_restart = None;
        let handed = if stop == Stop::Clean || !self.dataplane.pinned() {
            self.hand_over().await
        } else {
            let released = self.left_forwarding().await?;
            released_for_restart = Some(released);
            if released == Released::StillForwarding {
                // A restart does not wait for the instances it leaves: the
                // next lbd must be back within the backup's master-down
                // interval to resume.
                for instance in std::mem::take(&mut self.vrrp) {
                    instance.abandon().await;
                }
                HandedOver::default()
            } else {
                self.hand_over().await
            }
        };
        // Leaving the runtime kills the notify commands still running:
        // the "stopped" ones of the instances stepped down (a lost hook,
        // a stop for good, a restart with nothing pinned) are let finish.
        // Meanwhile the new flows of the addresses just handed over still
        // go to the peer (see `stream_handed_over`).
        let notifies = std::mem::take(&mut self.stepped_down);
        self.streaming_while(&handed, wait_for_notifies(&notifies, NOTIFY_GRACE))
            .await;
        let withdrawal = match stop {
            Stop::Clean => {
                let withdrawal = self.withdraw_for_stop(&handed).await.err();
                // BIRD is not running (the program goes, see
                // `keeps_program`), but the addresses VRRP handed over
                // still move, which the failed withdrawal did not wait for.
                let bird_gone = withdrawal
                    .as_ref()
                    .is_some_and(crate::bgp::bird::is_not_running);
                if bird_gone && !handed.addresses.is_empty() {
                    self.forward_while_traffic_moves(false, &handed).await;
                }
                withdrawal
            }
            Stop::Restart => {
                if !handed.addresses.is_empty() {
                    self.forward_while_traffic_moves(false, &handed).await;
                }
                None
            }
        };
        let pinned = self.dataplane.pinned();
        // Closed, not dropped: the flows written last (the final flush's)
        // reach the peers before their connections go.
        if let Some(replication) = self.replication.take() {
            replication.close(REPLICATION_CLOSE).await;
        }
        self.checker.retain(|_| false);
        // Checks stop with lbd: so does their path (the next lbd puts it
        // back at once if it needs it).
        self.detach_hc_encap();
        self.restore_accept_local();
        let keep = keeps_program(stop, pinned, withdrawal.as_ref());
        let released = if keep {
            if !pinned {
                // Nothing outlives lbd (`pin_dir = "off"`): release()
                // detaches the program, so the node goes back to how it
                // was found, as at a stop for good. Only a pinned data
                // plane forwards on, and needs `forwarding` kept on; but
                // IPv6 forwarding stays (see the function).
                self.restore_forwarding_for_restart();
            }
            match released_for_restart {
                Some(released) => released,
                None => self.dataplane.release()?,
            }
        } else {
            // The node as it was found: a restart keeps it on, as NAT'd
            // flows keep being forwarded by the pinned data plane.
            self.restore_forwarding();
            self.dataplane.detach()?;
            Released::Detached
        };
        let Some(error) = withdrawal else {
            return Ok(released);
        };
        if !keep && crate::bgp::bird::is_not_running(&error) {
            warn!(error = %format!("{error:#}"), "BGP: BIRD is not running, so it announces nothing of this node (its sessions went with it, and it reads the emptied routes file when it starts): stopped for good anyway, as `lbd --cleanup` does");
            return Ok(released);
        }
        let bird = self
            .node
            .announcer
            .as_ref()
            .map(|a| a.config().bird_socket.display().to_string())
            .unwrap_or_default();
        Err(if released == Released::StillForwarding {
            error.context(format!(
                "stopping for good: BIRD (control socket {bird}) did not take the withdrawal of this node's BGP announcements, so the routers may still send it flows; the program is left attached and pinned, forwarding them as after a restart. Once BIRD answers, `lbd --release-vips` withdraws the announcements and `lbd --cleanup` then removes the data plane"
            ))
        } else {
            error.context(format!(
                "stopping for good: BIRD (control socket {bird}) did not take the withdrawal of this node's BGP announcements, so the routers may still send flows to this node, which forwards nothing now; once BIRD answers, `lbd --release-vips` withdraws them"
            ))
        })
    }

    /// A restart's release of the pinned data plane (see
    /// `Dataplane::release`), and whether the interface runs the program
    /// left forwarding, asked of the kernel now (see
    /// `dataplane::left_hook`): the housekeeping tick may not have seen a
    /// hook lost less than a second ago (the interface deleted, the link
    /// detached), and a cls_bpf filter that could not be kept goes with
    /// lbd. Only `StillForwarding` leaves the VRRP instances a restart
    /// record, on which the next lbd resumes mastership: with nothing
    /// forwarding it would take the VIPs with no program in front of them
    /// (see `start::resumes_mastership`). Otherwise `NothingAttached`,
    /// logged with why.
    async fn left_forwarding(&mut self) -> anyhow::Result<Released> {
        let released = self
            .dataplane
            .release()
            .context("leaving the data plane for the next lbd")?;
        let why = match (released, &self.config.pin_dir) {
            (Released::StillForwarding, Some(dir)) => {
                let pins = crate::pinning::PinDir::new(dir);
                let left = crate::dataplane::left_hook(&pins, &self.interface, &self.netlink).await;
                if left.runs() {
                    return Ok(released);
                }
                left.to_string()
            }
            (Released::StillForwarding, None) => return Ok(released),
            _ => "no program is left attached".to_owned(),
        };
        if !self.vrrp.is_empty() {
            warn!(%why, "stopping for a restart, but the interface does not run the program left for the next lbd: the VRRP instances step down (the peer takes over) rather than leave the next lbd a mastership to resume");
        }
        Ok(Released::NothingAttached)
    }
}

/// Whether a stop leaves the program attached (released, not
/// detached): a restart does; so does a stop for good with a pinned data
/// plane whose BGP withdrawal failed (`withdrawal`) so that BIRD may
/// still announce this node (the routers still send it flows, which only
/// the program forwards). A BIRD that is not running announces nothing
/// (its sessions went with it, and it reads the emptied routes file when
/// it starts): the program goes, by the rule `lbd --cleanup` follows
/// too ([`crate::bgp::bird::is_not_running`]), so a node whose BIRD was
/// stopped first can still be stopped for good.
fn keeps_program(stop: Stop, pinned: bool, withdrawal: Option<&anyhow::Error>) -> bool {
    stop == Stop::Restart
        || (pinned && withdrawal.is_some_and(|error| !crate::bgp::bird::is_not_running(error)))
}

/// How lbd stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// For a restart or an upgrade (SIGTERM): the program stays attached
    /// and pinned, the connection table stays, VRRP sends no step-down and
    /// the VIPs stay (the next lbd resumes mastership if it comes back
    /// within the master-down interval; the systemd unit removes the VIPs
    /// with `lbd --release-vips` so a node that stays down answers no ARP).
    /// With `pin_dir = "off"` nothing forwards once lbd is gone: VRRP
    /// steps down as for [`Stop::Clean`] (see [`Engine::hand_over`]).
    Restart,
    /// For good (SIGINT, e.g. Ctrl-C): VRRP steps down (priority 0), the
    /// VIPs go, the program is detached and every pin removed.
    Clean,
}

#[cfg(test)]
mod tests;
