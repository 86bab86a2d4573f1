//! The node ids a node gives its peers in the sync handshake, cut to fit
//! the wire.

use std::net::SocketAddr;

use crate::sync;

/// A full-mesh node's id: its listen address, then `host/interface`, cut
/// to [`sync::wire::MAX_NODE_ID_LEN`] bytes. Peers are told apart by id
/// (see [`peers`](super::peers)); the listen address keeps the ids of one mesh unique
/// where hosts share a name (containers, namespaces, cloned images).
pub(crate) fn mesh_node_id(listen: SocketAddr, host: &str, interface: &str) -> String {
    fit_node_id(format!("{listen} {host}/{interface}"))
}

/// A VRRP pair's node id: `host/interface`, cut as [`mesh_node_id`] is
/// (a long FQDN would otherwise fail the config's check and stop lbd).
pub(crate) fn pair_node_id(host: &str, interface: &str) -> String {
    fit_node_id(format!("{host}/{interface}"))
}

/// `id` cut to [`sync::wire::MAX_NODE_ID_LEN`] bytes at a char boundary;
/// an id that fits is kept as is (peers know a node by it).
fn fit_node_id(mut id: String) -> String {
    let mut end = id.len().min(sync::wire::MAX_NODE_ID_LEN);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    id.truncate(end);
    id
}
