//! The node ids: unique per listener in a mesh, cut to fit the wire.

use super::*;

#[test]
fn mesh_node_ids_are_unique_per_listener_and_fit_the_wire() {
    let a = mesh_node_id("198.18.0.2:7946".parse().unwrap(), "lab", "eth0");
    let b = mesh_node_id("198.18.0.3:7946".parse().unwrap(), "lab", "eth0");
    assert_eq!(a, "198.18.0.2:7946 lab/eth0");
    assert_ne!(a, b);
    let long = mesh_node_id("[2001:2::1]:7946".parse().unwrap(), &"é".repeat(40), "eth0");
    assert!(long.len() <= sync::wire::MAX_NODE_ID_LEN && long.starts_with("[2001:2::1]:7946 "));
    SyncConfig::new(vec![0; 16], long).validate().unwrap();
}

#[test]
fn pair_node_ids_fit_the_wire_and_short_ones_stay_as_they_were() {
    assert_eq!(pair_node_id("lb-a", "eth0"), "lb-a/eth0");
    // A 60-byte FQDN and its interface: 65 bytes, one over the limit.
    let fqdn = format!("{}.example.com", "n".repeat(48));
    assert_eq!(fqdn.len(), 60);
    let id = pair_node_id(&fqdn, "eth0");
    assert_eq!(id, format!("{fqdn}/eth"));
    let multibyte = pair_node_id(&"é".repeat(40), "eth0");
    assert!(multibyte.len() <= sync::wire::MAX_NODE_ID_LEN);
    for node_id in [id, multibyte] {
        SyncConfig::new(vec![0; 16], node_id).validate().unwrap();
    }
}
