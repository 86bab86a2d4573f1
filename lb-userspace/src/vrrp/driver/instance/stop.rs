//! How an instance ends: stopped (its addresses released), within a
//! limit past which it is aborted and what it may have left is named, or
//! left for the next lbd to resume (a restart).

use std::{net::IpAddr, time::Duration};

use tracing::{info, warn};

use super::Instance;
use crate::vrrp::driver::record::{read_record, restart_record};

impl Instance {
    /// Stops without a word to the peer, keeping the addresses (a restart:
    /// the next lbd resumes as master if it is back in time; otherwise the
    /// backup takes over after the master-down interval). A master's
    /// state file gets the restart record the next lbd resumes on (see
    /// [`Self::resumes`]).
    pub(crate) async fn abandon(mut self) {
        // Abort first and wait for it: dropping the stop sender while the
        // task still runs would be read as "stop" (priority 0, addresses
        // released), the opposite of what a restart wants.
        self.task.abort();
        let _ = (&mut self.task).await;
        // Only now, with the task gone: it writes a master record with
        // each advert.
        if let Some(path) = &self.state_file {
            if let Some(record) = restart_record(read_record(path)) {
                if let Err(error) = std::fs::write(path, record.line()) {
                    warn!(vrid = self.config.vrid, path = %path.display(), %error, "recording the VRRP restart failed: the next lbd does not resume mastership");
                }
            }
        }
        info!(
            vrid = self.config.vrid,
            "VRRP instance left for the next lbd"
        );
    }

    /// [`Self::stop`], waiting up to `limit`: `None` once the instance
    /// stopped; otherwise it is aborted, and what it may have left on the
    /// interface (its addresses: the release may not have run, or not to
    /// its end).
    async fn stop_within(mut self, limit: Duration) -> Option<Vec<IpAddr>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(limit, &mut self.task).await.is_ok() {
            return None;
        }
        self.task.abort();
        let _ = (&mut self.task).await;
        Some(self.config.addresses.clone())
    }

    /// Steps down at once (priority 0 advert: the backup takes over after
    /// its skew time) and removes the addresses; waits up to
    /// [`STOP_LIMIT`], then aborts it and warns, naming the addresses it
    /// may have left and `lbd --release-vips`.
    pub(crate) async fn stop(self) {
        let vrid = self.config.vrid;
        if let Some(left) = self.stop_within(STOP_LIMIT).await {
            warn!(vrid, addresses = ?left, "{}", left_behind_warning(&left));
        }
    }
}

/// The warning for a stop that did not end in time (see
/// [`Instance::stop`]): the task was aborted, possibly before it removed
/// `addresses` (all the instance's: which it had removed is not known),
/// so both kernels may answer ARP / ND for them once the peer takes over,
/// and the "stopped" notify may not have run.
fn left_behind_warning(addresses: &[IpAddr]) -> String {
    let list: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
    format!(
        "VRRP instance did not stop within {} s and was aborted: its addresses may still be on the interface ({}), and its \"stopped\" notify may not have run; once lbd has exited, `lbd --release-vips` removes them",
        STOP_LIMIT.as_secs(),
        list.join(", ")
    )
}

/// Longest [`Instance::stop`] waits for the instance's step-down (the
/// priority-0 advert, the record, the addresses removed).
const STOP_LIMIT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio::sync::{oneshot, watch};

    use super::*;
    use crate::{
        config::VrrpConfig,
        vrrp::{
            driver::{
                tests::{ip, vrrp_config},
                InstanceStatus, Notifies,
            },
            Counters, State,
        },
    };

    /// An instance whose driver does not end in time (its release of the
    /// addresses stuck on netlink) is aborted; what it may have left on
    /// the interface is named, with the command that removes it.
    #[tokio::test]
    async fn a_stop_that_overruns_names_the_addresses_left() {
        let config = VrrpConfig {
            addresses: vec![ip("198.18.0.10"), ip("198.18.0.11")],
            ..vrrp_config(100, "198.18.0.10")
        };
        let (stop_tx, _stop_rx) = oneshot::channel();
        let (_status_tx, status_rx) = watch::channel(InstanceStatus {
            vrid: config.vrid,
            state: State::Master,
            configured_priority: 100,
            priority: 100,
            master: None,
            addresses: config.addresses.clone(),
            counters: Counters::default(),
            ignored: BTreeMap::new(),
            link_down: false,
            link_down_since: None,
            no_source: false,
            no_source_since: None,
        });
        let instance = Instance {
            priority: watch::channel(100).0,
            link_ups: watch::channel(0).0,
            data_plane_mac: watch::channel([0; 6]).0,
            synced: watch::channel(false).0,
            status: status_rx,
            stop: Some(stop_tx),
            task: tokio::spawn(std::future::pending()),
            config: config.clone(),
            notifies: Notifies::default(),
            state_file: None,
        };
        let left = instance.stop_within(Duration::from_millis(50)).await;
        assert_eq!(left, Some(config.addresses.clone()));
        let warning = left_behind_warning(&config.addresses);
        for address in &config.addresses {
            assert!(warning.contains(&address.to_string()), "{warning}");
        }
        assert!(warning.contains("lbd --release-vips"), "{warning}");
    }
}
