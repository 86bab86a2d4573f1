//! What an apply warns about on the links it leaves serving: an
//! `xdp_mode` a live XDP link cannot take on, and UDP GRO merging GUE
//! datagrams ahead of tc ingress.

use tracing::{debug, warn};

use super::pinned_links::link_program;
use crate::{
    config::{Settings, XdpMode},
    interface::XdpRunning,
};

/// The XDP mode `xdp_mode` asks for, if it names one ("auto" takes
/// whichever attached).
fn asked_mode(mode: XdpMode) -> Option<XdpRunning> {
    match mode {
        XdpMode::Native => Some(XdpRunning::Native),
        XdpMode::Generic => Some(XdpRunning::Generic),
        XdpMode::Auto => None,
    }
}

/// A live XDP link keeps the mode it was attached in: an interface cannot
/// run a native and a generic program at once, so no new link can take
/// over without a gap. Says so when `xdp_mode` now asks for another mode
/// (and how to apply it), or when the mode cannot be read.
pub(super) fn warn_if_mode_differs(
    settings: &Settings,
    interface: &str,
    link_path: &std::path::Path,
    ifindex: u32,
) {
    let Some(asked) = asked_mode(settings.xdp_mode) else {
        return;
    };
    let running =
        link_program(link_path).and_then(|program| crate::interface::xdp_running(ifindex, program));
    match running {
        Ok(Some(running)) if running == asked => {}
        Ok(Some(running)) => warn!(
            %interface,
            "xdp_mode = \"{}\" is not applied: the program attached earlier keeps running in {} mode (an interface cannot run native and generic XDP at once, so it cannot be swapped without a gap); `lb-decap cleanup` and a start apply it (a brief gap)",
            settings.xdp_mode.name(),
            running.name()
        ),
        Ok(None) => {
            warn!(%interface, "the interface does not list the attached XDP program; its mode is unknown")
        }
        Err(error) => {
            warn!(%interface, error = format!("{error:#}"), "could not read the attached XDP program's mode")
        }
    }
}

/// At tc ingress, UDP GRO for forwarding can hand the program several
/// GUE datagrams merged into one skb, of which only the first inner
/// packet survives the unwrap (`gro`): says so when it is on.
pub(super) fn warn_if_gro_merges(interface: &str) {
    match crate::gro::merging(interface) {
        Ok(on) if !on.is_empty() => warn!("{}", crate::gro::warning(interface, &on)),
        Ok(_) => {}
        Err(error) => {
            debug!(%interface, error = format!("{error:#}"), "could not read the interface's GRO features")
        }
    }
}
