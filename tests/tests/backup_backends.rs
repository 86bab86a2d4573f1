//! A backup backend (`backup = true`, keepalived's `sorry_server`,
//! HAProxy's and nginx's `backup`) with real nginx backends: it takes no
//! new connection while another backend can; when every other backend
//! fails its checks it takes them all (the VIP does not drop them); when
//! one returns, new connections go to it and those the backup took finish
//! on the backup.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    time::Duration,
};

use lb_tests::{
    http::{cut_streams, open_stream},
    lab::{http_get, in_netns, Host, Lab, HTTP_PORT, VIP4},
    support::{vip_status, wait_every_backend_up, wait_until},
};

/// The port the VIP's TCP check connects to: the test opens and closes
/// a listener on it in each backend's namespace to make it pass or fail
/// (nginx keeps serving throughout).
const CHECK_PORT: u16 = 9098;

#[test]
fn the_backup_takes_over_when_the_others_fail_and_keeps_its_connections_when_they_return() {
    let mut lab = Lab::start(3).expect("lab");
    let [b1, b2, b3] = [0, 1, 2].map(|i| lab.backends[i].clone());
    let mut listeners = [&b1, &b2, &b3].map(|b| Some(check_listener(b)));
    let checks = format!(
        "[vip.health]\ncheck = \"tcp\"\nport = {CHECK_PORT}\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 2\n"
    );
    let plain = lab.lbd_config_for(&["b1", "b2", "b3"], &checks);
    let b3_table = format!("address = \"{}\"\n", b3.ipv4);
    assert!(plain.contains(&b3_table), "{plain}");
    let config = plain.replace(&b3_table, &format!("{b3_table}  backup = true\n"));
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    wait_every_backend_up(&lab, vip);
    let status = lab.status().expect("status");
    let v = vip_status(&status, vip);
    assert!(!v.on_backups, "{v:?}");
    let backup = v
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(b3.ipv4))
        .expect("b3");
    assert!(
        backup.backup && backup.alive && backup.share == 0.0,
        "{backup:?}"
    );
    let netns = lab.client.netns.clone();
    let served = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (code, body) = http_get(&netns, &format!("http://{VIP4}:{HTTP_PORT}/"))
                    .expect("a new request");
                assert_eq!(code, 200, "{body}");
                body.trim().to_owned()
            })
            .collect()
    };
    let before = served(20);
    assert!(
        before.iter().all(|b| b == "b1" || b == "b2"),
        "the backup took new connections while b1 and b2 were up: {before:?}"
    );

    // b1 and b2 fail their checks: the backup takes every new connection.
    listeners[0] = None;
    listeners[1] = None;
    wait_until("the VIP on its backup", Duration::from_secs(10), || {
        let status = lab.status().expect("status");
        let v = vip_status(&status, vip);
        v.on_backups && !v.all_down
    });
    let text = lab.lbctl(&["status"]).expect("lbctl status");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("ON BACKUPS"), "{text}");
    assert!(text.contains("enabled (backup)"), "{text}");
    let during = served(10);
    assert!(
        during.iter().all(|b| b == "b3"),
        "new connections went elsewhere than the backup: {during:?}"
    );
    // Long-lived connections (six seconds each), all on the backup.
    let streams: Vec<_> = (0..6).map(|_| open_stream(&netns, vip)).collect();
    assert!(
        streams.iter().all(|s| s.backend == "b3"),
        "{:?}",
        streams.iter().map(|s| &s.backend).collect::<Vec<_>>()
    );

    // b1 passes its checks again: new connections go to it; the backup
    // stands by, alive, and finishes what it took.
    listeners[0] = Some(check_listener(&b1));
    wait_until(
        "b1 up, the VIP off its backup",
        Duration::from_secs(10),
        || {
            let status = lab.status().expect("status");
            !vip_status(&status, vip).on_backups
        },
    );
    let after = served(10);
    assert!(
        after.iter().all(|b| b == "b1"),
        "new connections after b1 returned: {after:?}"
    );
    let status = lab.status().expect("status");
    let backup = vip_status(&status, vip)
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(b3.ipv4))
        .cloned()
        .expect("b3");
    assert!(backup.alive && backup.share == 0.0, "{backup:?}");
    let total = streams.len();
    let cut = cut_streams(streams);
    assert!(
        cut.is_empty(),
        "{} of {total} connections on the backup cut when b1 returned: {cut:?}",
        cut.len()
    );
    drop(listeners);
}

/// A listener on `CHECK_PORT` in `backend`'s namespace: its check passes
/// while it is open.
fn check_listener(backend: &Host) -> TcpListener {
    let address = SocketAddr::new(IpAddr::V4(backend.ipv4), CHECK_PORT);
    in_netns(&backend.netns, move || TcpListener::bind(address))
        .expect("the backend's namespace")
        .expect("listening on the check port")
}
