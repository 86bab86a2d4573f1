//! The path of health checks through the tunnel: `tc_hc_encap` loaded and
//! attached at egress on `lo` and the balancer's interface (tcx or cls_bpf),
//! watched for removal under lbd, and detached at a stop.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::programs::{
    links::LinkOrder,
    tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    SchedClassifier, TcAttachType,
};
use lb_common::consts::names;
use tracing::{info, warn};

use super::{super::Engine, accept_local::accept_local_interfaces};
use crate::{
    health::{tunnel_socket, TunnelPath},
    ownership::cls_bpf::{self, TcPath, TC_ATTACH_ENV},
};

/// How `tc_hc_encap` was attached to an egress: what the kernel is asked
/// to tell whether it still runs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HcHook {
    /// A tcx link (kernel 6.6 and later).
    Tcx,
    /// A clsact + cls_bpf filter at `cls_bpf::HC_FILTER_PRIORITY`.
    ClsBpf,
}

/// One `tc_hc_encap` attachment lbd made. Others may remove it under lbd
/// (`tc filter del`, the clsact qdisc deleted, `bpftool link detach`):
/// the routed scan asks the kernel, by the device's index and the hook,
/// whether it still runs.
#[derive(Debug)]
pub(super) struct HcLink {
    /// The interface, by the name it was attached by (`lo` or the
    /// balancer's).
    pub(super) interface: String,
    /// Its index (the attachment stays with the device through a rename).
    ifindex: u32,
    /// How it was attached.
    pub(super) hook: HcHook,
    /// aya's id of it, to detach it.
    id: SchedClassifierLinkId,
}

/// How long after a failed attach of `tc_hc_encap` lbd tries again (a
/// verifier run costs tens of milliseconds; commits come with every
/// health change).
const HC_RETRY: Duration = Duration::from_secs(30);

/// The interfaces `tc_hc_encap` runs on for a balancer on `interface`.
pub(crate) fn hc_interfaces(interface: &str) -> [&str; 2] {
    ["lo", interface]
}

/// The interfaces of `wanted` not among `attached`, in `wanted`'s order.
pub(super) fn missing_interfaces<'a>(
    wanted: &[&str],
    attached: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let attached: BTreeSet<&str> = attached.into_iter().collect();
    wanted
        .iter()
        .filter(|i| !attached.contains(*i))
        .map(|i| (*i).to_owned())
        .collect()
}

/// Why checks through the tunnel cannot follow the data path, if they
/// cannot: `tc_hc_encap` is `missing` from some egress it needs
/// (`error`: why the last attach failed). Sent anyway, such a check is
/// not wrapped: on the master it reaches the VIP on this node, on a
/// backup it is balanced as a client's flow, and either way it passes
/// whatever its backend's state.
pub(super) fn unattached_reason(missing: &[String], error: Option<&str>) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let name = names::PROG_TC_HC_ENCAP;
    let on = missing.join(", ");
    Some(match error {
        Some(error) => format!("{name} is not on the egress of {on}: {error}"),
        None => format!("{name} is not on the egress of {on}"),
    })
}

impl Engine {
    /// the tunnel (`checks`: each one's VIP address and path):
    /// `tc_hc_encap` on egress and `accept_local` on where the replies
    /// arrive; and makes the checks to a VIP whose path is not in place
    /// fail with the reason rather than go unwrapped.
    pub(crate) fn sync_hc_path(&mut self, checks: Vec<(IpAddr, TunnelPath)>) {
        if checks.is_empty() {
            self.tunnel.hc_failed = None;
            self.tunnel.hc_error = None;
            self.tunnel.hc_unattached = false;
            self.tunnel.hc_checks = checks;
            self.checker.set_unattached(HashMap::new());
            self.detach_hc_encap();
            self.restore_accept_local();
            return;
        }
        let retry = self
            .tunnel
            .hc_failed
            .is_none_or(|at| at.elapsed() >= HC_RETRY);
        if retry {
            match self.attach_hc_encap() {
                Ok(()) => {
                    self.tunnel.hc_failed = None;
                    self.tunnel.hc_error = None;
                }
                Err(error) => {
                    if self.tunnel.hc_failed.is_none() {
                        warn!(error = format!("{error:#}"), "checks through the tunnel cannot be encapsulated: they fail (not sent unwrapped, which would reach the VIP on this node or be balanced as a client's flow) and their backends go down (retried every {} s)", HC_RETRY.as_secs());
                    }
                    self.tunnel.hc_failed = Some(Instant::now());
                    self.tunnel.hc_error = Some(format!("{error:#}"));
                }
            }
        }
        let missing = missing_interfaces(
            &hc_interfaces(&self.interface.name),
            self.tunnel.hc_links.iter().map(|l| l.interface.as_str()),
        );
        let unattached = unattached_reason(&missing, self.tunnel.hc_error.as_deref());
        if unattached.is_none() && self.tunnel.hc_unattached {
            info!("the check path is attached: checks through the tunnel run again");
        }
        self.tunnel.hc_unattached = unattached.is_some();
        // Every VIP's checks leave by `lo` or the balancer's interface.
        let reasons = match unattached {
            Some(reason) => checks
                .iter()
                .map(|(vip, _)| (*vip, reason.clone()))
                .collect(),
            None => HashMap::new(),
        };
        self.checker.set_unattached(reasons);
        let addresses = match tunnel_socket::interface_addresses() {
            Ok(addresses) => addresses,
            Err(error) => {
                warn!(%error, "listing the node's addresses failed: accept_local is switched on for the balancer interface only");
                Vec::new()
            }
        };
        // An IPv6 VIP's reply takes no `accept_local`.
        let sources: Vec<IpAddr> = checks
            .iter()
            .filter(|(vip, _)| vip.is_ipv4())
            .filter_map(|(_, path)| tunnel_socket::check_source(path).ok())
            .collect();
        self.tunnel.hc_checks = checks;
        let wanted = accept_local_interfaces(&self.interface.name, &sources, &addresses);
        self.sync_accept_local(&wanted);
    }

    /// Attaches `tc_hc_encap` where it is missing.
    fn attach_hc_encap(&mut self) -> anyhow::Result<()> {
        attach_hc_where_missing(
            self.dataplane.ebpf_mut(),
            &mut self.tunnel.hc_links,
            &self.interface.name,
            self.interface.index,
            || cls_bpf::tc_path().map_err(anyhow::Error::msg),
        )
    }

    /// Part of the routed scan: drops from lbd's record the `tc_hc_encap`
    /// attachments the kernel no longer runs (removed under lbd), so that
    /// `sync_hc_path` attaches them again and, until it does, fails the
    /// checks through the path with the reason instead of sending them
    /// unwrapped (a verdict that says nothing of the backend).
    pub(super) async fn drop_gone_hc_links(&mut self) {
        if self.tunnel.hc_links.is_empty() {
            return;
        }
        match hc_program(self.dataplane.ebpf_mut()) {
            Ok(program) => {
                forget_gone_hc_links(program, &mut self.tunnel.hc_links).await;
            }
            Err(error) => {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "checking that {} still runs",
                    names::PROG_TC_HC_ENCAP
                );
            }
        }
    }

    /// Detaches `tc_hc_encap` everywhere (no check goes through a tunnel,
    /// or lbd stops).
    pub(crate) fn detach_hc_encap(&mut self) {
        if self.tunnel.hc_links.is_empty() {
            return;
        }
        let links = std::mem::take(&mut self.tunnel.hc_links);
        let program = match hc_program(self.dataplane.ebpf_mut()) {
            Ok(program) => program,
            Err(error) => {
                warn!(%error, "detaching the health-check encapsulation");
                return;
            }
        };
        for HcLink {
            interface,
            id: link,
            ..
        } in links
        {
            match program.detach(link) {
                Ok(()) => info!(%interface, "{} detached", names::PROG_TC_HC_ENCAP),
                Err(error) => {
                    warn!(%interface, %error, "detaching {} failed", names::PROG_TC_HC_ENCAP)
                }
            }
        }
    }
}

/// `tc_hc_encap`, loaded on first use: before the start's first commit
/// or the change that brings the first check through a tunnel, whose
/// refusal refuses that start or change (see `hc_load`); a refusal after
/// (the path retried) costs only those checks, with a warning.
pub(in crate::daemon::engine) fn hc_program(
    ebpf: &mut aya::Ebpf,
) -> anyhow::Result<&mut SchedClassifier> {
    let name = names::PROG_TC_HC_ENCAP;
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow::anyhow!("the data plane object has no {name} program"))?
        .try_into()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if program.fd().is_err() {
        // The kernel's refusal kept as such: a start it fails exits with
        // the status of a refused object (see `daemon::refused`).
        crate::dataplane::retry_interrupted(name, || program.load()).map_err(|e| {
            crate::dataplane::DataplaneError::Program {
                action: "loading",
                program: name,
                source: Box::new(e),
            }
        })?;
        // Its filters are this lbd's: a sweep of those dead lbds left
        // (at the start, after the first checks) keeps them.
        if let Ok(info) = program.info() {
            cls_bpf::note_own_hc_program(info.id());
        }
    }
    Ok(program)
}

/// Attaches `tc_hc_encap` to `interface`'s egress for a balancer on
/// interface `balancer`: a tcx link, else (no tcx: kernels before 6.6,
/// or `LBD_TC_ATTACH=cls_bpf`) a clsact + cls_bpf filter, as the tc
/// balancer falls back (without it checks through a tunnel never worked
/// on those kernels: unwrapped, they reached the VIP on this node). The
/// filter goes at `hc_filter_options(balancer)`; one a killed lbd on
/// this interface left there is taken over, its program replaced in
/// place (a stop removes lbd's own, so no live lbd owns it).
fn attach_hc_egress(
    program: &mut SchedClassifier,
    interface: &str,
    path: TcPath,
    balancer: u32,
) -> anyhow::Result<(SchedClassifierLinkId, HcHook)> {
    let name = names::PROG_TC_HC_ENCAP;
    let tcx_error = match path {
        TcPath::ClsBpf => format!("not tried: {TC_ATTACH_ENV}=cls_bpf"),
        TcPath::Tcx => match program.attach_with_options(
            interface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        ) {
            Ok(link) => {
                info!(%interface, "health checks through the tunnel: {name} attached (tcx egress)");
                return Ok((link, HcHook::Tcx));
            }
            Err(error) => error.to_string(),
        },
    };
    let options = cls_bpf::hc_filter_options(balancer);
    let created = cls_bpf::attach_filter(program, interface, TcAttachType::Egress, options);
    let (link, how) = match created {
        Ok(link) => (link, "clsact + cls_bpf egress filter"),
        Err(create) => {
            // The kernel refuses a second filter at that priority and
            // handle: a killed lbd's, replaced.
            let left = SchedClassifierLink::attached(
                interface,
                TcAttachType::Egress,
                cls_bpf::HC_FILTER_PRIORITY,
                cls_bpf::hc_filter_options(balancer).handle,
                None,
            )
            .map_err(|e| anyhow::anyhow!("attaching {name} to {interface}'s tc egress: tcx: {tcx_error}; cls_bpf: {create}; finding a filter left there: {e}"))?;
            let link = program.attach_to_link(left).map_err(|replace| {
                anyhow::anyhow!("attaching {name} to {interface}'s tc egress: tcx: {tcx_error}; cls_bpf: {create}; replacing a filter left there: {replace}")
            })?;
            (
                link,
                "clsact + cls_bpf egress filter, replacing the one a previous lbd left",
            )
        }
    };
    info!(%interface, tcx = %tcx_error, "health checks through the tunnel: {name} attached ({how})");
    Ok((link, HcHook::ClsBpf))
}

/// Attaches `tc_hc_encap` (loaded from `ebpf` on first use) to the egress
/// of each of `hc_interfaces(interface)` that `links` lacks, for a
/// balancer on `interface` (index `balancer`), by the path `path` says
/// (asked only when one is missing), recording each in `links`.
pub(super) fn attach_hc_where_missing(
    ebpf: &mut aya::Ebpf,
    links: &mut Vec<HcLink>,
    interface: &str,
    balancer: u32,
    path: impl FnOnce() -> anyhow::Result<TcPath>,
) -> anyhow::Result<()> {
    let missing = missing_interfaces(
        &hc_interfaces(interface),
        links.iter().map(|l| l.interface.as_str()),
    );
    if missing.is_empty() {
        return Ok(());
    }
    let path = path()?;
    let program = hc_program(ebpf)?;
    for on in missing {
        let (id, hook) = attach_hc_egress(program, &on, path, balancer)?;
        let ifindex = if on == interface {
            balancer
        } else {
            cls_bpf::LOOPBACK_IFINDEX
        };
        links.push(HcLink {
            interface: on,
            ifindex,
            hook,
            id,
        });
    }
    Ok(())
}

/// Takes out of `links` the entries whose `runs` is `Some(false)` (the
/// kernel says the attachment is gone) and returns them, in order; an
/// entry whose state is not known (`None`, or no answer) stays: a failed
/// look must not detach and attach again what runs.
pub(super) fn prune_gone<L>(links: &mut Vec<L>, runs: &[Option<bool>]) -> Vec<L> {
    let mut gone = Vec::new();
    let mut kept = Vec::with_capacity(links.len());
    for (index, link) in std::mem::take(links).into_iter().enumerate() {
        if runs.get(index).copied().flatten() == Some(false) {
            gone.push(link);
        } else {
            kept.push(link);
        }
    }
    *links = kept;
    gone
}

/// Whether `program` (its id) still runs where `link` attached it, as
/// the kernel says now (None: cannot tell).
async fn hc_link_runs(program: u32, link: &HcLink) -> Option<bool> {
    let programs = match link.hook {
        HcHook::ClsBpf => match cls_bpf::egress_programs_of(link.ifindex).await {
            Ok(programs) => programs,
            Err(error) => {
                tracing::debug!(interface = %link.interface, error = format!("{error:#}"), "listing the tc egress filters");
                return None;
            }
        },
        HcHook::Tcx => cls_bpf::tcx_egress_programs(link.ifindex)?,
    };
    Some(programs.contains(&program))
}

/// Drops from `links` the `tc_hc_encap` attachments of `program` that the
/// kernel no longer runs, warning once for each (it is attached again by
/// the next `attach_hc_where_missing`, which the caller runs next), and
/// forgets them in aya (a filter already gone is no error); returns the
/// interfaces they were on.
pub(super) async fn forget_gone_hc_links(
    program: &mut SchedClassifier,
    links: &mut Vec<HcLink>,
) -> Vec<String> {
    let name = names::PROG_TC_HC_ENCAP;
    let ours = match program.info() {
        Ok(info) => info.id(),
        Err(error) => {
            tracing::debug!(%error, "reading the id of {name}: whether it still runs cannot be told");
            return Vec::new();
        }
    };
    let mut runs = Vec::with_capacity(links.len());
    for link in links.iter() {
        runs.push(hc_link_runs(ours, link).await);
    }
    let gone = prune_gone(links, &runs);
    let mut interfaces = Vec::with_capacity(gone.len());
    for link in gone {
        let on = &link.interface;
        let (removed, shown) = match link.hook {
            HcHook::ClsBpf => (
                format!(
                    "its cls_bpf filter (pref {}) was deleted, or the clsact qdisc",
                    cls_bpf::HC_FILTER_PRIORITY
                ),
                format!("tc filter show dev {on} egress"),
            ),
            HcHook::Tcx => (
                "its tcx link was detached".to_owned(),
                format!("bpftool net show dev {on}"),
            ),
        };
        warn!(interface = %on, program = ours, "{name} no longer runs on the egress of {on} ({removed}, not by lbd): attaching it again (expect {name} back in `{shown}`); until it runs, checks through the tunnel fail with `check path not attached` instead of going out unwrapped");
        if let Err(error) = program.detach(link.id) {
            tracing::debug!(interface = %link.interface, %error, "forgetting {name}'s removed attachment");
        }
        interfaces.push(link.interface);
    }
    interfaces
}
