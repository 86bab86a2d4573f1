//! What the integration tests share beyond the lab itself: lbctl calls
//! that must succeed, status lookups, and bounded waits. Every helper
//! panics with context on failure, as a test assertion does.

use std::{
    net::IpAddr,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use lb_userspace::api::schema::{BackendStatus, Status};

use crate::lab::{lbd_binary, Host, Lab};

/// Polls `condition` every 20 ms until it holds; panics naming `what` if it
/// does not within `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// lbctl (next to lbd) against the lab's lbd, for tests that need the
/// process itself (its pipes, its signals); stdin is closed.
pub fn lbctl_command(lab: &Lab, args: &[&str]) -> Command {
    let mut command = Command::new(lbd_binary().expect("lbd binary").with_file_name("lbctl"));
    command
        .arg("--socket")
        .arg(lab.admin_socket())
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs lbctl against the lab's lbd; panics unless it exits 0. Returns its
/// stdout.
pub fn lbctl_ok(lab: &Lab, args: &[&str]) -> String {
    let out = lab.lbctl(args).expect("run lbctl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lbctl {args:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `lbctl status --json` of the lab's (first) lbd.
pub fn status(lab: &Lab) -> Status {
    serde_json::from_str(&lbctl_ok(lab, &["status", "--json"])).expect("status JSON")
}

/// `lbctl status --json` of lbd on `node`.
pub fn status_on(lab: &Lab, node: &Host) -> Status {
    let out = lab.lbctl_on(node, &["status", "--json"]).expect("lbctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Backend `address` of the first VIP in `status`; panics if it is not
/// there.
pub fn backend(status: &Status, address: &str) -> BackendStatus {
    let address: IpAddr = address.parse().expect("address");
    status.vips[0]
        .backends
        .iter()
        .find(|b| b.address == address)
        .cloned()
        .expect("backend in status")
}

/// Node counter `name` (0 when absent).
pub fn counter(status: &Status, name: &str) -> u64 {
    status.counters.get(name).copied().unwrap_or(0)
}
