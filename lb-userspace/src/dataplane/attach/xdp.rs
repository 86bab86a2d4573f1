//! Attaching at the XDP hook: natively or generically as `xdp_mode`
//! says, taking over the live link a previous lbd pinned (re-attached
//! anew when the mode changed), and pinning a fresh one.

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
        LinkOrder, TcAttachType, Xdp, XdpMode,
    },
    Ebpf,
};
use lb_common::consts::names;
use tracing::{debug, info, warn};

use super::super::{
    adopt::CarryPhase,
    hook_choice::{HookChoice, Translating},
    program_error, retry_interrupted, Dataplane, DataplaneError, Hooked, Result,
};
use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    ownership::cls_bpf::{TcPath, TC_ATTACH_ENV},
    pinning::{link_owner, LinkOwner},
};

use super::{link_error, remove_pin, tc::tc_path, tc_program, tcx_ingress_programs, Attachment};

impl Dataplane {
    /// Attaches the balancer to `interface`. `Auto` tries native (driver)
    /// mode and falls back to generic with a warning, or to the tc hook
    /// where VIPs translate (`translating`: NAT or tunnelled VIPs, which
    /// generic XDP cannot serve, see `dataplane::hook_choice`); `Generic`
    /// is refused there. With a pin directory, a link a previous lbd
    /// pinned for this interface is taken over: the new program replaces
    /// the old one atomically (no packet sees no program), in the mode the
    /// link was made with if that is the configured one (`Auto` takes
    /// either, but for a generic link where VIPs translate: tc then, and
    /// the caller's `remove_other_hook` removes the XDP link); otherwise a
    /// new link is made and pinned. `running` is the program the interface
    /// runs now, with its mode, to tell a live pinned link from a stale
    /// one. Returns the hook used. The caller finishes the adoption
    /// (`finish_adoption`) once the previous lbd's other hooks are gone
    /// too (`remove_other_hook` with that hook, `remove_other_interfaces`);
    /// the NAT flows a previous lbd's program opened since the load are
    /// carried over first.
    pub fn attach(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running: Option<(u32, ConfigXdpMode)>,
        translating: &Translating,
    ) -> Result<Hooked> {
        // Read at the start of every lbd, whatever its hook: checks
        // through a tunnel attach a tc program at XDP too.
        tc_path(names::PROG_TC_HC_ENCAP)?;
        self.carry_legacy_nat(CarryPhase::Attaching);
        let hooked = match self.attach_xdp(interface, mode, running, translating) {
            Ok(AtXdp::Xdp(used)) => {
                let used = used.or(running.map(|(_, was)| was)).unwrap_or(mode);
                // A NIC that strips VLAN tags before native XDP: frames
                // sent back would leave untagged (see `vlan_offload`).
                super::vlan_offload::warn_if_tags_lost(interface, used);
                Ok(Hooked::Xdp(used))
            }
            Ok(AtXdp::Tc) => {
                let running = tcx_ingress_programs(interface);
                self.attach_tc_hook(interface, &running)
            }
            Err(error) => Err(error),
        };
        self.promote_once_running(hooked)
    }

    /// `hooked`, the attach's outcome, once the maps this lbd staged
    /// (made in place of pinned ones) took their names if its program runs
    /// now, whether or not the attach succeeded (putting back the previous
    /// XDP mode attaches it too, see `reattach_in_mode`): from the swap on
    /// the pins name the maps the program runs on. A failure to pin them
    /// fails the attach; the next start pins them (`recover_staged`).
    pub(super) fn promote_once_running(&mut self, hooked: Result<Hooked>) -> Result<Hooked> {
        if self.attached.is_none() {
            return hooked;
        }
        match (self.promote_staged(), hooked) {
            (Ok(()), hooked) => hooked,
            (Err(error), Ok(_)) => Err(error),
            (Err(error), Err(attach_error)) => {
                warn!(%error, "pinning the maps this lbd started afresh under their names failed: the next start does it");
                Err(attach_error)
            }
        }
    }

    fn attach_xdp(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running: Option<(u32, ConfigXdpMode)>,
        translating: &Translating,
    ) -> Result<AtXdp> {
        let Some(path) = self.pins.as_ref().map(|p| p.link_path(interface)) else {
            return self.attach_xdp_anew(interface, mode, Some(translating));
        };
        let running_id = running.map(|(id, _)| id);
        let Some(link) =
            live_pinned_link(&path, interface, Attach::Xdp, |id| Some(id) == running_id)?
        else {
            return self.attach_xdp_anew(interface, mode, Some(translating));
        };
        let Some(was) = running
            .map(|(_, was)| was)
            .filter(|was| !mode_fits(mode, *was))
        else {
            // A generic link a previous lbd left (`auto` fell back, or
            // `generic`) is kept only where no VIP translates.
            if running.is_some_and(|(_, was)| was == ConfigXdpMode::Generic) {
                match translating.choose(mode, false) {
                    HookChoice::Tc => {
                        warn!(%interface, vips = %translating.names(), "the pinned XDP link runs in generic (skb) mode, which cannot translate packets for NAT or tunnelled VIPs (it may be handed partial checksums or GSO packets): attaching at tc ingress instead (the same packet path); the XDP link is removed once the tc program runs");
                        return Ok(AtXdp::Tc);
                    }
                    HookChoice::Refuse => {
                        return Err(DataplaneError::GenericXdpRefused(
                            translating.refusal("xdp_mode = \"generic\" refused"),
                        ))
                    }
                    HookChoice::Generic | HookChoice::Native => {}
                }
            }
            warn_if_generic_kept(interface, mode, running.map(|(_, was)| was));
            let link = self.take_over_link(link, &path, interface)?;
            self.attached = Some((interface.to_owned(), link));
            return Ok(AtXdp::Xdp(None));
        };
        self.reattach_in_mode(interface, link, &path, was, mode, translating)
    }

    /// The pinned link on `interface` runs the previous program in mode
    /// `was`, and `xdp_mode` asks for `mode` (changed across a restart):
    /// attaches anew in `mode`. The kernel refuses native and generic XDP
    /// on one interface at once, so the old link goes first; meanwhile the
    /// tc program carries the packets at the tcx ingress (same maps, same
    /// path) where the kernel has tcx, so no packet meets no program. If
    /// `mode` cannot be attached, the program is attached again in `was`
    /// (it keeps forwarding, pinned) and the error returned.
    fn reattach_in_mode(
        &mut self,
        interface: &str,
        old: FdLink,
        path: &std::path::Path,
        was: ConfigXdpMode,
        mode: ConfigXdpMode,
        translating: &Translating,
    ) -> Result<AtXdp> {
        info!(%interface, running = %was, configured = %mode, "xdp_mode changed: the pinned XDP link runs in another mode; attaching the program anew in the configured mode");
        let bridge = self.tc_bridge(interface);
        remove_pin(path)?;
        drop(old);
        let attached = self.attach_xdp_anew(interface, mode, Some(translating));
        let result = match attached {
            Ok(used) => Ok(used),
            Err(error) => {
                warn!(%interface, %error, mode = %mode, "attaching XDP in the configured mode failed; attaching it again in {was} mode, as before");
                // What ran before comes back as it was (lbd then exits
                // with the error).
                match self.attach_xdp_anew(interface, was, None) {
                    Ok(_) => Err(error),
                    Err(again) => {
                        warn!(%interface, error = %again, "attaching XDP again in {was} mode failed too: the interface runs no XDP program");
                        Err(error)
                    }
                }
            }
        };
        if let Some(id) = bridge {
            match tc_program(&mut self.ebpf).and_then(|p| {
                p.detach(id)
                    .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))
            }) {
                Ok(()) => {
                    info!(%interface, "the tc program that carried packets meanwhile is detached")
                }
                Err(error) => {
                    warn!(%interface, %error, "detaching the tc program that carried packets while XDP was attached anew failed; it goes when lbd exits")
                }
            }
        }
        result
    }

    /// Attaches the tc program to the tcx ingress of `interface` for the
    /// moment XDP is attached anew in another mode, so packets meet a
    /// program meanwhile. None without tcx (kernels before 6.6), or if the
    /// tc program cannot be loaded: then packets meet no program for that
    /// moment (two system calls) and take the stack's path; logged.
    fn tc_bridge(&mut self, interface: &str) -> Option<SchedClassifierLinkId> {
        if tc_path(names::PROG_TC_LB).is_ok_and(|path| path == TcPath::ClsBpf) {
            warn!(%interface, "no tc program to carry packets while XDP is attached anew ({TC_ATTACH_ENV}=cls_bpf: no tcx, as before kernel 6.6): until the new link is made, packets meet no program and take the stack's path");
            return None;
        }
        let attached = tc_program(&mut self.ebpf).and_then(|program| {
            program
                .attach_with_options(
                    interface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .map_err(|e| program_error("attaching", names::PROG_TC_LB, e))
        });
        match attached {
            Ok(id) => {
                info!(%interface, "the tc program carries packets at the tcx ingress while XDP is attached anew");
                Some(id)
            }
            Err(error) => {
                warn!(%interface, %error, "no tc program to carry packets while XDP is attached anew (no tcx: kernel before 6.6?): until the new link is made, packets meet no program and take the stack's path");
                None
            }
        }
    }

    /// Makes a new XDP link on `interface` in `mode` (pinned with a pin
    /// directory). Returns the mode used, or that the tc hook is to be
    /// used instead (`Auto` without native XDP where VIPs translate, see
    /// `dataplane::hook_choice`); `Generic` is refused there. Without
    /// `translating` (putting back what ran before) nothing is checked.
    fn attach_xdp_anew(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        translating: Option<&Translating>,
    ) -> Result<AtXdp> {
        let choice = |native_available: bool| {
            translating.map_or(HookChoice::Generic, |t| t.choose(mode, native_available))
        };
        if let (HookChoice::Refuse, Some(translating)) = (choice(false), translating) {
            return Err(DataplaneError::GenericXdpRefused(
                translating.refusal("xdp_mode = \"generic\" refused"),
            ));
        }
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let (link, used) = match mode {
            ConfigXdpMode::Native => (program.attach(interface, XdpMode::Driver), mode),
            ConfigXdpMode::Generic => (program.attach(interface, XdpMode::Skb), mode),
            ConfigXdpMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(link) => (Ok(link), ConfigXdpMode::Native),
                Err(error) => match (choice(false), translating) {
                    (HookChoice::Tc, Some(translating)) => {
                        warn!(%interface, %error, vips = %translating.names(), "native XDP attach failed, and generic (skb) XDP cannot translate packets for NAT or tunnelled VIPs (it may be handed partial checksums or GSO packets, which it would send out wrong): attaching at tc ingress instead (the same packet path, with the kernel's checksum helpers)");
                        return Ok(AtXdp::Tc);
                    }
                    _ => {
                        warn!(%interface, %error, "native XDP attach failed; falling back to generic (skb) mode, which is much slower (serving DSR-L2 VIPs only: a NAT or tunnelled VIP added while it runs is refused)");
                        (
                            program.attach(interface, XdpMode::Skb),
                            ConfigXdpMode::Generic,
                        )
                    }
                },
            },
        };
        let link = link.map_err(|e| program_error("attaching", names::PROG_LB, e))?;
        info!(%interface, mode = ?used, "XDP program attached");
        let attachment = match self.pins.as_ref().map(|p| p.link_path(interface)) {
            Some(path) => self.pin_link(link, path)?,
            None => Attachment::Owned(link),
        };
        self.attached = Some((interface.to_owned(), attachment));
        Ok(AtXdp::Xdp(Some(used)))
    }

    /// Swaps this lbd's program in on `link`, the live XDP link pinned at
    /// `path`.
    fn take_over_link(
        &mut self,
        link: FdLink,
        path: &std::path::Path,
        interface: &str,
    ) -> Result<Attachment> {
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let id = program
            .attach_to_link(
                XdpLink::try_from(link)
                    .map_err(|e| link_error("taking over", Attach::Xdp, path, &e))?,
            )
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_LB, e))?;
        let link =
            FdLink::try_from(link).map_err(|e| link_error("keeping", Attach::Xdp, path, &e))?;
        Ok(kept_on_pin(link, path, interface, Attach::Xdp))
    }

    /// Pins a fresh link so the program stays attached after lbd exits.
    /// Kernels without XDP links (before 5.9) attach through netlink,
    /// which cannot be pinned: the program then lives with this process.
    fn pin_link(&mut self, id: XdpLinkId, path: std::path::PathBuf) -> Result<Attachment> {
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("pinning the link of", names::PROG_LB, e))?;
        match FdLink::try_from(link) {
            Ok(link) => {
                link.pin(&path)
                    .map_err(|e| link_error("creating", Attach::Xdp, &path, &e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path)
                        .map_err(|e| link_error("reopening", Attach::Xdp, &path, &e))?,
                );
                Ok(Attachment::Pinned {
                    link,
                    path,
                    hook: Attach::Xdp,
                })
            }
            Err(error) => {
                warn!(%error, "this kernel attaches XDP through netlink, which cannot be pinned: the program will be detached when lbd exits");
                Err(link_error("creating", Attach::Xdp, &path, &error))
            }
        }
    }
}

/// Where `attach_xdp` left the balancer.
enum AtXdp {
    /// At XDP, in this mode (None: kept from the pinned link).
    Xdp(Option<ConfigXdpMode>),
    /// Nowhere yet: the tc hook is to be used instead (VIPs translate,
    /// see `dataplane::hook_choice`).
    Tc,
}

/// Warns when a start keeps, under `xdp_mode = "auto"` (`mode`), the
/// generic (skb) XDP link a previous lbd pinned (`running`: the mode the
/// link runs in): `auto` fell back to generic at some earlier start (its
/// native attach failed, e.g. an MTU too large for native XDP, or a
/// transient driver error) and keeps whichever runs, so without a word at
/// each start the much slower fallback would stay until `lbd --cleanup`
/// or a reboot. Names how to get native back. Nothing for a configured
/// `generic`, or a link in another mode.
pub(super) fn warn_if_generic_kept(
    interface: &str,
    mode: ConfigXdpMode,
    running: Option<ConfigXdpMode>,
) {
    if mode != ConfigXdpMode::Auto || running != Some(ConfigXdpMode::Generic) {
        return;
    }
    warn!(%interface, "keeping the pinned XDP link in generic (skb) mode, which xdp_mode = \"auto\" fell back to at an earlier start (native attach failed then) and keeps across restarts: generic XDP is much slower than native. To try native again, restart lbd once with xdp_mode = \"native\" (the program is attached anew in native mode, the tc program carrying packets meanwhile where the kernel has tcx; if native still fails, generic is put back and lbd exits with the attach error), or stop it and run `lbd --cleanup` (the connection table is lost). Native XDP fails on many drivers while the MTU is above about 3.5 KB (lbd's program does not take multi-buffer frames)");
}

/// Whether an XDP link running in mode `running` serves `configured`:
/// `Auto` takes whichever mode runs (a fallback to generic stays), and a
/// mode the kernel did not name (`Auto`) is taken as it is.
pub(crate) fn mode_fits(configured: ConfigXdpMode, running: ConfigXdpMode) -> bool {
    configured == ConfigXdpMode::Auto || running == ConfigXdpMode::Auto || configured == running
}

/// The attachment of a program swapped in on a pinned link a previous lbd
/// left at `hook`.
pub(super) fn kept_on_pin(
    link: FdLink,
    path: &std::path::Path,
    interface: &str,
    hook: Attach,
) -> Attachment {
    let word = super::super::hook_word(hook);
    info!(%interface, "{word} program replaced atomically on the pinned link; connection table kept");
    Attachment::Pinned {
        link,
        path: path.to_owned(),
        hook,
    }
}

/// The link pinned at `path` if it drives a program `running` says the
/// interface runs; a stale pin (the link is gone or drives something else)
/// is removed. `hook` names the hook in the log. A link of another
/// tool's program there (lb-decap's, sharing the pin directory) is
/// refused, not taken over.
pub(super) fn live_pinned_link(
    path: &std::path::Path,
    interface: &str,
    hook: Attach,
    running: impl Fn(u32) -> bool,
) -> Result<Option<FdLink>> {
    if !path.exists() {
        return Ok(None);
    }
    if let LinkOwner::Other(program) = link_owner(path) {
        return Err(DataplaneError::Link {
            action: "taking over",
            hook,
            path: path.to_owned(),
            reason: format!("it runs another tool's program {program} (lb-decap shares pin_dir?), which lbd leaves alone: give lbd a pin_dir of its own"),
        });
    }
    let live = PinnedLink::from_pin(path)
        .ok()
        .map(FdLink::from)
        .filter(|link| link.info().is_ok_and(|info| running(info.program_id())));
    if live.is_none() {
        warn!(%interface, hook = super::super::hook_word(hook), path = %path.display(), "pinned link is stale (not what the interface runs); replacing it");
        remove_pin(path)?;
    }
    Ok(live)
}

/// Whether the link pinned at `path` runs lbd's program, so lbd may
/// remove it: lb-decap pins its links under the same names, and a shared
/// pin directory (`/sys/fs/bpf`) holds both. Another tool's link is left
/// alone (debug log); one whose program cannot be told is too, with a
/// warning.
pub(super) fn lbd_link(path: &std::path::Path) -> bool {
    match link_owner(path) {
        LinkOwner::Lbd => true,
        LinkOwner::Other(program) => {
            debug!(pin = %path.display(), %program, "a link of another tool's program under an lbd name (lb-decap shares the pin directory?): left alone");
            false
        }
        LinkOwner::Unknown(reason) => {
            warn!(pin = %path.display(), %reason, "cannot tell which program the pinned link runs: left alone, as another tool's would be");
            false
        }
    }
}

/// The XDP program `name` of the object, loaded (verified) on first use,
/// as `tc_lb` is (`tc_program`): a node at tc never waits for `xdp_lb`'s
/// verification.
pub(crate) fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "finding",
        program: name,
        source: Box::new(aya::programs::ProgramError::NotLoaded),
    })?;
    let program: &mut Xdp = program
        .try_into()
        .map_err(|e| program_error("finding", name, e))?;
    if program.fd().is_err() {
        retry_interrupted(name, || program.load())
            .map_err(|e| program_error("loading", name, e))?;
    }
    Ok(program)
}
