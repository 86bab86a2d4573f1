//! Attaching the balancer at XDP or tc ingress, taking over the link a
//! previous lbd pinned (the program swapped atomically; attached anew when
//! `xdp_mode` changed), removing the links a previous lbd pinned for
//! another hook or interface, telling whether the kernel still runs the
//! hook, and what a stop leaves on the interface: still forwarding
//! (`release`) or detached (`detach`).

mod vlan_offload;

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf,
};
use lb_common::consts::names;
use tracing::{debug, info, warn};

use super::{
    adopt::CarryPhase,
    hook_choice::{HookChoice, Translating},
    program_error, retry_interrupted, Dataplane, DataplaneError, Hooked, Released, Result,
};
use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    ownership::cls_bpf::{self, TcPath, TC_ATTACH_ENV},
    pinning::{link_owner, LinkOwner, PinError},
};

/// How the program is attached.
pub(super) enum Attachment {
    /// Through a link this process owns: detached when it goes.
    Owned(XdpLinkId),
    /// Through a tc link this process owns (cls_bpf): detached when it
    /// goes, unless the maps are pinned (then left running for the next
    /// lbd, by `release` or on drop).
    OwnedTc(SchedClassifierLinkId),
    /// Through a link pinned in bpffs: stays attached after lbd exits.
    Pinned {
        link: FdLink,
        path: std::path::PathBuf,
        /// The hook the link is at, to ask the kernel whether it still
        /// runs there.
        hook: Attach,
    },
}

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
                vlan_offload::warn_if_tags_lost(interface, used);
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
    fn promote_once_running(&mut self, hooked: Result<Hooked>) -> Result<Hooked> {
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

    /// Attaches the tc program to `interface`'s ingress, as `attach`
    /// does for XDP: a tc link a previous lbd pinned here is taken over
    /// (the program swapped atomically with a link update); otherwise a
    /// new tcx link is made and pinned. `running` are the ids of the
    /// programs on the interface's tcx ingress, to tell a live pinned link
    /// from a stale one. Without tcx (kernels before 6.6), or with
    /// `LBD_TC_ATTACH=cls_bpf` (see `ownership::cls_bpf::tc_path`), it
    /// attaches through clsact + cls_bpf: that attachment cannot be
    /// pinned (see `release` for what a restart does with it). As with
    /// `attach`, the caller finishes the adoption once the previous lbd's
    /// other hooks are gone: until `remove_other_hook` a previous lbd's
    /// XDP program still runs, before this one, on the tables it was
    /// loaded with.
    pub fn attach_tc(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        let hooked = self.attach_tc_hook(interface, running);
        self.promote_once_running(hooked)
    }

    /// `attach_tc` until its program runs.
    fn attach_tc_hook(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        let path = tc_path(names::PROG_TC_LB)?;
        // Verified first (a second or more), so the NAT flows the old
        // program opens meanwhile are carried before the swap.
        tc_program(&mut self.ebpf)?;
        self.carry_legacy_nat(CarryPhase::Attaching);
        if let Some(path) = self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            if let Some(link) = self.take_over_tc_link(&path, interface, running)? {
                self.attached = Some((interface.to_owned(), link));
                return Ok(Hooked::Tcx);
            }
        }
        let program = tc_program(&mut self.ebpf)?;
        let tcx = match path {
            TcPath::Tcx => match program.attach_with_options(
                interface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            ) {
                Ok(id) => Some(id),
                Err(tcx_error) if tcx_missing(&tcx_error) => {
                    warn!(%interface, error = %crate::pinning::error_chain(&tcx_error), "this kernel has no tcx (before 6.6); attaching through clsact + cls_bpf, which cannot be pinned: the filter is left running when lbd stops for a restart (the next lbd replaces it), and removed on a stop for good");
                    None
                }
                Err(tcx_error) => {
                    return Err(program_error(
                        "attaching at the tcx ingress",
                        names::PROG_TC_LB,
                        tcx_error,
                    ))
                }
            },
            TcPath::ClsBpf => {
                info!(%interface, "{TC_ATTACH_ENV}=cls_bpf: attaching through clsact + cls_bpf, which cannot be pinned: the filter is left running when lbd stops for a restart (the next lbd replaces it), and removed on a stop for good");
                None
            }
        };
        let Some(id) = tcx else {
            let id = cls_bpf::attach_filter(
                program,
                interface,
                TcAttachType::Ingress,
                cls_bpf::lb_filter_options(),
            )
            .map_err(|e| program_error("attaching", names::PROG_TC_LB, e))?;
            info!(%interface, "tc program attached (clsact + cls_bpf)");
            self.attached = Some((interface.to_owned(), Attachment::OwnedTc(id)));
            return Ok(Hooked::TcClsBpf);
        };
        info!(%interface, "tc program attached (tcx ingress link)");
        let attachment = match self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            Some(path) => {
                let link = program
                    .take_link(id)
                    .map_err(|e| program_error("pinning the link of", names::PROG_TC_LB, e))?;
                let link = FdLink::try_from(link)
                    .map_err(|e| link_error("creating", Attach::Tc, &path, &e))?;
                link.pin(&path)
                    .map_err(|e| link_error("creating", Attach::Tc, &path, &e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path)
                        .map_err(|e| link_error("reopening", Attach::Tc, &path, &e))?,
                );
                Attachment::Pinned {
                    link,
                    path,
                    hook: Attach::Tc,
                }
            }
            None => Attachment::OwnedTc(id),
        };
        self.attached = Some((interface.to_owned(), attachment));
        Ok(Hooked::Tcx)
    }

    /// Takes over the tc link pinned at `path` if it drives one of the
    /// programs on the interface's tcx ingress; removes it if it is stale.
    fn take_over_tc_link(
        &mut self,
        path: &std::path::Path,
        interface: &str,
        running: &[u32],
    ) -> Result<Option<Attachment>> {
        let Some(link) = live_pinned_link(path, interface, Attach::Tc, |id| running.contains(&id))?
        else {
            return Ok(None);
        };
        let program = tc_program(&mut self.ebpf)?;
        let link = SchedClassifierLink::try_from(link)
            .map_err(|e| link_error("taking over", Attach::Tc, path, &e))?;
        let id = program
            .attach_to_link(link)
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_TC_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_TC_LB, e))?;
        let link =
            FdLink::try_from(link).map_err(|e| link_error("keeping", Attach::Tc, path, &e))?;
        Ok(Some(kept_on_pin(link, path, interface, Attach::Tc)))
    }

    /// Removes the pinned link of the hook other than `kept` on
    /// `interface`, if a previous lbd left one: switching `attach` across
    /// a restart. Called once the new hook is attached, so the two
    /// overlap for a moment (XDP runs before tc; both read the same maps)
    /// and no packet meets neither. Returns whether one was removed.
    pub fn remove_other_hook(&mut self, interface: &str, kept: Attach) -> Result<bool> {
        let Some(pins) = &self.pins else {
            return Ok(false);
        };
        let other = match kept {
            Attach::Xdp => pins.tc_link_path(interface),
            Attach::Tc => pins.link_path(interface),
        };
        if !other.exists() || !lbd_link(&other) {
            return Ok(false);
        }
        remove_pin(&other)?;
        info!(%interface, pin = %other.display(), attach = %kept, "the other hook's pinned link removed: the program there is detached");
        Ok(true)
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

    /// Detaches the balancer, if attached, and removes every pin: packets
    /// take the normal stack path again and the maps are freed. The full
    /// stop (SIGINT, `lbd --cleanup`), and the undoing of a first start
    /// that failed after the attach (`Engine::undo_fresh_start`); never
    /// on drop (see `impl Drop for Dataplane`).
    pub fn detach(&mut self) -> Result<()> {
        self.detach_hook()?;
        if let Some(pins) = &self.pins {
            let removed = pins.remove_all()?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins removed");
        }
        Ok(())
    }

    /// Detaches the balancer, if attached, and removes the pins this
    /// start made (see `PinDir::remove_made_since`): the undoing of a
    /// first start that failed (`Engine::undo_fresh_start`). What a
    /// previous lbd left pinned (maps not adopted, another layout's, a
    /// link on another interface) stays as it was.
    pub fn detach_made_here(&mut self) -> Result<()> {
        self.detach_hook()?;
        if let Some(pins) = &self.pins {
            let removed = pins.remove_made_since(&self.found_pins)?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins this start made removed");
        }
        Ok(())
    }

    /// Detaches the balancer from its hook, if attached; the pinned maps
    /// stay.
    fn detach_hook(&mut self) -> Result<()> {
        match self.attached.take() {
            Some((interface, Attachment::Owned(link))) => {
                xdp_program(&mut self.ebpf, names::PROG_LB)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_LB, e))?;
                info!(%interface, "XDP program detached");
            }
            Some((interface, Attachment::OwnedTc(link))) => {
                tc_program(&mut self.ebpf)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))?;
                info!(%interface, "tc program detached");
            }
            Some((interface, Attachment::Pinned { link, path, .. })) => {
                remove_pin(&path)?;
                drop(link);
                info!(%interface, pin = %path.display(), "program detached (pinned link removed)");
            }
            None => {}
        }
        Ok(())
    }

    /// Leaves the program attached and the maps pinned for the next lbd
    /// (SIGTERM: a restart or an upgrade). Without pins this is a detach.
    /// With nothing attached (the kernel dropped the hook, see
    /// `forget_hook`), or a cls_bpf filter that could not be kept (it goes
    /// with lbd), the pinned maps stay for the next lbd, which adopts them
    /// and attaches anew (`NothingAttached`). Says which happened.
    pub fn release(&mut self) -> Result<Released> {
        match self.attached.take() {
            Some((interface, Attachment::Pinned { link, path, .. })) => {
                drop(link);
                info!(%interface, pin = %path.display(), "program left running for the next lbd");
                Ok(Released::StillForwarding)
            }
            None if self.pins.is_some() => {
                info!("no program attached (its hook was lost); the maps stay pinned for the next lbd");
                Ok(Released::NothingAttached)
            }
            // A cls_bpf filter (no tcx) cannot be pinned, but it outlives
            // its process unless detached: left running on the pinned
            // maps, as a pinned link is; the next lbd attaches its own
            // filter, then removes this one (`ownership::cls_bpf`).
            Some((interface, Attachment::OwnedTc(id))) if self.pins.is_some() => {
                match self.keep_filter(id) {
                    Ok(()) => {
                        info!(%interface, "tc filter (cls_bpf) left running for the next lbd, which removes it once its own runs");
                        Ok(Released::StillForwarding)
                    }
                    // As on drop: the filter goes with lbd, the maps stay
                    // pinned, and the next lbd adopts them and attaches
                    // anew (removing them would lose the connection table
                    // for a stop that was to keep it).
                    Err(error) => {
                        warn!(%interface, %error, "keeping the tc filter (cls_bpf) for the next lbd failed: it goes with lbd, and the node forwards nothing until the next lbd attaches; the maps stay pinned for it");
                        Ok(Released::NothingAttached)
                    }
                }
            }
            other => {
                self.attached = other;
                self.detach()?;
                Ok(Released::Detached)
            }
        }
    }

    /// Leaves lbd's cls_bpf filter `id` running when this process exits
    /// (it is detached when its link is dropped otherwise): a filter
    /// cannot be pinned, so this is how it outlives lbd.
    fn keep_filter(&mut self, id: SchedClassifierLinkId) -> Result<()> {
        let link = tc_program(&mut self.ebpf)?
            .take_link(id)
            .map_err(|e| program_error("keeping the filter of", names::PROG_TC_LB, e))?;
        // Not dropped: the filter stays when lbd exits.
        std::mem::forget(link);
        Ok(())
    }

    /// Whether the data plane is pinned (it outlives lbd), as opposed to
    /// living and dying with this process (`pin_dir = "off"`).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// Whether the balancer is attached: from its attach until the
    /// kernel is found to run it no more (`hook_in_place`, then
    /// `forget_hook`, on lbd's housekeeping tick).
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.is_some()
    }

    /// Whether the kernel still runs this lbd's program where it was
    /// attached, on interface `ifindex` (looked at by index: a rename
    /// keeps the device and the hook, see `tcx_runs`), and reaches it
    /// first, given `xdp_running`, the XDP program it runs now (from the
    /// interface's link message), and `cls_bpf_running`, the cls_bpf
    /// filters on chain 0 of its ingress (None: not looked at). At tc a
    /// program ahead of lbd's that passes a packet (`TC_ACT_OK`) ends the
    /// chain, so lbd never sees it: that is [`HookSeen::Shadowed`]. None:
    /// cannot tell (a tcx attachment without a pinned link, a cls_bpf one
    /// not looked at, or a failed query): the caller keeps what it knew.
    /// [`HookSeen::Absent`] when nothing is attached.
    pub(crate) fn hook_in_place(
        &self,
        ifindex: u32,
        xdp_running: Option<u32>,
        cls_bpf_running: Option<&[IngressFilter]>,
    ) -> Option<HookSeen> {
        let Some((interface, attachment)) = &self.attached else {
            return Some(HookSeen::Absent);
        };
        match attachment {
            Attachment::Owned(_) => {
                let ours = self.ebpf.program(names::PROG_LB)?.info().ok()?.id();
                Some(HookSeen::runs_if(xdp_running == Some(ours)))
            }
            Attachment::Pinned {
                link,
                hook: Attach::Xdp,
                ..
            } => {
                let ours = link.info().ok()?.program_id();
                Some(HookSeen::runs_if(xdp_running == Some(ours)))
            }
            Attachment::Pinned {
                link,
                hook: Attach::Tc,
                ..
            } => {
                let ours = link.info().ok()?.program_id();
                tcx_runs(
                    ours,
                    interface,
                    ifindex,
                    crate::ownership::cls_bpf::interface_name,
                    tcx_ingress_ids,
                    crate::ownership::cls_bpf::interface_index,
                )
            }
            Attachment::OwnedTc(_) => {
                let ours = self.ebpf.program(names::PROG_TC_LB)?.info().ok()?.id();
                runs_among(ours, cls_bpf_running)
            }
        }
    }

    /// Forgets the hook the kernel runs no more (its interface was
    /// deleted, or its link detached by something else): its pin goes, so
    /// nothing takes the dead link for a live one, and `is_attached` says
    /// false from now on. The maps stay pinned.
    pub(crate) fn forget_hook(&mut self) {
        let Some((interface, attachment)) = self.attached.take() else {
            return;
        };
        match attachment {
            Attachment::Owned(id) => {
                let detached = xdp_program(&mut self.ebpf, names::PROG_LB).and_then(|p| {
                    p.detach(id)
                        .map_err(|e| program_error("detaching", names::PROG_LB, e))
                });
                if let Err(error) = detached {
                    debug!(%interface, %error, "dropping the lost XDP link");
                }
            }
            Attachment::OwnedTc(id) => {
                let detached = tc_program(&mut self.ebpf).and_then(|p| {
                    p.detach(id)
                        .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))
                });
                if let Err(error) = detached {
                    debug!(%interface, %error, "dropping the lost tc attachment");
                }
            }
            Attachment::Pinned { link, path, .. } => {
                if let Err(error) = remove_pin(&path) {
                    warn!(%interface, %error, "removing the pin of the lost link failed; the next lbd removes it as stale");
                }
                drop(link);
                info!(%interface, pin = %path.display(), "the lost link's pin removed");
            }
        }
    }

    /// Removes the links a previous lbd pinned in this pin directory for
    /// interfaces other than `interface` (the config's `interface` changed
    /// across a restart): the programs there share this lbd's maps and
    /// would go on forwarding with them. The pin directory is this lbd's
    /// alone (its lock), so they are a stopped lbd's. Returns the
    /// interfaces they were on.
    pub fn remove_other_interfaces(&mut self, interface: &str) -> Result<Vec<String>> {
        let Some(pins) = &self.pins else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for pin in pins.link_pins()? {
            if pin.interface == interface || !lbd_link(&pin.path) {
                continue;
            }
            remove_pin(&pin.path)?;
            info!(interface = %pin.interface, hook = %pin.hook, pin = %pin.path.display(), now = %interface, "a previous lbd's pinned link on another interface removed (the configured interface changed): the program there is detached");
            removed.push(pin.interface);
        }
        Ok(removed)
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
fn warn_if_generic_kept(interface: &str, mode: ConfigXdpMode, running: Option<ConfigXdpMode>) {
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

impl Drop for Dataplane {
    /// A program attached through an owned link goes with its process; a
    /// pinned one stays (only `detach` removes it). Pins are never removed
    /// here: a drop without `release` or `detach` is a start that failed
    /// after the attach (a restart's too, which adopted the maps and
    /// removed the previous lbd's hook) or a panic, and that leaves the
    /// data plane as a crash does, forwarding on the pinned tables for the
    /// next lbd. So with pins, a cls_bpf filter (which cannot be pinned)
    /// is left running as `release` leaves it. A first start that fails
    /// is undone with an explicit `detach` (`Engine::undo_fresh_start`).
    /// A start that stops before its program ran leaves the previous lbd's
    /// pins as they were: the maps it staged in their place go.
    fn drop(&mut self) {
        if self.attached.is_none() {
            self.discard_staged();
        }
        match self.attached.take() {
            Some((interface, Attachment::OwnedTc(id))) if self.pins.is_some() => {
                match self.keep_filter(id) {
                    Ok(()) => {
                        info!(%interface, "tc filter (cls_bpf) left running on the pinned maps for the next lbd, which removes it once its own runs");
                    }
                    Err(error) => {
                        warn!(%interface, %error, "keeping the tc filter failed: it goes with lbd; the maps stay pinned for the next lbd");
                    }
                }
            }
            owned @ Some((_, Attachment::Owned(_) | Attachment::OwnedTc(_))) => {
                self.attached = owned;
                if let Err(error) = self.detach_hook() {
                    warn!(%error, "detaching on drop failed");
                }
            }
            other => self.attached = other,
        }
    }
}

/// The attachment of a program swapped in on a pinned link a previous lbd
/// left at `hook`.
fn kept_on_pin(link: FdLink, path: &std::path::Path, interface: &str, hook: Attach) -> Attachment {
    let word = super::hook_word(hook);
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
fn live_pinned_link(
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
        warn!(%interface, hook = super::hook_word(hook), path = %path.display(), "pinned link is stale (not what the interface runs); replacing it");
        remove_pin(path)?;
    }
    Ok(live)
}

/// Whether the link pinned at `path` runs lbd's program, so lbd may
/// remove it: lb-decap pins its links under the same names, and a shared
/// pin directory (`/sys/fs/bpf`) holds both. Another tool's link is left
/// alone (debug log); one whose program cannot be told is too, with a
/// warning.
fn lbd_link(path: &std::path::Path) -> bool {
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

/// Removes the pin at `path`; one already gone is not an error.
pub(super) fn remove_pin(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Pin(PinError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        })),
    }
}

/// Ids of the programs on `interface`'s tcx ingress, first to last
/// (empty where the kernel has no tcx or the query fails: nothing there
/// can then be told apart).
pub(crate) fn tcx_ingress_programs(interface: &str) -> Vec<u32> {
    match SchedClassifier::query_tcx(interface, TcAttachType::Ingress) {
        Ok((_, programs)) => programs
            .iter()
            .map(aya::programs::ProgramInfo::id)
            .collect(),
        Err(error) => {
            tracing::debug!(%interface, %error, "querying tcx ingress programs");
            Vec::new()
        }
    }
}

/// `ENOTSUPP` (include/linux/errno.h): the kernel-internal "not
/// supported" some BPF paths return to user space; libc has no name for
/// it.
const ENOTSUPP: i32 = 524;

/// Whether a failed tcx attach says the kernel has no tcx (before 6.6:
/// `BPF_LINK_CREATE` does not know `BPF_TCX_INGRESS` and answers EINVAL;
/// EOPNOTSUPP, ENOTSUPP, or E2BIG for attributes it does not know), the
/// one case to fall back to clsact + cls_bpf for. Any other failure
/// (EPERM, ENOMEM, EBUSY, a missing interface) fails the attach: a
/// cls_bpf filter cannot be pinned, and restarts would stop being
/// hitless for a cause the fallback does not cure.
fn tcx_missing(e: &aya::programs::ProgramError) -> bool {
    let aya::programs::ProgramError::SyscallError(e) = e else {
        return false;
    };
    e.io_error.raw_os_error().is_some_and(|errno| {
        [libc::EINVAL, libc::EOPNOTSUPP, ENOTSUPP, libc::E2BIG].contains(&errno)
    })
}

/// Whether program `ours` runs on the tcx ingress of the interface lbd
/// attached to, and first there (see [`HookSeen`]), asked by its index `ifindex` (`interface`: the configured
/// name, for the log), as the XDP hook is: a rename keeps the device, its
/// index and lbd's link on it, while the configured name may then name
/// nothing, or a new device without lbd's program. The kernel's query
/// takes a name, so it is asked by the one `name_of` says the index has
/// now, and answers only if `index_of` says that name still has the index
/// after it (a rename meanwhile would answer for another device). None:
/// cannot tell (no name for the index, a failed query, a rename during
/// it); the caller keeps what it knew, and a device gone is seen by the
/// link state of the index (`Engine::check_link`), not here.
fn tcx_runs(
    ours: u32,
    interface: &str,
    ifindex: u32,
    name_of: impl Fn(u32) -> Option<String>,
    query: impl Fn(&str) -> std::result::Result<Vec<u32>, String>,
    index_of: impl Fn(&str) -> Option<u32>,
) -> Option<HookSeen> {
    let Some(name) = name_of(ifindex) else {
        debug!(%interface, ifindex, "no interface has the index lbd attached to: whether its tcx hook runs cannot be told");
        return None;
    };
    let programs = match query(&name) {
        Ok(programs) => programs,
        Err(error) => {
            debug!(%interface, %name, ifindex, %error, "querying tcx ingress programs");
            return None;
        }
    };
    if index_of(&name) != Some(ifindex) {
        debug!(%interface, %name, ifindex, "the interface was renamed while its tcx ingress was queried: asked again at the next look");
        return None;
    }
    // The kernel answers with the chain in the order it runs.
    Some(match programs.first() {
        _ if !programs.contains(&ours) => HookSeen::Absent,
        Some(&first) if first != ours => HookSeen::Shadowed { by: first },
        _ => HookSeen::Runs,
    })
}

/// The ids of the programs on the tcx ingress of interface `name`, or
/// the failure with its causes.
fn tcx_ingress_ids(name: &str) -> std::result::Result<Vec<u32>, String> {
    SchedClassifier::query_tcx(name, TcAttachType::Ingress)
        .map(|(_, programs)| {
            programs
                .iter()
                .map(aya::programs::ProgramInfo::id)
                .collect()
        })
        .map_err(|e| crate::pinning::error_chain(&e))
}

/// Whether program `ours` is among `running`, the cls_bpf filters on
/// chain 0 of the ingress (None: not known, so neither is the answer),
/// with the lowest priority (the kernel runs the lowest first; one ahead
/// that passes a packet ends classification). A cls_bpf filter deleted
/// under lbd (`tc filter del`, the clsact qdisc removed) leaves its
/// program out. A filter of the same priority as lbd's is no shadow: lbd
/// puts its own there only (a previous lbd's, swept after the attach).
fn runs_among(ours: u32, running: Option<&[IngressFilter]>) -> Option<HookSeen> {
    let running = running?;
    let Some(own) = running
        .iter()
        .filter(|f| f.program == ours)
        .map(|f| f.priority)
        .min()
    else {
        return Some(HookSeen::Absent);
    };
    Some(
        match running
            .iter()
            .filter(|f| f.priority < own)
            .min_by_key(|f| f.priority)
        {
            Some(ahead) => HookSeen::Shadowed { by: ahead.program },
            None => HookSeen::Runs,
        },
    )
}

/// A cls_bpf filter on chain 0 of an interface's ingress, as lbd's hook
/// check needs it: its program and its priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IngressFilter {
    /// Its program's id.
    pub program: u32,
    /// Its priority (`pref`; the lowest runs first).
    pub priority: u16,
}

/// What the kernel runs where lbd attached its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookSeen {
    /// lbd's program runs, and is reached first.
    Runs,
    /// lbd's program runs no more there (detached by something else).
    Absent,
    /// lbd's program is attached, but program `by` runs ahead of it at tc
    /// and may pass packets on (`TC_ACT_OK`) before lbd sees them.
    Shadowed {
        /// The id of the program ahead.
        by: u32,
    },
}

impl HookSeen {
    /// `Runs` if `runs`, else `Absent`.
    fn runs_if(runs: bool) -> Self {
        if runs {
            Self::Runs
        } else {
            Self::Absent
        }
    }
}

/// How lbd attaches its tc programs (`LBD_TC_ATTACH`, read once); a
/// value it does not take fails the attach of `program`, naming the
/// variable and the values it takes.
fn tc_path(program: &'static str) -> Result<TcPath> {
    cls_bpf::tc_path().map_err(|message| {
        program_error(
            "attaching",
            program,
            aya::programs::ProgramError::TcError(aya::programs::tc::TcError::IoError(
                std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
            )),
        )
    })
}

/// The loaded XDP program `name` of the object.
pub(super) fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp> {
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "finding",
        program: name,
        source: Box::new(aya::programs::ProgramError::NotLoaded),
    })?;
    program
        .try_into()
        .map_err(|e| program_error("finding", name, e))
}

/// The tc balancer (`tc_lb`), loaded (verified) on first use.
pub(super) fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    let name = names::PROG_TC_LB;
    let program = ebpf.program_mut(name).ok_or(DataplaneError::Program {
        action: "finding",
        program: name,
        source: Box::new(aya::programs::ProgramError::NotLoaded),
    })?;
    let program: &mut SchedClassifier = program
        .try_into()
        .map_err(|e| program_error("finding", name, e))?;
    if program.fd().is_err() {
        retry_interrupted(name, || program.load())
            .map_err(|e| program_error("loading", name, e))?;
    }
    Ok(program)
}

/// A pinned link's failure, naming the action, the hook and the pin.
/// The reason is `e` with its sources: aya's system-call errors say only
/// which call failed ("`BPF_OBJ_PIN` failed"), the errno is their
/// source.
fn link_error(
    action: &'static str,
    hook: Attach,
    path: &std::path::Path,
    e: &dyn std::error::Error,
) -> DataplaneError {
    DataplaneError::Link {
        action,
        hook,
        path: path.to_owned(),
        reason: crate::pinning::error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restart under `auto` that keeps a previous lbd's generic link
    /// warns each time, naming generic mode and the ways back to native;
    /// a configured `generic`, or a native link kept, says nothing.
    /// Before, only the first fallback warned: every later start kept
    /// the slow mode silently.
    #[test]
    fn keeping_a_generic_link_under_auto_warns_at_each_start() {
        use ConfigXdpMode::{Auto, Generic, Native};
        let logs = |mode, running| {
            crate::test_logs::logs_of(|| warn_if_generic_kept("eth0", mode, running))
        };
        let kept = logs(Auto, Some(Generic));
        assert!(kept.contains("WARN"), "{kept}");
        assert!(kept.contains("generic (skb) mode"), "{kept}");
        assert!(kept.contains("xdp_mode = \"native\""), "{kept}");
        assert!(kept.contains("lbd --cleanup"), "{kept}");
        assert!(kept.contains("MTU"), "{kept}");
        for (mode, running) in [
            (Generic, Some(Generic)),
            (Auto, Some(Native)),
            (Auto, Some(Auto)),
            (Auto, None),
            (Native, Some(Native)),
        ] {
            assert_eq!(logs(mode, running), "", "{mode} running {running:?}");
        }
    }

    #[test]
    fn a_pinned_link_is_kept_only_in_a_mode_the_config_takes() {
        use ConfigXdpMode::{Auto, Generic, Native};
        // Auto takes whatever runs: a fallback to generic is not redone
        // (and attached anew) at every restart.
        for running in [Auto, Native, Generic] {
            assert!(mode_fits(Auto, running), "{running}");
        }
        assert!(mode_fits(Native, Native));
        assert!(mode_fits(Generic, Generic));
        // xdp_mode changed across a restart: attached anew.
        assert!(!mode_fits(Native, Generic));
        assert!(!mode_fits(Generic, Native));
        // A mode the kernel did not name is taken as it is.
        assert!(mode_fits(Native, Auto));
    }

    /// A link that cannot be made, pinned or reopened says which hook's
    /// link, its pin, and the errno: aya's system-call error alone says
    /// only which call failed, its errno is the source.
    #[test]
    fn a_link_error_names_the_hook_the_pin_and_the_errno() {
        let syscall = |call, errno| aya::sys::SyscallError {
            call,
            io_error: std::io::Error::from_raw_os_error(errno),
        };
        let pin = std::path::Path::new("/sys/fs/bpf/lbd/tc-link-eth0");
        let failed = aya::pin::PinError::SyscallError(syscall("BPF_OBJ_PIN", libc::EEXIST));
        let message = link_error("creating", Attach::Tc, pin, &failed).to_string();
        assert!(
            message.starts_with("creating the pinned tc link /sys/fs/bpf/lbd/tc-link-eth0: "),
            "{message}"
        );
        assert!(message.contains("`BPF_OBJ_PIN` failed"), "{message}");
        assert!(message.contains("File exists"), "{message}");

        let pin = std::path::Path::new("/sys/fs/bpf/lbd/xdp-link-eth0");
        let failed =
            aya::programs::links::LinkError::SyscallError(syscall("BPF_OBJ_GET", libc::ENOENT));
        let message = link_error("reopening", Attach::Xdp, pin, &failed).to_string();
        assert!(
            message.starts_with("reopening the pinned XDP link /sys/fs/bpf/lbd/xdp-link-eth0: "),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }

    /// A source an error already writes in its own message is not
    /// written twice.
    #[test]
    fn sources_already_said_are_not_repeated() {
        let error = PinError::Io {
            action: "removing",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(
            crate::pinning::error_chain(&error),
            "removing /x: File exists (os error 17)"
        );
    }

    /// Only a kernel without tcx (an attach type `BPF_LINK_CREATE` does
    /// not know: EINVAL; EOPNOTSUPP, ENOTSUPP, E2BIG) falls back to
    /// cls_bpf, which cannot be pinned; a tcx attach refused for another
    /// reason (EPERM, ENOMEM, EBUSY), or that is no system call's
    /// failure, fails the attach.
    #[test]
    fn only_a_kernel_without_tcx_falls_back_to_cls_bpf() {
        let failed = |errno| {
            aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_mprog_attach",
                io_error: std::io::Error::from_raw_os_error(errno),
            })
        };
        for errno in [libc::EINVAL, libc::EOPNOTSUPP, ENOTSUPP, libc::E2BIG] {
            assert!(tcx_missing(&failed(errno)), "{errno}");
        }
        for errno in [libc::EPERM, libc::ENOMEM, libc::EBUSY, libc::ENODEV] {
            assert!(!tcx_missing(&failed(errno)), "{errno}");
        }
        let not_a_syscall = aya::programs::ProgramError::TcError(
            aya::programs::tc::TcError::IoError(std::io::Error::from_raw_os_error(libc::EINVAL)),
        );
        assert!(!tcx_missing(&not_a_syscall));
    }

    /// The tcx hook is watched by the interface's index, as the XDP hook
    /// is: a rename (`eth0` to `eth0-old`) keeps the device, its index
    /// and lbd's link on it, so the link is in place whatever the
    /// configured name now names (nothing, or a new device, e.g. a bond
    /// rebuilt under the old name, without lbd's program), and a detach
    /// is still seen. Asked by the configured name, the first read "cannot
    /// tell" for good, and the second a detach: the working link's pin
    /// removed (destroying it) and lbd gone. No name for the index, a
    /// failed query or a rename during the query cannot tell.
    #[test]
    fn a_renamed_interface_keeps_its_tcx_hook_in_place() {
        use std::collections::HashMap;
        const OURS: u32 = 42;
        /// Devices by index: name and tcx ingress programs.
        type Devices = HashMap<u32, (&'static str, Vec<u32>)>;
        let ask = |devices: &Devices, ifindex: u32| {
            tcx_runs(
                OURS,
                "eth0",
                ifindex,
                |index| devices.get(&index).map(|(name, _)| (*name).to_owned()),
                |name| {
                    devices
                        .values()
                        .find(|(n, _)| *n == name)
                        .map(|(_, programs)| programs.clone())
                        .ok_or_else(|| format!("no device {name}"))
                },
                |name| {
                    devices
                        .iter()
                        .find(|(_, (n, _))| *n == name)
                        .map(|(index, _)| *index)
                },
            )
        };
        let devices = |list: &[(u32, &'static str, &[u32])]| -> Devices {
            list.iter()
                .map(|(index, name, programs)| (*index, (*name, programs.to_vec())))
                .collect()
        };
        assert_eq!(
            ask(&devices(&[(3, "eth0", &[OURS, 7])]), 3),
            Some(HookSeen::Runs)
        );
        assert_eq!(
            ask(&devices(&[(3, "eth0", &[7])]), 3),
            Some(HookSeen::Absent),
            "detached by something else"
        );
        assert_eq!(
            ask(&devices(&[(3, "eth0-old", &[OURS])]), 3),
            Some(HookSeen::Runs),
            "renamed, nothing under the old name"
        );
        assert_eq!(
            ask(&devices(&[(3, "eth0-old", &[OURS]), (9, "eth0", &[])]), 3),
            Some(HookSeen::Runs),
            "renamed, a new device under the old name"
        );
        assert_eq!(
            ask(&devices(&[(3, "eth0-old", &[]), (9, "eth0", &[OURS])]), 3),
            Some(HookSeen::Absent),
            "the device lbd watches runs it no more"
        );
        assert_eq!(ask(&devices(&[(9, "eth0", &[])]), 3), None, "no name");
        let failed = tcx_runs(
            OURS,
            "eth0",
            3,
            |_| Some("eth0".to_owned()),
            |_| Err("EPERM".to_owned()),
            |_| Some(3),
        );
        assert_eq!(failed, None, "a failed query");
        let renamed_meanwhile = tcx_runs(
            OURS,
            "eth0",
            3,
            |_| Some("eth0".to_owned()),
            |_| Ok(Vec::new()),
            |_| Some(9),
        );
        assert_eq!(renamed_meanwhile, None, "renamed during the query");
    }

    /// lbd's cls_bpf filter (no tcx) counts as in place while the
    /// ingress dump shows its program, lost once it does not (deleted by
    /// something else), and unknown when the dump was not had.
    #[test]
    fn a_cls_bpf_filter_is_in_place_while_the_ingress_dump_shows_its_program() {
        let at = |program, priority| IngressFilter { program, priority };
        assert_eq!(
            runs_among(42, Some(&[at(42, 1), at(7, 49152)])),
            Some(HookSeen::Runs)
        );
        assert_eq!(runs_among(42, Some(&[at(7, 1)])), Some(HookSeen::Absent));
        assert_eq!(
            runs_among(42, Some(&[])),
            Some(HookSeen::Absent),
            "no qdisc left"
        );
        assert_eq!(runs_among(42, None), None);
    }

    /// A program another tool puts ahead of lbd's at tc (a tcx link with
    /// `BPF_F_BEFORE`, a cls_bpf filter of a lower priority) ends the
    /// chain for every packet it passes: lbd's is shadowed, naming it,
    /// though still attached. A filter of lbd's own priority (a previous
    /// lbd's, swept after the attach) is no shadow.
    #[test]
    fn a_program_ahead_of_lbds_at_tc_shadows_it() {
        let at = |program, priority| IngressFilter { program, priority };
        assert_eq!(
            runs_among(42, Some(&[at(7, 0), at(42, 1)])),
            Some(HookSeen::Shadowed { by: 7 })
        );
        assert_eq!(
            runs_among(42, Some(&[at(9, 1), at(42, 1)])),
            Some(HookSeen::Runs)
        );
        let shadowed = tcx_runs(
            42,
            "eth0",
            3,
            |_| Some("eth0".to_owned()),
            |_| Ok(vec![7, 42]),
            |_| Some(3),
        );
        assert_eq!(shadowed, Some(HookSeen::Shadowed { by: 7 }));
    }
}
