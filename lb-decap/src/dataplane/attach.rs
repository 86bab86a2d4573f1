//! Putting the decap program on an interface: a new link at the hook
//! chosen (XDP, or tc ingress first in the tcx chain), or the program
//! swapped atomically into a live pinned link (`BPF_LINK_UPDATE`).

use anyhow::{bail, Context as _};
use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
        LinkOrder, TcAttachType, XdpMode as AyaXdpMode,
    },
    Ebpf,
};
use lb_common::decap::names;
use tracing::warn;

use super::{
    hook::{choose_hook, refuse_generic, HookChoice, GENERIC_REFUSED},
    load::{tc_program, xdp_program, Ready},
};
use crate::config::{Attach, XdpMode};

/// Where a new link goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// XDP in this mode ([`choose_hook`]: with "auto", tc ingress if
    /// native XDP does not attach).
    Xdp(XdpMode),
    /// tc ingress.
    Tc,
}

/// Puts the program of `ready` for `attach` into the live link pinned at
/// `link_path`. The program is loaded and verified first and swapped in
/// with `BPF_LINK_UPDATE` (atomic: the interface is never without a
/// program, and the link keeps its pin and, for XDP, its mode), so any
/// failure before the swap leaves the old program unwrapping. Removing
/// the link first, as before, left nothing attached when the new program
/// failed to load, at every restart. The caller pins the maps.
pub(super) fn swap_into_link(
    ready: &mut Ready,
    attach: Attach,
    link_path: &std::path::Path,
) -> anyhow::Result<()> {
    let context = || {
        format!(
            "replacing the program of the link at {}",
            link_path.display()
        )
    };
    match attach {
        Attach::Xdp => {
            let program = xdp_program(&mut ready.ebpf, names::PROG_XDP_DECAP)?;
            let link = FdLink::from(PinnedLink::from_pin(link_path).with_context(context)?);
            let link = XdpLink::try_from(link).with_context(context)?;
            let id = program.attach_to_link(link).with_context(context)?;
            // Pinned: dropping our handle leaves it attached.
            drop(program.take_link(id));
        }
        Attach::Tc => {
            let program = tc_program(&mut ready.ebpf, names::PROG_TC_DECAP)?;
            let link = FdLink::from(PinnedLink::from_pin(link_path).with_context(context)?);
            let link = SchedClassifierLink::try_from(link).with_context(context)?;
            let id = program.attach_to_link(link).with_context(context)?;
            drop(program.take_link(id));
        }
    }
    Ok(())
}

/// Attaches the program of `ready` to `interface` where `target` says
/// ([`choose_hook`] for XDP); returns the hook it landed on and the link,
/// not yet pinned (dropped, it detaches).
pub(super) fn attach_new(
    ready: &mut Ready,
    interface: &str,
    target: Target,
) -> anyhow::Result<(Attach, FdLink)> {
    match target {
        Target::Xdp(mode) => {
            refuse_generic(Attach::Xdp, mode)?;
            let program = xdp_program(&mut ready.ebpf, names::PROG_XDP_DECAP)?;
            let native = program.attach(interface, AyaXdpMode::Driver);
            match choose_hook(mode, native.is_ok()) {
                HookChoice::Native => {
                    let id = native.with_context(|| {
                        format!(
                            "attaching {} to {interface} (another XDP program there?)",
                            names::PROG_XDP_DECAP
                        )
                    })?;
                    let link = program.take_link(id).context("taking the XDP link")?;
                    let link = FdLink::try_from(link).context(
                        "this kernel attaches XDP without a link, which cannot be pinned",
                    )?;
                    Ok((Attach::Xdp, link))
                }
                HookChoice::Tc => {
                    if let Err(error) = native {
                        warn!(%interface, %error, "native XDP attach failed; attaching at tc ingress instead (generic XDP would leave a stale hardware checksum after the unwrap)");
                    }
                    Ok((Attach::Tc, attach_tc(&mut ready.ebpf, interface)?))
                }
                HookChoice::Refuse => bail!(GENERIC_REFUSED),
            }
        }
        Target::Tc => Ok((Attach::Tc, attach_tc(&mut ready.ebpf, interface)?)),
    }
}

/// Attaches the tc program of `ebpf` to the tcx ingress of `interface`,
/// first in the chain (`BPF_F_BEFORE`): a program before it that passes
/// (`TCX_PASS` ends the chain) would hand tunnel packets to the stack
/// still wrapped, and nothing before a decap can make sense of them;
/// programs after it see the inner packet. Before, it was appended last.
/// A program attached later with `BPF_F_BEFORE` can still go in front.
fn attach_tc(ebpf: &mut Ebpf, interface: &str) -> anyhow::Result<FdLink> {
    let program = tc_program(ebpf, names::PROG_TC_DECAP)?;
    let id = program
        .attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .with_context(|| {
            format!(
                "attaching {} to the tcx ingress of {interface} (kernel 6.6 or later needed)",
                names::PROG_TC_DECAP
            )
        })?;
    let link = program.take_link(id).context("taking the tc link")?;
    FdLink::try_from(link).context("the tc link cannot be pinned")
}
