//! Whether the program in the live links must be replaced even though no
//! link is new: maps missing, pinned maps it does not read, or another
//! build's program.

use anyhow::Context as _;
use tracing::warn;

use super::{
    load::{loaded, Ready},
    pinned_links::link_program,
    reconcile::Serving,
    tag::{format_tag, program_info, program_tag},
};
use crate::{config::Settings, pins::PinDir};

/// Whether the live links (none new) need a new program: maps missing
/// (an older lb-decap's program, e.g. before `sources`: it cannot enforce
/// what the new maps say), a program not reading the pinned maps (left by
/// two lb-decaps starting at once), or another build's program (an
/// upgrade: without the swap, a fixed program in a new package stayed
/// unused until a cleanup and a start, a gap).
pub(super) fn needs_new_program(
    settings: &Settings,
    pins: &PinDir,
    serving: &[Serving],
    ready: &mut Option<Ready>,
    object: &[u8],
) -> anyhow::Result<bool> {
    let missing = pins.missing_maps();
    if !missing.is_empty() {
        warn!(
            ?missing,
            "the attached program is an older lb-decap's (maps missing); replacing it in place"
        );
        return Ok(true);
    }
    for s in serving {
        let path = pins.link_path(s.attach, &s.interface);
        if let Some((map, program_id)) = unread_map(&path, pins)? {
            warn!(link = %path.display(), map, program_id, "the attached program does not read the pinned maps (left by two lb-decaps starting at once?); replacing it in place");
            return Ok(true);
        }
    }
    let ready = match loaded(ready, settings, object) {
        Ok(ready) => ready,
        Err(error) => {
            warn!(error = format!("{error:#}"), "this build's program did not load, so it cannot be compared with the attached one; updating the maps in place");
            return Ok(false);
        }
    };
    for s in serving {
        let path = pins.link_path(s.attach, &s.interface);
        let attached = program_tag(link_program(&path)?)?;
        let build = match ready.tag(s.attach) {
            Ok(tag) => tag,
            Err(error) => {
                warn!(error = format!("{error:#}"), "this build's program did not load, so it cannot be compared with the attached one; updating the maps in place");
                return Ok(false);
            }
        };
        if attached != build {
            warn!(interface = %s.interface, attach = s.attach.name(), attached = %format_tag(attached), this_build = %format_tag(build), "the attached program is another lb-decap build's (an upgrade); swapping this build's into the link (no gap)");
            return Ok(true);
        }
    }
    Ok(false)
}

/// A map pinned in `pins` that the program of the live link at
/// `link_path` does not use, with the program's id; if there is one (its
/// maps were replaced under it, so configuration written to the pins
/// never reaches it), `apply` puts a new program into the link.
pub(super) fn unread_map(
    link_path: &std::path::Path,
    pins: &PinDir,
) -> anyhow::Result<Option<(&'static str, u32)>> {
    let program_id = link_program(link_path)?;
    let used = program_info(program_id)?
        .map_ids()
        .with_context(|| format!("reading the maps of program {program_id}"))?;
    // A kernel that does not say (before 4.15) is trusted.
    let Some(used) = used else {
        return Ok(None);
    };
    for name in crate::pins::PINNED_MAPS {
        let path = pins.map_path(name);
        let id = aya::maps::MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map(|i| i.id())
            .with_context(|| format!("reading the pinned map {}", path.display()))?;
        if !used.contains(&id) {
            return Ok(Some((name, program_id)));
        }
    }
    Ok(None)
}
