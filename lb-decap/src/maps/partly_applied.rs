//! The error of a `sync` that could not put the maps back either: a type
//! of its own so the caller can tell it apart (`downcast_ref`) and not say
//! the previous configuration stays in force.

/// A `sync` that failed half-way and could not put the maps back either:
/// they hold part of the new configuration and part of the old, so the
/// caller must not say the previous one stays in force.
#[derive(Debug)]
pub struct PartlyApplied {
    pub(super) error: anyhow::Error,
    pub(super) restore: anyhow::Error,
}

impl std::fmt::Display for PartlyApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "updating the maps failed ({:#}), and putting them back failed too ({:#}): they hold part of the new configuration and part of the old (`lb-decap status` shows which)",
            self.error, self.restore
        )
    }
}

impl std::error::Error for PartlyApplied {}
