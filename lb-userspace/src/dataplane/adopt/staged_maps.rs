//! The maps a start stages in place of pins it does not adopt: pinned
//! under their names once its program runs, removed if it stops before,
//! and finished or undone by the next start if it was killed in between.

use std::collections::HashSet;

use aya::{maps::MapInfo, programs::ProgramError};
use lb_common::consts::names;
use tracing::{info, warn};

use super::super::{map_error, Dataplane, Result};
use super::unlisted;
use crate::pinning::{program_gone, PinDir, FORMAT_EPOCH, STATE_MAPS};

impl Dataplane {
    /// Pins the maps this lbd's load staged (`place_pins`: made in place
    /// of a previous lbd's whose state it does not adopt) under their
    /// names, replacing the previous lbd's pins, once this lbd's
    /// program runs: right after its swap (`attach`, `attach_tc`), or at
    /// `finish_adoption` for a caller that runs it by other means. Without
    /// the state maps adopted, the pins of the tables flows were to be
    /// carried over from go too (`pinning::CARRIED_FROM`). Once only.
    pub(in crate::dataplane) fn promote_staged(&mut self) -> Result<()> {
        if self.promoted {
            return Ok(());
        }
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        let moved = pins.promote_staged(!self.adopted)?;
        self.promoted = true;
        if !moved.is_empty() {
            info!(maps = ?moved, "the maps this lbd started afresh now take the place of the previous lbd's pins (its program runs on them)");
        }
        // This lbd's program runs on the pins now: they hold its format
        // (an older build's flows are re-placed at `finish_adoption`).
        if let Err(error) = pins.write_format_stamp() {
            warn!(%error, epoch = FORMAT_EPOCH, "pinning this build's format stamp failed: a later start of an older build cannot tell these pins are newer than it knows, and may misread the connection table");
        }
        Ok(())
    }

    /// Removes the maps this lbd staged and did not pin under their names
    /// (it stops before its program ran): the previous lbd's pins stay as
    /// they were, and the staged maps' memory is freed (else the next
    /// start removes them, see `recover_staged`).
    pub(in crate::dataplane) fn discard_staged(&mut self) {
        if self.promoted || self.staged.is_empty() {
            return;
        }
        let Some(pins) = &self.pins else {
            return;
        };
        match pins.discard_staged() {
            Ok(removed) => {
                info!(maps = removed, "this lbd stopped before its program ran: the maps it staged are removed, the previous lbd's pins stay as they were");
            }
            Err(error) => {
                warn!(%error, "removing the maps this lbd staged failed: the next start removes them");
            }
        }
    }
}

/// Finishes, or undoes, what a previous start staged and did not pin
/// under their names (`place_pins`): run before anything reads the pins.
/// A staged map a loaded program uses means that start's program ran (it
/// stopped between its swap and `promote_staged`): its maps take their
/// names now, as it would have done, and the tables flows were to be
/// carried over from go if the state maps are among them. Staged maps no
/// program uses are a start that stopped before its swap: removed, the
/// pins they were to replace stay as they were. (No other lbd holds them:
/// the pin directory is one lbd's at a time, see `ownership`.)
pub(crate) fn recover_staged(pins: &PinDir) -> Result<()> {
    let staged = pins.staged_pins()?;
    if staged.is_empty() {
        pins.discard_staged()?;
        return Ok(());
    }
    let ids = staged
        .iter()
        .map(|(_, path)| {
            MapInfo::from_pin(path)
                .map(|info| info.id())
                .map_err(|e| map_error("reading the staged", "map", e))
        })
        .collect::<Result<HashSet<u32>>>()?;
    // Listing the programs failed: neither way is safe (promoting maps no
    // program uses would replace the pins a running program's state is
    // under; discarding maps a program runs on would have the next start
    // adopt stale tables beside it), so the start is refused and the
    // staged maps stay for a start that can tell.
    let used = uses_any(
        aya::programs::loaded_programs().map(|p| p.and_then(|p| p.map_ids())),
        &ids,
    )
    .map_err(|e| unlisted(STAGED_IN_USE, &e))?;
    if used {
        let state = staged
            .iter()
            .any(|(name, _)| STATE_MAPS.contains(&name.as_str()));
        let moved = pins.promote_staged(state)?;
        warn!(maps = ?moved, "a previous lbd stopped between its program swap and pinning its maps under their names: its program runs on them, so they take their names now");
    } else {
        let removed = pins.discard_staged()?;
        info!(maps = removed, "a previous lbd stopped before its program swap: the maps it staged are removed, the pins it would have replaced stay as they were");
    }
    Ok(())
}

/// The capacity of the pinned `VIPS` (None: none pinned) once what a
/// previous start staged is finished or undone (`recover_staged`): lbd's
/// start sizes its VIP maps, and decides whether VRRP resumes mastership,
/// from the maps its load will find. Read before the recovery, a pinned
/// `VIPS` about to be replaced by a killed start's staged one (still in
/// use by its program) would size this start to the old capacity, and the
/// state that program serves would not be adopted. Run under the pin
/// directory's lock (`ownership::claim`).
pub(crate) fn recovered_vip_capacity(pins: &PinDir) -> Result<Option<u32>> {
    recover_staged(pins)?;
    Ok(pins.pinned_max_entries(names::MAP_VIPS))
}

/// What `recover_staged` lists the programs for.
const STAGED_IN_USE: &str =
    "whether a program runs on the maps a previous lbd staged (they are kept until then)";

/// Whether one of `programs` (each program's map ids, as
/// `loaded_programs` and `map_ids` read them) uses one of the maps
/// `ids`. A program gone between its listing and its reading (ENOENT) is
/// skipped; any other error (EPERM without CAP_SYS_ADMIN) is returned:
/// a listing cut short is no answer.
fn uses_any(
    programs: impl IntoIterator<Item = std::result::Result<Option<Vec<u32>>, ProgramError>>,
    ids: &HashSet<u32>,
) -> std::result::Result<bool, ProgramError> {
    for program in programs {
        match program {
            Ok(Some(used)) if used.iter().any(|id| ids.contains(id)) => return Ok(true),
            Ok(_) => {}
            Err(error) if program_gone(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a program uses the staged maps is answered only from a
    /// whole listing: a program gone between its listing and its reading
    /// (ENOENT) is skipped, any other error (EPERM: no CAP_SYS_ADMIN) is
    /// no answer, where it once read as "no program uses them" and the
    /// staged maps a running program used were discarded.
    #[test]
    fn a_listing_cut_short_does_not_say_no_program_uses_the_maps() {
        let failed = |errno| {
            Err(ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_prog_get_next_id",
                io_error: std::io::Error::from_raw_os_error(errno),
            }))
        };
        let ids: HashSet<u32> = [7, 9].into();
        let uses = |programs: Vec<std::result::Result<Option<Vec<u32>>, ProgramError>>| {
            uses_any(programs, &ids)
        };
        assert!(uses(vec![Ok(Some(vec![1])), Ok(Some(vec![2, 9]))]).expect("listed"));
        assert!(!uses(vec![Ok(Some(vec![1])), Ok(None)]).expect("listed"));
        assert!(uses(vec![failed(libc::ENOENT), Ok(Some(vec![7]))]).expect("one gone"));
        assert!(!uses(vec![failed(libc::ENOENT)]).expect("one gone"));
        let error = uses(vec![Ok(Some(vec![1])), failed(libc::EPERM)]).expect_err("cut short");
        let message = unlisted(STAGED_IN_USE, &error).to_string();
        assert!(message.contains("CAP_SYS_ADMIN"), "{message}");
        assert!(message.contains("Operation not permitted"), "{message}");
    }
}
