//! The lab itself: lb-decap runs on every routed backend (VIPs on `lo`,
//! reached through r2), plain packets pass, and the lab leaves nothing
//! behind (namespaces, pins, its directory).

use lb_tests::{
    lab::{http_get, HTTP_PORT, VIP4, VIP6},
    support::ip,
    tunnel,
};

#[test]
fn the_tunnel_lab_runs_decap_on_every_routed_backend_and_leaves_nothing_behind() {
    let mut lab = tunnel::start_lab(1, 2).expect("tunnel lab");
    let (prefix, dir) = (lab.prefix.clone(), lab.dir.clone());
    let mut pins = Vec::new();
    for backend in lab.backends.clone() {
        // The VIPs on lo, never answered for by ARP.
        let lo = ip(&["-n", &backend.netns, "addr", "show", "dev", "lo"]);
        for vip in [
            format!("{VIP4}/32"),
            format!("{VIP6}/128"),
            format!("{}/32", tunnel::VIP4_IN6),
        ] {
            assert!(
                lo.contains(&vip),
                "{} lacks {vip} on lo:\n{lo}",
                backend.name
            );
        }
        // Routed: the LB reaches it through r2, never on-link.
        let route = ip(&[
            "-n",
            &lab.lb.netns,
            "route",
            "get",
            &backend.ipv4.to_string(),
        ]);
        assert!(route.contains(" via "), "LB → {}: {route}", backend.name);
        // lb-decap attached at XDP with the backend's addresses, every VIP,
        // both encapsulations, and nothing counted yet but plain packets.
        assert!(lab.xdp_attached(&backend).expect("ip link"));
        let status = tunnel::decap_command(&lab, &backend, "status").expect("status");
        for want in [
            "attached: xdp on eth0".to_owned(),
            "ipip: on".to_owned(),
            format!("gue: on, port {}", tunnel::GUE_PORT),
            format!("address: {}", backend.ipv4),
            format!("address: {}", backend.ipv6),
            format!("vip: {VIP4}:{HTTP_PORT}/tcp"),
            format!("vip: [{VIP6}]:{HTTP_PORT}/tcp"),
            format!("source: {}", tunnel::SOURCE4),
            format!("source: {}", tunnel::SOURCE6),
        ] {
            assert!(
                status.contains(&want),
                "{}: no {want:?} in\n{status}",
                backend.name
            );
        }
        let counters = tunnel::decap_counters(&lab, &backend).expect("counters");
        assert_eq!(counters.get("decap_ipip"), Some(&0), "{counters:?}");
        assert_eq!(counters.get("decap_gue"), Some(&0), "{counters:?}");
        // Plain packets pass: nginx answers on its own address.
        let url = format!("http://{}:{HTTP_PORT}/", backend.ipv4);
        let (code, body) = http_get(&lab.client.netns, &url).expect("GET");
        assert_eq!((code, body), (200, format!("{}\n", backend.name)));
        pins.push(tunnel::decap_pin_dir(&lab, &backend));
    }
    // Stopped and started again, lb-decap keeps (or retakes) its program.
    let b1 = lab.backends[0].clone();
    tunnel::stop_decap(&mut lab, &b1).expect("stop");
    assert!(!lab.xdp_attached(&b1).expect("ip link"), "still attached");
    tunnel::start_decap(&mut lab, &b1).expect("restart");
    drop(lab);
    assert_eq!(
        lb_tests::lab::namespaces_with_prefix(&prefix).expect("ip netns list"),
        Vec::<String>::new()
    );
    for pin in pins {
        assert!(!std::path::Path::new(&pin).exists(), "{pin} remains");
    }
    assert!(!dir.exists(), "{} remains", dir.display());
}
