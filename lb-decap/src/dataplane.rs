//! Loading, attaching and adopting the decap program. `apply` is the one
//! way the configuration reaches the kernel: the first time it loads the
//! object, fills and pins its maps, attaches the program and pins the
//! link; afterwards (a restart, a reload) it finds the pinned link still
//! attached and only updates the pinned maps in place, so decapsulation
//! never stops (an XDP link keeps the mode it was attached in: a changed
//! `xdp_mode` is warned about, and applied by a cleanup and a start).
//! `xdp_mode = "auto"` attaches native XDP, else at tc ingress, never
//! generic XDP ([`choose_hook`]); "generic" is refused.
//! Several interfaces share one program and one set of maps, a link on
//! each. Switching the hook or the interfaces attaches the new links
//! before the old ones are removed; a link on an interface the config
//! does not name is removed only when no other running lb-decap serves
//! it (`owner`: otherwise the apply is refused, nothing changed). A live
//! link whose program does not read the pinned maps (an older
//! lb-decap's, with fewer maps, or one left by an lb-decap before the
//! lock) or is another build's (an upgrade; compared by the kernel's
//! program tag) keeps its place: the new program is loaded and verified
//! first, then swapped into that link atomically (`BPF_LINK_UPDATE`), so
//! a failed load leaves the old program unwrapping. Any new link or swap
//! puts the new program into every link, so all read one set of maps.
//! Another build's program is swapped only by the start of `run` or by
//! a one-shot apply no running lb-decap holds the interfaces against
//! ([`Takeover`]): a re-apply of `run`, or a one-shot apply beside a
//! live `run`, leaves it and updates the maps (an old binary still
//! running after `dpkg -i` put its program back over the new one).
//! One lb-decap at a time does this per pin directory (`lock`).

use anyhow::{anyhow, bail, Context as _};
use aya::{
    maps::Map,
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode as AyaXdpMode,
    },
    Ebpf,
};
use lb_common::decap::names;
use tracing::{debug, info, warn};

use crate::{
    config::{Attach, Settings, XdpMode},
    interface::XdpRunning,
    link::LinkOwner,
    maps::{Maps, MAP_COUNT},
    object::DECAP_OBJECT,
    owner::{Claim, Ownership},
    pins::{remove_pin, PinDir},
};

/// Why `xdp_mode = "generic"` is refused (by the config's validation and
/// by `apply`), with the ways out.
pub const GENERIC_REFUSED: &str = "xdp_mode = \"generic\" is refused: generic (skb) XDP only moves the start of the packet past the removed outer header and leaves the skb's checksum state alone, so where the NIC delivers a hardware checksum (CHECKSUM_COMPLETE) it still covers the removed bytes after an IP6IP6, 4in6 or GUE unwrap (the kernel logs \"hw csum failure\" and checksums every such packet again in software). Use xdp_mode = \"auto\" (native XDP, else the tc hook) or attach = \"tc\" (the same unwrap at tc ingress, where the kernel's helper keeps the checksum right)";

/// Where the decap program runs with `attach = "xdp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookChoice {
    /// Native XDP (with `xdp_mode = "native"` whether or not it attached:
    /// a failure is the error).
    Native,
    /// `auto` without native XDP: tc ingress, the same unwrap.
    Tc,
    /// `generic`: refused ([`GENERIC_REFUSED`]), nothing attached.
    Refuse,
}

/// The hook for `mode`, given whether native XDP attached
/// (`native_attached`; only `auto` asks). Never generic XDP: it would
/// unwrap without fixing the skb's hardware checksum (see
/// [`GENERIC_REFUSED`]), so `auto` falls back to tc ingress, whose
/// `bpf_skb_adjust_room` keeps it right.
pub fn choose_hook(mode: XdpMode, native_attached: bool) -> HookChoice {
    match mode {
        XdpMode::Native => HookChoice::Native,
        XdpMode::Auto if native_attached => HookChoice::Native,
        XdpMode::Auto => HookChoice::Tc,
        XdpMode::Generic => HookChoice::Refuse,
    }
}

/// Refuses `xdp_mode = "generic"` with `attach = "xdp"` (with tc, the
/// config's validation refuses any mode but "auto").
pub fn refuse_generic(attach: Attach, mode: XdpMode) -> anyhow::Result<()> {
    if attach == Attach::Xdp && choose_hook(mode, false) == HookChoice::Refuse {
        bail!(GENERIC_REFUSED);
    }
    Ok(())
}

/// Loads the embedded object (programs not yet loaded into the kernel,
/// maps created, nothing pinned or attached): for `apply`, the tests and
/// the benchmark.
pub fn load_object() -> anyhow::Result<Ebpf> {
    load_bytes(DECAP_OBJECT)
}

/// [`load_object`] of the object `object`.
fn load_bytes(object: &[u8]) -> anyhow::Result<Ebpf> {
    Ebpf::load(object)
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
    /// Every pinned link was still attached, running this build's
    /// program on the pinned maps: only the maps were updated.
    Updated,
    /// The program was loaded and attached (first start, or after a
    /// cleanup, a change of hook or interfaces, or a stale pin), or put
    /// into the live links in place of one that did not read the pinned
    /// maps or was another build's.
    Attached,
}

/// Where a new link goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// XDP in this mode ([`choose_hook`]: with "auto", tc ingress if
    /// native XDP does not attach).
    Xdp(XdpMode),
    /// tc ingress.
    Tc,
}

/// What one interface's apply starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
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
struct Serving {
    interface: String,
    ifindex: u32,
    attach: Attach,
    /// Attached by this apply (else the live pinned link).
    new: bool,
    /// The new link until it is pinned (after the maps).
    fresh: Option<FdLink>,
}

/// Makes the kernel do what `settings` says (see the module doc).
pub fn apply(settings: &Settings, pins: &PinDir) -> anyhow::Result<Applied> {
    apply_with(settings, pins, DECAP_OBJECT, None)
}

/// [`apply`] for `lb-decap run`: the interfaces it serves stay locked in
/// `owner` for its lifetime (see `owner`), so another lb-decap on the
/// same pin directory cannot take them for stale.
pub fn apply_owned(
    settings: &Settings,
    pins: &PinDir,
    owner: &mut Ownership,
) -> anyhow::Result<Applied> {
    apply_with(settings, pins, DECAP_OBJECT, Some(owner))
}

/// [`apply`] with the decap object `object` ([`DECAP_OBJECT`]); the tests
/// pass one that does not load, to see that a failed load leaves the
/// attached program in place.
pub fn apply_object(settings: &Settings, pins: &PinDir, object: &[u8]) -> anyhow::Result<Applied> {
    apply_with(settings, pins, object, None)
}

/// [`apply_object`], holding the interfaces in `owner` when given
/// ([`apply_owned`]).
pub fn apply_with(
    settings: &Settings,
    pins: &PinDir,
    object: &[u8],
    owner: Option<&mut Ownership>,
) -> anyhow::Result<Applied> {
    refuse_generic(settings.attach, settings.xdp_mode)?;
    let Some(_lock) = crate::lock::lock(pins.root(), || pins.prepare())? else {
        bail!("the pin directory {} vanished", pins.root().display());
    };
    match apply_locked(settings, pins, object, owner.as_deref()) {
        Ok((applied, claim)) => {
            if let Some(owner) = owner {
                owner.commit(pins, claim, &settings.interfaces);
            }
            Ok(applied)
        }
        Err(error) => {
            // Leave no empty directories behind a failed first start.
            if pins.links().is_empty()
                && !pins.maps_pinned()
                && crate::owner::live_interfaces(pins).is_empty()
            {
                let _ = pins.remove_owner_dirs();
                let _ = std::fs::remove_dir(pins.maps_dir());
                let _ = std::fs::remove_dir(pins.root());
            }
            Err(error)
        }
    }
}

/// `apply` under the pin lock: refuses a pin directory another live
/// lb-decap serves from for other interfaces (nothing changed), attaches
/// what is missing, then either updates the pinned maps in place (every
/// live link runs this build's program on them) or puts one new program,
/// with its maps, into every link; last, removes the links no configured
/// interface is served by.
fn apply_locked(
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

/// Whether this apply may swap this build's program into a live link
/// that runs another build's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Takeover {
    /// The start of `lb-decap run`, or a one-shot apply no running
    /// lb-decap holds the interfaces against.
    Allowed,
    /// A one-shot apply while a running lb-decap holds these interfaces:
    /// its next re-apply would see this build's program as another's, so
    /// the swap is left to its restart (an upgrade: `dpkg -i`, then
    /// `systemctl restart lb-decap`).
    Running(Vec<String>),
    /// A re-apply of `run` (SIGHUP, a changed interface): the program
    /// attached is not the one it loaded (a newer build's, say), and an
    /// older binary still running must not put its own back.
    Reapply,
}

/// Which [`Takeover`] an apply with `owner` (`run`) or without (one-shot)
/// of `interfaces` has.
fn takeover(
    pins: &PinDir,
    interfaces: &[String],
    owner: Option<&Ownership>,
) -> anyhow::Result<Takeover> {
    match owner {
        Some(owner) if owner.started() => Ok(Takeover::Reapply),
        Some(_) => Ok(Takeover::Allowed),
        None => {
            let mut held = Vec::new();
            for interface in interfaces {
                if crate::owner::held_elsewhere(pins, interface)? {
                    held.push(interface.clone());
                }
            }
            Ok(if held.is_empty() {
                Takeover::Allowed
            } else {
                Takeover::Running(held)
            })
        }
    }
}

/// What to do instead of a swap that `takeover` forbids, in words.
fn restart_advice(takeover: &Takeover) -> String {
    match takeover {
        Takeover::Running(held) => format!(
            "a running lb-decap serves {}, so this one-shot apply swaps no program (that lb-decap's next reload would swap its own back): restart lb-decap (systemctl restart lb-decap) to swap this build's in (no gap)",
            held.join(", ")
        ),
        _ => "this running lb-decap did not load it and swaps only at its start: restart lb-decap (systemctl restart lb-decap) for the installed build's program to take over (no gap)".to_owned(),
    }
}

/// When `takeover` forbids swapping and a kept live link runs another
/// build's program: whether to hold it (only the maps updated; a retry
/// of native XDP given up, as it would put this build's program in
/// every link), or an error when the maps cannot be updated safely
/// (missing, or not read by that program) or a new link is needed (it
/// would carry this build's program into every link). False otherwise.
fn hold_foreign(
    settings: &Settings,
    pins: &PinDir,
    takeover: &Takeover,
    plans: &mut [(String, u32, Plan)],
    ready: &mut Option<Ready>,
    object: &[u8],
) -> anyhow::Result<bool> {
    if *takeover == Takeover::Allowed {
        return Ok(false);
    }
    let mut foreign = Vec::new();
    for (interface, _, plan) in plans.iter() {
        let attach = match plan {
            Plan::Keep(attach) => *attach,
            Plan::RetryNative => Attach::Tc,
            Plan::New(_) => continue,
        };
        let path = pins.link_path(attach, interface);
        let attached = program_tag(link_program(&path)?)?;
        // Unloadable, it cannot be swapped in either: the apply goes on
        // as before (and fails where it needs the program).
        let build = match loaded(ready, settings, object).and_then(|r| r.tag(attach)) {
            Ok(build) => build,
            Err(error) => {
                debug!(
                    error = format!("{error:#}"),
                    "this build's program did not load; not compared with the attached one"
                );
                return Ok(false);
            }
        };
        if attached != build {
            foreign.push((interface.clone(), attach, path, attached, build));
        }
    }
    let Some((interface, attach, _, attached, build)) = foreign.first() else {
        return Ok(false);
    };
    let whose = format!(
        "the {} program on {interface} is another lb-decap build's (tag {}, this lb-decap's {})",
        attach.name(),
        format_tag(*attached),
        format_tag(*build)
    );
    let advice = restart_advice(takeover);
    if let Some((new, _, _)) = plans.iter().find(|(_, _, p)| matches!(p, Plan::New(_))) {
        bail!("{whose} and {new} needs a new link, which would put this build's program into every link; {advice}");
    }
    let missing = pins.missing_maps();
    if !missing.is_empty() {
        bail!(
            "{whose} and the pin directory lacks maps this build uses ({}); {advice}",
            missing.join(", ")
        );
    }
    for (interface, _, path, _, _) in &foreign {
        if unread_map(path, pins)?.is_some() {
            bail!("{whose} and the program on {interface} does not read the pinned maps, so updating them would not reach it; {advice}");
        }
    }
    for (interface, _, plan) in plans.iter_mut() {
        if *plan == Plan::RetryNative {
            info!(%interface, "native XDP not retried: it would swap this build's program into every link");
            *plan = Plan::Keep(Attach::Tc);
        }
    }
    warn!("{whose}: left in place and the maps updated; {advice}");
    Ok(true)
}

/// Whether the live links (none new) need a new program: maps missing
/// (an older lb-decap's program, e.g. before `sources`: it cannot enforce
/// what the new maps say), a program not reading the pinned maps (left by
/// two lb-decaps starting at once), or another build's program (an
/// upgrade: without the swap, a fixed program in a new package stayed
/// unused until a cleanup and a start, a gap).
fn needs_new_program(
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

/// The XDP mode `xdp_mode` asks for, if it names one ("auto" takes
/// whichever attached).
fn asked_mode(mode: XdpMode) -> Option<XdpRunning> {
    match mode {
        XdpMode::Native => Some(XdpRunning::Native),
        XdpMode::Generic => Some(XdpRunning::Generic),
        XdpMode::Auto => None,
    }
}

/// Whether the XDP link at `link_path` runs its program in generic mode.
fn runs_generic(link_path: &std::path::Path, ifindex: u32) -> bool {
    link_program(link_path)
        .and_then(|program| crate::interface::xdp_running(ifindex, program))
        .is_ok_and(|running| running == Some(XdpRunning::Generic))
}

/// A live XDP link keeps the mode it was attached in: an interface cannot
/// run a native and a generic program at once, so no new link can take
/// over without a gap. Says so when `xdp_mode` now asks for another mode
/// (and how to apply it), or when the mode cannot be read.
fn warn_if_mode_differs(
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
fn warn_if_gro_merges(interface: &str) {
    match crate::gro::merging(interface) {
        Ok(on) if !on.is_empty() => warn!("{}", crate::gro::warning(interface, &on)),
        Ok(_) => {}
        Err(error) => {
            debug!(%interface, error = format!("{error:#}"), "could not read the interface's GRO features")
        }
    }
}

/// Refuses an apply that would use the link path `path` of `interface`
/// while a link of another tool is pinned there (lbd pins its links
/// under the same names, and the pin directory may be shared): swapping
/// the decap program into it would stop that tool's program, and
/// removing it would detach it. Before, lb-decap took any link pinned
/// under its names for its own. Checked before anything is changed.
fn refuse_foreign(path: &std::path::Path, interface: &str) -> anyhow::Result<()> {
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

/// A map pinned in `pins` that the program of the live link at
/// `link_path` does not use, with the program's id; if there is one (its
/// maps were replaced under it, so configuration written to the pins
/// never reaches it), `apply` puts a new program into the link.
fn unread_map(
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

/// The kernel's information on loaded program `id`.
fn program_info(id: u32) -> anyhow::Result<aya::programs::ProgramInfo> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| anyhow!("program {id} is gone"))
}

/// The tag of loaded program `id`: the kernel's hash of its instructions
/// (map references zeroed), the same for every load of one build's
/// program and different for another build's.
pub fn program_tag(id: u32) -> anyhow::Result<u64> {
    Ok(program_info(id)?.tag())
}

/// The tag of this build's program for `attach` (loaded and verified for
/// the purpose, then dropped): what [`program_tag`] of an attached
/// program is compared with.
pub fn build_tag(attach: Attach) -> anyhow::Result<u64> {
    let mut ebpf = load_object()?;
    tag_of(&mut ebpf, attach)
}

/// A tag as bpftool prints it (16 hex digits).
pub fn format_tag(tag: u64) -> String {
    format!("{tag:016x}")
}

/// The tag of the program for `attach` in `ebpf` (loaded if not yet).
fn tag_of(ebpf: &mut Ebpf, attach: Attach) -> anyhow::Result<u64> {
    let info = match attach {
        Attach::Xdp => xdp_program(ebpf, names::PROG_XDP_DECAP)?.info(),
        Attach::Tc => tc_program(ebpf, names::PROG_TC_DECAP)?.info(),
    };
    Ok(info
        .with_context(|| format!("reading this build's {} program", attach.name()))?
        .tag())
}

/// The object loaded with its maps filled for the settings: everything
/// that can fail before a link is touched but the program's own load.
struct Ready {
    ebpf: Ebpf,
    maps: [Map; MAP_COUNT],
}

impl Ready {
    fn load(settings: &Settings, object: &[u8]) -> anyhow::Result<Self> {
        let mut ebpf = load_bytes(object)?;
        let mut maps = crate::maps::take(&mut ebpf)?;
        Maps::borrowed(&mut maps)?.sync(settings)?;
        Ok(Self { ebpf, maps })
    }

    /// The tag of this object's program for `attach`.
    fn tag(&mut self, attach: Attach) -> anyhow::Result<u64> {
        tag_of(&mut self.ebpf, attach)
    }
}

/// The object of this apply, loaded at its first use.
fn loaded<'a>(
    ready: &'a mut Option<Ready>,
    settings: &Settings,
    object: &[u8],
) -> anyhow::Result<&'a mut Ready> {
    if ready.is_none() {
        *ready = Some(Ready::load(settings, object)?);
    }
    ready
        .as_mut()
        .ok_or_else(|| anyhow!("the decap object was not loaded"))
}

/// Puts the program of `ready` for `attach` into the live link pinned at
/// `link_path`. The program is loaded and verified first and swapped in
/// with `BPF_LINK_UPDATE` (atomic: the interface is never without a
/// program, and the link keeps its pin and, for XDP, its mode), so any
/// failure before the swap leaves the old program unwrapping. Removing
/// the link first, as before, left nothing attached when the new program
/// failed to load, at every restart. The caller pins the maps.
fn swap_into_link(
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
fn attach_new(
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
    let live = crate::owner::live_interfaces(pins);
    if !live.is_empty() {
        warn!(interfaces = %live.join(", "), dir = %pins.root().display(), "a running lb-decap serves these interfaces from this pin directory: it sees its link gone and attaches again within seconds; stop it first (systemctl stop lb-decap)");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision `apply` follows with `attach = "xdp"`: `auto` without
    /// native XDP goes to tc ingress, never generic XDP (before, it fell
    /// back to generic and `generic` attached as asked, leaving a stale
    /// hardware checksum after each unwrap); `generic` is refused.
    #[test]
    fn generic_xdp_is_never_chosen() {
        use XdpMode::{Auto, Generic, Native};
        assert_eq!(choose_hook(Auto, true), HookChoice::Native);
        assert_eq!(choose_hook(Auto, false), HookChoice::Tc);
        // Asked for: a failure to attach is the error, not a fallback.
        assert_eq!(choose_hook(Native, true), HookChoice::Native);
        assert_eq!(choose_hook(Native, false), HookChoice::Native);
        assert_eq!(choose_hook(Generic, true), HookChoice::Refuse);
        assert_eq!(choose_hook(Generic, false), HookChoice::Refuse);
        let error = refuse_generic(Attach::Xdp, Generic).expect_err("refused");
        assert_eq!(error.to_string(), GENERIC_REFUSED);
        for mode in [Auto, Native] {
            refuse_generic(Attach::Xdp, mode).expect("not refused");
        }
        // With tc the config's validation refuses any mode but "auto".
        refuse_generic(Attach::Tc, Generic).expect("not the XDP refusal");
    }

    /// Who may swap another build's program for this one's: the start of
    /// `run` and a one-shot apply nobody runs beside; not a one-shot apply
    /// beside a running lb-decap (whose reload would swap its own back)
    /// nor a re-apply of `run`.
    #[test]
    fn only_a_start_or_a_lone_apply_takes_over_another_builds_program() {
        let root = std::env::temp_dir().join(format!("lb-decap-takeover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pins = PinDir::new(&root);
        let eth0 = vec!["eth0".to_owned()];
        let mut run = Ownership::new();
        assert_eq!(
            takeover(&pins, &eth0, Some(&run)).expect("start"),
            Takeover::Allowed
        );
        assert_eq!(
            takeover(&pins, &eth0, None).expect("alone"),
            Takeover::Allowed
        );
        let claim = crate::owner::claim(&pins, &eth0, Some(&run)).expect("claim");
        run.commit(&pins, claim, &eth0);
        assert_eq!(
            takeover(&pins, &eth0, Some(&run)).expect("re-apply"),
            Takeover::Reapply
        );
        assert_eq!(
            takeover(&pins, &eth0, None).expect("beside"),
            Takeover::Running(eth0.clone())
        );
        assert!(restart_advice(&Takeover::Reapply).contains("systemctl restart lb-decap"));
        drop(run);
        assert_eq!(
            takeover(&pins, &eth0, None).expect("stopped"),
            Takeover::Allowed
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
