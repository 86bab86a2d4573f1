//! How many VIPs the maps are loaded for: a pinned size kept while it holds
//! the file's VIPs (so the pinned maps are adopted), else the file's count
//! with room to spare; apart as a pure decision with its own tests.

use anyhow::Context as _;
use lb_common::consts::MAX_VIPS_DEFAULT;
use tracing::warn;

use crate::{config::Config, pinning::PinDir};

/// Room for VIPs added at run time beyond those in the file.
pub(super) const SPARE_VIPS: u32 = 16;

/// How many VIPs the maps are loaded for. A size a previous lbd pinned is
/// kept whenever it still holds the file's VIPs: the VIP-sized maps
/// (`VIPS`, `MAGLEV`, ...) then fit, so the state maps and the connection
/// and NAT tables are adopted. A new size would start them all afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VipSizing {
    /// Nothing pinned: room for the file's VIPs and [`SPARE_VIPS`] more.
    New(u32),
    /// The pinned size, which holds the file's VIPs (`wanted`: what a
    /// fresh start would size, possibly more).
    Kept { size: u32, wanted: u32 },
    /// The pinned size cannot hold the file's VIPs: the maps are made
    /// anew at `size`, and the pinned state is lost.
    Grown { pinned: u32, size: u32 },
}

impl VipSizing {
    /// The sizing for `file_vips` VIPs in the file and a `VIPS` map of
    /// `pinned` entries left by a previous lbd (None: none).
    pub(super) fn decide(file_vips: u32, pinned: Option<u32>) -> Self {
        let wanted = MAX_VIPS_DEFAULT.max(file_vips.saturating_add(SPARE_VIPS));
        match pinned {
            None => Self::New(wanted),
            Some(size) if size >= file_vips.max(1) => Self::Kept { size, wanted },
            Some(pinned) => Self::Grown {
                pinned,
                size: wanted,
            },
        }
    }

    /// The number of VIPs the maps are loaded for.
    pub(super) fn size(self) -> u32 {
        match self {
            Self::New(size) | Self::Kept { size, .. } | Self::Grown { size, .. } => size,
        }
    }

    /// Says in the log what a kept size leaves for run-time VIPs, or that
    /// growing the maps loses the connection table.
    pub(super) fn log(self, file_vips: u32) {
        match self {
            Self::New(_) => {}
            Self::Kept { size, wanted } if size < wanted => warn!(
                capacity = size,
                file_vips,
                spare = size.saturating_sub(file_vips),
                "keeping the pinned maps' VIP capacity so the connection table is adopted: \
                 room for fewer VIPs added at run time than a fresh start leaves; to grow it, \
                 stop lbd, run `lbd --cleanup` and start it again (established flows are then \
                 placed by Maglev again and NAT'd connections are lost)"
            ),
            Self::Kept { .. } => {}
            Self::Grown { pinned, size } => warn!(
                pinned,
                capacity = size,
                file_vips,
                "the file's VIPs do not fit the pinned maps: making them anew with room for more; \
                 the connection table and the NAT flow table are not adopted (established flows \
                 are placed by Maglev again, NAT'd connections are lost)"
            ),
        }
    }
}

/// The capacity of the `VIPS` map pinned in `pin_dir` (None: `pin_dir` is
/// off, or holds none), read once what a previous start staged is
/// finished or undone (`dataplane::recovered_vip_capacity`): the VIP
/// sizing ([`VipSizing`]) and the resume ([`pinned_dataplane_fits`]) are
/// both decided by it, from the maps the load will find.
pub(super) fn pinned_vip_capacity(config: &Config) -> anyhow::Result<Option<u32>> {
    let Some(dir) = &config.pin_dir else {
        return Ok(None);
    };
    crate::dataplane::recovered_vip_capacity(&PinDir::new(dir)).with_context(|| {
        format!(
            "recovering the maps a previous lbd staged in {}",
            dir.display()
        )
    })
}

/// Whether a previous lbd's data plane is pinned where this lbd will adopt
/// it: `pin_dir` is on and holds a `VIPS` map (of `pinned_vips` entries,
/// see [`pinned_vip_capacity`]) whose size holds the file's VIPs (see
/// [`VipSizing`]). Read before anything is loaded, for the resume
/// decision ([`resumes_mastership`](super::vrrp_resume::resumes_mastership)); the load may still refuse a pinned
/// map (its layout changed), which [`demote_resumed`](super::vrrp_resume::demote_resumed) handles.
pub(super) fn pinned_dataplane_fits(config: &Config, pinned_vips: Option<u32>) -> bool {
    if config.pin_dir.is_none() {
        return false;
    }
    let file_vips = u32::try_from(config.vips.len()).unwrap_or(u32::MAX);
    matches!(
        VipSizing::decide(file_vips, pinned_vips),
        VipSizing::Kept { .. }
    )
}

#[cfg(test)]
mod vip_sizing_tests {
    use super::*;

    #[test]
    fn a_first_start_leaves_spare_room() {
        assert_eq!(VipSizing::decide(0, None).size(), MAX_VIPS_DEFAULT);
        assert_eq!(VipSizing::decide(3, None).size(), 3 + SPARE_VIPS);
    }

    #[test]
    fn a_vip_added_to_the_file_keeps_the_pinned_size() {
        // A first start with 3 VIPs pinned 3 + SPARE_VIPS; the file has
        // gained one since: the pinned size still holds it, so the maps
        // (and the connection table) are adopted.
        let pinned = VipSizing::decide(3, None).size();
        let next = VipSizing::decide(4, Some(pinned));
        assert_eq!(
            next,
            VipSizing::Kept {
                size: pinned,
                wanted: 4 + SPARE_VIPS
            }
        );
        assert_eq!(next.size(), pinned);
        // Up to a file that fills it exactly.
        assert_eq!(VipSizing::decide(pinned, Some(pinned)).size(), pinned);
        // Fewer VIPs keep it too.
        assert_eq!(VipSizing::decide(1, Some(pinned)).size(), pinned);
    }

    #[test]
    fn only_a_file_that_does_not_fit_grows_the_maps() {
        let pinned = 3 + SPARE_VIPS;
        assert_eq!(
            VipSizing::decide(pinned + 1, Some(pinned)),
            VipSizing::Grown {
                pinned,
                size: pinned + 1 + SPARE_VIPS
            }
        );
    }
}
