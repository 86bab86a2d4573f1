//! The order of a commit's steps, with fake steps: forwarding on before
//! a routed VIP's write.

use super::*;

/// Records the forwarding switch in the fake maps' log of writes, so
/// its place among them shows; the maps are the fake's.
struct Recorded {
    balancer: crate::reconcile::Balancer,
    maps: crate::dataplane::FakeMaps,
}

impl CommitSteps for Recorded {
    fn switch_forwarding_on(&mut self, families: &std::collections::BTreeSet<bool>) {
        for ipv6 in families {
            self.maps.log.push(format!(
                "forwarding {}",
                if *ipv6 { "ipv6" } else { "ipv4" }
            ));
        }
    }

    fn write_maps(&mut self, staged: Staged) -> Result<ApplyReport, ReconcileError> {
        self.balancer.commit(&mut self.maps, staged)
    }
}

/// A commit that makes a routed VIP live switches forwarding on for
/// its family before the write that makes the VIP live, so no first
/// packet meets a FIB lookup forwarding refuses; a commit of DSR-L2
/// VIPs only switches nothing.
#[test]
fn forwarding_goes_on_before_a_routed_vip_is_live() {
    let own = crate::tunnel::OwnAddresses {
        ipv4: Some("198.18.0.2".parse().unwrap()),
        ipv6: None,
    };
    let mut balancer = crate::reconcile::Balancer::new(4);
    balancer.set_tunnel(crate::tunnel::resolve(
        &crate::config::TunnelSettings::default(),
        3,
        &own,
    ));
    let mut steps = Recorded {
        balancer,
        maps: crate::dataplane::FakeMaps::default(),
    };
    let vip = |mode: lb_common::Mode| {
        let mut vip = crate::config::VipConfig::new(
            "198.18.0.100".parse().unwrap(),
            80,
            crate::config::Protocol::Tcp,
        );
        vip.table_size = 13;
        vip.forwarding = mode;
        vip.backends.push(crate::config::BackendConfig {
            mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x11])),
            ..crate::config::BackendConfig::new("198.19.2.11".parse().unwrap())
        });
        vec![crate::reconcile::DesiredVip::from_config(&vip, &|_| None)]
    };
    let staged = steps.balancer.stage(&vip(lb_common::Mode::DsrL2)).unwrap();
    forwarding_then_maps(&mut steps, staged).unwrap();
    assert!(
        !steps.maps.log.iter().any(|l| l.starts_with("forwarding")),
        "{:?}",
        steps.maps.log
    );
    steps.maps.log.clear();
    // The same VIP switched to ipip: its flip is the VIP's write.
    let staged = steps.balancer.stage(&vip(lb_common::Mode::Ipip)).unwrap();
    forwarding_then_maps(&mut steps, staged).unwrap();
    let log = &steps.maps.log;
    let forwarding = log.iter().position(|l| l == "forwarding ipv4");
    let live = log.iter().position(|l| l.starts_with("vip "));
    assert!(
        forwarding.is_some() && live.is_some() && forwarding < live,
        "{log:?}"
    );
}
