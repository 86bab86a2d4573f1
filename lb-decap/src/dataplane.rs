//! Loading, attaching and adopting the decap program. `apply` is the one
//! way the configuration reaches the kernel: the first time it loads the
//! object, fills and pins its maps, attaches the program and pins the
//! link; afterwards (a restart, a reload) it finds the pinned link still
//! attached and only updates the pinned maps in place, so decapsulation
//! never stops (an XDP link keeps the mode it was attached in: a changed
//! `xdp_mode` is warned about, and applied by a cleanup and a start).
//! Switching the hook or the interface attaches the new link
//! before the old one is removed. One lb-decap at a time does this per pin
//! directory (`lock`), and a live link whose program does not read the
//! pinned maps (left by an lb-decap before the lock) is replaced.

use anyhow::{anyhow, bail, Context as _};
use aya::{
    programs::{
        links::FdLink, tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp,
        XdpMode as AyaXdpMode,
    },
    Ebpf,
};
use lb_common::decap::names;
use tracing::{info, warn};

use crate::{
    config::{Attach, Settings, XdpMode},
    interface::XdpRunning,
    maps::Maps,
    object::DECAP_OBJECT,
    pins::{remove_pin, PinDir},
};

/// Loads the embedded object (programs not yet loaded into the kernel,
/// maps created, nothing pinned or attached): for `apply`, the tests and
/// the benchmark.
pub fn load_object() -> anyhow::Result<Ebpf> {
    Ebpf::load(DECAP_OBJECT)
        .context("loading the decap object (root, or CAP_BPF and CAP_NET_ADMIN, needed)")
}

/// The XDP decap program of `ebpf`, loaded into the kernel.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the decap object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    if program.fd().is_err() {
        program
            .load()
            .with_context(|| format!("loading {name} (the verifier's log says why)"))?;
    }
    Ok(program)
}

/// The tc decap program of `ebpf`, loaded into the kernel.
pub fn tc_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the decap object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a tc program"))?;
    if program.fd().is_err() {
        program
            .load()
            .with_context(|| format!("loading {name} (the verifier's log says why)"))?;
    }
    Ok(program)
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The pinned link was still attached: only the maps were updated.
    Updated,
    /// The program was loaded and attached (first start, or after a
    /// cleanup, a change of hook or interface, or a stale pin).
    Attached,
}

/// Makes the kernel do what `settings` says (see the module doc).
pub fn apply(settings: &Settings, pins: &PinDir) -> anyhow::Result<Applied> {
    let Some(_lock) = crate::lock::lock(pins.root(), || pins.prepare())? else {
        bail!("the pin directory {} vanished", pins.root().display());
    };
    let link_path = pins.link_path(settings.attach, &settings.interface);
    let ifindex = crate::interface::index(&settings.interface)
        .with_context(|| format!("interface {}", settings.interface))?;
    let mut live = live_link(&link_path, ifindex)?;
    let missing = pins.missing_maps();
    if live && !missing.is_empty() {
        // An older lb-decap's program (fewer maps, e.g. before `sources`):
        // it cannot enforce what the new maps say, and an interface holds
        // one XDP link, so it goes before the new one is attached.
        warn!(link = %link_path.display(), ?missing, "the attached program is an older lb-decap's (maps missing); replacing it (a brief gap)");
        remove_pin(&link_path)?;
        live = false;
    }
    let applied = if live && pins.maps_pinned() && reads_pinned_maps(&link_path, pins)? {
        let mut maps = Maps::from_pins(pins)?;
        maps.sync(settings)?;
        info!(interface = %settings.interface, attach = settings.attach.name(), "program still attached; configuration updated in place");
        if settings.attach == Attach::Xdp {
            warn_if_mode_differs(settings, &link_path, ifindex);
        }
        Applied::Updated
    } else {
        if let Err(error) = attach_fresh(settings, pins) {
            // Leave no empty directories behind a failed first start.
            if pins.links().is_empty() && !pins.maps_pinned() {
                let _ = std::fs::remove_dir(pins.maps_dir());
                let _ = std::fs::remove_dir(pins.root());
            }
            return Err(error);
        }
        Applied::Attached
    };
    for (attach, interface, path) in pins.links() {
        if path != link_path {
            remove_pin(&path)?;
            info!(%interface, attach = attach.name(), "previous link removed: the program there is detached");
        }
    }
    Ok(applied)
}

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
fn warn_if_mode_differs(settings: &Settings, link_path: &std::path::Path, ifindex: u32) {
    let Some(asked) = asked_mode(settings.xdp_mode) else {
        return;
    };
    let running =
        link_program(link_path).and_then(|program| crate::interface::xdp_running(ifindex, program));
    match running {
        Ok(Some(running)) if running == asked => {}
        Ok(Some(running)) => warn!(
            interface = %settings.interface,
            "xdp_mode = \"{}\" is not applied: the program attached earlier keeps running in {} mode (an interface cannot run native and generic XDP at once, so it cannot be swapped without a gap); `lb-decap cleanup` and a start apply it (a brief gap)",
            settings.xdp_mode.name(),
            running.name()
        ),
        Ok(None) => {
            warn!(interface = %settings.interface, "the interface does not list the attached XDP program; its mode is unknown")
        }
        Err(error) => {
            warn!(interface = %settings.interface, error = format!("{error:#}"), "could not read the attached XDP program's mode")
        }
    }
}

/// Whether a link is pinned at `path` and still attached to interface
/// `ifindex` (a link whose interface was deleted, even if one of the same
/// name came back, is defunct); a stale pin is removed.
fn live_link(path: &std::path::Path, ifindex: u32) -> anyhow::Result<bool> {
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

/// Whether the program of the live link at `link_path` uses the maps
/// pinned in `pins`; if not (its maps were replaced under it, so
/// configuration written to the pins never reaches it), the link is
/// removed, detaching that program, and false returned: `apply` attaches
/// afresh (for XDP, after a brief gap: an interface holds one XDP link).
fn reads_pinned_maps(link_path: &std::path::Path, pins: &PinDir) -> anyhow::Result<bool> {
    let program_id = link_program(link_path)?;
    let used = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program_id)
        .ok_or_else(|| anyhow!("program {program_id} of {} is gone", link_path.display()))?
        .map_ids()
        .with_context(|| format!("reading the maps of program {program_id}"))?;
    // A kernel that does not say (before 4.15) is trusted.
    let Some(used) = used else {
        return Ok(true);
    };
    for name in crate::pins::PINNED_MAPS {
        let path = pins.map_path(name);
        let id = aya::maps::MapData::from_pin(&path)
            .and_then(|m| m.info())
            .map(|i| i.id())
            .with_context(|| format!("reading the pinned map {}", path.display()))?;
        if !used.contains(&id) {
            warn!(link = %link_path.display(), map = name, program_id, "the attached program does not read the pinned maps (left by two lb-decaps starting at once?); attaching afresh");
            remove_pin(link_path)?;
            return Ok(false);
        }
    }
    Ok(true)
}

fn attach_fresh(settings: &Settings, pins: &PinDir) -> anyhow::Result<()> {
    let mut ebpf = load_object()?;
    let mut taken = crate::maps::take(&mut ebpf)?;
    Maps::borrowed(&mut taken)?.sync(settings)?;
    let interface = settings.interface.as_str();
    let link = match settings.attach {
        Attach::Xdp => {
            let program = xdp_program(&mut ebpf, names::PROG_XDP_DECAP)?;
            let id = match settings.xdp_mode {
                XdpMode::Native => program.attach(interface, AyaXdpMode::Driver),
                XdpMode::Generic => program.attach(interface, AyaXdpMode::Skb),
                XdpMode::Auto => match program.attach(interface, AyaXdpMode::Driver) {
                    Ok(id) => Ok(id),
                    Err(error) => {
                        warn!(%interface, %error, "native XDP attach failed; using generic (skb) mode, which is slower");
                        program.attach(interface, AyaXdpMode::Skb)
                    }
                },
            }
            .with_context(|| format!("attaching {} to {interface} (another XDP program there?)", names::PROG_XDP_DECAP))?;
            let link = program.take_link(id).context("taking the XDP link")?;
            FdLink::try_from(link)
                .context("this kernel attaches XDP without a link, which cannot be pinned")?
        }
        Attach::Tc => {
            let program = tc_program(&mut ebpf, names::PROG_TC_DECAP)?;
            let id = program
                .attach_with_options(
                    interface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .with_context(|| format!("attaching {} to the tcx ingress of {interface} (kernel 6.6 or later needed)", names::PROG_TC_DECAP))?;
            let link = program.take_link(id).context("taking the tc link")?;
            FdLink::try_from(link).context("the tc link cannot be pinned")?
        }
    };
    // Maps first: once the link is pinned, a restart trusts the pins.
    crate::maps::pin(&taken, pins)?;
    let path = pins.link_path(settings.attach, interface);
    link.pin(&path)
        .with_context(|| format!("pinning the link at {}", path.display()))?;
    info!(%interface, attach = settings.attach.name(), pin = %path.display(), "decap program attached and pinned");
    Ok(())
}

/// Detaches the program and removes every pin (`lb-decap cleanup`).
/// Returns how many pins were removed.
pub fn cleanup(pins: &PinDir) -> anyhow::Result<usize> {
    if !pins.root().exists() {
        return Ok(0);
    }
    let Some(_lock) = crate::lock::lock(pins.root(), || Ok(()))? else {
        // Removed meanwhile (another cleanup): nothing left here.
        return Ok(0);
    };
    let removed = pins.remove_all()?;
    for path in &removed {
        info!(pin = %path.display(), "removed");
    }
    Ok(removed.len())
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
