//! End to end in a namespace lab: a client, lbd with XDP on the LB node's
//! interface, and three real nginx backends on one L2 segment. Needs root.

use std::net::IpAddr;

use lb_common::stats::Counter;
use lb_tests::{
    client,
    lab::{self, Lab, VIP4, VIP6},
    lbd_maps::LbdMaps,
    support::assert_even_shares,
};

const REQUESTS: u32 = 3_000;

#[test]
fn requests_through_the_vip_spread_evenly_and_the_counters_agree() {
    let prefix;
    {
        let mut lab = Lab::start(3).expect("lab");
        prefix = lab.prefix.clone();
        lab.wait_for_backends().expect("nginx up");
        let config = lab.lbd_config();
        let pid = lab.start_lbd(&config).expect("lbd");

        let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), REQUESTS).expect("burst");
        println!("IPv4: {REQUESTS} requests, one connection each: {tally:?}");
        assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.errors);
        assert_eq!(tally.succeeded(), u64::from(REQUESTS));
        assert_even_shares("L2 lab", &tally.by_backend, REQUESTS);

        // What the XDP program counted agrees with what the client saw:
        // one new tracked flow per connection, on the backend that answered.
        let maps = LbdMaps::of_process(pid).expect("lbd's maps");
        let vip = maps.vip(0).expect("VIP counters");
        assert_eq!(
            vip.new_flows,
            u64::from(REQUESTS),
            "new flows on the IPv4 VIP"
        );
        assert!(
            vip.packets >= 4 * u64::from(REQUESTS),
            "packets {}",
            vip.packets
        );
        assert_eq!(
            maps.counter(Counter::ConntrackNew).expect("counter"),
            u64::from(REQUESTS)
        );
        assert_eq!(maps.counter(Counter::DropNoBackend).expect("counter"), 0);
        assert_eq!(maps.counter(Counter::DropMalformed).expect("counter"), 0);
        // Backend ids 1..=3 are the IPv4 VIP's backends (applied first, in
        // address order: b1, b2, b3).
        for (id, name) in [(1u32, "b1"), (2, "b2"), (3, "b3")] {
            let backend = maps.backend(id).expect("backend counters");
            assert_eq!(
                backend.new_flows, tally.by_backend[name],
                "flows the data plane sent to {name} vs responses from it"
            );
        }
        let packets: u64 = (1..=3)
            .map(|id| maps.backend(id).expect("backend").packets)
            .sum();
        assert_eq!(
            packets, vip.packets,
            "per-backend packets add up to the VIP's"
        );

        let tally6 = client::burst(&lab.client.netns, IpAddr::V6(VIP6), 300).expect("burst");
        println!("IPv6: 300 requests: {tally6:?}");
        assert_eq!(
            tally6.failed, 0,
            "failed IPv6 requests: {:?}",
            tally6.errors
        );
        assert_eq!(tally6.by_backend.len(), 3);
        assert_eq!(maps.vip(1).expect("VIP counters").new_flows, 300);
        assert!(lab.is_running("lbd"), "lbd died:\n{}", lab.log("lbd"));
    }
    assert_eq!(
        lab::namespaces_with_prefix(&prefix).expect("ip netns list"),
        Vec::<String>::new(),
        "lab left namespaces behind"
    );
}

#[test]
fn lbd_refuses_a_bad_config_untouched_and_detaches_cleanly_on_sigint() {
    let mut lab = Lab::start(1).expect("lab");
    let good = lab.lbd_config();
    let bad = good.replacen(
        "  address = \"198.18.0.11\"\n",
        "  address = \"198.18.0.11\"\n  weight = 20000\n",
        1,
    );
    assert_ne!(good, bad);
    let path = lab.dir.join("bad.toml");
    std::fs::write(&path, &bad).expect("write config");
    let lbd = std::env::var("LBD_BIN").unwrap_or_else(|_| {
        let exe = std::env::current_exe().expect("exe");
        exe.parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .join("lbd")
            .to_string_lossy()
            .into_owned()
    });
    let netns = lab.lb.netns.clone();
    lab.spawn(
        "lbd-bad",
        &netns,
        &lbd,
        &["--config", &path.to_string_lossy()],
    )
    .expect("spawn");
    let status = lab
        .wait_exit("lbd-bad", std::time::Duration::from_secs(20))
        .expect("exit");
    let log = lab.log("lbd-bad");
    assert!(!status.success(), "lbd accepted a bad config:\n{log}");
    assert!(
        log.contains("bad.toml:") && log.contains("weight") && log.contains("20000"),
        "unclear error:\n{log}"
    );
    assert!(
        !lab.xdp_attached(&lab.lb.clone()).expect("ip link"),
        "a refused config attached XDP"
    );

    lab.start_lbd(&good).expect("lbd");
    assert!(lab.xdp_attached(&lab.lb.clone()).expect("ip link"));
    let status = lab.interrupt("lbd").expect("SIGINT");
    assert!(
        status.success(),
        "lbd exit status {status}:\n{}",
        lab.log("lbd")
    );
    assert!(
        !lab.xdp_attached(&lab.lb.clone()).expect("ip link"),
        "XDP left attached after SIGINT"
    );
    let pins = lab.pin_dir_of(&lab.lb.clone());
    assert!(!pins.exists(), "{} left after SIGINT", pins.display());
    assert!(lab.log("lbd").contains("detached"), "{}", lab.log("lbd"));
}
