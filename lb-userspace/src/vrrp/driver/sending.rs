//! Adverts sent: to the group or to each unicast peer, from the current
//! source (looked at again when a send is refused for it), and the
//! rate-limited warnings of sends that fail.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    source::{source_may_be_stale, source_recheck_due},
    Driver,
};
use crate::{
    sync::log_limit::LogLimit,
    vrrp::{Advertisement, ChecksumMode, Family},
};

/// Least time between two warnings about adverts that did not leave: with
/// the link down every advert fails, up to 100 a second.
const SEND_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The rate limit of the warnings about adverts that did not leave: the
/// first failure is said at once, then one line per
/// [`SEND_FAILURE_LOG_EVERY`] with those left unsaid, whether or not
/// adverts left in between (intermittent failures, a full buffer now and
/// then, are said no more often than a run of them). The first advert
/// that leaves after a run of failures that was warned about says how
/// many that run counted; after a run said nothing about, nothing is said
/// (its failures are counted in the next warning's unsaid ones).
#[derive(Debug, Clone)]
pub(super) struct SendFailures {
    limit: LogLimit,
    /// Failed sends since the last advert that left.
    failed: u64,
    /// A warning was said since the last advert that left.
    warned: bool,
}

impl Default for SendFailures {
    fn default() -> Self {
        Self {
            limit: LogLimit::new(SEND_FAILURE_LOG_EVERY),
            failed: 0,
            warned: false,
        }
    }
}

impl SendFailures {
    /// A send failed at `now`: `Some(n)` to warn, with `n` failures left
    /// unsaid since the last warning, or `None` (counted).
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failed = self.failed.saturating_add(1);
        let warn = self.limit.allow(now);
        self.warned |= warn.is_some();
        warn
    }

    /// An advert left: `Some(n)` with the sends that failed before it, if
    /// a warning was said about them. The rate limit runs on.
    fn sent(&mut self) -> Option<u64> {
        let failed = std::mem::take(&mut self.failed);
        std::mem::take(&mut self.warned).then_some(failed)
    }
}

impl Driver {
    /// Sends an advert of `priority` to the group or each unicast peer;
    /// whether every one left. A send refused for its source looks at the
    /// interface's addresses again and, if the source moved, sends once
    /// more from the new one.
    pub(super) async fn send_advert(&mut self, priority: u8) -> bool {
        let ad = Advertisement {
            vrid: self.config.vrid,
            priority,
            max_adver_int_cs: self.machine.settings().adver_interval_cs,
            addresses: self.config.addresses.clone(),
        };
        let targets: Vec<IpAddr> = if self.config.unicast_peers.is_empty() {
            vec![Family::of(&self.socket.local()).multicast_group()]
        } else {
            self.config.unicast_peers.clone()
        };
        let mut all_sent = true;
        for dst in targets {
            let mut result = self.send_to(&ad, dst).await;
            if let Err(error) = &result {
                let now = Instant::now();
                if source_may_be_stale(error) && source_recheck_due(self.source_checked_at, now) {
                    self.source_checked_at = Some(now);
                    if self.follow_source().await {
                        result = self.send_to(&ad, dst).await;
                    }
                }
            }
            if let Err(error) = result {
                if let Some(suppressed) = self.send_failures.failed(Instant::now()) {
                    warn!(vrid = self.config.vrid, %dst, from = %self.socket.local(), %error, suppressed, "sending a VRRP advert failed (while they fail, logged at most every {} s, with the failures left unsaid)", SEND_FAILURE_LOG_EVERY.as_secs());
                }
                all_sent = false;
            }
        }
        if all_sent {
            if let Some(failed) = self.send_failures.sent() {
                info!(
                    vrid = self.config.vrid,
                    failed, "VRRP adverts leave again after failed sends"
                );
            }
        }
        all_sent
    }

    /// Encodes `ad` from the current source to `dst` and sends it.
    async fn send_to(&self, ad: &Advertisement, dst: IpAddr) -> std::io::Result<()> {
        let local = self.socket.local();
        // keepalived 2.2.7 sends (and expects) the IPv4 pseudo-header.
        let payload = ad
            .encode(local, dst, ChecksumMode::PseudoHeader)
            .map_err(|error| std::io::Error::other(format!("encoding the advert: {error}")))?;
        self.socket.send(&payload, dst).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::{driver::tests::ip, DecodeError};

    /// With the link down every advert fails (up to 100 a second): the
    /// first failure is said at once, then one line per 10 s with the
    /// count left unsaid; the first advert that leaves says how many
    /// failed. An advert that leaves does not reset the limit.
    #[test]
    fn failed_sends_are_logged_at_most_every_ten_seconds() {
        let t = Instant::now();
        let mut failures = SendFailures::default();
        assert_eq!(failures.sent(), None);
        assert_eq!(failures.failed(t), Some(0));
        for k in 1..1000_u32 {
            assert_eq!(
                failures.failed(t + Duration::from_millis(k.into()) * 10),
                None
            );
        }
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(999));
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
        assert_eq!(failures.sent(), Some(1002));
        assert_eq!(failures.sent(), None);
        let later = t + 2 * SEND_FAILURE_LOG_EVERY;
        assert_eq!(failures.failed(later), Some(1));
    }

    /// Failures between adverts that leave (a full buffer now and then)
    /// are said once per 10 s, as a run of them would be, and only an
    /// advert after a warned-about run says that adverts leave again.
    #[test]
    fn intermittent_send_failures_keep_the_rate_limit() {
        let t = Instant::now();
        let second = Duration::from_secs(1);
        let mut failures = SendFailures::default();
        assert_eq!(failures.failed(t), Some(0));
        assert_eq!(failures.sent(), Some(1));
        for k in 1..10_u32 {
            assert_eq!(failures.failed(t + second * k), None, "{k} s");
            assert_eq!(failures.sent(), None, "{k} s");
        }
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), Some(9));
        assert_eq!(failures.failed(t + SEND_FAILURE_LOG_EVERY), None);
        assert_eq!(failures.sent(), Some(2));
        assert_eq!(failures.sent(), None);
    }

    /// The checksum of an IPv6 advert covers the pseudo-header with the
    /// address it leaves from: a driver that moved to a global source
    /// encodes with it (the same `VrrpSocket::local` the packet-info
    /// control message names), so a peer's check passes.
    #[test]
    fn the_ipv6_checksum_uses_the_source_the_advert_leaves_from() {
        let ad = Advertisement {
            vrid: 51,
            priority: 100,
            max_adver_int_cs: 100,
            addresses: vec![ip("2001:2::100")],
        };
        let (global, peer) = (ip("2001:2::2"), ip("2001:2::12"));
        let payload = ad
            .encode(global, peer, ChecksumMode::PseudoHeader)
            .expect("encodes");
        assert!(Advertisement::decode(&payload, global, peer).is_ok());
        assert_eq!(
            Advertisement::decode(&payload, ip("fe80::2"), peer),
            Err(DecodeError::Checksum)
        );
    }
}
