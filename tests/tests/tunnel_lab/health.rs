//! Health checks sent through the tunnel take out a backend whose decap
//! stopped (a plain check would still pass: nginx answers directly) and
//! bring it back once its decap runs again.

use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    http::burst,
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    support::{grown, nonzero, status_on, vip_status, wait_until},
    tunnel::{self, TunnelSpec, TunnelVip},
};
use lb_userspace::api::schema::HealthStatus;

use crate::setup::start_lbd;

/// Health of backend `address` of `vip` on the lab's lbd.
fn health(lab: &Lab, vip: IpAddr, address: IpAddr) -> Option<HealthStatus> {
    vip_status(&status_on(lab, &lab.lb), vip)
        .backends
        .iter()
        .find(|b| b.address == address)
        .map(|b| b.health)
}

#[test]
fn checks_through_the_tunnel_take_out_a_backend_whose_decap_stopped() {
    let started = Instant::now();
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let lb = lab.lb.clone();
    let (b1, b2) = (lab.backends[0].clone(), lab.backends[1].clone());
    let vip = IpAddr::V4(VIP4);
    let b2_address = IpAddr::V4(b2.ipv4);
    for forwarding in ["ipip", "gue"] {
        let what = format!("{forwarding}, checks through the tunnel");
        let name = format!("lbd-{forwarding}");
        let spec = TunnelSpec {
            vips: vec![TunnelVip::V4],
            health: true,
            through_tunnel: true,
            ..TunnelSpec::new("xdp", forwarding, &["b1", "b2"])
        };
        start_lbd(&mut lab, &lb, &name, &spec);
        let up = Instant::now();
        while !vip_status(&status_on(&lab, &lb), vip)
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
        {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "{what}: the backends are not up after 10 s: {:?}; counters {:?}; b1's decap counters {:?}",
                vip_status(&status_on(&lab, &lb), vip).backends,
                nonzero(&status_on(&lab, &lb)),
                tunnel::decap_counters(&lab, &b1)
            );
            thread::sleep(Duration::from_millis(50));
        }
        // Checks are encapsulated: the counter grows with the next check
        // sent (every 300 ms; 10 s leaves room for a loaded machine).
        let before = status_on(&lab, &lb);
        let waiting = Instant::now();
        loop {
            let after = status_on(&lab, &lb);
            if grown(&before, &after, "hc_encap") > 0 {
                break;
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "{what}: no check was encapsulated in 10 s; counters {:?}",
                nonzero(&after)
            );
            thread::sleep(Duration::from_millis(50));
        }

        tunnel::stop_decap(&mut lab, &b2).expect("stop b2's decap");
        wait_until(&format!("{what}: b2 down"), Duration::from_secs(10), || {
            health(&lab, vip, b2_address) == Some(HealthStatus::Down)
        });
        // A plain check would still pass: nginx on b2 answers directly.
        let url = format!("http://{}:{HTTP_PORT}/health", b2.ipv4);
        let (code, body) = http_get(&lb.netns, &url).expect("plain GET to b2");
        assert_eq!((code, body.as_str()), (200, "ok\n"), "{what}: {url}");
        let without = burst(&lab.client.netns, vip, 200);
        assert_eq!(without.failed, 0, "{what}: {:?}", without.errors);
        assert_eq!(
            without.by_backend.keys().collect::<Vec<_>>(),
            vec![&b1.name],
            "{what}: b2 took connections with its decap stopped"
        );

        tunnel::start_decap(&mut lab, &b2).expect("restart b2's decap");
        wait_until(
            &format!("{what}: b2 up again"),
            Duration::from_secs(10),
            || health(&lab, vip, b2_address) == Some(HealthStatus::Up),
        );
        let with = burst(&lab.client.netns, vip, 300);
        assert_eq!(with.failed, 0, "{what}: {:?}", with.errors);
        assert_eq!(with.by_backend.len(), 2, "{what}: {:?}", with.by_backend);
        lab.interrupt(&name).expect("lbd stops");
        // The checks came from lbd's tunnel sources, which lb-decap's
        // `sources` admit: none refused for its source.
        for backend in [&b1, &b2] {
            let counters = tunnel::decap_counters(&lab, backend).expect("decap counters");
            assert_eq!(
                counters.get("drop_not_source"),
                Some(&0),
                "{what}: {}'s lb-decap {counters:?}",
                backend.name
            );
        }
    }
    eprintln!("tunnel health test took {:?}", started.elapsed());
}
