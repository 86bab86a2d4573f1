//! What the links pinned in the pin directory are: still attached or
//! stale, the program one drives and the XDP mode it runs in, which one
//! serves an interface, and whether one is another tool's.

use anyhow::bail;
use tracing::warn;

use crate::{
    config::{Attach, Settings, XdpMode},
    interface::XdpRunning,
    link::LinkOwner,
    pins::{remove_pin, PinDir},
};

/// The pinned link that serves `interface` once `apply` succeeded: the
/// one of its hook or, for `xdp_mode = "auto"` without an XDP link, the
/// tc link it fell back to.
pub fn serving_link(settings: &Settings, pins: &PinDir, interface: &str) -> std::path::PathBuf {
    let asked = pins.link_path(settings.attach, interface);
    if settings.attach == Attach::Xdp && settings.xdp_mode == XdpMode::Auto && !asked.exists() {
        return pins.link_path(Attach::Tc, interface);
    }
    asked
}

/// Whether the XDP link at `link_path` runs its program in generic mode.
pub(super) fn runs_generic(link_path: &std::path::Path, ifindex: u32) -> bool {
    link_program(link_path)
        .and_then(|program| crate::interface::xdp_running(ifindex, program))
        .is_ok_and(|running| running == Some(XdpRunning::Generic))
}

/// Refuses an apply that would use the link path `path` of `interface`
/// while a link of another tool is pinned there (lbd pins its links
/// under the same names, and the pin directory may be shared): swapping
/// the decap program into it would stop that tool's program, and
/// removing it would detach it. Before, lb-decap took any link pinned
/// under its names for its own. Checked before anything is changed.
pub(super) fn refuse_foreign(path: &std::path::Path, interface: &str) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match crate::link::owner(path) {
        LinkOwner::Decap => Ok(()),
        owner => bail!(
            "the pin {} (where lb-decap pins its link on {interface}) holds a link that runs {}: lb-decap leaves it alone. Give lb-decap a pin directory of its own (--pin-dir or LB_DECAP_PIN_DIR; lbd and lb-decap pin their links under the same names), or remove that pin if nothing uses it. Nothing was changed",
            path.display(),
            owner.describe()
        ),
    }
}

/// Whether a link is pinned at `path` and still attached to interface
/// `ifindex` (a link whose interface was deleted, even if one of the same
/// name came back, is defunct); a stale pin is removed.
pub(super) fn live_link(path: &std::path::Path, ifindex: u32) -> anyhow::Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let live = crate::link::pinned_target(path).is_ok_and(|t| t.ifindex == ifindex);
    if !live {
        warn!(path = %path.display(), "pinned link is stale; attaching afresh");
        remove_pin(path)?;
    }
    Ok(live)
}

/// The program id a pinned link drives, if it is attached to an
/// interface.
pub fn link_program(path: &std::path::Path) -> anyhow::Result<u32> {
    let target = crate::link::pinned_target(path)?;
    if target.ifindex == 0 {
        bail!(
            "the link at {} is defunct (its interface is gone)",
            path.display()
        );
    }
    Ok(target.program_id)
}
