//! The lab and the lbd pair: two LB nodes (VIPs left to VRRP) in front
//! of nginx backends, and lbd started on both with `Lab::ha_config`'s
//! VRRP and replication config, so every test builds its lab the same way.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{Host, Lab, LabSpec},
    support::wait_until,
};
use lb_userspace::vrrp::State;

use crate::observe::{vrrp_state, wait_for_vip};

/// The lab with two LB nodes (no static VIP: VRRP places it) and
/// `backends` nginx backends, once nginx is up.
pub(crate) fn lab(backends: usize) -> Lab {
    let lab = Lab::start_spec(LabSpec {
        lbs: 2,
        backends,
        static_vip: false,
    })
    .expect("lab");
    lab.wait_for_backends().expect("nginx up");
    lab
}

/// Starts lbd on both nodes: `lb` with `prio_a`, `lb2` with `prio_b`.
fn start_pair(lab: &mut Lab, backends: &[&str], prio_a: u8, prio_b: u8, preempt: bool) {
    start_pair_at(lab, backends, prio_a, prio_b, preempt, "xdp");
}

/// `start_pair` with the packet path at `attach` ("xdp" or "tc").
pub(crate) fn start_pair_at(
    lab: &mut Lab,
    backends: &[&str],
    prio_a: u8,
    prio_b: u8,
    preempt: bool,
    attach: &str,
) {
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let hook = format!("attach = \"{attach}\"\n");
    let config_a = hook.clone()
        + &lab
            .ha_config(&a, &b, backends, prio_a, preempt)
            .expect("config");
    let config_b = hook
        + &lab
            .ha_config(&b, &a, backends, prio_b, preempt)
            .expect("config");
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd on lb");
    lab.start_lbd_on(&b, "lbd-b", &config_b)
        .expect("lbd on lb2");
}

/// Starts the pair (lb 150, lb2 100) and waits for lb to be master and lb2
/// backup; returns both hosts.
pub(crate) fn elected_pair(lab: &mut Lab, backends: &[&str], preempt: bool) -> (Host, Host) {
    start_pair(lab, backends, 150, 100, preempt);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    wait_for_vip(lab, &a, Instant::now(), Duration::from_secs(10));
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(lab, &b) == State::Backup
    });
    (a, b)
}
