//! The instance's addresses on the interface: added and announced
//! (gratuitous ARP / unsolicited NA) when it takes them, put back while
//! master if something removed them, removed (and retried) when it gives
//! them up.

use std::{net::IpAddr, sync::Arc};

use tracing::{debug, info, warn};

use super::Driver;
use crate::{
    netlink::InterfaceAddress,
    vrrp::{addresses, State},
};

/// Sends one gratuitous ARP / NA: `announce::announce` (interface index,
/// MAC, address) in lbd; tests record what would have left.
pub(super) type AnnounceFn = Arc<dyn Fn(u32, [u8; 6], IpAddr) -> std::io::Result<()> + Send + Sync>;

impl Driver {
    pub(super) async fn take_addresses(&mut self) {
        for address in &self.config.addresses {
            let prefix = addresses::host_prefix(*address);
            if let Err(error) = addresses::bounded(
                format!("adding VIP {address} to {}", self.interface.name),
                self.netlink
                    .add_address(self.interface.index, *address, prefix),
            )
            .await
            {
                warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "adding a VIP failed");
            }
        }
        self.holding = true;
        self.announce(self.config.announce_count);
    }

    /// Sends `count` rounds of gratuitous ARP / NA for the addresses,
    /// `announce_interval` apart, replacing rounds still in flight. None
    /// while the interface's new MAC waits for the data plane (see
    /// [`MacChange`](super::mac::MacChange)): following it announces in full.
    pub(super) fn announce(&mut self, count: u32) {
        if self.mac_change.waiting() {
            debug!(
                vrid = self.config.vrid,
                "VRRP: announcement held until the data plane accepts the interface's new MAC"
            );
            return;
        }
        let (index, mac, addresses) = (
            self.interface.index,
            self.interface.mac,
            self.config.addresses.clone(),
        );
        let announce_with = self.announce_with.clone();
        self.announcer
            .start(count, self.config.announce_interval, move || {
                for address in &addresses {
                    if let Err(error) = announce_with(index, mac, *address) {
                        warn!(%address, %error, "announcing a VIP failed");
                    }
                }
                std::future::ready(())
            });
    }

    /// While master: puts back addresses missing from `present` (the
    /// interface's, just read), and announces them again.
    pub(super) async fn restore_addresses(&mut self, present: &[InterfaceAddress]) {
        if !self.holding || self.machine.state() != State::Master {
            return;
        }
        let gone = addresses::missing(present, &self.config.addresses);
        if gone.is_empty() {
            return;
        }
        warn!(vrid = self.config.vrid, missing = ?gone, "VIP addresses vanished from the interface while master; adding them back");
        self.take_addresses().await;
    }

    /// Gives the addresses up. One whose removal failed keeps `holding`
    /// set, and the next check tries again (`retry_release`): a backup
    /// that kept a VIP would answer ARP / ND for it beside the master.
    pub(super) async fn release_addresses(&mut self) {
        // No more claims, even if rounds of the last one are still due.
        self.announcer.cancel();
        if !self.holding {
            return;
        }
        let mut failed = false;
        for address in &self.config.addresses {
            if let Err(error) =
                addresses::remove(&self.netlink, self.interface.index, *address).await
            {
                if self.release_failing {
                    debug!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed again");
                } else {
                    warn!(vrid = self.config.vrid, %address, error = format!("{error:#}"), "removing a VIP failed; tried again at each check (0.5 s) while lbd runs; after a stop, `lbd --release-vips` removes it");
                }
                failed = true;
            }
        }
        self.holding = failed;
        if self.release_failing && !failed {
            info!(
                vrid = self.config.vrid,
                "VRRP: the VIPs a failed removal left are removed"
            );
        }
        self.release_failing = failed;
    }

    /// While not master: gives up the addresses a release could not
    /// remove (see `release_addresses`).
    pub(super) async fn retry_release(&mut self) {
        if self.holding && self.machine.state() != State::Master {
            self.release_addresses().await;
        }
    }
}
