//! The previous lbds' copies of `TUNNEL_CONFIG` (not pinned: each object
//! has its own), found among the loaded programs that share the adopted
//! `VIPS`: read for the settings a restart keeps, and written until the
//! swap so that a previous program never wraps with settings of zeros.

use aya::maps::{Array, IterableMap as _, Map, MapData, MapInfo, MapType};
use lb_common::{consts::names, TunnelConfig};
use tracing::{debug, warn};

use super::super::{map_error, Dataplane, Result};
use super::unlisted;
use crate::pinning::program_gone;

impl Dataplane {
    /// `TUNNEL_CONFIG[0]` as the previous lbd's program reads it (None: the
    /// state was not adopted, no such program is loaded, or its object has
    /// no tunnel settings): the newest of `previous_tunnel_configs`. A
    /// restart keeps the outer sources it held, which the backends'
    /// lb-decap `sources` allow. Read it before the first commit, which
    /// writes this lbd's settings there too.
    pub(crate) fn adopted_tunnel_config(&mut self) -> Result<Option<TunnelConfig>> {
        let Some(newest) = self.previous_tunnel_configs()?.last() else {
            return Ok(None);
        };
        newest
            .get(&0, 0)
            .map(Some)
            .map_err(|e| map_error("reading", names::MAP_TUNNEL_CONFIG, e))
    }

    /// Writes `config` to the previous lbds' `TUNNEL_CONFIG` copies as
    /// well, until the adoption is finished. `TUNNEL_CONFIG` is not
    /// pinned (each object has its own), yet a previous program serves the
    /// adopted `VIPS` and `BACKENDS` this lbd's first commit fills until
    /// the swap: a VIP that commit switches to a tunnelled mode (or a 4in6
    /// backend next to an IPv4-only `[tunnel]`) would otherwise be wrapped
    /// with that program's settings, all zeros if its lbd served no
    /// tunnelled VIP: outer sources from 0.0.0.0/0 (or ::/0), GUE to port
    /// 0, established flows included, and for good if this lbd then stops
    /// before the swap. A failure fails the write, so the commit stops
    /// before any VIP names a tunnelled mode (`Balancer::apply_tunnel`).
    pub(in crate::dataplane) fn set_previous_tunnel_configs(
        &mut self,
        config: &TunnelConfig,
    ) -> Result<()> {
        for map in self.previous_tunnel_configs()? {
            map.set(0, config, 0).map_err(|e| {
                map_error("writing the previous lbd's", names::MAP_TUNNEL_CONFIG, e)
            })?;
        }
        Ok(())
    }

    /// The previous lbds' copies of `TUNNEL_CONFIG`, oldest first, looked
    /// for once: empty unless the state was adopted and this object has
    /// the map, and once the adoption is finished. The map is not pinned,
    /// so they are found among the maps of the loaded programs that share
    /// the adopted `VIPS`: the previous lbd's, which runs at its hook until
    /// this lbd's program is attached and its other hooks are gone (an
    /// older lbd's too, if one is left).
    fn previous_tunnel_configs(&mut self) -> Result<&mut [Array<MapData, TunnelConfig>]> {
        if self.previous_tunnel_configs.is_none() {
            self.previous_tunnel_configs = Some(self.find_previous_tunnel_configs()?);
        }
        Ok(self
            .previous_tunnel_configs
            .as_deref_mut()
            .unwrap_or_default())
    }

    /// Looks for `previous_tunnel_configs`. A map found that cannot be
    /// opened is skipped, with a warning: its id went with its program
    /// (stopped since the listing: ENOENT), which reads it no more.
    fn find_previous_tunnel_configs(&self) -> Result<Vec<Array<MapData, TunnelConfig>>> {
        const NAME: &str = names::MAP_TUNNEL_CONFIG;
        let Some(own) = &self.tunnel_config else {
            return Ok(Vec::new());
        };
        if !self.adopted {
            return Ok(Vec::new());
        }
        let id = |map: &MapData, name| {
            map.info()
                .map(|info| info.id())
                .map_err(|e| map_error("reading the id of", name, e))
        };
        let own = id(own.map(), NAME)?;
        let vips = id(self.vips.map(), names::MAP_VIPS)?;
        let fits = |info: &MapInfo| {
            info.name_as_str() == Some(NAME)
                && matches!(info.map_type(), Ok(MapType::Array))
                && info.key_size() == 4
                && info.value_size() as usize == std::mem::size_of::<TunnelConfig>()
                && info.max_entries() >= 1
        };
        let mut found = std::collections::BTreeSet::new();
        for program in aya::programs::loaded_programs() {
            let ids = match program.and_then(|p| p.map_ids()) {
                Ok(Some(ids)) => ids,
                Ok(None) => continue,
                Err(error) if program_gone(&error) => {
                    debug!(%error, "a loaded program went while its maps were read");
                    continue;
                }
                // A previous program's copy missed would wrap with its
                // own (zero) settings: the write fails instead.
                Err(error) => return Err(unlisted(PREVIOUS_TUNNEL_CONFIGS, &error)),
            };
            if !ids.contains(&vips) {
                continue;
            }
            for map in ids.into_iter().filter(|map| *map != own) {
                if MapInfo::from_id(map).is_ok_and(|info| fits(&info)) {
                    found.insert(map);
                }
            }
        }
        Ok(open_each(found, open_tunnel_config))
    }
}

/// What `find_previous_tunnel_configs` lists the programs for.
const PREVIOUS_TUNNEL_CONFIGS: &str = "which previous lbd's program reads its own TUNNEL_CONFIG";

/// Opens the previous lbd's `TUNNEL_CONFIG` of map id `id`.
fn open_tunnel_config(id: u32) -> Result<Array<MapData, TunnelConfig>> {
    const NAME: &str = names::MAP_TUNNEL_CONFIG;
    let map = MapData::from_id(id).map_err(|e| map_error("opening", NAME, e))?;
    Array::try_from(Map::Array(map)).map_err(|e| map_error("opening", NAME, e))
}

/// The maps of ids `ids` that `open` opens, in order; each one it cannot
/// open is skipped with a warning (`find_previous_tunnel_configs`).
fn open_each<T, E: std::fmt::Display>(
    ids: impl IntoIterator<Item = u32>,
    mut open: impl FnMut(u32) -> std::result::Result<T, E>,
) -> Vec<T> {
    let mut opened = Vec::new();
    for id in ids {
        match open(id) {
            Ok(map) => opened.push(map),
            Err(error) => warn!(
                map_id = id,
                %error,
                "a previous lbd's {} cannot be opened (its program is gone?): skipped",
                names::MAP_TUNNEL_CONFIG
            ),
        }
    }
    opened
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A previous lbd's `TUNNEL_CONFIG` whose id is gone between the
    /// listing and the opening (its program stopped) is skipped: the
    /// others are still written, and the start goes on.
    #[test]
    fn a_previous_tunnel_config_that_cannot_be_opened_is_skipped() {
        let opened = open_each([3, 5, 7], |id| if id == 5 { Err("ENOENT") } else { Ok(id) });
        assert_eq!(opened, [3, 7]);
        // No map has this id (the kernel's ids stop at i32::MAX): the
        // real opening fails (ENOENT, or EPERM unprivileged) and is
        // skipped.
        assert!(open_tunnel_config(u32::MAX).is_err());
        assert!(open_each([u32::MAX], open_tunnel_config).is_empty());
    }
}
