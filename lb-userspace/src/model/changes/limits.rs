//! The caps a change is held to: backends across all VIPs, and VIPs the
//! data plane's maps were sized for at start.

use super::super::{Model, ModelError};

impl Model {
    /// Backends of all VIPs together.
    pub(crate) fn backend_count(&self) -> usize {
        self.vips.values().map(|v| v.backends.len()).sum()
    }

    /// Refuses a change that leaves `total` backends in all if that is more
    /// than the data plane's backend map holds.
    pub(super) fn check_total_backends(total: usize) -> Result<(), ModelError> {
        if total > crate::config::MAX_BACKENDS_TOTAL {
            return Err(ModelError::Limit(format!(
                "too many backends: {total} in all, at most {} are allowed across all VIPs",
                crate::config::MAX_BACKENDS_TOTAL
            )));
        }
        Ok(())
    }
}

/// Whether a model of `next` VIPs fits maps sized for `capacity` VIPs at
/// start, coming from `current`: a change may not add past the capacity,
/// but a model already past it (a smaller restart) may still shrink.
pub(crate) fn fits_the_maps(next: usize, current: usize, capacity: u32) -> Result<(), ModelError> {
    if next > capacity as usize && next > current {
        return Err(ModelError::Limit(format!(
            "too many VIPs: the data plane was sized for {capacity} at start (the file's VIPs and room for more); put them in the file and restart lbd to make room for {next} (the maps are made anew then: the connection table is not adopted)"
        )));
    }
    Ok(())
}
