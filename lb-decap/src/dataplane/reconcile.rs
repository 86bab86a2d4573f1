//! The apply itself, under the pin lock: a plan for each interface, the
//! new links, then either the pinned maps updated in place or one new
//! program swapped into every link, and last the links no longer served
//! removed.

use anyhow::Context as _;
use aya::programs::links::FdLink;
use tracing::{info, warn};

use super::{
    attach::{attach_new, swap_into_link, Target},
    load::{loaded, Ready},
    pinned_links::{live_link, refuse_foreign, runs_generic},
    stale_program::needs_new_program,
    takeover::{hold_foreign, takeover},
    warnings::{warn_if_gro_merges, warn_if_mode_differs},
    Applied,
};
use crate::{
    config::{Attach, Settings, XdpMode},
    maps::Maps,
    owner::{Claim, Ownership},
    pins::{remove_pin, PinDir},
};

/// What one interface's apply starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// The live link of this hook stays (its program swapped if need be).
    Keep(Attach),
    /// A new link where the target says.
    New(Target),
    /// `auto` at tc ingress before (native XDP was unavailable): native
    /// XDP is tried again, and if it still does not attach, the tc link
    /// stays.
    RetryNative,
}

/// One interface's link once the attachments are done.
pub(super) struct Serving {
    pub(super) interface: String,
    ifindex: u32,
    pub(super) attach: Attach,
    /// Attached by this apply (else the live pinned link).
    new: bool,
    /// The new link until it is pinned (after the maps).
    fresh: Option<FdLink>,
}

/// `apply` under the pin lock: refuses a pin directory another live
/// lb-decap serves from for other interfaces (nothing changed), attaches
/// what is missing, then either updates the pinned maps in place (every
/// live link runs this build's program on them) or puts one new program,
/// with its maps, into every link; last, removes the links no configured
/// interface is served by.
pub(super) fn apply_locked(
    settings: &Settings,
    pins: &PinDir,
    object: &[u8],
    owner: Option<&Ownership>,
) -> anyhow::Result<(Applied, Claim)> {
    let claim = crate::owner::claim(pins, &settings.interfaces, owner)?;
    let auto = settings.attach == Attach::Xdp && settings.xdp_mode == XdpMode::Auto;
    // One object for every new link and swap of this apply: one program
    // (per hook) and one set of maps behind all the links.
    let mut ready: Option<Ready> = None;
    let mut plans = Vec::new();
    for interface in &settings.interfaces {
        let ifindex =
            crate::interface::index(interface).with_context(|| format!("interface {interface}"))?;
        let asked = pins.link_path(settings.attach, interface);
        refuse_foreign(&asked, interface)?;
        if auto {
            // Where the fallback to tc ingress would be pinned.
            refuse_foreign(&pins.link_path(Attach::Tc, interface), interface)?;
        }
        let mut live = live_link(&asked, ifindex)?.then_some(settings.attach);
        let mut target = match settings.attach {
            Attach::Xdp => Target::Xdp(settings.xdp_mode),
            Attach::Tc => Target::Tc,
        };
        if auto && live == Some(Attach::Xdp) && runs_generic(&asked, ifindex) {
            // An older lb-decap's fallback: tc ingress takes over (attached
            // before the XDP link is removed: no gap).
            warn!(%interface, "the attached XDP program runs in generic mode (an older lb-decap's fallback), which leaves a stale hardware checksum after the unwrap; moving it to tc ingress");
            live = None;
            target = Target::Tc;
        }
        let plan = match live {
            Some(attach) => Plan::Keep(attach),
            None if auto
                && target != Target::Tc
                && live_link(&pins.link_path(Attach::Tc, interface), ifindex)? =>
            {
                Plan::RetryNative
            }
            None => Plan::New(target),
        };
        plans.push((interface.clone(), ifindex, plan));
    }
    let hold = hold_foreign(
        settings,
        pins,
        &takeover(pins, &settings.interfaces, owner)?,
        &mut plans,
        &mut ready,
        object,
    )?;
    let mut serving = Vec::new();
    for (interface, ifindex, plan) in plans {
        let (attach, fresh) = match plan {
            Plan::Keep(attach) => (attach, None),
            Plan::New(target) => {
                let (attach, link) =
                    attach_new(loaded(&mut ready, settings, object)?, &interface, target)?;
                (attach, Some(link))
            }
            Plan::RetryNative => {
                let native = loaded(&mut ready, settings, object)
                    .and_then(|ready| attach_new(ready, &interface, Target::Xdp(XdpMode::Native)));
                match native {
                    Ok((attach, link)) => (attach, Some(link)),
                    Err(error) => {
                        info!(%interface, error = format!("{error:#}"), "native XDP still unavailable; the decap program stays at tc ingress");
                        (Attach::Tc, None)
                    }
                }
            }
        };
        serving.push(Serving {
            interface,
            ifindex,
            attach,
            new: fresh.is_some(),
            fresh,
        });
    }
    let replace = !hold
        && (serving.iter().any(|s| s.new)
            || needs_new_program(settings, pins, &serving, &mut ready, object)?);
    if replace {
        let ready = loaded(&mut ready, settings, object)?;
        for s in serving.iter().filter(|s| !s.new) {
            let path = pins.link_path(s.attach, &s.interface);
            swap_into_link(ready, s.attach, &path)?;
            info!(interface = %s.interface, attach = s.attach.name(), pin = %path.display(), "decap program replaced in the attached link (no gap)");
        }
        // Maps first: once a link is pinned, a restart trusts the pins.
        crate::maps::pin(&ready.maps, pins)?;
        for s in &mut serving {
            if let Some(link) = s.fresh.take() {
                let path = pins.link_path(s.attach, &s.interface);
                link.pin(&path)
                    .with_context(|| format!("pinning the link at {}", path.display()))?;
                info!(interface = %s.interface, attach = s.attach.name(), pin = %path.display(), "decap program attached and pinned");
            }
        }
    } else {
        Maps::from_pins(pins)?.sync(settings)?;
        for s in &serving {
            info!(interface = %s.interface, attach = s.attach.name(), "program still attached; configuration updated in place");
        }
    }
    for s in &serving {
        let path = pins.link_path(s.attach, &s.interface);
        match s.attach {
            Attach::Xdp if !s.new => warn_if_mode_differs(settings, &s.interface, &path, s.ifindex),
            Attach::Xdp => {}
            Attach::Tc => warn_if_gro_merges(&s.interface),
        }
    }
    let kept: Vec<std::path::PathBuf> = serving
        .iter()
        .map(|s| pins.link_path(s.attach, &s.interface))
        .collect();
    for (attach, interface, path) in pins.links() {
        if !kept.contains(&path) {
            remove_pin(&path)?;
            info!(%interface, attach = attach.name(), "previous link removed: the program there is detached");
            if !settings.interfaces.contains(&interface) {
                // Its lock directory, left by a stopped lb-decap (`claim`
                // refused one a live lb-decap holds; this one's own is
                // released by `commit`).
                let _ = std::fs::remove_dir(pins.owner_path(&interface));
            }
        }
    }
    for (_, interface, path, owner) in pins.foreign_links() {
        warn!(%interface, pin = %path.display(), "left alone: the link pinned there runs {}, not lb-decap's (a pin directory shared with lbd?)", owner.describe());
    }
    let applied = if replace {
        Applied::Attached
    } else {
        Applied::Updated
    };
    Ok((applied, claim))
}
