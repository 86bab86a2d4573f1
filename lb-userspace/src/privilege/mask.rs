//! Capability sets as the kernel writes them (`/proc/*/status`, `capget`).

use std::fmt;

use caps::Capability;

/// A set of capabilities as the kernel writes it: bit n is capability n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapMask(pub u64);

impl CapMask {
    /// The set of `capabilities`.
    pub fn of(capabilities: &[Capability]) -> Self {
        Self(capabilities.iter().fold(0, |m, c| m | c.bitmask()))
    }

    /// Adds `capability`.
    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bitmask();
    }

    /// Whether `capability` is in the set.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bitmask() != 0
    }

    /// Both sets together.
    pub(crate) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// What both sets have.
    pub fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// What `self` has and `other` has not.
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The capabilities, lowest number first (named ones only).
    pub fn capabilities(self) -> Vec<Capability> {
        let mut all: Vec<Capability> = caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect();
        all.sort_by_key(Capability::index);
        all
    }

    /// The set of a `caps` hash set.
    pub(super) fn from_set(set: &caps::CapsHashSet) -> Self {
        Self(set.iter().fold(0, |m, c| m | c.bitmask()))
    }
}

impl fmt::Display for CapMask {
    /// `CAP_BPF,CAP_NET_ADMIN` (`none` when empty), for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .capabilities()
            .iter()
            .map(ToString::to_string)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}
