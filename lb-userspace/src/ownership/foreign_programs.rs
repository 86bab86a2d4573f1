//! The check that an interface runs no XDP or tc program this lbd did not
//! pin or leave (another tool's, or another lbd's): made before lbd touches
//! the pin directory, apart from the locks, which keep out lbds of this
//! release only.

use std::{collections::HashSet, path::Path};

use aya::programs::links::{FdLink, PinnedLink};

use super::{cls_bpf, held, OwnershipError};
use crate::{
    config::{Attach, Config},
    netlink::Netlink,
    pinning::PinDir,
};

/// Refuses an interface that runs an XDP program other than the one
/// attached through the link pinned in `pins`, or lbd's tc program other
/// than this lbd's own previous one (on the tcx ingress, see
/// [`check_tc_programs`]; in a cls_bpf filter, see
/// [`check_tc_filters`]), whatever `attach` this lbd has: an lbd at XDP
/// would otherwise run beside another one at tc, and two lbds at tc
/// remove each other's filters in turn (each then steps down, and is
/// restarted, and removes the other's).
pub(super) async fn check_interface_program(
    config: &Config,
    pins: Option<&PinDir>,
) -> Result<(), OwnershipError> {
    let netlink = Netlink::connect()?;
    let interface = netlink.interface(&config.interface).await?;
    check_tc_programs(&interface.name, pins, TcReach::of(config))?;
    check_tc_filters(config, &interface.name, interface.index, pins).await?;
    let Some((id, _)) = netlink.xdp_program(interface.index).await? else {
        return Ok(());
    };
    let ours = pins.and_then(|p| pinned_link_program(&p.link_path(&interface.name)));
    if ours == Some(id) {
        return Ok(());
    }
    let name = program_name(id);
    Err(OwnershipError::ForeignProgram {
        interface: interface.name,
        id,
        name,
        pin_dir: pins.map(|p| p.root().to_owned()),
    })
}

/// Whether lbd may attach its program at tc, for the start's refusal of
/// the tcx ingress programs it did not pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcReach {
    /// `attach = "tc"`.
    Tc,
    /// `attach = "xdp"` with `xdp_mode = "auto"` and NAT or tunnelled
    /// VIPs: where native XDP fails, lbd attaches at tc instead (see
    /// `dataplane::choose_hook`).
    AutoFallback,
    /// At XDP only: other tools' tc programs run after it.
    Xdp,
}

impl TcReach {
    /// Where `config`'s lbd may attach.
    pub(crate) fn of(config: &Config) -> Self {
        match config.attach {
            Attach::Tc => Self::Tc,
            Attach::Xdp
                if config.xdp_mode == crate::config::XdpMode::Auto
                    && crate::dataplane::Translating::of(&config.vips).any() =>
            {
                Self::AutoFallback
            }
            Attach::Xdp => Self::Xdp,
        }
    }
}

/// Refuses a tcx ingress that runs a program other than the one attached
/// through the tc link pinned in `pins`: any such program where lbd may
/// attach at tc (`reach`; lbd must be the only one there: one ahead of it
/// passing packets on bypasses it), lbd's tc program at XDP only
/// (another lbd's; other tools' tc programs run after XDP and are no
/// concern of an lbd at XDP).
fn check_tc_programs(
    interface: &str,
    pins: Option<&PinDir>,
    reach: TcReach,
) -> Result<(), OwnershipError> {
    let ours = pins.and_then(|p| pinned_link_program(&p.tc_link_path(interface)));
    let foreign = crate::dataplane::tcx_ingress_programs(interface)
        .into_iter()
        .filter(|id| Some(*id) != ours)
        .map(|id| (id, program_name(id)))
        .find(|(_, name)| refuses_tc_program(reach, name.as_deref()));
    match foreign {
        None => Ok(()),
        Some((id, name)) => Err(OwnershipError::ForeignTcProgram {
            interface: interface.to_owned(),
            id,
            name,
            pin_dir: pins.map(|p| p.root().to_owned()),
            reach,
        }),
    }
}

/// Whether an lbd that may attach at `reach` refuses a tcx ingress
/// program named `name` that it did not pin: any where it may attach at
/// tc, lbd's own tc program (another lbd's) at XDP only too.
fn refuses_tc_program(reach: TcReach, name: Option<&str>) -> bool {
    reach != TcReach::Xdp || name == Some(lb_common::consts::names::PROG_TC_LB)
}

/// Refuses an ingress with a cls_bpf filter running lbd's tc program
/// (`tc_lb`) that is not this lbd's own previous one (see
/// [`own_tc_filter`]): another lbd's, with another `pin_dir`, running (an
/// lbd of an earlier release, whose interface lock was beside its admin
/// socket) or killed (a filter outlives its process). A filter of this
/// lbd's own is left for the sweep after the attach (see `cls_bpf`).
/// A listing that fails is logged: the interface's lock still keeps
/// other lbds of this release off it.
async fn check_tc_filters(
    config: &Config,
    interface: &str,
    ifindex: u32,
    pins: Option<&PinDir>,
) -> Result<(), OwnershipError> {
    let filters = match cls_bpf::ingress_filters_of(ifindex).await {
        Ok(filters) => filters,
        Err(error) => {
            tracing::warn!(%interface, error = %format!("{error:#}"), "cannot list the tc filters on the interface's ingress: another lbd's cls_bpf filter there is not looked for");
            return Ok(());
        }
    };
    let mut lbds = filters
        .iter()
        .filter(|f| f.name == lb_common::consts::names::PROG_TC_LB)
        .peekable();
    if lbds.peek().is_none() {
        return Ok(());
    }
    let own_maps = pins.map(pinned_map_ids).unwrap_or_default();
    let unpinned_before =
        pins.is_none() && held::ran_unpinned_tc_on(&config.admin_socket, interface);
    for filter in lbds {
        let used = filter.program.map(program_map_ids).unwrap_or_default();
        if !own_tc_filter(pins.is_some(), &own_maps, &used, unpinned_before) {
            return Err(OwnershipError::ForeignTcFilter {
                interface: interface.to_owned(),
                id: filter.program,
                priority: filter.priority(),
                pin_dir: pins.map(|p| p.root().to_owned()),
            });
        }
    }
    Ok(())
}

/// Whether a cls_bpf filter running lbd's tc program whose maps are
/// `used` was left by this lbd's own previous run: with a `pin_dir`
/// (`pinned`), its program uses a map pinned there (`own_maps`; an lbd's
/// program uses the maps of its own `pin_dir`); with `pin_dir = "off"`,
/// the record of this admin socket says its previous lbd ran unpinned at
/// tc on this interface (`unpinned_before`: nothing else tells).
fn own_tc_filter(
    pinned: bool,
    own_maps: &HashSet<u32>,
    used: &[u32],
    unpinned_before: bool,
) -> bool {
    if pinned {
        used.iter().any(|id| own_maps.contains(id))
    } else {
        unpinned_before
    }
}

/// The ids of the maps pinned in `pins`, every layout version's
/// (`maps-v<N>`): an lbd of an older release pinned its maps in another.
fn pinned_map_ids(pins: &PinDir) -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir(pins.root()) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_string_lossy().starts_with("maps-v")
                && entry.file_type().is_ok_and(|t| t.is_dir())
        })
        .filter_map(|entry| std::fs::read_dir(entry.path()).ok())
        .flat_map(|maps| maps.flatten())
        .filter_map(|map| aya::maps::MapInfo::from_pin(map.path()).ok())
        .map(|info| info.id())
        .collect()
}

/// The program attached through the link pinned at `path`, if there is
/// one the kernel still knows: a pin directory's own program.
fn pinned_link_program(path: &Path) -> Option<u32> {
    if !path.exists() {
        return None;
    }
    let link = FdLink::from(PinnedLink::from_pin(path).ok()?);
    link.info().ok().map(|info| info.program_id())
}

/// What the kernel says of loaded program `id` (None once it is gone).
fn loaded_program(id: u32) -> Option<aya::programs::ProgramInfo> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
}

/// The ids of the maps loaded program `id` uses (empty if the kernel
/// does not say).
fn program_map_ids(id: u32) -> Vec<u32> {
    loaded_program(id)
        .and_then(|program| program.map_ids().ok().flatten())
        .unwrap_or_default()
}

/// The name of loaded program `id`, if the kernel says.
pub(crate) fn program_name(id: u32) -> Option<String> {
    loaded_program(id).and_then(|program| program.name_as_str().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::refusals::foreign_tc_program_message;

    /// At tc any tcx program this lbd did not pin is refused; at XDP only
    /// lbd's own tc program (another lbd's), not other tools'.
    #[test]
    fn an_lbd_at_xdp_refuses_another_lbds_tc_program_only() {
        assert!(refuses_tc_program(TcReach::Tc, Some("cil_from_netdev")));
        assert!(refuses_tc_program(TcReach::Tc, None));
        assert!(refuses_tc_program(TcReach::Tc, Some("tc_lb")));
        assert!(refuses_tc_program(TcReach::Xdp, Some("tc_lb")));
        assert!(!refuses_tc_program(TcReach::Xdp, Some("cil_from_netdev")));
        assert!(!refuses_tc_program(TcReach::Xdp, None));
    }

    /// An lbd at XDP that may fall back to tc (`xdp_mode = "auto"` with a
    /// NAT or tunnelled VIP, where native XDP fails) refuses any tcx
    /// program it did not pin, as one with `attach = "tc"` does: at tc a
    /// program ahead of it would bypass it.
    #[test]
    fn an_lbd_that_may_fall_back_to_tc_refuses_any_foreign_tc_program() {
        assert!(refuses_tc_program(
            TcReach::AutoFallback,
            Some("cil_from_netdev")
        ));
        assert!(refuses_tc_program(TcReach::AutoFallback, None));
        let message = foreign_tc_program_message(
            "eth0",
            9,
            Some("cil_from_netdev"),
            None,
            TcReach::AutoFallback,
        );
        assert!(message.contains("xdp_mode = \"auto\""), "{message}");
    }

    /// A `tc_lb` filter is this lbd's own previous one when its program
    /// uses a map pinned in this lbd's `pin_dir`; with `pin_dir = "off"`
    /// when the record says the previous lbd ran unpinned at tc there.
    #[test]
    fn a_tc_filter_is_ours_by_its_maps_or_the_record() {
        let own: HashSet<u32> = [10, 11, 12].into_iter().collect();
        assert!(own_tc_filter(true, &own, &[3, 11], false));
        assert!(
            !own_tc_filter(true, &own, &[3, 4], true),
            "another pin_dir's"
        );
        assert!(!own_tc_filter(true, &own, &[], true), "unknown maps");
        assert!(!own_tc_filter(true, &HashSet::new(), &[3], false));
        assert!(own_tc_filter(false, &HashSet::new(), &[3], true));
        assert!(!own_tc_filter(false, &own, &[11], false));
    }
}
