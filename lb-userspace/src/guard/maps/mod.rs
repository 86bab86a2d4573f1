//! The guards' maps as lbd sees them (`VIP_GUARDS`, the two ACL tries,
//! the per-rule hit counters) and the installer that brings them to a
//! `GuardConfig`: only what changed is written, in an order that never
//! opens a gap (new rules before the flags that use them, flags cleared
//! before the rules they used go). A rule keeps its id (and its counter)
//! while it stays, also across a hitless restart (the maps are pinned and
//! read back at start).

mod entries;
#[cfg(test)]
mod fixtures;
mod handles;
mod installer;
mod writes;

pub use entries::vip_guard;
pub(super) use entries::TrieKey;
pub use handles::GuardMaps;
pub use installer::{Installer, RuleCount};
pub(super) use writes::GuardWrites;

use crate::dataplane::DataplaneError;

type Result<T> = std::result::Result<T, DataplaneError>;
