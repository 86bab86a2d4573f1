//! The engine's duties for the tunnelled modes beyond the maps: the
//! balancer interface's own addresses (the default outer sources, kept
//! current by the routed scan), and the path of health checks that follow
//! the data path: `tc_hc_encap` attached at tc egress on `lo` (the master
//! holds the VIP, so a check to it leaves by loopback) and on the
//! balancer's interface (a backup does not hold it, so the check leaves by
//! the interface), and `accept_local` on the interface and on every
//! interface that owns a check's source (the backend's reply comes from
//! the VIP, an address the master holds, to that source, so it arrives on
//! that source's interface, and the kernel drops it there as a martian
//! source unless it is on). Both exist only while some backend is checked
//! through its tunnel. While `tc_hc_encap` is missing where a check to a
//! VIP leaves, those checks fail with the reason instead of being sent
//! unwrapped (see `FailureReason::PathNotAttached`); one removed under
//! lbd (`tc filter del`, the clsact qdisc deleted, `bpftool link detach`)
//! is seen at the next routed scan, which asks the kernel, and attached
//! again. The program runs on a tcx link
//! where the kernel has tcx, else (kernels before 6.6, or
//! `LBD_TC_ATTACH=cls_bpf`) as a clsact + cls_bpf filter, as the tc
//! balancer does: either is owned by lbd (not pinned: checks only run
//! while lbd does) and goes at any stop; a filter a killed lbd left is
//! replaced in place by the next one (see `ownership::cls_bpf`).
//! `accept_local` is put back at a clean stop, like forwarding.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::programs::{
    links::LinkOrder,
    tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
    SchedClassifier, TcAttachType,
};
use lb_common::consts::{names, AF_INET, AF_INET6};
use tracing::{info, warn};

use super::Engine;
use crate::{
    health::{tunnel_socket, TunnelPath},
    ownership::cls_bpf::{self, TcPath, TC_ATTACH_ENV},
    reconcile::{words_addr, Balancer},
    tunnel::{resolve, NodeTunnel, OwnAddresses, PassedOver, PassedOverWhy},
};

/// A sysctl lbd changed, to restore at a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SysctlChange {
    path: PathBuf,
    was: String,
}

/// The tunnel runtime's state.
#[derive(Debug, Default)]
pub(crate) struct TunnelRuntime {
    /// The balancer interface's own addresses, as last read.
    pub(crate) own: OwnAddresses,
    /// The interface's IPv4 and IPv6 addresses lbd left out as default
    /// outer sources, as last read (named when a family has none).
    passed_over: (PassedOver, PassedOver),
    /// `tc_hc_encap`'s egress links (tcx) or filters (cls_bpf), by
    /// interface: what lbd attached, checked against the kernel at every
    /// routed scan (see [`Engine::drop_gone_hc_links`]).
    hc_links: Vec<HcLink>,
    /// `accept_local` as lbd found it, by interface, where lbd has it on
    /// (the balancer interface and those of the checks' sources).
    accept_local: BTreeMap<String, SysctlChange>,
    /// When attaching the check path last failed (warned once until it
    /// works; retried after `HC_RETRY`, not at every commit).
    hc_failed: Option<Instant>,
    /// Why it failed, for the checks it fails meanwhile.
    hc_error: Option<String>,
    /// Whether checks through the tunnel fail for want of the path (told
    /// when that ends).
    hc_unattached: bool,
    /// The checks through the tunnel: each VIP address and path (the
    /// routed scan follows their routes between commits).
    hc_checks: Vec<(IpAddr, TunnelPath)>,
}

/// How `tc_hc_encap` was attached to an egress: what the kernel is asked
/// to tell whether it still runs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HcHook {
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
struct HcLink {
    /// The interface, by the name it was attached by (`lo` or the
    /// balancer's).
    interface: String,
    /// Its index (the attachment stays with the device through a rename).
    ifindex: u32,
    /// How it was attached.
    hook: HcHook,
    /// aya's id of it, to detach it.
    id: SchedClassifierLinkId,
}

/// The tunnel state a change moves before it is staged: the interface's
/// own addresses (read again for a first tunnelled VIP) and the tunnel
/// settings the balancer resolved from them. Taken before the change and
/// put back when it is a dry run or refused, so that neither leaves the
/// engine changed: the moved settings would otherwise be served, and the
/// next unrelated commit would write them to `TUNNEL_CONFIG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TunnelState {
    /// The interface's own addresses (the default outer sources).
    own: OwnAddresses,
    /// The settings the balancer serves tunnelled VIPs with.
    node: NodeTunnel,
}

impl TunnelState {
    /// The state `own` and `balancer` hold now.
    pub(crate) fn of(own: &OwnAddresses, balancer: &Balancer) -> Self {
        Self {
            own: *own,
            node: *balancer.tunnel(),
        }
    }

    /// Makes this the state of `own` and `balancer` again; whether the
    /// balancer's settings had moved (the maps may have been written
    /// with the moved ones).
    pub(crate) fn put_back(self, own: &mut OwnAddresses, balancer: &mut Balancer) -> bool {
        *own = self.own;
        let moved = *balancer.tunnel() != self.node;
        balancer.set_tunnel(self.node);
        moved
    }
}

/// How long after a failed attach of `tc_hc_encap` lbd tries again (a
/// verifier run costs tens of milliseconds; commits come with every
/// health change).
const HC_RETRY: Duration = Duration::from_secs(30);

/// The `accept_local` switch of `interface` (IPv4 only: IPv6 takes a
/// packet from one of the node's own addresses as it is).
pub(crate) fn accept_local_path(interface: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/accept_local"))
}

/// The interfaces `tc_hc_encap` runs on for a balancer on `interface`.
pub(crate) fn hc_interfaces(interface: &str) -> [&str; 2] {
    ["lo", interface]
}

/// The interfaces of `wanted` not among `attached`, in `wanted`'s order.
fn missing_interfaces<'a>(
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
fn unattached_reason(missing: &[String], error: Option<&str>) -> Option<String> {
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

/// The interface that holds `address` among `addresses` (the node's, by
/// interface), if any.
fn owner_of(address: IpAddr, addresses: &[(String, IpAddr)]) -> Option<&str> {
    addresses
        .iter()
        .find(|(_, a)| *a == address)
        .map(|(name, _)| name.as_str())
}

/// The interfaces that need `accept_local` for checks through the tunnel
/// leaving from `sources` (their IPv4 source addresses; IPv6 takes a
/// packet from one of the node's own addresses as it is): the balancer
/// interface, and the one holding each source, where the backend's reply
/// from the VIP arrives (a backend routed out of another interface than
/// the balancer's answers on that one). `addresses`: the node's, by
/// interface.
fn accept_local_interfaces(
    balancer: &str,
    sources: &[IpAddr],
    addresses: &[(String, IpAddr)],
) -> BTreeSet<String> {
    let mut out = BTreeSet::from([balancer.to_owned()]);
    for source in sources.iter().filter(|s| s.is_ipv4()) {
        if let Some(owner) = owner_of(*source, addresses) {
            out.insert(owner.to_owned());
        }
    }
    out
}

/// The interface's IPv4 and IPv6 addresses (`addresses`) lbd passes over
/// as default outer sources, `moving` being VIPs, NAT and VRRP addresses.
fn passed_over(
    addresses: &[crate::netlink::InterfaceAddress],
    moving: &[(IpAddr, PassedOverWhy)],
) -> (PassedOver, PassedOver) {
    (
        PassedOver::among(addresses, moving, false),
        PassedOver::among(addresses, moving, true),
    )
}

/// How the outer sources moved from `before` to `after` ("IPv4 198.18.0.2
/// -> 198.18.0.3"), None when neither family's moved: the operator is
/// warned, as backends' lb-decap `sources` may allow only the old one.
fn source_move(before: &NodeTunnel, after: &NodeTunnel) -> Option<String> {
    let source = |words: [u32; 4], len: u8, family: u8, present: bool| {
        present.then(|| format!("{}/{len}", words_addr(words, family)))
    };
    let (b, a) = (&before.config, &after.config);
    let v4 = |c: &lb_common::TunnelConfig, present| {
        source([c.source_v4, 0, 0, 0], c.source_v4_len, AF_INET, present)
    };
    let v6 = |c: &lb_common::TunnelConfig, present| {
        source(c.source_v6, c.source_v6_len, AF_INET6, present)
    };
    let moves = [
        ("IPv4", v4(b, before.ipv4), v4(a, after.ipv4)),
        ("IPv6", v6(b, before.ipv6), v6(a, after.ipv6)),
    ];
    let moved: Vec<String> = moves
        .into_iter()
        .filter(|(_, old, new)| old.is_some() && old != new)
        .map(|(family, old, new)| {
            let show = |s: Option<String>| s.unwrap_or_else(|| "none".to_owned());
            format!("{family} {} -> {}", show(old), show(new))
        })
        .collect();
    (!moved.is_empty()).then(|| moved.join(", "))
}

impl Engine {
    /// Addresses that move with VRRP or are VIPs or NAT addresses (never
    /// outer sources), each with what it is (a refusal names it).
    fn moving_roles(&self) -> Vec<(IpAddr, PassedOverWhy)> {
        let vip = |a: IpAddr| (a, PassedOverWhy::Vip);
        let nat = |a: IpAddr| (a, PassedOverWhy::Nat);
        let mut out: Vec<(IpAddr, PassedOverWhy)> =
            self.config.vips.iter().map(|v| vip(v.address)).collect();
        out.extend(self.model.vips.keys().map(|id| vip(id.address)));
        out.extend(
            self.model
                .vips
                .values()
                .filter_map(|v| v.config.nat.map(|n| nat(n.source))),
        );
        out.extend(
            self.config
                .vips
                .iter()
                .filter_map(|v| v.nat.map(|n| nat(n.source))),
        );
        for vrrp in &self.config.vrrp {
            out.extend(vrrp.addresses.iter().map(|a| (*a, PassedOverWhy::Vrrp)));
        }
        out
    }

    /// The tunnel state in force, for a change to put back if it is a
    /// dry run or refused (see [`TunnelState`]).
    pub(crate) fn tunnel_state(&self) -> TunnelState {
        TunnelState::of(&self.tunnel.own, &self.balancer)
    }

    /// Puts `state` back (a dry run or a refused change leaves the engine
    /// as it found it); whether the balancer's settings had moved.
    pub(crate) fn put_back_tunnel(&mut self, state: TunnelState) -> bool {
        state.put_back(&mut self.tunnel.own, &mut self.balancer)
    }

    /// At a start that adopted the data plane: the own addresses kept
    /// (see `OwnAddresses::keeping`) begin as the outer sources the
    /// previous lbd's `TUNNEL_CONFIG` holds, so each stays while it is on
    /// the interface. A fresh pick would take the newest global IPv6
    /// address (the kernel lists it first), and the backends' lb-decap,
    /// whose `sources` allow the old one, would drop every IPv6 and 4in6
    /// tunnel packet, adopted connections included. Call before the first
    /// [`Engine::read_own_addresses`].
    pub(crate) fn keep_adopted_sources(&mut self) {
        match self.dataplane.adopted_tunnel_config() {
            Ok(Some(config)) => {
                let kept = OwnAddresses::sourced_by(&config);
                if kept != OwnAddresses::default() {
                    info!(ipv4 = ?kept.ipv4, ipv6 = ?kept.ipv6, "the previous lbd's outer sources are kept while the interface holds them (the backends' lb-decap allow them)");
                }
                self.tunnel.own = kept;
            }
            Ok(None) => {}
            Err(error) => {
                warn!(%error, "reading the previous lbd's tunnel settings failed: the default outer sources are picked afresh from the interface (backends' lb-decap may refuse them if they moved)");
            }
        }
    }

    /// Reads the interface's own addresses again.
    pub(crate) async fn read_own_addresses(&mut self) {
        match self.netlink.addresses(self.interface.index).await {
            Ok(addresses) => {
                let moving = self.moving_roles();
                self.tunnel.passed_over = passed_over(&addresses, &moving);
                let moving: Vec<IpAddr> = moving.into_iter().map(|(a, _)| a).collect();
                self.tunnel.own = OwnAddresses::keeping(&addresses, &moving, &self.tunnel.own);
            }
            Err(error) => {
                warn!(%error, "reading the interface's addresses (default outer sources) failed");
            }
        }
    }

    /// Warnings for `config`'s IPv6 VIPs and NAT addresses the operator
    /// holds on the interface in preferred form: the kernel then picks
    /// them as the health checks' source (see
    /// `config::preferred_held_address_warnings`). Read afresh (at start
    /// and reload only); none if the interface's addresses cannot be read
    /// (logged by the netlink layer's caller elsewhere).
    pub(crate) async fn held_address_warnings(
        &self,
        config: &crate::config::Config,
    ) -> Vec<crate::config::Warning> {
        match self.netlink.addresses(self.interface.index).await {
            Ok(addresses) => crate::config::preferred_held_address_warnings(config, &addresses),
            Err(error) => {
                warn!(%error, "reading the interface's addresses (VIPs held by hand) failed");
                Vec::new()
            }
        }
    }

    /// The node's tunnel settings from `settings` and the interface.
    pub(crate) fn node_tunnel(
        &self,
        settings: &crate::config::TunnelSettings,
    ) -> crate::tunnel::NodeTunnel {
        resolve(settings, self.interface.index, &self.tunnel.own)
            .passing_over(self.tunnel.passed_over)
    }

    /// Before a change that brings the first tunnelled VIP: the routed
    /// scan follows the interface's addresses only while one is served,
    /// so they are read again here and the default outer sources taken
    /// from what the interface holds now, not from what it held at start.
    /// The caller takes [`Engine::tunnel_state`] first and puts it back
    /// if the change is a dry run or refused.
    pub(crate) async fn follow_addresses_for_first_tunnel(&mut self, next: &crate::model::Model) {
        if self.reread_addresses_for_first_tunnel(next).await {
            let wanted = self.node_tunnel(&self.config.tunnel);
            self.balancer.set_tunnel(wanted);
        }
    }

    /// Reads the interface's addresses again when `next` brings the first
    /// tunnelled VIP (a reload then resolves the file's `[tunnel]` against
    /// them); whether it did.
    pub(crate) async fn reread_addresses_for_first_tunnel(
        &mut self,
        next: &crate::model::Model,
    ) -> bool {
        let serves_one = self.balancer.vips().values().any(|v| v.mode.is_tunnel());
        let brings_one = next.vips.values().any(|v| v.config.forwarding.is_tunnel());
        if serves_one || !brings_one {
            return false;
        }
        // Picked afresh from the addresses of now (those lbd kept since
        // its start outlived no tunnel), leaving out what `next` serves.
        match self.netlink.addresses(self.interface.index).await {
            Ok(addresses) => {
                let mut moving = self.moving_roles();
                for (id, vip) in &next.vips {
                    moving.push((id.address, PassedOverWhy::Vip));
                    moving.extend(vip.config.nat.map(|n| (n.source, PassedOverWhy::Nat)));
                }
                self.tunnel.passed_over = passed_over(&addresses, &moving);
                let moving: Vec<IpAddr> = moving.into_iter().map(|(a, _)| a).collect();
                self.tunnel.own = OwnAddresses::of(&addresses, &moving);
            }
            Err(error) => {
                warn!(%error, "reading the interface's addresses (default outer sources) failed");
            }
        }
        true
    }

    /// Part of the routed scan: follows the interface's addresses (the
    /// default outer sources) and applies a change of them.
    pub(crate) async fn tunnel_scan(&mut self) {
        if !self.balancer.vips().values().any(|v| v.mode.is_tunnel()) {
            return;
        }
        if !self.tunnel.hc_checks.is_empty() {
            // Routes move between commits: the checks' sources (whose
            // interfaces need `accept_local`) and the way to each VIP
            // follow them; a failed attach is retried.
            let checks = self.tunnel.hc_checks.clone();
            // A `tc_hc_encap` removed under lbd is seen here, so that
            // `sync_hc_path` attaches it again.
            self.drop_gone_hc_links().await;
            self.sync_hc_path(checks);
        }
        let before = self.tunnel.own;
        self.read_own_addresses().await;
        if self.tunnel.own != before {
            // A 4in6 backend's checks leave from the interface's address
            // of the VIP's family: they follow it even when the outer
            // sources are configured and do not change.
            self.sync_checks();
        }
        let wanted = self.node_tunnel(&self.config.tunnel);
        if wanted == *self.balancer.tunnel() {
            return;
        }
        let previous = *self.balancer.tunnel();
        self.balancer.set_tunnel(wanted);
        match self.commit(self.model.clone()) {
            Ok(_) => match source_move(&previous, &wanted) {
                Some(moved) => warn!(
                    "the interface's addresses changed: the default outer source moved ({moved}); backends whose lb-decap `sources` do not allow the new source drop every tunnelled packet: add it to their `sources`, or set [tunnel] source_ipv4/source_ipv6 to keep one"
                ),
                None => info!(
                    ipv4 = ?self.tunnel.own.ipv4, ipv6 = ?self.tunnel.own.ipv6,
                    "the interface's addresses changed: default outer sources updated"
                ),
            },
            Err(error) => {
                self.balancer.set_tunnel(previous);
                warn!(%error, "the interface's addresses changed but the new outer sources were refused; the previous ones stay");
            }
        }
    }

    /// The tunnel settings in the status (None while no VIP is tunnelled).
    pub(crate) fn tunnel_status(&self) -> Option<crate::api::schema::TunnelStatus> {
        if !self
            .model
            .vips
            .values()
            .any(|v| v.config.forwarding.is_tunnel())
        {
            return None;
        }
        let node = self.balancer.tunnel();
        let config = &node.config;
        let words = |w: [u32; 4], family| crate::reconcile::words_addr(w, family);
        Some(crate::api::schema::TunnelStatus {
            gue_port: u16::from_be(config.gue_port),
            source_ipv4: node.ipv4.then(|| {
                let a = words([config.source_v4, 0, 0, 0], lb_common::consts::AF_INET);
                format!("{a}/{}", config.source_v4_len)
            }),
            source_ipv6: node.ipv6.then(|| {
                let a = words(config.source_v6, lb_common::consts::AF_INET6);
                format!("{a}/{}", config.source_v6_len)
            }),
            sources_from_interface: [
                self.config.tunnel.source_ipv4.is_none(),
                self.config.tunnel.source_ipv6.is_none(),
            ],
            hc_encap: self
                .tunnel
                .hc_links
                .iter()
                .map(|l| l.interface.clone())
                .collect(),
            accept_local: self.tunnel.accept_local.contains_key(&self.interface.name),
        })
    }

    /// Makes the check path exist exactly while some check goes through
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
    async fn drop_gone_hc_links(&mut self) {
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

    /// Makes `accept_local` on for every interface of `wanted`, and as
    /// lbd found it on every other it had switched on (a check's source
    /// moved off it, or the backends routed there went).
    fn sync_accept_local(&mut self, wanted: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .tunnel
            .accept_local
            .keys()
            .filter(|i| !wanted.contains(*i))
            .cloned()
            .collect();
        for interface in gone {
            if let Some(change) = self.tunnel.accept_local.remove(&interface) {
                self.restore_sysctl(change);
            }
        }
        for interface in wanted {
            self.ensure_accept_local(interface);
        }
    }

    /// Switches `accept_local` on for `interface` (remembering the value
    /// found).
    fn ensure_accept_local(&mut self, interface: &str) {
        if self.tunnel.accept_local.contains_key(interface) {
            return;
        }
        let path = accept_local_path(interface);
        let was = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_owned(),
            Err(error) => {
                warn!(setting = %path.display(), %error, "cannot read accept_local: replies to checks through the tunnel (from the VIP) may be dropped");
                return;
            }
        };
        if was != "0" {
            // On already: by the operator, or by an lbd before this one (a
            // restart, or one that crashed), whose record keeps the
            // original to restore.
            if let Some(original) =
                crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
            {
                self.tunnel.accept_local.insert(
                    interface.to_owned(),
                    SysctlChange {
                        path,
                        was: original,
                    },
                );
            }
            return;
        }
        match std::fs::write(&path, "1") {
            Ok(()) => {
                info!(setting = %path.display(), "accept_local switched on: replies to checks through the tunnel come from the VIP, an address this node holds (restored at a clean stop or when no check needs it)");
                // Recorded for the lbds after this one and for `lbd
                // --cleanup` (after a crash nothing else would put it back).
                if let Err(error) =
                    crate::ownership::held::record_original(&self.config.admin_socket, &path, &was)
                {
                    warn!(setting = %path.display(), error = %format!("{error:#}"), "recording accept_local's original value failed: after a crash or restart it will not be restored");
                }
                self.tunnel
                    .accept_local
                    .insert(interface.to_owned(), SysctlChange { path, was });
            }
            Err(error) => {
                warn!(setting = %path.display(), %error, "cannot switch accept_local on: replies to checks through the tunnel are dropped on the VRRP master and its backends go down");
            }
        }
    }

    /// Puts `accept_local` back as lbd found it, on every interface.
    pub(crate) fn restore_accept_local(&mut self) {
        for (_, change) in std::mem::take(&mut self.tunnel.accept_local) {
            self.restore_sysctl(change);
        }
    }

    /// Puts one `accept_local` back and drops it from lbd's record.
    fn restore_sysctl(&self, change: SysctlChange) {
        crate::ownership::held::forget_original(&self.config.admin_socket, &change.path);
        match std::fs::write(&change.path, &change.was) {
            Ok(()) => {
                info!(setting = %change.path.display(), value = %change.was, "accept_local restored")
            }
            Err(error) => {
                warn!(setting = %change.path.display(), %error, "restoring accept_local failed")
            }
        }
    }
}

/// `tc_hc_encap`, loaded on first use: before the start's first commit
/// or the change that brings the first check through a tunnel, whose
/// refusal refuses that start or change (see `hc_load`); a refusal after
/// (the path retried) costs only those checks, with a warning.
pub(super) fn hc_program(ebpf: &mut aya::Ebpf) -> anyhow::Result<&mut SchedClassifier> {
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
fn attach_hc_where_missing(
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
fn prune_gone<L>(links: &mut Vec<L>, runs: &[Option<bool>]) -> Vec<L> {
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
async fn forget_gone_hc_links(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{HealthConfig, Protocol},
        health::TunnelPath,
    };

    #[test]
    fn a_check_through_the_tunnel_goes_to_the_vip_with_the_backends_mark() {
        let health = HealthConfig::default_for(Protocol::Tcp);
        let backend: IpAddr = "198.19.2.11".parse().unwrap();
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let (direct, _) = super::super::check_of(backend, 80, &health, None).unwrap();
        assert_eq!(direct.address, "198.19.2.11:80".parse().unwrap());
        assert_eq!(direct.through, None);
        let path = TunnelPath {
            mark: lb_common::tunnel::HC_MARK_BASE | 5,
            backend,
            source: None,
        };
        let (through, settings) =
            super::super::check_of(backend, 80, &health, Some((vip, path))).unwrap();
        assert_eq!(through.address, "198.18.0.100:80".parse().unwrap());
        assert_eq!(through.through, Some(path));
        assert_eq!(settings.interval, health.interval);
        let unchecked = HealthConfig {
            check: crate::config::CheckType::None,
            ..health
        };
        assert!(super::super::check_of(backend, 80, &unchecked, Some((vip, path))).is_none());
    }

    /// A VIP of `mode` at `address` with backends at `backends`, each
    /// with a MAC (a DSR-L2 one needs it).
    fn vip(mode: lb_common::Mode, address: &str, backends: &[&str]) -> crate::config::VipConfig {
        let mut vip = crate::config::VipConfig::new(address.parse().unwrap(), 80, Protocol::Tcp);
        vip.table_size = 13;
        vip.forwarding = mode;
        for backend in backends {
            let mut backend = crate::config::BackendConfig::new(backend.parse().unwrap());
            backend.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
            vip.backends.push(backend);
        }
        vip
    }

    /// `vips` as the balancer is asked to serve them.
    fn desired(vips: &[&crate::config::VipConfig]) -> Vec<crate::reconcile::DesiredVip> {
        vips.iter()
            .map(|v| crate::reconcile::DesiredVip::from_config(v, &|_| None))
            .collect()
    }

    /// A change that brings the first tunnelled VIP reads the interface's
    /// addresses again and moves the balancer's settings before staging
    /// (`follow_addresses_for_first_tunnel`). A dry run of it, or one
    /// refused at staging (a 4in6 backend with no IPv6 outer source), puts
    /// both back as `change` does: the next unrelated commit writes no
    /// `TUNNEL_CONFIG`. Before, they stayed moved, and that commit wrote
    /// them, since one had been written for a tunnelled VIP served before.
    #[test]
    fn a_dry_run_or_a_refused_first_tunnelled_vip_leaves_the_tunnel_state() {
        use lb_common::Mode;

        use crate::{config::TunnelSettings, dataplane::FakeMaps};

        let settings = TunnelSettings::default();
        let at_start = OwnAddresses {
            ipv4: Some("198.18.0.2".parse().unwrap()),
            ipv6: None,
        };
        let now = OwnAddresses {
            ipv4: Some("198.18.0.3".parse().unwrap()),
            ipv6: None,
        };
        let served_before = vip(Mode::Ipip, "198.18.0.110", &["198.19.2.11"]);
        let dry_run = vip(Mode::Ipip, "198.18.0.120", &["198.19.2.12"]);
        let refused = vip(Mode::Ipip, "198.18.0.120", &["2001:2:2::12"]);
        let unrelated = vip(Mode::DsrL2, "198.18.0.130", &["198.19.2.13"]);
        // (the change, whether staging refuses it, whether it is put back)
        for (change, refusal, put_back) in [
            (&dry_run, false, true),
            (&refused, true, true),
            (&dry_run, false, false),
        ] {
            let mut balancer = Balancer::new(4);
            let mut maps = FakeMaps::default();
            let mut own = at_start;
            balancer.set_tunnel(resolve(&settings, 3, &own));
            // A tunnelled VIP served, then removed: `TUNNEL_CONFIG` was
            // written and is kept current from then on.
            balancer
                .apply(&mut maps, &desired(&[&served_before]))
                .unwrap();
            balancer.apply(&mut maps, &[]).unwrap();
            let before = TunnelState::of(&own, &balancer);

            // What following the addresses for a first tunnelled VIP does.
            own = now;
            balancer.set_tunnel(resolve(&settings, 3, &own));
            let staged = balancer.stage(&desired(&[change]));
            if refusal {
                assert!(
                    matches!(
                        staged,
                        Err(crate::reconcile::ReconcileError::NoTunnelSource { .. })
                    ),
                    "{staged:?}"
                );
            } else {
                assert!(!balancer.plan(&staged.unwrap()).is_empty());
            }
            if put_back {
                assert!(before.put_back(&mut own, &mut balancer), "moved");
                assert_eq!(TunnelState::of(&own, &balancer), before);
            }

            maps.log.clear();
            balancer.apply(&mut maps, &desired(&[&unrelated])).unwrap();
            let rewritten = maps.log.iter().any(|l| l == "tunnel config");
            // Without putting back (as before), the unrelated commit
            // writes the moved settings.
            assert_eq!(rewritten, !put_back, "{:?}", maps.log);
            let written = maps.tunnel.expect("written for the VIP served before");
            let expected = if put_back { at_start } else { now };
            assert_eq!(written, resolve(&settings, 3, &expected).config);
        }
    }

    /// A backend routed out of another interface than the balancer's
    /// (eth1) answers the check from the VIP to the source on eth1, so
    /// the reply arrives there: `accept_local` goes on for eth1 as well as
    /// the balancer's eth0 (before, for eth0 only: on the master every
    /// such backend went down). A labelled address counts for its
    /// interface; IPv6 sources and unknown ones add nothing.
    #[test]
    fn accept_local_goes_on_where_each_checks_source_is() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addresses = vec![
            ("lo".to_owned(), ip("127.0.0.1")),
            ("eth0".to_owned(), ip("198.18.0.2")),
            ("eth1".to_owned(), ip("198.19.0.2")),
            ("eth2".to_owned(), ip("198.20.0.2")),
            ("eth2".to_owned(), ip("2001:2::2")),
        ];
        let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        assert_eq!(
            accept_local_interfaces("eth0", &[ip("198.19.0.2")], &addresses),
            set(&["eth0", "eth1"])
        );
        assert_eq!(
            accept_local_interfaces(
                "eth0",
                &[ip("198.18.0.2"), ip("198.19.0.2"), ip("198.19.0.2")],
                &addresses
            ),
            set(&["eth0", "eth1"])
        );
        assert_eq!(
            accept_local_interfaces("eth0", &[ip("2001:2::2"), ip("203.0.113.1")], &addresses),
            set(&["eth0"])
        );
        assert_eq!(
            accept_local_interfaces("eth0", &[], &addresses),
            set(&["eth0"])
        );
    }

    /// While `tc_hc_encap` is missing from an egress the checks need,
    /// they fail with a reason naming it (and why the attach failed);
    /// once it is on both, they run.
    #[test]
    fn checks_fail_with_the_reason_while_the_path_is_not_attached() {
        let wanted = hc_interfaces("eth0");
        let missing = missing_interfaces(&wanted, ["lo"]);
        assert_eq!(missing, ["eth0"]);
        assert_eq!(
            unattached_reason(&missing, Some("loading: verifier refused")).as_deref(),
            Some("tc_hc_encap is not on the egress of eth0: loading: verifier refused")
        );
        let none = missing_interfaces(&wanted, []);
        assert_eq!(
            unattached_reason(&none, None).as_deref(),
            Some("tc_hc_encap is not on the egress of lo, eth0")
        );
        let all = missing_interfaces(&wanted, ["eth0", "lo"]);
        assert!(all.is_empty());
        assert_eq!(unattached_reason(&all, Some("an old error")), None);
    }

    /// The routed scan drops from lbd's record exactly the attachments
    /// the kernel says are gone (so they are attached again); one it
    /// cannot tell about, or got no answer for, stays. Before, the record
    /// was never checked: a `tc_hc_encap` removed under lbd stayed listed
    /// and the checks went out unwrapped.
    #[test]
    fn only_attachments_the_kernel_says_are_gone_are_dropped() {
        let mut links = vec![("lo", 1), ("eth0", 2), ("lo", 3), ("eth0", 4)];
        let gone = prune_gone(&mut links, &[Some(false), Some(true), None]);
        assert_eq!(gone, [("lo", 1)]);
        assert_eq!(links, [("eth0", 2), ("lo", 3), ("eth0", 4)]);
        let gone = prune_gone(&mut links, &[Some(false), Some(false), Some(false)]);
        assert_eq!(gone, [("eth0", 2), ("lo", 3), ("eth0", 4)]);
        assert!(links.is_empty());
        assert!(prune_gone(&mut links, &[Some(false)]).is_empty());
        let mut running = vec![("lo", 1), ("eth0", 2)];
        assert!(prune_gone(&mut running, &[Some(true), None]).is_empty());
        assert_eq!(running.len(), 2);
    }

    /// Whether `tc_hc_encap` is among the tc egress filters of `device`.
    fn hc_filter_shown(device: &str) -> bool {
        let out = std::process::Command::new("tc")
            .args(["filter", "show", "dev", device, "egress"])
            .output()
            .expect("running tc");
        String::from_utf8_lossy(&out.stdout).contains(names::PROG_TC_HC_ENCAP)
    }

    /// `tc` in this thread's network namespace; panics if it fails.
    fn tc(args: &[&str]) {
        let status = std::process::Command::new("tc")
            .args(args)
            .status()
            .expect("running tc");
        assert!(status.success(), "tc {args:?}");
    }

    /// The data plane, its `tc_hc_encap` attached through cls_bpf on the
    /// egress of `lo` and of a balancer interface, `hc0` (a veth). Someone
    /// deletes the filter on `lo` (`tc filter del ... pref 50000`), and
    /// then the clsact qdisc of `hc0`: the routed scan's look drops each
    /// from lbd's record, and the attach after puts each back. Before,
    /// lbd never noticed: the record still listed both, and the checks
    /// went out unwrapped. In a network namespace of the test's own.
    #[test]
    fn a_hc_filter_removed_under_lbd_is_attached_again_at_the_scan() {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: needs root (a network namespace of its own)");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            ip(&["link", "add", "hc0", "type", "veth", "peer", "name", "hc1"]);
            ip(&["link", "set", "lo", "up"]);
            ip(&["link", "set", "hc0", "up"]);
            let balancer = cls_bpf::interface_index("hc0").expect("hc0's index");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let mut dataplane = crate::dataplane::Dataplane::load(crate::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            })
            .expect("the data plane");
            let mut links = Vec::new();
            let attach = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
                attach_hc_where_missing(dataplane.ebpf_mut(), links, "hc0", balancer, || {
                    Ok(TcPath::ClsBpf)
                })
                .expect("attached");
            };
            attach(&mut dataplane, &mut links);
            assert!(hc_filter_shown("lo") && hc_filter_shown("hc0"));
            let look = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
                let program = hc_program(dataplane.ebpf_mut()).expect("tc_hc_encap");
                runtime.block_on(forget_gone_hc_links(program, links))
            };
            assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
            assert_eq!(links.len(), 2);

            tc(&["filter", "del", "dev", "lo", "egress", "pref", "50000"]);
            assert!(!hc_filter_shown("lo"));
            assert_eq!(look(&mut dataplane, &mut links), ["lo"]);
            attach(&mut dataplane, &mut links);
            assert!(hc_filter_shown("lo"), "tc_hc_encap is back on lo");

            tc(&["qdisc", "del", "dev", "hc0", "clsact"]);
            assert_eq!(look(&mut dataplane, &mut links), ["hc0"]);
            attach(&mut dataplane, &mut links);
            assert!(hc_filter_shown("hc0"), "tc_hc_encap is back on hc0");
            assert!(look(&mut dataplane, &mut links).is_empty());
            let on: Vec<&str> = links.iter().map(|l| l.interface.as_str()).collect();
            assert_eq!(on, ["lo", "hc0"]);
        });
    }

    /// The ids of the tcx links of program `program`, as `bpftool link
    /// show` lists them (older bpftools name the type by its number, 11,
    /// and leave out the interface).
    fn tcx_link_ids(program: u32) -> Vec<u64> {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "link", "show"])
            .output()
            .expect("running bpftool");
        let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
        let links = links.as_array().cloned().unwrap_or_default();
        links
            .iter()
            .filter(|l| (l["type"] == "tcx" || l["type"] == 11) && l["prog_id"] == program)
            .filter_map(|l| l["id"].as_u64())
            .collect()
    }

    /// The same on the tcx path (kernels with tcx, the default): the
    /// `tc_hc_encap` links detached under lbd (`bpftool link detach`) are
    /// dropped from lbd's record at the scan's look and attached again.
    /// Skipped where the kernel has no tcx or there is no bpftool.
    #[test]
    fn hc_tcx_links_detached_under_lbd_are_attached_again_at_the_scan() {
        if !crate::test_netns::is_root() {
            eprintln!("skipped: needs root (a network namespace of its own)");
            return;
        }
        if std::process::Command::new("bpftool")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("skipped: needs bpftool");
            return;
        }
        crate::test_netns::in_own_netns(|| {
            use crate::test_netns::ip;
            ip(&["link", "add", "hc0", "type", "veth", "peer", "name", "hc1"]);
            ip(&["link", "set", "lo", "up"]);
            ip(&["link", "set", "hc0", "up"]);
            let balancer = cls_bpf::interface_index("hc0").expect("hc0's index");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let mut dataplane = crate::dataplane::Dataplane::load(crate::dataplane::MapSizes {
                max_vips: 4,
                conntrack: 4096,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            })
            .expect("the data plane");
            let mut links = Vec::new();
            let attach = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
                attach_hc_where_missing(dataplane.ebpf_mut(), links, "hc0", balancer, || {
                    Ok(TcPath::Tcx)
                })
                .expect("attached");
            };
            attach(&mut dataplane, &mut links);
            if links.iter().any(|l| l.hook != HcHook::Tcx) {
                eprintln!("skipped: the kernel has no tcx");
                return;
            }
            let look = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
                let program = hc_program(dataplane.ebpf_mut()).expect("tc_hc_encap");
                runtime.block_on(forget_gone_hc_links(program, links))
            };
            let ours = hc_program(dataplane.ebpf_mut())
                .expect("tc_hc_encap")
                .info()
                .expect("its id")
                .id();
            let attached = tcx_link_ids(ours);
            assert_eq!(attached.len(), 2, "on lo and hc0");
            assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
            for link in &attached {
                let status = std::process::Command::new("bpftool")
                    .args(["link", "detach", "id", &link.to_string()])
                    .status()
                    .expect("running bpftool");
                assert!(status.success(), "bpftool link detach id {link}");
            }
            assert_eq!(look(&mut dataplane, &mut links), ["lo", "hc0"]);
            assert!(links.is_empty());
            attach(&mut dataplane, &mut links);
            let again = tcx_link_ids(ours);
            assert_eq!(again.len(), 2, "back on lo and hc0: {again:?}");
            assert!(again.iter().all(|l| !attached.contains(l)), "new links");
            assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
        });
    }

    #[test]
    fn the_check_path_runs_on_loopback_and_the_balancer_interface() {
        assert_eq!(hc_interfaces("eth0"), ["lo", "eth0"]);
        assert_eq!(
            accept_local_path("eth0.100"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/accept_local")
        );
    }

    /// A move of a default outer source (the one kept left the interface)
    /// is told with the old and the new source, for the warning that
    /// points at lb-decap's `sources`; a family that gains its first
    /// source, or no change, is no move.
    #[test]
    fn a_source_move_names_the_old_and_the_new_source() {
        let settings = crate::config::TunnelSettings::default();
        let own = |v4: &str| OwnAddresses {
            ipv4: Some(v4.parse().unwrap()),
            ipv6: None,
        };
        let before = resolve(&settings, 3, &own("198.18.0.2"));
        let after = resolve(&settings, 3, &own("198.18.0.3"));
        assert_eq!(
            source_move(&before, &after).as_deref(),
            Some("IPv4 198.18.0.2/32 -> 198.18.0.3/32")
        );
        assert_eq!(source_move(&before, &before), None);
        let none = resolve(&settings, 3, &OwnAddresses::default());
        assert_eq!(source_move(&none, &after), None);
        assert_eq!(
            source_move(&before, &none).as_deref(),
            Some("IPv4 198.18.0.2/32 -> none")
        );
    }
}
