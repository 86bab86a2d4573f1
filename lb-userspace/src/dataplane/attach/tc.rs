//! Attaching at tc ingress: through tcx where the kernel has it, through
//! clsact + cls_bpf before that, and telling whether lbd's program runs
//! there first (the program ids the kernel lists at the hook).

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use lb_common::consts::names;
use tracing::{debug, info, warn};

use super::super::{
    adopt::CarryPhase, program_error, retry_interrupted, Dataplane, DataplaneError, Hooked, Result,
};
use crate::{
    config::Attach,
    ownership::cls_bpf::{self, TcPath, TC_ATTACH_ENV},
};

use super::{
    link_error,
    xdp::{kept_on_pin, live_pinned_link},
    Attachment,
};

impl Dataplane {
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
    pub(super) fn attach_tc_hook(&mut self, interface: &str, running: &[u32]) -> Result<Hooked> {
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
pub(super) const ENOTSUPP: i32 = 524;

/// Whether a failed tcx attach says the kernel has no tcx (before 6.6:
/// `BPF_LINK_CREATE` does not know `BPF_TCX_INGRESS` and answers EINVAL;
/// EOPNOTSUPP, ENOTSUPP, or E2BIG for attributes it does not know), the
/// one case to fall back to clsact + cls_bpf for. Any other failure
/// (EPERM, ENOMEM, EBUSY, a missing interface) fails the attach: a
/// cls_bpf filter cannot be pinned, and restarts would stop being
/// hitless for a cause the fallback does not cure.
pub(super) fn tcx_missing(e: &aya::programs::ProgramError) -> bool {
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
pub(super) fn tcx_runs(
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
pub(super) fn tcx_ingress_ids(name: &str) -> std::result::Result<Vec<u32>, String> {
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
pub(super) fn runs_among(ours: u32, running: Option<&[IngressFilter]>) -> Option<HookSeen> {
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
    pub(super) fn runs_if(runs: bool) -> Self {
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
pub(super) fn tc_path(program: &'static str) -> Result<TcPath> {
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

/// The tc balancer (`tc_lb`), loaded (verified) on first use.
pub(crate) fn tc_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
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
