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

mod accept_local;
mod hc_path;
#[cfg(test)]
mod tests;

use accept_local::SysctlChange;
pub(super) use hc_path::hc_program;
use hc_path::HcLink;

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use lb_common::consts::{AF_INET, AF_INET6};
use tracing::{info, warn};

use super::Engine;
use crate::{
    health::TunnelPath,
    reconcile::{words_addr, Balancer},
    tunnel::{resolve, NodeTunnel, OwnAddresses, PassedOver, PassedOverWhy},
};

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
}
