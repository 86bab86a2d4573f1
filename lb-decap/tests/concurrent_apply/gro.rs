//! The interface features that make UDP GRO merge GUE datagrams before tc
//! ingress, read from a veth.

use crate::fixtures::{run, veth_pair, Lab};

/// The features that make UDP GRO merge GUE datagrams before tc ingress
/// are read from the interface (a veth can turn them on), so `apply`
/// can warn when it serves an interface at tc with them on.
#[test]
fn udp_gro_forwarding_is_read_from_the_interface() {
    let lab = Lab::new("gro");
    veth_pair(&lab);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.netns,
            "ethtool",
            "-K",
            "v1",
            "rx-udp-gro-forwarding",
            "on",
            "rx-gro-list",
            "on",
        ],
    );
    let (v0, v1) = lab.inside(|| {
        (
            lb_decap::gro::merging("v0").expect("v0"),
            lb_decap::gro::merging("v1").expect("v1"),
        )
    });
    assert!(v0.is_empty(), "{v0:?}");
    assert_eq!(v1, lb_decap::gro::MERGING);
}
