//! How lbd ends, as its service manager sees it (needs root): a stop for
//! good (SIGINT) that ends with errors exits with the status the systemd
//! unit does not restart (`RestartPreventExitStatus=`), so a node taken
//! off stays off. (The unit's list is checked against the constant in
//! lb-userspace's unit tests.)

use std::time::Duration;

use lb_tests::lab::Lab;
use lb_userspace::daemon::EXIT_STOPPED_FOR_GOOD_WITH_ERRORS;

/// BIRD is down (nothing listens on its control socket): the stop for
/// good cannot withdraw the node's announcements, keeps the pinned
/// program forwarding and fails, naming BIRD, with its own exit status.
/// With status 1 systemd would start a new lbd 2 s later, which would
/// adopt that program and serve again.
#[test]
fn a_stop_for_good_that_fails_exits_with_the_status_systemd_does_not_restart() {
    let mut lab = Lab::start(1).expect("lab");
    let lb = lab.lb.clone();
    let config = format!(
        "{}\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        lab.lbd_config_for(&["b1"], ""),
        lab.dir.join("no-bird.ctl").display(),
        lab.dir.join("bgp").join("vips.conf").display(),
        lab.dir.join("state").join("node.state").display()
    );
    lab.start_lbd(&config).expect("lbd");
    lab.signal("lbd", libc::SIGINT).expect("SIGINT");
    let status = lab
        .wait_exit("lbd", Duration::from_secs(30))
        .expect("lbd exits");
    let log = lab.log("lbd");
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_STOPPED_FOR_GOOD_WITH_ERRORS)),
        "{log}"
    );
    assert!(
        log.contains("did not take the withdrawal") && log.contains("does not restart"),
        "{log}"
    );
    assert!(
        lab.xdp_attached(&lb).expect("ip link"),
        "BIRD may still announce the node: the program stays\n{log}"
    );

    // A restart stop is not this: it exits 0.
    lab.start_lbd_on(&lb, "lbd2", &config).expect("lbd2");
    let status = lab.terminate("lbd2").expect("SIGTERM");
    assert!(status.success(), "{}", lab.log("lbd2"));
}
