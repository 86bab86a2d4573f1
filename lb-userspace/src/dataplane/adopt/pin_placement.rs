//! Telling the loader where to pin each map as the pin check found the
//! pins: opened from its pin, made under its name, or staged until this
//! lbd's program runs.

use aya::EbpfLoader;
use tracing::info;

use super::super::{attach::remove_pin, DataplaneError, Result};
use super::PinPlan;
use crate::pinning::{PinDir, PinError, PINNED_MAPS};

/// Tells `loader` where to pin each map, as `plan` found the pins: a map
/// taken over is opened from its pin; one nothing is pinned under yet is
/// made and pinned under its name (nothing of a previous lbd is
/// displaced). Without the state maps adopted, one made in place of a
/// pinned map is staged (`PinDir::staged_dir`) and takes its name only
/// once this lbd's program runs (`Dataplane::promote_staged`), so a start
/// that stops before (the verifier, the commit or the attach failed)
/// leaves the previous lbd's pins as they were, its program forwarding on
/// them, for the start after to adopt: the state, the connection and NAT
/// tables. With them adopted, a pinned map that does not fit alone is
/// replaced at once: what such a map holds is started afresh by design
/// whoever adopts the state next (a half-open table of another size, a
/// VIP index rebuilt from `VIPS`, NAT sources written again by the first
/// commit, counters). `fresh`: tables whose flows are carried over from
/// the table moved aside (`conntrack::legacy`, `nat::legacy`); what is
/// left under their names (a kernel-map lbd's one-bucket placeholder, a
/// copy an upgrade stopped before its swap made) is removed now, the
/// moved table staying until the swap. Returns the maps staged and those
/// pinned under names nothing was pinned under.
pub(in crate::dataplane) fn place_pins(
    loader: &mut EbpfLoader<'_>,
    pins: &PinDir,
    plan: &PinPlan,
    fresh: &[&str],
) -> Result<Placed> {
    let mut staged = Vec::new();
    let mut made = Vec::new();
    for name in PINNED_MAPS {
        let path = pins.map_path(name);
        if plan.kept.contains(&name) {
            loader.map_pin_path(name, path);
            continue;
        }
        if !path.exists() {
            loader.map_pin_path(name, path);
            made.push(name);
            continue;
        }
        if plan.adopt || fresh.contains(&name) {
            remove_pin(&path)?;
            loader.map_pin_path(name, path);
            continue;
        }
        if staged.is_empty() {
            let dir = pins.staged_dir();
            std::fs::create_dir_all(&dir).map_err(|source| {
                DataplaneError::Pin(PinError::Io {
                    action: "creating",
                    path: dir,
                    source,
                })
            })?;
        }
        // The loader would open a map left there as this lbd's own.
        let at = pins.staged_path(name);
        remove_pin(&at)?;
        loader.map_pin_path(name, at);
        staged.push(name);
    }
    if !staged.is_empty() {
        info!(maps = ?staged, dir = %pins.staged_dir().display(), "the pinned state is not adopted, and the maps made afresh in its place are staged: they take their names once this lbd's program runs, the previous lbd's pins stay as they are until then");
    }
    Ok(Placed { staged, made })
}

/// Where `place_pins` told the loader to pin the maps it makes.
pub(in crate::dataplane) struct Placed {
    /// Made in place of a pinned map, pinned in the staging directory.
    pub(in crate::dataplane) staged: Vec<&'static str>,
    /// Pinned under their names, where nothing was pinned: no program of
    /// a previous lbd uses them, so a load that fails removes them (all
    /// of them on a node without pins, whose next start would adopt them
    /// otherwise).
    pub(in crate::dataplane) made: Vec<&'static str>,
}
