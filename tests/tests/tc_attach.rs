//! lbd with `attach = "tc"` in the L2 lab (client, lb, three nginx DSR
//! backends): the same packet path as a tc ingress program on a tcx link,
//! pinned like the XDP link. Balancing and counters, a hitless SIGTERM +
//! restart, a clean SIGINT, switching hooks (and the connection table's
//! size) across restarts, and the refusal of a foreign tcx program.
//! Needs root.

use std::{collections::BTreeMap, net::IpAddr, thread, time::Duration};

use lb_tests::{
    client::{self, KeepAlive},
    lab::{in_netns, tc_filter_listing, Lab, VIP4, VIP6},
    support::{assert_even_shares, assert_tracked_on, load, status},
};
use lb_userspace::config::Attach;

const REQUESTS: u32 = 3_000;

/// The lab's config (both VIPs, every backend) at the tc hook.
fn tc_config(lab: &Lab) -> String {
    format!("attach = \"tc\"\n{}", lab.lbd_config())
}

/// `tc filter show dev eth0 ingress` on the LB node: empty when no
/// cls_bpf filter is there; a tc that fails fails the test.
fn tc_filters(lab: &Lab) -> String {
    tc_filter_listing(&lab.lb.netns, "eth0", "ingress").unwrap_or_else(|e| panic!("{e:#}"))
}

/// Asserts a burst of `REQUESTS` new connections all succeed, spread 33 %
/// ± 8 %, and that each backend's new-flow counter (lbd's status) grew by
/// exactly the responses it gave.
fn assert_balanced(lab: &Lab) {
    let before: BTreeMap<IpAddr, u64> = status(lab).vips[0]
        .backends
        .iter()
        .map(|b| (b.address, b.new_flows))
        .collect();
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), REQUESTS).expect("burst");
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.errors);
    assert_eq!(tally.succeeded(), u64::from(REQUESTS));
    assert_even_shares("tc attach", &tally.by_backend, REQUESTS);
    let after = status(lab);
    for backend in &lab.backends {
        let counted = after.vips[0]
            .backends
            .iter()
            .find(|b| b.address == IpAddr::V4(backend.ipv4))
            .expect("backend in status")
            .new_flows
            - before.get(&IpAddr::V4(backend.ipv4)).copied().unwrap_or(0);
        assert_eq!(
            counted,
            tally.by_backend.get(&backend.name).copied().unwrap_or(0),
            "new flows the tc program sent to {} vs responses from it",
            backend.name
        );
    }
    eprintln!("tc: {REQUESTS} requests, one connection each: {tally:?}");
}

#[test]
fn tc_balances_restarts_hitlessly_and_leaves_nothing_on_sigint() {
    let mut lab = Lab::start(3).expect("lab");
    // A tc redirect hands the switch port an ordinary skb: no pass-through
    // XDP program is needed there (and none runs, so this proves it).
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let config = tc_config(&lab);
    lab.start_lbd(&config).expect("lbd");

    assert!(!lab.xdp_attached(&lb).expect("ip link"), "no XDP at tc");
    // The start verified tc's balancer only: `xdp_lb` is loaded when
    // first used, never at tc.
    let held = lab.programs_held_by("lbd").expect("bpftool");
    assert!(held.iter().any(|p| p == "tc_lb"), "{held:?}");
    assert!(!held.iter().any(|p| p.starts_with("xdp_")), "{held:?}");
    let programs = lab.tc_program_ids(&lb).expect("tcx query");
    assert_eq!(programs.len(), 1, "one tcx ingress program: {programs:?}");
    assert!(
        tc_filters(&lab).trim().is_empty(),
        "a tcx link, not a cls_bpf filter (lbd's fallback on kernels before 6.6: \
         the suite needs Linux 6.6 or later)"
    );
    let pins = lab.pin_dir_of(&lb);
    assert!(pins.join("tc-link-eth0").exists(), "the tcx link is pinned");
    let first = status(&lab);
    assert_eq!(first.attach, Attach::Tc);
    assert_eq!(first.xdp_mode, None);
    let out = lab.lbctl(&["status"]).expect("lbctl status");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("lbd on eth0 (tc)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    assert_balanced(&lab);
    let v6 = client::burst(&lab.client.netns, IpAddr::V6(VIP6), 300).expect("IPv6 burst");
    assert_eq!(v6.failed, 0, "IPv6 at tc: {:?}", v6.errors);
    assert_eq!(v6.by_backend.len(), 3, "IPv6 at tc: {:?}", v6.by_backend);

    // SIGTERM under load, with kept-alive connections: the pinned link
    // keeps forwarding, the next lbd swaps its program in on that link.
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 24).expect("open");
    let served: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();
    let running = load(&lab, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(300));
    let stopped = lab.terminate("lbd").expect("SIGTERM");
    assert!(stopped.success(), "{}", lab.log("lbd"));
    assert_eq!(
        lab.tc_program_ids(&lb).expect("tcx query"),
        programs,
        "the program keeps running with lbd gone"
    );
    for (conn, backend) in conns.iter_mut().zip(&served) {
        assert_eq!(&conn.request().expect("request with lbd gone"), backend);
    }
    lab.start_lbd_on(&lb, "lbd2", &config).expect("restart");
    // Before any kept-alive connection sends again: the new lbd holds
    // each one's flow, pinned to its backend. Same config, same backends:
    // with a lost table the next request would take Maglev's same pick
    // and pass, so only this shows the table was adopted.
    let locals: Vec<_> = conns.iter().map(|c| c.local().expect("local")).collect();
    for (local, backend) in locals.iter().zip(&served) {
        assert_tracked_on(
            &lab,
            &lb,
            IpAddr::V4(VIP4),
            *local,
            backend,
            "after SIGTERM + restart",
        );
    }
    thread::sleep(Duration::from_millis(500));
    let results = running.finish().expect("load");
    let failed = client::failures(&results);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across SIGTERM + restart: {failed:?}",
        failed.len(),
        results.len()
    );
    for (conn, backend) in conns.iter_mut().zip(&served) {
        assert_eq!(
            &conn.request().expect("request after the restart"),
            backend,
            "a kept-alive connection moved across the restart"
        );
    }
    let log = lab.log("lbd2");
    assert!(log.contains("adopting the pinned data plane"), "{log}");
    // Every pinned map fits the same lbd: none is started afresh.
    assert!(!log.contains("does not fit this lbd"), "{log}");
    assert!(
        log.contains("tc program replaced atomically on the pinned link"),
        "{log}"
    );
    assert!(status(&lab).adopted);
    let now = lab.tc_program_ids(&lb).expect("tcx query");
    assert_eq!(now.len(), 1, "still one tcx program: {now:?}");
    assert_ne!(now, programs, "the new lbd runs its own program");
    eprintln!(
        "tc: SIGTERM + restart under load: {} requests, 0 failed; 24 kept-alive connections, 0 moved",
        results.len()
    );

    // SIGINT: nothing left on the interface, no pins.
    let stopped = lab.interrupt("lbd2").expect("SIGINT");
    assert!(stopped.success(), "{}", lab.log("lbd2"));
    assert!(lab.tc_program_ids(&lb).expect("tcx query").is_empty());
    assert!(tc_filters(&lab).trim().is_empty());
    assert!(!lab.xdp_attached(&lb).expect("ip link"));
    assert!(!pins.exists(), "pins left in {}", pins.display());
}

/// xdp → tc → xdp across SIGTERM restarts: each lbd attaches its hook,
/// then removes the other one's pinned link; the connection table is
/// adopted throughout, so kept-alive connections stay where they are.
/// The tc lbd also runs a larger table (`conntrack_size`), so each switch
/// carries the flows over into a table of another size: the last copy
/// (after the swap) is made only once the other hook's program, which
/// still wrote the old table, is gone.
#[test]
fn switching_between_xdp_and_tc_across_restarts_keeps_connections() {
    // The pass-through XDP programs stay: the XDP phases need them, and
    // tc works with them as well.
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let xdp = lab.lbd_config();
    let tc = tc_config(&lab).replace("conntrack_size = 65536", "conntrack_size = 131072");
    assert_ne!(tc, tc_config(&lab), "the tc lbd's table is larger");
    // In `name`'s log, the other hook's removal comes before the final
    // copy of the old table's flows.
    let carried_after_removal = |lab: &Lab, name: &str| {
        let log = lab.log(name);
        let removed = log
            .find("the other hook's pinned link removed")
            .unwrap_or_else(|| panic!("{name}: no removal in\n{log}"));
        let swapped = log
            .lines()
            .find(|l| {
                l.contains("flows carried over from the previous lbd's connection table")
                    && l.contains("swapped")
            })
            .and_then(|l| log.find(l))
            .unwrap_or_else(|| panic!("{name}: no final copy in\n{log}"));
        assert!(
            removed < swapped,
            "{name}: the final copy ran while the other hook's program still wrote the old table:\n{log}"
        );
    };
    lab.start_lbd_on(&lb, "xdp1", &xdp).expect("lbd at xdp");
    let mut conns = KeepAlive::open(&lab.client.netns, IpAddr::V4(VIP4), 12).expect("open");
    let served: Vec<String> = conns
        .iter_mut()
        .map(|c| c.request().expect("request"))
        .collect();
    let locals: Vec<_> = conns.iter().map(|c| c.local().expect("local")).collect();

    // Called after each restart, before the kept-alive connections send
    // again: each one's flow is tracked to its backend, so the table was
    // carried over (in a lost one the same backends would give the next
    // request Maglev's same pick, and it would pass).
    let mut assert_kept = |lab: &Lab, when: &str| {
        for (local, backend) in locals.iter().zip(&served) {
            assert_tracked_on(lab, &lab.lb, IpAddr::V4(VIP4), *local, backend, when);
        }
        for (conn, backend) in conns.iter_mut().zip(&served) {
            assert_eq!(
                &conn.request().unwrap_or_else(|e| panic!("{when}: {e:#}")),
                backend,
                "{when}"
            );
        }
        let started = std::time::Instant::now();
        let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 600).expect("burst");
        assert_eq!(tally.failed, 0, "{when}: {:?}", tally.errors);
        // End to end, one client connection at a time: the client, not
        // the hook, sets the pace here.
        eprintln!(
            "E2E {when}: 600 requests on new connections in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    };
    assert_kept(&lab, "at xdp");

    assert!(lab.terminate("xdp1").expect("SIGTERM").success());
    lab.start_lbd_on(&lb, "tc1", &tc).expect("lbd at tc");
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "XDP link removed");
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx").len(), 1);
    let pins = lab.pin_dir_of(&lb);
    assert!(!pins.join("xdp-link-eth0").exists());
    assert!(lab
        .log("tc1")
        .contains("the other hook's pinned link removed"));
    carried_after_removal(&lab, "tc1");
    assert!(
        !lb_userspace::pinning::PinDir::new(&pins)
            .map_path(lb_userspace::conntrack::legacy::RESIZED_PIN)
            .exists(),
        "the resized table's pin goes after the swap"
    );
    assert_eq!(status(&lab).attach, Attach::Tc);
    assert_kept(&lab, "after switching to tc");

    assert!(lab.terminate("tc1").expect("SIGTERM").success());
    lab.start_lbd_on(&lb, "xdp2", &xdp)
        .expect("lbd at xdp again");
    assert!(lab.xdp_attached(&lb).expect("ip link"));
    assert!(
        lab.tc_program_ids(&lb).expect("tcx").is_empty(),
        "tc link removed"
    );
    assert!(!pins.join("tc-link-eth0").exists());
    carried_after_removal(&lab, "xdp2");
    assert_eq!(status(&lab).attach, Attach::Xdp);
    assert_kept(&lab, "after switching back to xdp");
    assert!(lab.interrupt("xdp2").expect("SIGINT").success());
    assert!(!pins.exists());
}

/// A tcx ingress program lbd did not pin (another tool's) is refused
/// with `attach = "tc"`, and left alone.
#[test]
fn a_foreign_tcx_program_is_refused() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    // Another tool's program: lbd's own tc program, loaded and attached by
    // this test (not pinned in lbd's pin_dir), held while lbd starts.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let netns = lb.netns.clone();
    let holder = thread::spawn(move || {
        in_netns(&netns, move || {
            let attached = (|| -> anyhow::Result<_> {
                let mut dataplane =
                    lb_userspace::dataplane::Dataplane::load(lb_userspace::dataplane::MapSizes {
                        max_vips: 1,
                        conntrack: 1024,
                        nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                        half_open: 1024,
                    })?;
                dataplane.tc_program()?.attach_with_options(
                    "eth0",
                    aya::programs::TcAttachType::Ingress,
                    aya::programs::tc::TcAttachOptions::TcxOrder(
                        aya::programs::LinkOrder::default(),
                    ),
                )?;
                Ok(dataplane)
            })();
            match attached {
                Ok(_held) => {
                    ready_tx.send(None).ok();
                    let _ = hold_rx.recv_timeout(Duration::from_secs(60));
                }
                Err(error) => {
                    ready_tx.send(Some(error.to_string())).ok();
                }
            }
        })
    });
    let error = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("holder");
    assert!(error.is_none(), "attaching the foreign program: {error:?}");
    let foreign = lab.tc_program_ids(&lb).expect("tcx");
    assert_eq!(foreign.len(), 1);

    let config = format!("attach = \"tc\"\n{}", lab.lbd_config_for(&["b1"], ""));
    let refused = lab.start_lbd(&config);
    assert!(
        refused.is_err(),
        "lbd started next to a foreign tcx program"
    );
    let log = lab.log("lbd");
    assert!(
        log.contains(&format!(
            "interface eth0 already has tc program id {} (tc_lb) on its tcx ingress",
            foreign[0]
        )),
        "{log}"
    );
    assert_eq!(
        lab.tc_program_ids(&lb).expect("tcx"),
        foreign,
        "the foreign program is left alone"
    );
    hold_tx.send(()).ok();
    holder.join().expect("holder thread").expect("netns");
}

/// SIGTERM leaves the tc program forwarding on its pinned link; `lbd
/// --cleanup` then removes the link (and with it the program) and the pins.
#[test]
fn cleanup_after_sigterm_removes_the_tc_link() {
    let mut lab = Lab::start(2).expect("lab");
    lab.without_pass_through_xdp();
    lab.wait_for_backends().expect("nginx up");
    let lb = lab.lb.clone();
    let config = format!("attach = \"tc\"\n{}", lab.lbd_config_for(&["b1", "b2"], ""));
    lab.start_lbd(&config).expect("lbd");
    assert!(lab.terminate("lbd").expect("SIGTERM").success());
    assert_eq!(lab.tc_program_ids(&lb).expect("tcx").len(), 1);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 50).expect("burst");
    assert_eq!(tally.failed, 0, "with lbd gone: {:?}", tally.errors);

    lab.lbd_offline_ok(&lb, "lbd", "--cleanup");
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());
    assert!(tc_filters(&lab).trim().is_empty());
    let pins = lab.pin_dir_of(&lb);
    assert!(!pins.exists(), "pins left in {}", pins.display());
}
