//! lb-decap on a backend in a namespace lab (see `lb_tests::decaplab`):
//! every encapsulation reaches a TCP service on the VIPs and the answer
//! names the client (its address preserved), at XDP and at tc; a restart of
//! lb-decap keeps the same program unwrapping (a long-lived connection
//! survives it), SIGHUP applies a changed config (including a switch of
//! hook), bad input changes nothing, and cleanup leaves the interface as it
//! was. Needs root; run with the lb-decap binary built.

use std::{net::IpAddr, time::Duration};

use lb_tests::{
    decaplab::{ask, DecapLab, RelayMode, Wrap, CLIENT4, CLIENT6, VIP4, VIP6},
    support::{outcome, wait_until},
};

fn config(attach: &str, vips: &str) -> String {
    format!("interface = \"eth0\"\nattach = \"{attach}\"\nxdp_mode = \"native\"\nvips = [{vips}]\n")
}

const VIPS: &str = "\"198.18.0.100:80/tcp\", \"[2001:2::100]:80/tcp\"";

/// Every wrap the balancer uses, for both VIPs, through lb-decap.
fn every_form_is_served(lab: &DecapLab, hook: &str) {
    let forms = [
        (Wrap::Ipip, false, IpAddr::from(VIP4), "ipip"),
        (Wrap::Ipip, true, VIP6.into(), "ip6ip6"),
        (Wrap::Ipip, true, VIP4.into(), "4in6"),
        (Wrap::Gue1, false, VIP4.into(), "gue1 v4"),
        (Wrap::Gue1, true, VIP6.into(), "gue1 v6"),
        (Wrap::Gue0, false, VIP4.into(), "gue0 v4"),
        (Wrap::Gue0, true, VIP6.into(), "gue0 v6"),
        (Wrap::Gue1, true, VIP4.into(), "gue1 4in6"),
    ];
    for (wrap, outer_v6, vip, name) in forms {
        lab.set_mode(RelayMode { wrap, outer_v6 });
        let client: IpAddr = if vip.is_ipv6() {
            CLIENT6.into()
        } else {
            CLIENT4.into()
        };
        let answer = lab
            .request(vip)
            .unwrap_or_else(|e| panic!("{name} at {hook}: {e:#}"));
        assert_eq!(
            answer,
            format!("served {vip} for {client}"),
            "{name} at {hook}"
        );
    }
}

fn status(lab: &DecapLab) -> String {
    let out = lab.lb_decap(&["status"]).expect("lb-decap status");
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(code, 0, "status failed: {stderr}");
    stdout
}

fn counter(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("counter {name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

fn attached_line(status: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with("attached:"))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn lb_decap_serves_every_encapsulation_survives_restarts_and_cleans_up() {
    let mut lab = DecapLab::start().expect("decap lab");

    // Nothing decapsulates yet: the tunnel packets reach a stack without
    // ipip/fou and are lost.
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    assert!(lab.request(VIP4.into()).is_err(), "no decap, no answer");

    // A start that fails (native XDP on lo) changes nothing.
    let lo = lab
        .write_config(
            "lo.toml",
            &format!("interface = \"lo\"\nxdp_mode = \"native\"\naddresses = [\"198.19.2.11\"]\nvips = [{VIPS}]\n"),
        )
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &lo.to_string_lossy()])
            .expect("apply"),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("attaching xdp_decap to lo"), "{stderr}");
    assert!(
        !lab.pin_dir.exists(),
        "a failed start left {}",
        lab.pin_dir.display()
    );

    // XDP, the addresses taken from the interface.
    let xdp = lab
        .write_config("xdp.toml", &config("xdp", VIPS))
        .expect("config");
    let xdp_arg = xdp.to_string_lossy().into_owned();
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &xdp_arg])
            .expect("apply"),
    );
    assert_eq!(code, 0, "apply: {stderr}");
    assert!(lab.backend_link().expect("link").contains("prog/xdp"));
    every_form_is_served(&lab, "xdp");
    let s = status(&lab);
    assert!(
        s.contains("address: 198.19.2.11") && s.contains("address: 2001:2:0:2::11"),
        "{s}"
    );
    assert!(
        s.contains("vip: 198.18.0.100:80/tcp") && s.contains("vip: [2001:2::100]:80/tcp"),
        "{s}"
    );
    assert!(
        counter(&s, "decap_ipip") >= 3 && counter(&s, "decap_gue") >= 5,
        "{s}"
    );
    let attached = attached_line(&s);
    assert!(
        attached.starts_with("attached: xdp on eth0 (program id"),
        "{s}"
    );

    // A long-lived connection across restarts of the foreground daemon:
    // the same program keeps running, so nothing is lost.
    lab.set_mode(RelayMode {
        wrap: Wrap::Gue1,
        outer_v6: false,
    });
    let mut stream = lab.connect(VIP4.into()).expect("long-lived connection");
    assert_eq!(
        ask(&mut stream).expect("first answer"),
        format!("served {VIP4} for {CLIENT4}")
    );
    for round in 0..2 {
        let name = format!("run-{round}");
        lab.spawn_lb_decap(&name, &["run", "--config", &xdp_arg])
            .expect("lb-decap run");
        wait_until("lb-decap run to apply", Duration::from_secs(10), || {
            lab.log(&name).contains("running; SIGHUP")
        });
        let text = lab.log(&name);
        assert!(text.contains("configuration updated in place"), "{text}");
        assert_eq!(
            ask(&mut stream).expect("answer while running"),
            format!("served {VIP4} for {CLIENT4}")
        );
        lab.signal(&name, libc::SIGTERM).expect("SIGTERM");
        let code = lab.wait(&name).expect("lb-decap run exits");
        assert!(code.success(), "lb-decap run exited with {code}");
        assert_eq!(
            ask(&mut stream).expect("answer after stop"),
            format!("served {VIP4} for {CLIENT4}")
        );
        assert_eq!(
            attached_line(&status(&lab)),
            attached,
            "the same program stays attached"
        );
    }

    // Bad input changes nothing.
    let bad = lab
        .write_config("bad.toml", &config("xdp", "\"198.18.0.100:80/sctp\""))
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &bad.to_string_lossy()])
            .expect("apply"),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("sctp"),
        "the error names the bad value: {stderr}"
    );
    let s = status(&lab);
    assert!(s.contains("vip: [2001:2::100]:80/tcp"), "{s}");
    assert_eq!(attached_line(&s), attached);

    // A VIP taken out of the config is no longer unwrapped.
    let only4 = lab
        .write_config("only4.toml", &config("xdp", "\"198.18.0.100:80/tcp\""))
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &only4.to_string_lossy()])
            .expect("apply"),
    );
    assert_eq!(code, 0, "{stderr}");
    let before = counter(&status(&lab), "drop_not_vip");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: true,
    });
    assert!(
        lab.request(VIP6.into()).is_err(),
        "a VIP not configured is not served"
    );
    assert!(counter(&status(&lab), "drop_not_vip") > before);

    // SIGHUP with the hook switched to tc: the tc link comes, XDP goes.
    lab.spawn_lb_decap("run-tc", &["run", "--config", &xdp_arg])
        .expect("lb-decap run");
    wait_until("lb-decap run to apply", Duration::from_secs(10), || {
        lab.log("run-tc").contains("running; SIGHUP")
    });
    std::fs::write(&xdp, config("tc", VIPS)).expect("rewrite config");
    lab.signal("run-tc", libc::SIGHUP).expect("SIGHUP");
    wait_until("the tc link", Duration::from_secs(10), || {
        lab.tc_programs().is_ok_and(|p| !p.is_empty())
            && !lab.backend_link().is_ok_and(|l| l.contains("prog/xdp"))
    });
    every_form_is_served(&lab, "tc");
    assert!(attached_line(&status(&lab)).starts_with("attached: tc on eth0"));
    lab.signal("run-tc", libc::SIGTERM).expect("SIGTERM");
    assert!(lab.wait("run-tc").expect("exit").success());
    assert!(
        !lab.tc_programs().expect("tcx").is_empty(),
        "the program outlives lb-decap"
    );

    // Cleanup leaves nothing: no program on the interface, no pins.
    let (code, _, stderr) = outcome(&lab.lb_decap(&["--cleanup"]).expect("cleanup"));
    assert_eq!(code, 0, "{stderr}");
    assert!(lab.tc_programs().expect("tcx").is_empty());
    assert!(!lab.backend_link().expect("link").contains("prog/xdp"));
    assert!(
        !lab.pin_dir.exists(),
        "pins left at {}",
        lab.pin_dir.display()
    );
    let (code, _, stderr) = outcome(&lab.lb_decap(&["status"]).expect("status"));
    assert_ne!(code, 0);
    assert!(stderr.contains("nothing pinned"), "{stderr}");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    assert!(lab.request(VIP4.into()).is_err(), "no decap after cleanup");
}
