//! Whether the interface really runs the program a previous lbd left
//! forwarding for the next one. The pins alone do not say: a pinned
//! link outlives the device it was on (an interface deleted and
//! re-created, with a new index, runs no program), and one detached by
//! another tool (`bpftool link detach`) stays pinned. A restart resumes
//! VRRP mastership only when the program runs (`daemon::engine::start`),
//! and a stop for a restart leaves its restart record only then
//! (`Engine::shutdown`): otherwise the node would take or keep the VIPs
//! with no data plane, and the kernel, to which they are local, would
//! reset every connection sent here until the next lbd attaches.

use std::fmt;

use aya::programs::links::{FdLink, PinnedLink};

use super::attach::IngressFilter;
use crate::{
    config::Attach,
    netlink::{Interface, Netlink},
    pinning::PinDir,
};

/// The programs a previous lbd's links pinned for the interface drive
/// (None: no such pin, or it cannot be read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PinnedPrograms {
    /// The program of the XDP link (`xdp-link-<interface>`).
    pub xdp: Option<u32>,
    /// The program of the tcx link (`tc-link-<interface>`).
    pub tc: Option<u32>,
}

/// What the interface runs at each hook now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunningHooks {
    /// Its XDP program (at the driver or generic hook), if any.
    pub xdp: Option<u32>,
    /// The programs on its tcx ingress, first to last.
    pub tcx: Vec<u32>,
    /// The cls_bpf filters on chain 0 of its ingress, each with whether
    /// it runs lbd's tc program (by name: a filter cannot be pinned);
    /// or why they could not be listed.
    pub cls_bpf: Result<Vec<(IngressFilter, bool)>, String>,
}

/// Where the interface runs the program a previous lbd left forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeftAt {
    /// At XDP, through the pinned XDP link.
    Xdp,
    /// On the tcx ingress, through the pinned tc link.
    Tcx,
    /// As a cls_bpf filter on the ingress (a kernel without tcx).
    ClsBpf,
}

/// Whether the interface runs the program a previous lbd left
/// forwarding (see the module's doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeftHook {
    /// It runs there, reached first.
    Runs(LeftAt),
    /// No link is pinned for the interface, and no filter of lbd's runs
    /// on it.
    Nothing,
    /// The link pinned at `hook` drives `program`, which the interface
    /// does not run: the device was re-created (the link died with the
    /// old one), or the link was detached.
    Stale {
        /// The hook of the pinned link.
        hook: Attach,
        /// Its program.
        program: u32,
    },
    /// lbd's program is on the tc ingress, but program `by` runs ahead
    /// of it, and may pass packets up before lbd's sees them.
    Shadowed {
        /// The program ahead.
        by: u32,
    },
    /// What the interface runs could not be read.
    Unknown(String),
}

impl LeftHook {
    /// Whether the program runs, and is reached first.
    pub(crate) fn runs(&self) -> bool {
        matches!(self, Self::Runs(_))
    }
}

impl fmt::Display for LeftHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Runs(LeftAt::Xdp) => write!(f, "the pinned XDP link's program runs"),
            Self::Runs(LeftAt::Tcx) => write!(f, "the pinned tc link's program runs"),
            Self::Runs(LeftAt::ClsBpf) => write!(f, "lbd's tc filter (cls_bpf) runs"),
            Self::Nothing => write!(
                f,
                "no link of lbd's is pinned for the interface, and no tc filter of lbd's runs on it"
            ),
            Self::Stale { hook, program } => write!(
                f,
                "the link pinned at {} drives program {program}, which the interface does not run (the interface was re-created, or the link detached)",
                super::hook_word(*hook)
            ),
            Self::Shadowed { by } => write!(
                f,
                "program {by} runs ahead of lbd's on the interface's tc ingress"
            ),
            Self::Unknown(why) => write!(f, "what the interface runs could not be read: {why}"),
        }
    }
}

/// Whether `running` shows a program of `pinned` running where it was
/// pinned, reached first; otherwise, why not. A pinned XDP link counts
/// first, then a tc link, then a cls_bpf filter of lbd's tc program.
pub(crate) fn judge(pinned: PinnedPrograms, running: &RunningHooks) -> LeftHook {
    if let Some(program) = pinned.xdp {
        if running.xdp == Some(program) {
            return LeftHook::Runs(LeftAt::Xdp);
        }
    }
    if let Some(program) = pinned.tc {
        if running.tcx.contains(&program) {
            return match running.tcx.first() {
                Some(&first) if first != program => LeftHook::Shadowed { by: first },
                _ => LeftHook::Runs(LeftAt::Tcx),
            };
        }
    }
    if let Ok(filters) = &running.cls_bpf {
        let own = filters
            .iter()
            .filter(|(_, lbd)| *lbd)
            .map(|(filter, _)| filter.priority)
            .min();
        if let Some(own) = own {
            return match filters
                .iter()
                .filter(|(filter, lbd)| !*lbd && filter.priority < own)
                .min_by_key(|(filter, _)| filter.priority)
            {
                Some((ahead, _)) => LeftHook::Shadowed { by: ahead.program },
                None => LeftHook::Runs(LeftAt::ClsBpf),
            };
        }
    }
    match (pinned, &running.cls_bpf) {
        (
            PinnedPrograms {
                xdp: Some(program), ..
            },
            _,
        ) => LeftHook::Stale {
            hook: Attach::Xdp,
            program,
        },
        (
            PinnedPrograms {
                tc: Some(program), ..
            },
            _,
        ) => LeftHook::Stale {
            hook: Attach::Tc,
            program,
        },
        (_, Err(why)) => LeftHook::Unknown(format!("listing the tc filters: {why}")),
        (_, Ok(_)) => LeftHook::Nothing,
    }
}

/// Whether `interface` runs the program a previous lbd left forwarding
/// through the links pinned in `pins` (or a cls_bpf filter), as the
/// kernel says now (see [`judge`]).
pub(crate) async fn left_hook(pins: &PinDir, interface: &Interface, netlink: &Netlink) -> LeftHook {
    let pinned = PinnedPrograms {
        xdp: pinned_program(&pins.link_path(&interface.name)),
        tc: pinned_program(&pins.tc_link_path(&interface.name)),
    };
    let xdp = match netlink.xdp_program(interface.index).await {
        Ok(xdp) => xdp.map(|(program, _)| program),
        Err(error) => {
            return LeftHook::Unknown(format!("reading the interface's XDP program: {error}"))
        }
    };
    let cls_bpf = crate::ownership::cls_bpf::ingress_filters_of(interface.index)
        .await
        .map(|filters| {
            filters
                .iter()
                .filter(|f| f.chain == 0)
                .filter_map(|f| {
                    let program = f.program?;
                    let filter = IngressFilter {
                        program,
                        priority: f.priority(),
                    };
                    Some((filter, crate::ownership::cls_bpf::left_by_lbd(f, None)))
                })
                .collect()
        })
        .map_err(|error| format!("{error:#}"));
    let running = RunningHooks {
        xdp,
        tcx: super::tcx_ingress_programs(&interface.name),
        cls_bpf,
    };
    judge(pinned, &running)
}

/// The program the link pinned at `path` drives; None if there is no
/// pin or it cannot be read (neither is a program left running).
fn pinned_program(path: &std::path::Path) -> Option<u32> {
    if !path.exists() {
        return None;
    }
    PinnedLink::from_pin(path)
        .ok()
        .map(FdLink::from)
        .and_then(|link| link.info().ok())
        .map(|info| info.program_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing at any hook, the filters listed.
    fn nothing_runs() -> RunningHooks {
        RunningHooks {
            xdp: None,
            tcx: Vec::new(),
            cls_bpf: Ok(Vec::new()),
        }
    }

    fn filter(program: u32, priority: u16, lbd: bool) -> (IngressFilter, bool) {
        (IngressFilter { program, priority }, lbd)
    }

    /// The pinned link's program runs on the interface: at XDP, or first
    /// on the tcx ingress; or lbd's cls_bpf filter runs first.
    #[test]
    fn the_pinned_program_running_where_it_was_pinned_is_left_running() {
        let xdp = PinnedPrograms {
            xdp: Some(7),
            tc: None,
        };
        let running = RunningHooks {
            xdp: Some(7),
            ..nothing_runs()
        };
        assert_eq!(judge(xdp, &running), LeftHook::Runs(LeftAt::Xdp));
        let tc = PinnedPrograms {
            xdp: None,
            tc: Some(8),
        };
        let running = RunningHooks {
            tcx: vec![8, 30],
            ..nothing_runs()
        };
        assert_eq!(judge(tc, &running), LeftHook::Runs(LeftAt::Tcx));
        let running = RunningHooks {
            cls_bpf: Ok(vec![filter(9, 1, true), filter(40, 49152, false)]),
            ..nothing_runs()
        };
        assert_eq!(
            judge(PinnedPrograms::default(), &running),
            LeftHook::Runs(LeftAt::ClsBpf)
        );
        assert!(LeftHook::Runs(LeftAt::Xdp).runs());
    }

    /// The pins are there, but the interface does not run their program:
    /// re-created (a new device runs nothing, or another program), the
    /// link detached, or lbd's program shadowed at tc. Or nothing pinned.
    #[test]
    fn a_pinned_program_the_interface_does_not_run_is_not_left_running() {
        let xdp = PinnedPrograms {
            xdp: Some(7),
            tc: None,
        };
        let stale = LeftHook::Stale {
            hook: Attach::Xdp,
            program: 7,
        };
        assert_eq!(judge(xdp, &nothing_runs()), stale);
        let other = RunningHooks {
            xdp: Some(70),
            ..nothing_runs()
        };
        assert_eq!(judge(xdp, &other), stale);
        assert!(!stale.runs());
        assert!(stale.to_string().contains("re-created"), "{stale}");

        let tc = PinnedPrograms {
            xdp: None,
            tc: Some(8),
        };
        assert_eq!(
            judge(tc, &nothing_runs()),
            LeftHook::Stale {
                hook: Attach::Tc,
                program: 8
            }
        );
        let ahead = RunningHooks {
            tcx: vec![30, 8],
            ..nothing_runs()
        };
        assert_eq!(judge(tc, &ahead), LeftHook::Shadowed { by: 30 });
        let filters = RunningHooks {
            cls_bpf: Ok(vec![filter(9, 49152, true), filter(40, 49151, false)]),
            ..nothing_runs()
        };
        assert_eq!(
            judge(PinnedPrograms::default(), &filters),
            LeftHook::Shadowed { by: 40 }
        );

        assert_eq!(
            judge(PinnedPrograms::default(), &nothing_runs()),
            LeftHook::Nothing
        );
        let unlisted = RunningHooks {
            cls_bpf: Err("EPERM".to_owned()),
            ..nothing_runs()
        };
        assert!(matches!(
            judge(PinnedPrograms::default(), &unlisted),
            LeftHook::Unknown(_)
        ));
        // A stale pin is said as such, whether or not the filters listed.
        assert_eq!(judge(xdp, &unlisted), stale);
    }
}
