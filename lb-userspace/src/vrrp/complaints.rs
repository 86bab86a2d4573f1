//! Warnings about adverts an instance ignores that mean a fault on the
//! link (RFC 5798 §7.1 asks that an address-list mismatch be logged): at
//! most one line a minute per reason and peer, so a misconfigured peer
//! advertising ten times a second, or a stranger, cannot flood the log.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::DecodeError;
use crate::sync::log_limit::LogLimit;

/// One line per reason and peer this often.
const EVERY: Duration = Duration::from_secs(60);

/// Peers tracked one by one; the rest (forged sources) share one limit.
const MAX_PEERS: usize = 16;

/// The rate limits of one instance's warnings.
#[derive(Debug)]
pub(crate) struct Complaints {
    /// By reason (an `Invalid`/`DecodeError` label) and source address,
    /// each with when it was last heard of.
    by_peer: HashMap<(&'static str, IpAddr), Tracked>,
    /// For every (reason, peer) past [`MAX_PEERS`].
    others: LogLimit,
}

/// One (reason, peer)'s limit, and when it last complained: an entry
/// quiet for [`EVERY`] is forgotten when room is needed (its next line
/// would be said anyway), so sources long gone do not keep a real peer's
/// new fault in the limit shared with strangers.
#[derive(Debug)]
struct Tracked {
    limit: LogLimit,
    seen: Instant,
}

impl Default for Complaints {
    fn default() -> Self {
        Self {
            by_peer: HashMap::new(),
            others: LogLimit::new(EVERY),
        }
    }
}

impl Complaints {
    /// Whether to warn about an advert from `peer` ignored for `reason` at
    /// `now`: `Some(n)` with the number of such adverts left unsaid since
    /// the last line, or `None` (counted, to be said next time).
    pub(crate) fn allow(
        &mut self,
        reason: &'static str,
        peer: IpAddr,
        now: Instant,
    ) -> Option<u64> {
        let key = (reason, peer);
        if !self.by_peer.contains_key(&key) && self.by_peer.len() >= MAX_PEERS {
            self.by_peer
                .retain(|_, tracked| now.saturating_duration_since(tracked.seen) < EVERY);
            if self.by_peer.len() >= MAX_PEERS {
                return self.others.allow(now);
            }
        }
        let tracked = self.by_peer.entry(key).or_insert_with(|| Tracked {
            limit: LogLimit::new(EVERY),
            seen: now,
        });
        tracked.seen = now;
        tracked.limit.allow(now)
    }
}

/// The addresses only `theirs` lists and those only `ours` does, each
/// sorted: what a warning about a mismatched advert names.
pub(crate) fn differing(theirs: &[IpAddr], ours: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let theirs: BTreeSet<IpAddr> = theirs.iter().copied().collect();
    let ours: BTreeSet<IpAddr> = ours.iter().copied().collect();
    (
        theirs.difference(&ours).copied().collect(),
        ours.difference(&theirs).copied().collect(),
    )
}

/// The version of a packet refused for its version (`error`) that carries
/// `vrid` (the second byte in every VRRP version): a router of our
/// virtual router speaking another version (keepalived without
/// `vrrp_version 3` speaks VRRPv2), whose adverts this node never hears,
/// nor it ours: a split brain, worth a warning. `None` for anything else
/// (another version for another VRID is someone else's business).
pub(crate) fn other_version_for(error: &DecodeError, payload: &[u8], vrid: u8) -> Option<u8> {
    match error {
        DecodeError::Version(version) if payload.get(1) == Some(&vrid) => Some(*version),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    /// keepalived's default VRRPv2 advert for VRID 51 (version 2, type 1,
    /// priority 100, one address, auth type 0, 1 s, checksum, address,
    /// 8 bytes of authentication data): decoding refuses it for its
    /// version, and it names our VRID.
    #[test]
    fn a_vrrpv2_peer_with_our_vrid_is_told_apart() {
        let v2: [u8; 20] = [
            0x21, 51, 100, 1, 0, 1, 0xba, 0x52, 198, 18, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let error = super::super::Advertisement::decode(&v2, ip("198.18.0.3"), ip("224.0.0.18"))
            .expect_err("a VRRPv2 packet");
        assert_eq!(error, DecodeError::Version(2));
        assert_eq!(other_version_for(&error, &v2, 51), Some(2));
        // Another virtual router's, or another fault: not this warning.
        assert_eq!(other_version_for(&error, &v2, 52), None);
        assert_eq!(other_version_for(&DecodeError::Type(2), &v2, 51), None);
        assert_eq!(other_version_for(&DecodeError::Checksum, &v2, 51), None);
        assert_eq!(other_version_for(&error, &[0x21], 51), None);
    }

    #[test]
    fn once_a_minute_per_reason_and_peer() {
        let mut c = Complaints::default();
        let t = Instant::now();
        let (a, b) = (ip("198.18.0.2"), ip("198.18.0.3"));
        assert_eq!(c.allow("address_mismatch", a, t), Some(0));
        // The same again (ten adverts a second): held back and counted.
        for k in 1..=10 {
            assert_eq!(
                c.allow("address_mismatch", a, t + Duration::from_millis(100 * k)),
                None
            );
        }
        // Another peer, or another reason, is said at once.
        assert_eq!(c.allow("address_mismatch", b, t), Some(0));
        assert_eq!(c.allow("ttl", a, t), Some(0));
        // A minute on, with the count of those left out.
        assert_eq!(
            c.allow("address_mismatch", a, t + Duration::from_secs(60)),
            Some(10)
        );
    }

    #[test]
    fn forged_sources_share_one_limit() {
        let mut c = Complaints::default();
        let t = Instant::now();
        let said = (0..200u8)
            .filter(|n| {
                c.allow("checksum", IpAddr::from([198, 18, 1, *n]), t)
                    .is_some()
            })
            .count();
        assert_eq!(said, MAX_PEERS + 1);
        assert!(c.by_peer.len() <= MAX_PEERS);
    }

    /// Sixteen (reason, source) pairs recorded long ago (old peers,
    /// strangers) no longer crowd out a real peer's new fault: idle
    /// entries are forgotten, so its first line is said at once rather
    /// than shared with a stranger holding `others`.
    #[test]
    fn idle_entries_are_pruned_so_a_new_fault_is_said() {
        let mut c = Complaints::default();
        let t0 = Instant::now();
        for n in 0..MAX_PEERS {
            let source = IpAddr::from([198, 18, 1, u8::try_from(n).expect("small")]);
            assert_eq!(c.allow("checksum", source, t0), Some(0));
        }
        let later = t0 + Duration::from_secs(600);
        // A stranger still sending: said (and holding the shared limit).
        assert_eq!(c.allow("ttl", ip("203.0.113.9"), later), Some(0));
        let real_peer = ip("198.18.0.3");
        assert_eq!(
            c.allow(
                "address_mismatch",
                real_peer,
                later + Duration::from_secs(1)
            ),
            Some(0)
        );
        assert!(c.by_peer.len() <= MAX_PEERS);
    }

    #[test]
    fn differing_names_each_sides_extra_addresses() {
        let x = ip("198.18.0.100");
        let y = ip("198.18.0.101");
        let z = ip("198.18.0.102");
        assert_eq!(differing(&[x, y], &[x]), (vec![y], vec![]));
        assert_eq!(differing(&[x], &[z, x]), (vec![], vec![z]));
        assert_eq!(differing(&[y, x], &[x, y]), (vec![], vec![]));
    }
}
