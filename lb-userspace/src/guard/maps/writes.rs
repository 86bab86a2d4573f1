//! The writes the installer makes, as a trait: to the maps in lbd, to a
//! record of their order in the tests, or nowhere in a dry run.

use lb_common::guard::VipGuard;

use super::{Result, TrieKey};

/// The writes the installer makes: to the maps in lbd, to a record in
/// the tests of their order (or of a failure, for `Guard`'s tests).
pub(in crate::guard) trait GuardWrites {
    /// Whether the writes go anywhere (false: a dry run's, which logs
    /// nothing of what it would do).
    fn written(&self) -> bool {
        true
    }
    /// Zeroes rule `id`'s hit counter.
    fn clear_hits(&mut self, id: u32) -> Result<()>;
    /// Puts a rule in a trie.
    fn insert(&mut self, key: &TrieKey, id: u32) -> Result<()>;
    /// Takes a rule out of its trie.
    fn remove(&mut self, key: &TrieKey) -> Result<()>;
    /// Writes `VIP_GUARDS[n]`.
    fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<()>;
}

/// Writes that go nowhere: [`Installer::preview`](super::Installer::preview)'s.
pub(super) struct Unwritten;

impl GuardWrites for Unwritten {
    fn written(&self) -> bool {
        false
    }

    fn clear_hits(&mut self, _: u32) -> Result<()> {
        Ok(())
    }

    fn insert(&mut self, _: &TrieKey, _: u32) -> Result<()> {
        Ok(())
    }

    fn remove(&mut self, _: &TrieKey) -> Result<()> {
        Ok(())
    }

    fn set_guard(&mut self, _: u32, _: VipGuard) -> Result<()> {
        Ok(())
    }
}
