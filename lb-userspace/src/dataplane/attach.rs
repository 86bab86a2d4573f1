//! Attaching the balancer at XDP or tc ingress, taking over the link a
//! previous lbd pinned (the program swapped atomically), and what a stop
//! leaves on the interface: still forwarding (`release`) or detached
//! (`detach`).

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
use tracing::{info, warn};

use super::{
    program_error, retry_interrupted, Dataplane, DataplaneError, Hooked, Released, Result,
};
use crate::{
    config::{Attach, XdpMode as ConfigXdpMode},
    pinning::PinError,
};

/// How the program is attached.
pub(super) enum Attachment {
    /// Through a link this process owns: detached when it goes.
    Owned(XdpLinkId),
    /// Through a tc link this process owns (cls_bpf): detached when it goes.
    OwnedTc(SchedClassifierLinkId),
    /// Through a link pinned in bpffs: stays attached after lbd exits.
    Pinned {
        link: FdLink,
        path: std::path::PathBuf,
    },
}

impl Dataplane {
    /// Attaches the balancer to `interface`. `Auto` tries native (driver)
    /// mode and falls back to generic with a warning. With a pin directory,
    /// a link a previous lbd pinned for this interface is taken over: the
    /// new program replaces the old one atomically (no packet sees no
    /// program), in the mode the link was made with; otherwise a new link
    /// is made and pinned. `running_program` is the id of the program the
    /// interface runs now, to tell a live pinned link from a stale one.
    /// Returns the mode used (None: kept from the pinned link).
    pub fn attach(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running_program: Option<u32>,
    ) -> Result<Option<ConfigXdpMode>> {
        let used = self.attach_xdp(interface, mode, running_program)?;
        self.finish_adoption();
        Ok(used)
    }

    fn attach_xdp(
        &mut self,
        interface: &str,
        mode: ConfigXdpMode,
        running_program: Option<u32>,
    ) -> Result<Option<ConfigXdpMode>> {
        if let Some(path) = self.pins.as_ref().map(|p| p.link_path(interface)) {
            if let Some(link) = self.take_over_link(&path, interface, running_program)? {
                self.attached = Some((interface.to_owned(), link));
                return Ok(None);
            }
        }
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let (link, used) = match mode {
            ConfigXdpMode::Native => (program.attach(interface, XdpMode::Driver), mode),
            ConfigXdpMode::Generic => (program.attach(interface, XdpMode::Skb), mode),
            ConfigXdpMode::Auto => match program.attach(interface, XdpMode::Driver) {
                Ok(link) => (Ok(link), ConfigXdpMode::Native),
                Err(error) => {
                    warn!(%interface, %error, "native XDP attach failed; falling back to generic (skb) mode, which is much slower");
                    (
                        program.attach(interface, XdpMode::Skb),
                        ConfigXdpMode::Generic,
                    )
                }
            },
        };
        let link = link.map_err(|e| program_error("attaching", names::PROG_LB, e))?;
        info!(%interface, mode = ?used, "XDP program attached");
        let attachment = match self.pins.as_ref().map(|p| p.link_path(interface)) {
            Some(path) => self.pin_link(link, path)?,
            None => Attachment::Owned(link),
        };
        self.attached = Some((interface.to_owned(), attachment));
        Ok(Some(used))
    }

    /// Attaches the tc program to `interface`'s ingress, as `attach`
    /// does for XDP: a tc link a previous lbd pinned here is taken over
    /// (the program swapped atomically with a link update); otherwise a
    /// new tcx link is made and pinned. `running` are the ids of the
    /// programs on the interface's tcx ingress, to tell a live pinned link
    /// from a stale one. Without tcx (kernels before 6.6) it falls back to
    /// clsact + cls_bpf with a warning: that attachment cannot be pinned,
    /// so the program then goes with this lbd.
    pub fn attach_tc(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        let hooked = self.attach_tc_ingress(interface, running)?;
        self.finish_adoption();
        Ok(hooked)
    }

    fn attach_tc_ingress(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
        if let Some(path) = self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            if let Some(link) = self.take_over_tc_link(&path, interface, running)? {
                self.attached = Some((interface.to_owned(), link));
                return Ok(Hooked::Tcx);
            }
        }
        let program = tc_program(&mut self.ebpf)?;
        let tcx = program.attach_with_options(
            interface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        );
        let id = match tcx {
            Ok(id) => id,
            Err(tcx_error) => {
                warn!(%interface, error = %tcx_error, "tcx attach failed (kernel before 6.6?); falling back to clsact + cls_bpf, which cannot be pinned: the program will go with lbd");
                if let Err(error) = aya::programs::tc::qdisc_add_clsact(interface) {
                    // Already there is fine; anything else shows in the attach.
                    info!(%interface, %error, "adding the clsact qdisc");
                }
                let id = program
                    .attach_with_options(
                        interface,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(aya::programs::tc::NlOptions::default()),
                    )
                    .map_err(|e| program_error("attaching", names::PROG_TC_LB, e))?;
                info!(%interface, "tc program attached (clsact + cls_bpf)");
                self.attached = Some((interface.to_owned(), Attachment::OwnedTc(id)));
                return Ok(Hooked::TcClsBpf);
            }
        };
        info!(%interface, "tc program attached (tcx ingress link)");
        let attachment = match self.pins.as_ref().map(|p| p.tc_link_path(interface)) {
            Some(path) => {
                let link = program
                    .take_link(id)
                    .map_err(|e| program_error("pinning the link of", names::PROG_TC_LB, e))?;
                let link = FdLink::try_from(link).map_err(|e| link_error("creating", e))?;
                link.pin(&path).map_err(|e| link_error("creating", e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path).map_err(|e| link_error("reopening", e))?,
                );
                Attachment::Pinned { link, path }
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
        let Some(link) = live_pinned_link(path, interface, "tc", |id| running.contains(&id))?
        else {
            return Ok(None);
        };
        let program = tc_program(&mut self.ebpf)?;
        let link = SchedClassifierLink::try_from(link).map_err(|e| link_error("taking over", e))?;
        let id = program
            .attach_to_link(link)
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_TC_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_TC_LB, e))?;
        let link = FdLink::try_from(link).map_err(|e| link_error("keeping", e))?;
        Ok(Some(kept_on_pin(link, path, interface, "tc")))
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
        if !other.exists() {
            return Ok(false);
        }
        remove_pin(&other)?;
        info!(%interface, pin = %other.display(), attach = %kept, "the other hook's pinned link removed: the program there is detached");
        Ok(true)
    }

    /// Takes over the link pinned at `path` if it drives the program the
    /// interface runs; removes it if it is stale.
    fn take_over_link(
        &mut self,
        path: &std::path::Path,
        interface: &str,
        running_program: Option<u32>,
    ) -> Result<Option<Attachment>> {
        let Some(link) =
            live_pinned_link(path, interface, "XDP", |id| Some(id) == running_program)?
        else {
            return Ok(None);
        };
        let program = xdp_program(&mut self.ebpf, names::PROG_LB)?;
        let id = program
            .attach_to_link(XdpLink::try_from(link).map_err(|e| link_error("taking over", e))?)
            .map_err(|e| program_error("replacing on the pinned link", names::PROG_LB, e))?;
        let link = program
            .take_link(id)
            .map_err(|e| program_error("keeping the link of", names::PROG_LB, e))?;
        let link = FdLink::try_from(link).map_err(|e| link_error("keeping", e))?;
        Ok(Some(kept_on_pin(link, path, interface, "XDP")))
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
                link.pin(&path).map_err(|e| link_error("creating", e))?;
                let link = FdLink::from(
                    PinnedLink::from_pin(&path).map_err(|e| link_error("reopening", e))?,
                );
                Ok(Attachment::Pinned { link, path })
            }
            Err(error) => {
                warn!(%error, "this kernel attaches XDP through netlink, which cannot be pinned: the program will be detached when lbd exits");
                Err(link_error("creating", error))
            }
        }
    }

    /// Detaches the balancer, if attached, and removes every pin: packets
    /// take the normal stack path again and the maps are freed. The full
    /// stop (SIGINT, `lbd --cleanup`).
    pub fn detach(&mut self) -> Result<()> {
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
            Some((interface, Attachment::Pinned { link, path })) => {
                remove_pin(&path)?;
                drop(link);
                info!(%interface, pin = %path.display(), "program detached (pinned link removed)");
            }
            None => {}
        }
        if let Some(pins) = &self.pins {
            let removed = pins.remove_all()?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins removed");
        }
        Ok(())
    }

    /// Leaves the program attached and the maps pinned for the next lbd
    /// (SIGTERM: a restart or an upgrade). Without pins this is a detach.
    /// Says which of the two happened.
    pub fn release(&mut self) -> Result<Released> {
        match self.attached.take() {
            Some((interface, Attachment::Pinned { link, path })) => {
                drop(link);
                info!(%interface, pin = %path.display(), "program left running for the next lbd");
                Ok(Released::StillForwarding)
            }
            other => {
                self.attached = other;
                self.detach()?;
                Ok(Released::Detached)
            }
        }
    }

    /// Whether the data plane is pinned (it outlives lbd), as opposed to
    /// living and dying with this process (`pin_dir = "off"`).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }

    /// Whether the balancer is attached.
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.is_some()
    }
}

impl Drop for Dataplane {
    /// A program attached through an owned link goes with its process; a
    /// pinned one stays (only `detach` removes it).
    fn drop(&mut self) {
        if let Some((_, Attachment::Owned(_) | Attachment::OwnedTc(_))) = &self.attached {
            if let Err(error) = self.detach() {
                warn!(%error, "detaching on drop failed");
            }
        }
    }
}

/// The attachment of a program swapped in on a pinned link a previous lbd
/// left (`hook` names the hook in the log).
fn kept_on_pin(link: FdLink, path: &std::path::Path, interface: &str, hook: &str) -> Attachment {
    info!(%interface, "{hook} program replaced atomically on the pinned link; connection table kept");
    Attachment::Pinned {
        link,
        path: path.to_owned(),
    }
}

/// The link pinned at `path` if it drives a program `running` says the
/// interface runs; a stale pin (the link is gone or drives something else)
/// is removed. `hook` names the hook in the log.
fn live_pinned_link(
    path: &std::path::Path,
    interface: &str,
    hook: &str,
    running: impl Fn(u32) -> bool,
) -> Result<Option<FdLink>> {
    if !path.exists() {
        return Ok(None);
    }
    let live = PinnedLink::from_pin(path)
        .ok()
        .map(FdLink::from)
        .filter(|link| link.info().is_ok_and(|info| running(info.program_id())));
    if live.is_none() {
        warn!(%interface, %hook, path = %path.display(), "pinned link is stale (not what the interface runs); replacing it");
        remove_pin(path)?;
    }
    Ok(live)
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

/// A pinned link's failure, naming the action.
fn link_error(action: &'static str, e: impl std::fmt::Display) -> DataplaneError {
    DataplaneError::Link {
        action,
        reason: e.to_string(),
    }
}
