//! Carrying out what the machine decided: adverts sent, transitions
//! made, announcements repeated, and the status published after.

use tracing::{debug, info, warn};

use super::{record::Recorded, Driver};
use crate::vrrp::Action;

impl Driver {
    pub(super) async fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    // An advert that did not leave tells the backup
                    // nothing: a restart must not resume mastership on it.
                    if self.send_advert(priority).await && priority > 0 {
                        self.record_state(Recorded::Master);
                    }
                }
                Action::BecomeMaster => {
                    info!(
                        vrid = self.config.vrid,
                        priority = self.machine.priority(),
                        "VRRP: became master"
                    );
                    self.transition(action).await;
                }
                Action::BecomeBackup if self.machine.source_is_gone() => {
                    warn!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup, giving up the VIPs: no address to send adverts from, so the peer hears none and takes over (keepalived's FAULT); this node does not take over until one is back");
                    self.transition(action).await;
                }
                Action::BecomeBackup => {
                    info!(vrid = self.config.vrid, master = ?self.machine.master_address(), "VRRP: became backup");
                    self.transition(action).await;
                }
                Action::BecomeInitialize => self.transition(action).await,
                Action::Reclaim => {
                    if self.holding {
                        info!(vrid = self.config.vrid, "VRRP: master again after the link was down or lbd did not run; announcing the VIPs again, in case the other node took them meanwhile");
                        self.announce(self.config.announce_count);
                    }
                }
                Action::Refresh => {
                    // Rounds still running (a claim, a reclaim) cover it.
                    if self.holding && !self.announcer.running() {
                        debug!(
                            vrid = self.config.vrid,
                            "VRRP: periodic announcement of the VIPs"
                        );
                        self.announce(1);
                    }
                }
                Action::Reannounce => {
                    info!(vrid = self.config.vrid, "VRRP: another router claims our addresses with a lower priority; announcing them again");
                    // Rounds still running (a claim just made) go on:
                    // one more round would cut them short.
                    if !self.announcer.running() {
                        self.announce(1);
                    }
                }
            }
        }
        self.publish();
    }
}
