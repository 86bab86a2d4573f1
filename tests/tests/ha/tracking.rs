//! A node that cannot serve (its VIP has no healthy backend) lowers its
//! priority (`track_no_backend`) and gives the VIP away, takes it back once
//! fixed, and the `notify` script runs on every transition.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::VIP4,
    support::{status_on, wait_until},
};
use lb_userspace::vrrp::State;

use crate::{
    observe::{vrrp_state, wait_for_vip},
    setup::lab,
};

#[test]
fn a_node_that_cannot_serve_gives_the_vip_away_and_notify_runs_on_transitions() {
    let mut lab = lab(3);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let notify = lab.dir.join("notify.sh");
    std::fs::write(
        &notify,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> {}/notify-$(cat /proc/sys/kernel/hostname)-$PPID.log\n",
            lab.dir.display()
        ),
    )
    .expect("notify script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&notify)
        .status()
        .expect("chmod");
    let with_notify = |config: String| {
        config.replace(
            "[[vrrp]]\n",
            &format!(
                "[[vrrp]]\nnotify = \"{}\"\ntrack_no_backend = 60\n",
                notify.display()
            ),
        )
    };
    let config_a = with_notify(
        lab.ha_config(&a, &b, &["b1", "b2", "b3"], 150, true)
            .expect("config"),
    );
    let config_b = with_notify(
        lab.ha_config(&b, &a, &["b1", "b2", "b3"], 100, true)
            .expect("config"),
    );
    lab.start_lbd_on(&a, "lbd-a", &config_a).expect("lbd");
    lab.start_lbd_on(&b, "lbd-b", &config_b).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_until("lb2 to be backup", Duration::from_secs(5), || {
        vrrp_state(&lab, &b) == State::Backup
    });
    let notes = || -> String {
        std::fs::read_dir(&lab.dir)
            .expect("lab dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("notify-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    wait_until(
        "notify to report master and backup",
        Duration::from_secs(5),
        || {
            let n = notes();
            n.contains("master 51") && n.contains("backup 51")
        },
    );

    // lb's checks now fail (port 81 is closed): its VIP has no healthy
    // backend, so it advertises 150 - 60 = 90 and lb2 (100) preempts.
    let broken = config_a.replace("[vip.health]\n", "[vip.health]\nport = 81\n");
    lab.write_lbd_config_named("lbd-a", &broken)
        .expect("config");
    lab.signal("lbd-a", libc::SIGHUP).expect("SIGHUP");
    wait_for_vip(&lab, &b, Instant::now(), Duration::from_secs(10));
    wait_until("lb to step down", Duration::from_secs(5), || {
        !lab.holds_vip(&a).unwrap_or(true)
    });
    let s = status_on(&lab, &a);
    assert_eq!(s.vrrp[0].priority, 90, "{:?}", s.vrrp[0]);
    assert!(s.vips[0].all_down);
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 100).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);

    // Fixed again: it takes the VIP back (preempt on).
    lab.write_lbd_config_named("lbd-a", &config_a)
        .expect("config");
    lab.signal("lbd-a", libc::SIGHUP).expect("SIGHUP");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    assert_eq!(status_on(&lab, &a).vrrp[0].priority, 150);
}
