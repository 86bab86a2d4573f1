//! The `stopped` notify a SIGINT runs finishes before lbd exits: leaving
//! the runtime would kill it half-way. So does one of an instance stepped
//! down while lbd runs on.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{Host, Lab},
    support::wait_until,
};

use crate::{observe::wait_for_vip, setup::lab};

/// A one-node lab whose lbd (`lbd-a`, on the first LB node) is master
/// with a notify script that takes 1 s before it writes `STATE VRID` to
/// the returned file (slower than lbd's stop and step-down: a command
/// killed with lbd or with the instance never writes its line); returns
/// once the master line is there.
fn master_with_a_slow_notify(name: &str) -> (Lab, Host, PathBuf) {
    let mut lab = lab(1);
    let (a, b) = (lab.lbs[0].clone(), lab.lbs[1].clone());
    let notes = lab.dir.join(format!("{name}.log"));
    let notify = lab.dir.join(format!("{name}.sh"));
    std::fs::write(
        &notify,
        format!(
            "#!/bin/sh\nsleep 1\necho \"$1 $2\" >> {}\n",
            notes.display()
        ),
    )
    .expect("notify script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&notify)
        .status()
        .expect("chmod");
    let config = lab
        .ha_config(&a, &b, &["b1"], 150, true)
        .expect("config")
        .replace(
            "[[vrrp]]\n",
            &format!("[[vrrp]]\nnotify = \"{}\"\n", notify.display()),
        );
    // Alone on the link: it becomes master.
    lab.start_lbd_on(&a, "lbd-a", &config).expect("lbd");
    wait_for_vip(&lab, &a, Instant::now(), Duration::from_secs(10));
    wait_until("the master notify", Duration::from_secs(5), || {
        written(&notes).contains("master 51")
    });
    (lab, a, notes)
}

/// What the notify script wrote so far.
fn written(notes: &Path) -> String {
    std::fs::read_to_string(notes).unwrap_or_default()
}

#[test]
fn the_stopped_notify_of_a_sigint_runs_to_its_end() {
    let (mut lab, _a, notes) = master_with_a_slow_notify("notify-exit");
    let read = || written(&notes);
    let status = lab.interrupt("lbd-a").expect("SIGINT");
    assert!(status.success(), "{status:?}\n{}", lab.log("lbd-a"));
    // lbd has exited: the line is there already, not on its way.
    assert!(
        read().contains("stopped 51"),
        "{:?}\n{}",
        read(),
        lab.log("lbd-a")
    );
}

/// The `stopped` notify of an instance stepped down while lbd runs on (its
/// interface deleted: lbd waits for it to come back) runs to its end:
/// it is not killed with the stopped instance.
#[test]
fn the_stopped_notify_of_a_lost_interface_runs_while_lbd_waits() {
    let (mut lab, a, notes) = master_with_a_slow_notify("notify-lost");
    let read = || written(&notes);

    lab.delete_interface(&a).expect("delete eth0");
    wait_until("the stopped notify", Duration::from_secs(10), || {
        read().contains("stopped 51")
    });
    assert!(
        lab.is_running("lbd-a"),
        "lbd waits for its interface:\n{}",
        lab.log("lbd-a")
    );
    assert!(
        lab.log("lbd-a").contains("stepping down"),
        "{}",
        lab.log("lbd-a")
    );
}
