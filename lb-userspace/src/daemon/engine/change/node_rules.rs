//! The file's rules a runtime change must still keep against what runs:
//! the settings a restart fixes (the VRRP instances and their peers, the
//! `[sync]` mesh, `[tunnel]`'s sources, the hook, the maps' size), checked
//! before a change is staged.

use super::ChangeError;
use crate::{
    daemon::engine::{nat, Engine},
    dataplane::{newly_translating, HookChoice, Hooked, Translating},
    model::{Edit, Model},
};

impl Engine {
    /// The file's rule that no VIP or backend lies inside the running
    /// `[tunnel]` outer-source prefixes, for VIPs and backends added at
    /// run time (a backend would drop the tunnel's packets as coming from
    /// its own address).
    pub(super) fn tunnel_sources_hold(&self, edit: &Edit) -> Option<String> {
        let tunnel = &self.config.tunnel;
        let hold = crate::config::outer_sources_hold;
        match edit {
            Edit::AddVip(vip) => hold(tunnel, vip.address, "VIP").or_else(|| {
                vip.backends
                    .iter()
                    .find_map(|b| hold(tunnel, b.address, "backend"))
            }),
            Edit::AddBackend(_, backend) => hold(tunnel, backend.address, "backend"),
            _ => None,
        }
    }

    /// Why `vips` (a reload's file, or a VIP added at run time) cannot be
    /// served: this lbd runs generic XDP and they add NAT or tunnelled
    /// VIPs (new ones, or DSR-L2 ones switched), which generic XDP cannot
    /// translate (see `dataplane::hook_choice`).
    pub(super) fn generic_xdp_refuses(&self, vips: &[crate::config::VipConfig]) -> Option<String> {
        let generic = crate::config::XdpMode::Generic;
        if self.hooked != Hooked::Xdp(generic) {
            return None;
        }
        let running =
            |id: &crate::vip_id::VipId| self.model.vips.get(id).map(|v| v.config.forwarding);
        let added = Translating::of(newly_translating(running, vips));
        match added.choose(generic, false) {
            HookChoice::Refuse => Some(added.refusal(&format!(
                "lbd runs generic XDP on {}, which cannot take the NAT or tunnelled VIP(s) added (attach and xdp_mode change at a restart)",
                self.interface.name
            ))),
            HookChoice::Native | HookChoice::Generic | HookChoice::Tc => None,
        }
    }

    /// The addresses the running VRRP instances move.
    pub(super) fn vrrp_addresses(&self) -> Vec<std::net::IpAddr> {
        self.vrrp
            .iter()
            .flat_map(|i| i.config().addresses.iter().copied())
            .collect()
    }

    /// The running VRRP instances' settings (fixed at start), for the
    /// file's rules on a VIP added at run time.
    pub(super) fn vrrp_configs(&self) -> Vec<&crate::config::VrrpConfig> {
        self.vrrp.iter().map(|i| i.config()).collect()
    }

    /// What to tell the operator when a VIP added at run time (`lbctl vip
    /// add`, a reload) has an address no running VRRP instance moves and
    /// the running `[bgp]` does not announce: a warning, not a refusal
    /// (the address may be put on the interface by hand).
    pub(super) fn vip_address_left_behind(&self, vip: &crate::config::VipConfig) -> Option<String> {
        let moved: Vec<&[std::net::IpAddr]> = self
            .vrrp
            .iter()
            .map(|i| i.config().addresses.as_slice())
            .collect();
        let announced = self
            .config
            .bgp
            .as_ref()
            .is_some_and(|bgp| bgp.covers(vip.address, false));
        nat::unmoved_vip_address(vip, &moved, announced)
    }

    /// The model's rule on the maps' size, for this engine's maps.
    pub(super) fn fits_the_maps(&self, next: &Model) -> Result<(), ChangeError> {
        Ok(crate::model::fits_the_maps(
            next.vips.len(),
            self.model.vips.len(),
            self.dataplane.sizes().max_vips,
        )?)
    }
}

/// As a reload refuses it (the file's rule, `nat_sources_move`, on the
/// running VRRP instances' addresses, fixed at start): a NAT VIP added
/// at run time whose address a running instance moves but whose NAT
/// address it does not (`left_behind`, see `nat_address_left_behind`).
/// Refused, not warned of: taken, it would be used at once from a node
/// that may lose the VIP at a failover, and `config dump` would write a
/// file that does not load. Only an add brings a NAT address.
pub(super) fn nat_address_refuses(
    edit: &Edit,
    left_behind: impl Fn(&crate::config::VipConfig) -> Option<String>,
) -> Option<String> {
    match edit {
        Edit::AddVip(vip) => left_behind(vip),
        _ => None,
    }
}

/// As the file refuses it: a backend of `model` at an address a running
/// VRRP instance moves (`moved`). On the master that address is this
/// node's: the backend's packets would come back here, its checks would
/// reach the node itself, and `config dump` would write a file that does
/// not load.
pub(super) fn backend_on_a_vrrp_address(
    model: &Model,
    moved: &[std::net::IpAddr],
) -> Option<String> {
    model.vips.iter().find_map(|(vip, v)| {
        v.backends.keys().find(|b| moved.contains(b)).map(|backend| {
            format!(
                "backend {backend} of VIP {vip} is an address a VRRP instance moves: the master would take the backend's packets; a VRRP address is an address of this load balancer"
            )
        })
    })
}

/// As the file refuses it (`config::peer_on_a_vip`): a VIP added at run
/// time (`lbctl vip add`, a reload's file) whose address or NAT address is
/// a unicast peer or the `sync_peer` of a running VRRP instance
/// (`running`, whose peers are fixed at start). That address is another
/// node's: this one would hold it too (and replication would connect to
/// itself), and `config dump` would write a file that does not load.
pub(super) fn vip_on_a_vrrp_peer(
    vip: &crate::config::VipConfig,
    running: &[&crate::config::VrrpConfig],
) -> Option<String> {
    let name = |_: usize| format!("VIP {}", crate::vip_id::VipId::of(vip));
    running.iter().find_map(|instance| {
        let unicast = instance
            .unicast_peers
            .iter()
            .enumerate()
            .map(|(p, peer)| (format!("unicast_peers[{p}]"), *peer));
        let sync = instance
            .sync_peer
            .map(|peer| ("sync_peer".to_owned(), peer.ip()));
        unicast.chain(sync).find_map(|(key, peer)| {
            crate::config::peer_on_a_vip(peer, std::slice::from_ref(vip), name).map(|why| {
                format!(
                    "{key} of the running [[vrrp]] with vrid {}: {why}; the running instances' peers change when lbd restarts",
                    instance.vrid
                )
            })
        })
    })
}

/// [`vip_on_a_vrrp_peer`] for the running `[sync]` mesh (`running`,
/// its peers fixed at start): a VIP there would be this node's address,
/// so replication would connect to this node instead of the peer.
pub(super) fn vip_on_a_mesh_peer(
    vip: &crate::config::VipConfig,
    running: Option<&crate::config::SyncSettings>,
) -> Option<String> {
    let name = |_: usize| format!("VIP {}", crate::vip_id::VipId::of(vip));
    running?.peers.iter().enumerate().find_map(|(p, peer)| {
        crate::config::peer_on_a_vip(peer.ip(), std::slice::from_ref(vip), name).map(|why| {
            format!(
                "peers[{p}] of the running [sync]: {why} (a reload takes the file's peers only while [sync] listens where it did with the same key file; those wait for a restart)"
            )
        })
    })
}
