//! Starting lbd in the tunnel lab (`tunnel::start_lab`: the routed lab
//! with lb-decap on every backend): its config comes from
//! `tunnel::lbd_config` and a [`TunnelSpec`], so every test starts lbd
//! the same way.

use lb_tests::{
    lab::{Host, Lab},
    tunnel::{self, TunnelSpec},
};

/// Starts lbd on `node` as process `name` with `spec`.
pub(crate) fn start_lbd(lab: &mut Lab, node: &Host, name: &str, spec: &TunnelSpec) {
    let config = tunnel::lbd_config(lab, node, spec).expect("lbd config");
    lab.start_lbd_on(node, name, &config)
        .unwrap_or_else(|e| panic!("{name} on {}: {e:#}", node.name));
}
