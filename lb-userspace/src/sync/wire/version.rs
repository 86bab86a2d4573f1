//! Protocol versions: the range a node speaks, the version two nodes
//! agree on, and the mark that authenticates a node's range.
//!
//! A node of this release speaks every version of its [`Versions`] (by
//! default [`Versions::RELEASE`], 1 to 4), so a pair keeps replicating
//! while its nodes run different releases. Releases before it speak
//! exactly one version and refuse a Hello of another.
//!
//! # The version mark
//! The proofs and frame tags of versions 1 and 2 do not cover the
//! Hello's version field, and their format cannot change without
//! breaking the releases that speak them. They do cover both nonces, so
//! a node of this release ends its nonce with a mark, [`VERSION_MARK`]
//! and its range (`min u16 | max u16`): once the peer's proof checks out,
//! the peer's range is authentic, and both ends check that the version
//! the Hellos agreed on is the highest both speak. An on-path attacker
//! who rewrites a Hello's version to force an older one is caught then
//! (and one who touches the mark fails the proof). A peer of an earlier
//! release sends no mark (its nonce is random): its one version is not
//! authenticated, which is why every session logs the version it runs.

use super::{Nonce, NONCE_LEN};

/// Highest version of the encoding this release speaks, offered in its
/// Hello. 2: NatBatch; 3: ConfigDigest; 4: BackendStates.
pub const PROTOCOL_VERSION: u16 = 4;
/// Lowest version this release still speaks: 1, the releases before NAT
/// replication.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// The first version with NatBatch: a session at an older one sends no
/// NAT'd flows (and a receiver refuses them).
pub const NAT_BATCH_VERSION: u16 = 2;

/// What precedes the range at the end of a marked nonce. Eight bytes: a
/// random nonce of an earlier release ends so by chance once in 2^64.
pub(crate) const VERSION_MARK: [u8; 8] = *b"lbd-vers";
/// Where the mark starts in a nonce: the rest before it (20 bytes) stays
/// random.
pub(crate) const MARK_AT: usize = NONCE_LEN - VERSION_MARK.len() - 4;

/// The protocol versions one end speaks, `min..=max` (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Versions {
    min: u16,
    max: u16,
}

impl Versions {
    /// What this release speaks: 1 ([`MIN_PROTOCOL_VERSION`]) to 4
    /// ([`PROTOCOL_VERSION`]).
    pub const RELEASE: Versions = Versions {
        min: MIN_PROTOCOL_VERSION,
        max: PROTOCOL_VERSION,
    };

    /// `min..=max`; None when empty or including 0 (no such version).
    pub const fn new(min: u16, max: u16) -> Option<Versions> {
        if min == 0 || min > max {
            None
        } else {
            Some(Versions { min, max })
        }
    }

    /// The lowest version spoken.
    pub const fn min(self) -> u16 {
        self.min
    }

    /// The highest version spoken.
    pub const fn max(self) -> u16 {
        self.max
    }

    /// Whether `version` is spoken.
    pub const fn contains(self, version: u16) -> bool {
        self.min <= version && version <= self.max
    }

    /// The version two ends of these ranges run a session at: the
    /// highest both speak. None when the ranges do not meet.
    pub fn common(self, other: Versions) -> Option<u16> {
        let version = self.max.min(other.max);
        (version >= self.min.max(other.min)).then_some(version)
    }
}

impl Default for Versions {
    fn default() -> Self {
        Self::RELEASE
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.max)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// Ends `nonce` with the mark of `versions` (see the module's doc).
pub(crate) fn mark_nonce(nonce: &mut Nonce, versions: Versions) {
    let (min, max) = (versions.min.to_be_bytes(), versions.max.to_be_bytes());
    let mark = VERSION_MARK.iter().chain(&min).chain(&max);
    for (byte, value) in nonce.iter_mut().skip(MARK_AT).zip(mark) {
        *byte = *value;
    }
}

/// The range a nonce's mark says; None for a nonce without a valid mark
/// (a peer of an earlier release, which speaks only its Hello's version).
pub(crate) fn nonce_versions(nonce: &Nonce) -> Option<Versions> {
    let (magic, range) = nonce.get(MARK_AT..)?.split_at_checked(VERSION_MARK.len())?;
    if magic != VERSION_MARK {
        return None;
    }
    let [min_hi, min_lo, max_hi, max_lo] = <[u8; 4]>::try_from(range).ok()?;
    Versions::new(
        u16::from_be_bytes([min_hi, min_lo]),
        u16::from_be_bytes([max_hi, max_lo]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: u16, max: u16) -> Versions {
        Versions::new(min, max).unwrap()
    }

    #[test]
    fn the_common_version_is_the_highest_both_speak() {
        let release = Versions::RELEASE;
        assert_eq!((release.min(), release.max()), (1, 4));
        assert_eq!(release.common(release), Some(4));
        assert_eq!(release.common(range(1, 1)), Some(1));
        assert_eq!(range(1, 1).common(release), Some(1));
        assert_eq!(
            release.common(range(1, 2)),
            Some(2),
            "a release before ConfigDigest"
        );
        assert_eq!(
            release.common(range(1, 3)),
            Some(3),
            "a release before BackendStates"
        );
        assert_eq!(release.common(range(3, 4)), Some(4));
        // A future release that adds version 5 and drops 1 to 3.
        assert_eq!(release.common(range(4, 5)), Some(4));
        assert_eq!(range(1, 1).common(range(2, 3)), None);
        assert!(Versions::new(0, 1).is_none() && Versions::new(3, 2).is_none());
        assert!(release.contains(1) && release.contains(4) && !release.contains(5));
        assert_eq!(format!("{release} {}", range(1, 1)), "1..=4 1");
    }

    #[test]
    fn marked_nonces_carry_their_range_and_random_ones_none() {
        let random = crate::sync::wire::new_nonce();
        let mut nonce = random;
        assert_eq!(nonce_versions(&nonce), None);
        mark_nonce(&mut nonce, range(1, 2));
        assert_eq!(nonce_versions(&nonce), Some(range(1, 2)));
        assert_eq!(nonce[..MARK_AT], random[..MARK_AT], "the rest stays random");
        mark_nonce(&mut nonce, range(2, 3));
        assert_eq!(nonce_versions(&nonce), Some(range(2, 3)));
        // An empty range is no mark.
        let mut empty = nonce;
        empty[NONCE_LEN - 2..].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(nonce_versions(&empty), None);
    }
}
