//! Where walks of the tables run: on a second mapping off lbd's loop, or in
//! the loop, with the back-off after a walk off the loop failed. Censuses
//! and replication's walks share it.

use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How long walks stay in lbd's loop after a walk off the loop failed,
/// before the tables are mapped a second time again; doubled after each
/// further failure up to [`REMAP_BACKOFF_MAX`]. Why: one failed walk (a
/// panic) must not put seconds-long walks of a huge table into the loop
/// for the rest of the process's life, nor a walk that keeps failing be
/// retried at every tick.
pub(crate) const REMAP_BACKOFF: Duration = Duration::from_secs(30);
/// The longest back-off between two tries of the second mapping.
pub(crate) const REMAP_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Where walks of the tables are made (censuses here, replication's walks
/// too): on a second mapping off lbd's loop, or in the loop where none
/// can be made, or for a while after a walk off the loop failed.
enum Mapping<T> {
    /// Not looked up yet (or looked up again: the back-off passed).
    Unopened,
    /// A second mapping, walked on a blocking thread.
    Mapped(T),
    /// Walked in the loop: for good (`retry_at` None: no second mapping
    /// can be made), or until `retry_at`.
    Inline { retry_at: Option<Instant> },
}

/// The second mapping walks off lbd's loop read, with its fallback to the
/// loop and the back-off after which that fallback is left again (see
/// [`REMAP_BACKOFF`]). `T` is the mapping (cheap to clone: an `Arc`).
pub(crate) struct OffLoop<T> {
    mapping: Mapping<T>,
    /// Walks off the loop failed in a row (reset by one that succeeds):
    /// each doubles the back-off.
    failures: u32,
    /// What walks (for the log).
    what: &'static str,
}

impl<T: Clone> OffLoop<T> {
    /// Nothing mapped yet: the first walk maps the tables.
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            mapping: Mapping::Unopened,
            failures: 0,
            what,
        }
    }

    /// Already mapped as `mapped` (tests: tables in memory).
    #[cfg(test)]
    pub(crate) fn mapped(mapped: T, what: &'static str) -> Self {
        Self {
            mapping: Mapping::Mapped(mapped),
            failures: 0,
            what,
        }
    }

    /// The mapping a walk starting at `now` reads off the loop; None: walk
    /// in the loop. Maps the tables with `open` (None: they cannot be
    /// mapped at all, a kernel map) the first time, and again once the
    /// back-off after a failed walk passed. A first mapping that fails
    /// leaves the walks in the loop for good, as before; one that fails
    /// on a retry waits for the next back-off.
    pub(crate) fn get<E: std::fmt::Display>(
        &mut self,
        now: Instant,
        open: impl FnOnce() -> Option<Result<T, E>>,
    ) -> Option<T> {
        if let Mapping::Inline { retry_at: Some(at) } = self.mapping {
            if now >= at {
                self.mapping = Mapping::Unopened;
            }
        }
        if matches!(self.mapping, Mapping::Unopened) {
            let what = self.what;
            self.mapping = match open() {
                Some(Ok(mapped)) => {
                    if self.failures > 0 {
                        info!(
                            walks = what,
                            "the tables are mapped again: walked apart from lbd's loop"
                        );
                    }
                    Mapping::Mapped(mapped)
                }
                Some(Err(error)) if self.failures > 0 => {
                    let backoff = self.back_off();
                    warn!(walks = what, %error, retry_in_s = backoff.as_secs(), "the tables cannot be mapped again apart from lbd's loop; walked in the loop until the next try");
                    Mapping::Inline {
                        retry_at: Some(now + backoff),
                    }
                }
                Some(Err(error)) => {
                    warn!(walks = what, %error, "the tables cannot be mapped apart from lbd's loop; walked in the loop");
                    Mapping::Inline { retry_at: None }
                }
                None => Mapping::Inline { retry_at: None },
            };
        }
        match &self.mapping {
            Mapping::Mapped(mapped) => Some(mapped.clone()),
            Mapping::Unopened | Mapping::Inline { .. } => None,
        }
    }

    /// A walk off the loop failed at `now` (it panicked): walks are made
    /// in the loop until the back-off passes, then mapped again.
    pub(crate) fn failed(&mut self, now: Instant) {
        if matches!(self.mapping, Mapping::Mapped(_)) {
            let backoff = self.back_off();
            warn!(
                walks = self.what,
                retry_in_s = backoff.as_secs(),
                "a walk of the tables apart from lbd's loop failed; they are walked in the loop until mapped again"
            );
            self.mapping = Mapping::Inline {
                retry_at: Some(now + backoff),
            };
        }
    }

    /// A walk off the loop succeeded: the next failure backs off from
    /// [`REMAP_BACKOFF`] again.
    pub(crate) fn succeeded(&mut self) {
        if matches!(self.mapping, Mapping::Mapped(_)) {
            self.failures = 0;
        }
    }

    /// The back-off after one more failure.
    fn back_off(&mut self) -> Duration {
        let backoff = REMAP_BACKOFF
            .saturating_mul(1 << self.failures.min(5))
            .min(REMAP_BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        backoff
    }
}
