//! Unit tests of the `vrrp_instance` reader's notes.

use super::*;
use crate::import::blocks::{parse, Dialect};

/// The notes of the one `vrrp_instance` in `text`.
fn notes(text: &str) -> Vec<String> {
    let statements = parse("k.conf", text, Dialect::Keepalived).expect("parses");
    let vrrp = instance("k.conf", &statements[0], &[]).expect("an instance");
    vrrp.notes.into_iter().map(|n| n.text).collect()
}

/// keepalived's `unicast_ttl` below 255 sends adverts across routers;
/// lbd takes a peer's advert only at TTL 255 unless
/// `unicast_peer_hops` says how many routers lie between: the import
/// says so (the number of routers cannot be derived from the TTL).
#[test]
fn a_unicast_ttl_below_255_says_to_set_unicast_peer_hops() {
    let routed = notes(
        "vrrp_instance A {\n  virtual_router_id 7\n  unicast_ttl 64\n  unicast_peer {\n    198.18.0.3\n  }\n}\n",
    );
    assert!(
        routed
            .iter()
            .any(|n| n.starts_with("unicast_ttl 64:") && n.contains("unicast_peer_hops")),
        "{routed:?}"
    );
    // 255, keepalived's default: nothing to say.
    let linked = notes("vrrp_instance A {\n  virtual_router_id 7\n  unicast_ttl 255\n}\n");
    assert!(
        linked.iter().all(|n| !n.contains("unicast_ttl")),
        "{linked:?}"
    );
}
