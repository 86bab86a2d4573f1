//! Peers are other nodes: a VRRP unicast peer or a replication peer is
//! never an address of this node (a VIP, a NAT address, one a `[[vrrp]]`
//! moves). Shared with the API, which refuses a VIP that would make a
//! configured peer this node's own.

use std::net::IpAddr;

use toml::Spanned;

use super::vrrp_setting_at;
use crate::config::{
    checker::Checker, raw::RawConfig, vrrp, ConfigError, SyncSettings, VipConfig, VrrpConfig,
};

impl Checker<'_> {
    /// Unicast adverts go to the other nodes over the instance's family
    /// (an advert of the other family cannot be encoded, and both nodes
    /// would then be master), so a peer is of that family and is no
    /// address of this node.
    pub(super) fn unicast_peers_are_others(
        &self,
        raw: &[Spanned<vrrp::RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let Some(raw_vrrp) = raw.get(index) else {
                continue;
            };
            let family_v4 = instance.addresses.first().is_none_or(IpAddr::is_ipv4);
            for (position, peer) in instance.unicast_peers.iter().enumerate() {
                let at = raw_vrrp
                    .get_ref()
                    .peer_item(position)
                    .map_or(raw_vrrp.span().start, |v| v.span().start);
                let field = format!("vrrp[{index}].unicast_peers[{position}]");
                let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
                let problem = if peer.is_ipv4() != family_v4 {
                    let why = if raw_vrrp.get_ref().lists_addresses() {
                        String::new()
                    } else {
                        " (it lists no addresses, so it takes the family of the first VIP)"
                            .to_owned()
                    };
                    Some(format!(
                        "{peer} is {} but vrrp[{index}] moves {} addresses{why}: adverts go over the instance's family; list the peer's {} address",
                        family(peer.is_ipv4()),
                        family(family_v4),
                        family(family_v4)
                    ))
                } else if peer.is_loopback() || *peer == IpAddr::V4(std::net::Ipv4Addr::BROADCAST) {
                    Some(format!(
                        "{peer} is not another node's address: list the other nodes' addresses"
                    ))
                } else {
                    peer_is_this_node(*peer, instances, vips)
                };
                if let Some(problem) = problem {
                    return Err(self.invalid(at, &field, problem));
                }
            }
        }
        Ok(())
    }

    /// A replication peer (`sync_peer`, `[sync] peers`) is another node,
    /// as a unicast peer is: an address of this node (a VIP, a NAT
    /// address, one a `[[vrrp]]` moves) reaches this node or whichever
    /// node holds it, never the peer's listener (which admits its
    /// configured peers only), so replication would never work.
    pub(super) fn replication_peers_are_others(
        &self,
        raw: &RawConfig,
        instances: &[VrrpConfig],
        vips: &[VipConfig],
        sync: Option<&SyncSettings>,
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let Some(peer) = instance.sync_peer else {
                continue;
            };
            let Some(problem) = peer_is_this_node(peer.ip(), instances, vips) else {
                continue;
            };
            let at = vrrp_setting_at(raw, index, |r| r.sync_peer.as_ref());
            return Err(self.invalid(at, &format!("vrrp[{index}].sync_peer"), problem));
        }
        if let (Some(settings), Some(table)) = (sync, &raw.sync) {
            for (position, peer) in settings.peers.iter().enumerate() {
                let Some(problem) = peer_is_this_node(peer.ip(), instances, vips) else {
                    continue;
                };
                let at = table
                    .get_ref()
                    .get()
                    .peer_item(position)
                    .map_or(table.span().start, |v| v.span().start);
                return Err(self.invalid(at, &format!("sync.peers[{position}]"), problem));
            }
        }
        Ok(())
    }
}

/// Why VRRP unicast peer `peer` is an address of one of `vips` (its
/// address or its NAT address), so this node's own and not another
/// node's: the file's rule (`unicast_peers_are_others`), shared with a
/// VIP added at run time so the API refuses what the file does. `name`
/// names VIP `index` of `vips`.
pub(crate) fn peer_on_a_vip(
    peer: IpAddr,
    vips: &[VipConfig],
    name: impl Fn(usize) -> String,
) -> Option<String> {
    if let Some(v) = vips.iter().position(|v| v.address == peer) {
        return Some(format!(
            "{peer} is {}'s address, so this node's own: a peer is another node's own address",
            name(v)
        ));
    }
    vips.iter()
        .position(|v| v.nat.is_some_and(|n| n.source == peer))
        .map(|v| {
            format!(
                "{peer} is the NAT address of {}, so this node's own: a peer is another node's own address",
                name(v)
            )
        })
}

/// Why `peer` (a VRRP unicast peer, a replication peer) is an address of
/// this node and not another node's: one a `[[vrrp]]` of `instances`
/// moves, or one of `vips`' addresses or NAT addresses
/// ([`peer_on_a_vip`]).
fn peer_is_this_node(peer: IpAddr, instances: &[VrrpConfig], vips: &[VipConfig]) -> Option<String> {
    if let Some(other) = instances.iter().position(|i| i.addresses.contains(&peer)) {
        return Some(format!(
            "{peer} is an address vrrp[{other}] moves, so this node's own: a peer is another node's own address"
        ));
    }
    peer_on_a_vip(peer, vips, |v| format!("vip[{v}]"))
}
