//! Checking the pins a previous lbd left against this object and these
//! sizes, touching none: which maps are taken over as they are, and
//! whether the state maps are adopted.

use aya::maps::MapInfo;
use lb_common::consts::names;
use tracing::{info, warn};

use super::super::{DataplaneError, Result};
use super::other_layouts::warn_other_layouts;
use crate::pinning::{FormatFit, PinDir, DEPENDENT_MAPS, FORMAT_EPOCH, PINNED_MAPS, STATE_MAPS};
use crate::shared_mapping::BPF_F_MMAPABLE;

/// Flags the kernel sets on a map of `map_type` whatever it was created
/// with, so a pinned map reads back with them: device maps are read-only
/// to programs (`BPF_F_RDONLY_PROG`, as a lookup returns the device
/// itself). Compared as created, else every restart would find the pinned
/// TX ports "changed" and start them afresh.
fn flags_the_kernel_adds(map_type: u32) -> u32 {
    const BPF_F_RDONLY_PROG: u32 = 1 << 7;
    const BPF_MAP_TYPE_DEVMAP: u32 = 14;
    const BPF_MAP_TYPE_DEVMAP_HASH: u32 = 25;
    match map_type {
        BPF_MAP_TYPE_DEVMAP | BPF_MAP_TYPE_DEVMAP_HASH => BPF_F_RDONLY_PROG,
        _ => 0,
    }
}

/// Flags this object gives map `name` that a map an older release pinned
/// may lack and still fit: releases before the Maglev tables were mapped
/// into lbd's memory pinned `MAGLEV` without `BPF_F_MMAPABLE`. Programs
/// read it the same either way, so it is adopted with the rest (the
/// connection table points into it), and lbd writes its tables in batches
/// (`MaglevMap`) until a start that makes it afresh.
fn flags_an_older_release_may_lack(name: &str) -> u32 {
    if name == names::MAP_MAGLEV {
        BPF_F_MMAPABLE
    } else {
        0
    }
}

/// A map's shape as the fit compares it: type, key size, value size,
/// entries, flags.
type Shape = (u32, u32, u32, u32, u32);

/// Whether a pinned map `name` read back as `have` fits `want`.
fn fits(name: &str, have: Shape, want: Shape) -> bool {
    let optional = flags_an_older_release_may_lack(name);
    let (t, k, v, e, flags) = have;
    (t, k, v, e) == (want.0, want.1, want.2, want.3) && flags | optional == want.4 | optional
}

/// What `check_pins` found of the pins a previous lbd left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(in crate::dataplane) struct PinPlan {
    /// Whether the state maps are adopted.
    pub adopt: bool,
    /// The pinned maps this lbd takes over as they are.
    pub kept: Vec<&'static str>,
}

/// Checks the pins a previous lbd left against what this object and these
/// sizes need, touching none: which it takes over as they are, and whether
/// it adopts the state maps. Those go together: if any of them cannot be
/// adopted, none is, nor any map that depends on them. `carried`: tables
/// a previous layout's flows are carried over from (the connection table's
/// maps, `conntrack::legacy`; the NAT flow table, `nat::legacy`), not
/// required for adoption. What is not taken over is made afresh
/// (`place_pins`).
pub(in crate::dataplane) fn check_pins(
    pins: &PinDir,
    object: &[u8],
    resized: &[(&str, u32)],
    carried: &[&str],
) -> Result<PinPlan> {
    let parsed =
        aya_obj::Object::parse(object).map_err(|e| DataplaneError::Parse(e.to_string()))?;
    let stamp = pins.format_stamp();
    if stamp.fit() == FormatFit::Newer {
        warn!(
            dir = %pins.maps_dir().display(),
            pinned_format = %stamp.describe(),
            this_build_format = FORMAT_EPOCH,
            "the pinned data plane was written by a newer build (format {}; this build knows up to {FORMAT_EPOCH}): not adopted, since this build would misread its tables. Established flows are placed by Maglev again (those whose backend is not Maglev's pick now are reset), NAT'd connections are lost, VRRP will not resume (the peer takes over), backends start as up; the newer build's maps stay until this lbd's program runs, then are replaced (a start that fails before leaves them as they were; installing the newer build again and restarting adopts them)",
            stamp.describe()
        );
        return Ok(PinPlan::default());
    }
    let mut present = Vec::new();
    let mut misfits = Vec::new();
    for name in PINNED_MAPS {
        let path = pins.map_path(name);
        if !path.exists() {
            continue;
        }
        let Some(map) = parsed.maps.get(name) else {
            continue;
        };
        let max_entries = resized
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(map.max_entries(), |(_, e)| *e);
        let want = (
            map.map_type(),
            map.key_size(),
            map.value_size(),
            max_entries,
            map.map_flags(),
        );
        let have = MapInfo::from_pin(&path).ok().and_then(|info| {
            let map_type = info.map_type().ok()? as u32;
            Some((
                map_type,
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags() & !flags_the_kernel_adds(map_type),
            ))
        });
        if have.is_some_and(|have| fits(name, have, want)) {
            present.push(name);
        } else if !carried.contains(&name) {
            // (A table carried over says so when it is opened.)
            misfits.push((name, have, want));
        }
    }
    let adopt = STATE_MAPS
        .iter()
        .filter(|name| !carried.contains(name))
        .all(|name| present.contains(name));
    if present.is_empty() && misfits.is_empty() {
        warn_other_layouts(pins);
    }
    for (name, have, want) in misfits {
        if adopt {
            warn!(map = name, ?have, ?want, "pinned map does not fit this lbd (size, type or layout changed): starting it afresh");
        } else {
            warn!(map = name, ?have, ?want, "pinned map does not fit this lbd (size, type or layout changed): starting it afresh (the pinned one stays until this lbd's program runs)");
        }
    }
    if adopt {
        let half_open = if present.contains(&names::MAP_HALF_OPEN) {
            ", half-open flows"
        } else {
            ""
        };
        info!(dir = %pins.root().display(), "adopting the pinned data plane (VIPs, backends, tables, connection table{half_open})");
        return Ok(PinPlan {
            adopt,
            kept: present,
        });
    }
    let together = |name: &str| STATE_MAPS.contains(&name) || DEPENDENT_MAPS.contains(&name);
    for name in present.iter().filter(|name| together(name)) {
        warn!(
            map = name,
            "not adopting this map alone: the state maps go together (the pinned one stays until this lbd's program runs)"
        );
    }
    present.retain(|name| !together(name));
    Ok(PinPlan {
        adopt,
        kept: present,
    })
}
