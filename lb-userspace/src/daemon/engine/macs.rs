//! Backends' MAC addresses for DSR at L2, from the neighbour table.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use tracing::{info, warn};

use super::Engine;
use crate::{model::Model, vip_id::VipId};

/// How long start-up waits for backends' MACs before going on without them.
pub(super) const INITIAL_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a change (an edit, a reload) waits for the MACs of the
/// backends it brings.
pub(super) const RUNTIME_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

impl Engine {
    /// Looks backends' MACs up again; applies what changed. MACs the
    /// running model no longer needs (see [`forget_unwanted_macs`]) are
    /// dropped first.
    pub(crate) async fn refresh_macs(&mut self) {
        let model = self.model.clone();
        forget_unwanted_macs(&mut self.macs, &model);
        let before = self.macs.clone();
        self.resolve_macs(&model, Duration::ZERO).await;
        if self.macs != before {
            match self.commit(model) {
                Ok(report) => info!(?report, "backend MACs changed; maps updated"),
                Err(error) => warn!(%error, "updating the maps after a MAC change failed"),
            }
        }
    }

    /// Resolves the MACs of `model`'s backends that have none configured,
    /// waiting up to `timeout` for new ones. A MAC that vanished from the
    /// neighbour table is kept until another shows up.
    pub(crate) async fn resolve_macs(&mut self, model: &Model, timeout: Duration) {
        self.resolve(&wanted(model), timeout).await;
    }

    /// Waits briefly for the MACs of `addresses`: the backends a change
    /// brings that have none yet (see [`brought_unresolved`]). Those the
    /// running model already waits for are left to the periodic refresh,
    /// which probes them again: a change that does not bring one never
    /// waits.
    pub(crate) async fn resolve_new(&mut self, addresses: &[IpAddr]) {
        self.resolve(addresses, RUNTIME_RESOLVE_TIMEOUT).await;
    }

    /// Resolves the MACs of `wanted`, waiting up to `timeout` for them.
    async fn resolve(&mut self, wanted: &[IpAddr], timeout: Duration) {
        match self
            .netlink
            .resolve(self.interface.index, wanted, timeout)
            .await
        {
            Ok(found) => self.macs.extend(found),
            Err(error) => warn!(%error, "reading the neighbour table failed"),
        }
        if timeout > Duration::ZERO {
            for address in wanted.iter().filter(|a| !self.macs.contains_key(a)) {
                warn!(%address, "backend MAC unknown (no neighbour entry): it takes no traffic until it resolves");
            }
        }
    }

    /// The MAC frames to `address` go to, if known.
    pub(crate) fn mac_of(&self, address: IpAddr) -> Option<[u8; 6]> {
        self.macs.get(&address).copied()
    }

    /// After a commit made the model current: drops the MACs it no
    /// longer needs (see [`forget_unwanted_macs`]).
    pub(super) fn forget_unwanted_macs(&mut self) {
        forget_unwanted_macs(&mut self.macs, &self.model);
    }
}

/// Keeps in `macs` only the addresses `model` needs a MAC for (see
/// [`wanted`]). Why: a MAC is kept while its backend runs, even once it
/// vanished from the neighbour table; a removed backend's would otherwise
/// stay for good, and the same address added back later (maybe another
/// host by then) would neither be waited for nor probed, its flows sent
/// to the old host's MAC; and the cache would grow with every address
/// ever used. The running backends' MACs, adopted or resolved, stay.
fn forget_unwanted_macs(macs: &mut HashMap<IpAddr, [u8; 6]>, model: &Model) {
    let wanted = wanted(model);
    macs.retain(|address, _| wanted.binary_search(address).is_ok());
}

/// The addresses whose MACs `model` needs from the neighbour table: its
/// DSR-L2 VIPs' backends without a MAC configured (only DSR at L2 sends
/// to a backend's MAC; the routed modes use the FIB), once each.
fn wanted(model: &Model) -> Vec<IpAddr> {
    let mut wanted: Vec<IpAddr> = model
        .vips
        .values()
        .filter(|v| v.config.forwarding == lb_common::Mode::DsrL2)
        .flat_map(|v| v.backends.values())
        .filter(|b| b.config.mac.is_none())
        .map(|b| b.config.address)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// The addresses a change from `running` to `next` brings that need a MAC
/// no one knows yet (`known` says which are known): those `next` needs
/// (see [`wanted`]) and `running` does not: a new backend, one whose
/// configured MAC the change drops, one of a VIP the change turns into
/// DSR-L2. Those only are worth the change's wait: a backend `running`
/// already needs and has not resolved is probed again by the periodic
/// refresh, and waiting for it would hold every change (a drain, a
/// weight, a reload) for nothing.
pub(super) fn brought_unresolved(
    running: &Model,
    next: &Model,
    known: impl Fn(IpAddr) -> bool,
) -> Vec<IpAddr> {
    let before = wanted(running);
    wanted(next)
        .into_iter()
        .filter(|a| before.binary_search(a).is_err() && !known(*a))
        .collect()
}

/// A VIP of a change's next model with backends the change brings to
/// DSR at L2 (see [`brought_unresolved`]) whose MAC is not known. Why: a
/// backend without a MAC takes no packets in DSR-L2, so the change's
/// answer must say what that costs, and refuse it when it takes a VIP
/// that serves now out of service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnresolvedVip {
    /// The VIP.
    pub(super) vip: VipId,
    /// The running VIP's mode (None: the change adds the VIP).
    pub(super) was: Option<lb_common::Mode>,
    /// Its backends the change brings without a known MAC, in address
    /// order.
    pub(super) unresolved: Vec<IpAddr>,
    /// Those of them the running VIP has: their tracked flows are
    /// rehashed to the backends with a MAC.
    pub(super) tracked: Vec<IpAddr>,
    /// Whether the running VIP can take packets and none of its backends
    /// in the next model has a MAC: unless one resolves, the change takes
    /// it out of service.
    pub(super) stops_serving: bool,
}

/// The VIPs of `next` (a change from `running`) with backends the change
/// brings to DSR at L2 whose MAC neither is configured nor `mac_of`
/// knows, each with what that does (see [`UnresolvedVip`]).
pub(super) fn unresolved_vips(
    running: &Model,
    next: &Model,
    mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
) -> Vec<UnresolvedVip> {
    let brought = brought_unresolved(running, next, |a| mac_of(a).is_some());
    next.vips
        .iter()
        .filter(|(_, v)| v.config.forwarding == lb_common::Mode::DsrL2)
        .filter_map(|(id, vip)| {
            let unresolved: Vec<IpAddr> = vip
                .backends
                .values()
                .filter(|b| b.config.mac.is_none() && brought.contains(&b.config.address))
                .map(|b| b.config.address)
                .collect();
            if unresolved.is_empty() {
                return None;
            }
            let before = running.vips.get(id);
            let tracked = unresolved
                .iter()
                .copied()
                .filter(|a| before.is_some_and(|v| v.backends.contains_key(a)))
                .collect();
            let serves_now = before.is_some_and(|v| {
                let desired = v.desired(*id, mac_of);
                desired
                    .backends
                    .iter()
                    .any(|d| d.can_take_packets(desired.mode))
            });
            let none_with_a_mac = vip
                .backends
                .values()
                .all(|b| b.config.mac.is_none() && mac_of(b.config.address).is_none());
            Some(UnresolvedVip {
                vip: *id,
                was: before.map(|v| v.config.forwarding),
                unresolved,
                tracked,
                stops_serving: serves_now && none_with_a_mac,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A DSR-L2 VIP with backend 198.19.2.11 without a MAC, and 198.19.2.12
    /// with one; a second VIP of `forwarding` with backend 198.19.2.21.
    fn model(forwarding: &str) -> (Model, VipId, VipId) {
        let text = format!(
            "interface = \"eth0\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"dsr-l2\"\n\
             [[vip.backend]]\naddress = \"198.19.2.11\"\n\
             [[vip.backend]]\naddress = \"198.19.2.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip]]\naddress = \"198.18.0.101\"\nport = 80\nforwarding = \"{forwarding}\"\n\
             [[vip.backend]]\naddress = \"198.19.2.21\"\n"
        );
        let config = Config::from_toml_str(&text, "lbd.toml").unwrap();
        let ids = (VipId::of(&config.vips[0]), VipId::of(&config.vips[1]));
        (Model::from_config(&config), ids.0, ids.1)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const UNKNOWN: fn(IpAddr) -> bool = |_| false;

    /// The MACs kept are those the model still needs from the neighbour
    /// table: a removed backend's is forgotten, so the same address added
    /// back later (maybe another host now) is resolved anew, and waited
    /// for, rather than sent to the old host's MAC; and the cache does not
    /// grow with every address ever used.
    #[test]
    fn a_removed_backends_mac_is_forgotten_so_a_re_add_resolves_it_anew() {
        let (running, id, _) = model("ipip");
        let mac = |last: u8| [2, 0, 0, 0, 0, last];
        let mut macs = HashMap::from([
            (ip("198.19.2.11"), mac(0x11)),
            // A configured MAC, a routed VIP's backend, a backend gone.
            (ip("198.19.2.12"), mac(0x12)),
            (ip("198.19.2.21"), mac(0x21)),
            (ip("198.19.2.99"), mac(0x99)),
        ]);
        forget_unwanted_macs(&mut macs, &running);
        assert_eq!(
            macs,
            HashMap::from([(ip("198.19.2.11"), mac(0x11))]),
            "the running backend's MAC is kept"
        );
        let mut removed = running.clone();
        removed.remove_backend(&id, ip("198.19.2.11")).unwrap();
        forget_unwanted_macs(&mut macs, &removed);
        assert!(macs.is_empty(), "{macs:?}");
        assert_eq!(
            brought_unresolved(&removed, &running, |a| macs.contains_key(&a)),
            [ip("198.19.2.11")],
            "added back, it is waited for"
        );
    }

    /// A backend already running without a MAC does not make a change
    /// wait, whatever the change (here a weight, then a backend removed).
    #[test]
    fn a_backend_already_unresolved_is_not_waited_for() {
        let (running, id, _) = model("dsr-l2");
        assert_eq!(
            wanted(&running),
            [ip("198.19.2.11"), ip("198.19.2.21")],
            "the model needs them"
        );
        let mut next = running.clone();
        next.set_weight(&id, ip("198.19.2.11"), 50).unwrap();
        assert!(brought_unresolved(&running, &next, UNKNOWN).is_empty());
        assert!(brought_unresolved(&running, &running.clone(), UNKNOWN).is_empty());
        let mut next = running.clone();
        next.remove_backend(&id, ip("198.19.2.12")).unwrap();
        assert!(brought_unresolved(&running, &next, UNKNOWN).is_empty());
    }

    /// A new backend without a MAC is waited for, unless its MAC is known
    /// or configured, or it is already a backend elsewhere that the
    /// running model waits for.
    #[test]
    fn a_new_backend_without_a_mac_is_waited_for() {
        let (running, id, other) = model("dsr-l2");
        let mut next = running.clone();
        next.add_backend(&id, crate::config::BackendConfig::new(ip("198.19.2.13")))
            .unwrap();
        assert_eq!(
            brought_unresolved(&running, &next, UNKNOWN),
            [ip("198.19.2.13")]
        );
        assert!(brought_unresolved(&running, &next, |a| a == ip("198.19.2.13")).is_empty());
        let mut next = running.clone();
        let configured = crate::config::BackendConfig {
            mac: Some("02:00:00:00:00:13".parse().unwrap()),
            ..crate::config::BackendConfig::new(ip("198.19.2.13"))
        };
        next.add_backend(&id, configured).unwrap();
        assert!(brought_unresolved(&running, &next, UNKNOWN).is_empty());
        // The same address, already waited for under another VIP.
        let mut next = running.clone();
        next.add_backend(&other, crate::config::BackendConfig::new(ip("198.19.2.11")))
            .unwrap();
        assert!(brought_unresolved(&running, &next, UNKNOWN).is_empty());
    }

    /// A backend whose configured MAC a change drops, and the backends of
    /// a VIP a change turns into DSR-L2, need resolving anew.
    #[test]
    fn a_backend_that_now_needs_a_mac_is_waited_for() {
        let (running, id, _) = model("dsr-l2");
        let mut next = running.clone();
        next.remove_backend(&id, ip("198.19.2.12")).unwrap();
        next.add_backend(&id, crate::config::BackendConfig::new(ip("198.19.2.12")))
            .unwrap();
        assert_eq!(
            brought_unresolved(&running, &next, UNKNOWN),
            [ip("198.19.2.12")]
        );
        let (routed, _, _) = model("ipip");
        assert_eq!(
            brought_unresolved(&routed, &running, UNKNOWN),
            [ip("198.19.2.21")]
        );
        assert!(brought_unresolved(&running, &routed, UNKNOWN).is_empty());
    }
}
