//! What the integration tests share beyond the lab itself: lbctl calls
//! that must succeed, status lookups, and bounded waits. Every helper
//! panics with context on failure, as a test assertion does.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    process::{Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use lb_userspace::api::schema::{BackendStatus, HealthStatus, Status, VipStatus};

use crate::{
    client::Load,
    lab::{lbd_binary, Host, Lab, HTTP_PORT, VIP4},
};

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

/// Runs lbctl against the lab's lbd on a thread of its own (e.g. `drain
/// --wait` while the test goes on); join for its output.
pub fn lbctl_in_background(lab: &Lab, args: &[&str]) -> thread::JoinHandle<Output> {
    let mut command = lbctl_command(lab, args);
    thread::spawn(move || command.output().expect("lbctl"))
}

/// Runs lbctl against the lab's lbd: (exit code, stdout, stderr), for
/// tests of its failures.
pub fn lbctl_outcome(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    outcome(&lab.lbctl(args).expect("run lbctl"))
}

/// A finished process's (exit code, stdout, stderr); -1 when a signal
/// ended it.
pub fn outcome(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

/// Waits (10 s at most) until the replication channel of lbd on `node`
/// (the master) is connected to its peer.
pub fn wait_replication(lab: &Lab, node: &Host) {
    wait_until("replication to connect", Duration::from_secs(10), || {
        status_on(lab, node)
            .replication
            .is_some_and(|r| r.connected)
    });
}

/// Waits (`limit` at most) until lbd on `node` has VRRP instances and
/// every one is backup (an lbd without any is no backup: `wait_backup`
/// never passes for it).
pub fn wait_backup(lab: &Lab, node: &Host, limit: Duration) {
    wait_until(&format!("{} to be backup", node.name), limit, || {
        all_backup(&status_on(lab, node).vrrp)
    });
}

/// Whether `instances` (a status's VRRP instances) are some, all backup.
fn all_backup(instances: &[lb_userspace::vrrp::driver::InstanceStatus]) -> bool {
    !instances.is_empty()
        && instances
            .iter()
            .all(|v| v.state == lb_userspace::vrrp::State::Backup)
}

/// Restarts lbd `name` on `node` (config `config`) both ways a node's lbd
/// restarts while a test holds connections through it: kill -9 and a new
/// start (the pinned program serving alone for a while), then SIGTERM and
/// a new start; each new lbd must adopt the data plane. `after_kill` runs
/// once the first new lbd is up. Returns the name of the lbd left running.
pub fn restart_both_ways(
    lab: &mut Lab,
    node: &Host,
    name: &str,
    config: &str,
    after_kill: impl FnOnce(&Lab),
) -> String {
    // Starts lbd `name`-`n` on `node` after `what`; it must adopt the
    // data plane the previous one left.
    let start_adopting = |lab: &mut Lab, n: u32, what: &str| {
        let started = format!("{name}-{n}");
        lab.start_lbd_on(node, &started, config)
            .unwrap_or_else(|e| panic!("start after {what}: {e:#}"));
        assert!(
            status_on(lab, node).adopted,
            "the lbd started after {what} adopts the data plane"
        );
        started
    };
    thread::sleep(Duration::from_millis(500));
    lab.kill(name).expect("kill -9");
    thread::sleep(Duration::from_millis(800));
    let second = start_adopting(lab, 2, "kill -9");
    after_kill(lab);
    thread::sleep(Duration::from_millis(500));
    assert!(
        lab.terminate(&second).expect("SIGTERM").success(),
        "SIGTERM exits cleanly"
    );
    thread::sleep(Duration::from_millis(300));
    let third = start_adopting(lab, 3, "SIGTERM");
    thread::sleep(Duration::from_millis(500));
    third
}

/// `lbctl flow` of lbd on `node` for the flow from `client` to `vip`,
/// port 80/tcp, as JSON; panics when lbctl fails.
pub fn flow_on(
    lab: &Lab,
    node: &Host,
    vip: IpAddr,
    client: std::net::SocketAddr,
) -> lb_userspace::api::flow_schema::FlowExplanation {
    let vip = std::net::SocketAddr::new(vip, HTTP_PORT);
    let args = ["flow", &format!("{vip}/tcp"), &client.to_string(), "--json"];
    let out = lab.lbctl_on(node, &args).expect("run lbctl");
    assert!(
        out.status.success(),
        "lbctl {args:?} on {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("flow JSON")
}

/// Asserts that lbd on `node` holds the flow from `client` to `vip` (port
/// 80/tcp) in its connection table, pinned to backend `backend` (a name:
/// b1..; by its IPv4 or IPv6 address). Asked before the flow's next
/// packet after a restart, this shows the connection table was kept: in
/// a lost one the flow has no entry until its next packet, which takes
/// Maglev's pick again (the same backend when the backend set is the
/// same, so the connection itself would not notice). `when` names the
/// moment in the failure.
pub fn assert_tracked_on(
    lab: &Lab,
    node: &Host,
    vip: IpAddr,
    client: std::net::SocketAddr,
    backend: &str,
    when: &str,
) {
    use lb_userspace::api::flow_schema::FlowDecision;
    let host = lab
        .backends
        .iter()
        .find(|b| b.name == backend)
        .unwrap_or_else(|| panic!("no backend {backend}"));
    let addresses = [IpAddr::V4(host.ipv4), IpAddr::V6(host.ipv6)];
    let flow = flow_on(lab, node, vip, client);
    assert!(
        flow.decision == FlowDecision::Tracked
            && flow.entry.is_some()
            && flow
                .backend
                .as_ref()
                .is_some_and(|b| addresses.contains(&b.address)),
        "{when}: lbd on {} does not track {client} -> {vip} to {backend}: {flow:?}",
        node.name
    );
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

/// Node counter `name`; panics naming it when the status has no such
/// counter (a renamed or lost counter must not read as zero, which would
/// pass every "nothing dropped" check).
pub fn counter(status: &Status, name: &str) -> u64 {
    status.counters.get(name).copied().unwrap_or_else(|| {
        panic!(
            "no node counter {name} in the status: {:?}",
            status.counters.keys().collect::<Vec<_>>()
        )
    })
}

/// Node counter `name` grown from `before` to `after`.
pub fn grown(before: &Status, after: &Status, name: &str) -> u64 {
    counter(after, name).saturating_sub(counter(before, name))
}

/// The node counters that grew from `before` to `after` (for failure
/// messages).
pub fn deltas<'a>(before: &Status, after: &'a Status) -> BTreeMap<&'a str, u64> {
    after
        .counters
        .iter()
        .map(|(k, v)| {
            let was = before.counters.get(k).copied().unwrap_or(0);
            (k.as_str(), v.saturating_sub(was))
        })
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// Asserts that every name in `names` is a counter the data plane has: a
/// lab that checks a list of drop counters stayed at zero would pass
/// vacuously for a renamed one.
pub fn assert_are_counters(names: &[&str]) {
    let counters: Vec<&str> = lb_common::stats::Counter::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    for name in names {
        assert!(
            counters.contains(name),
            "{name} is no counter: {counters:?}"
        );
    }
}

/// Asserts every name in `names` is one of lb-decap's counters
/// (`DecapCounter::name`), as `lb-decap status` prints them: a test that
/// looks a renamed counter up would otherwise find nothing.
pub fn assert_are_decap_counters(names: &[&str]) {
    let counters: Vec<&str> = lb_common::decap::DecapCounter::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    for name in names {
        assert!(
            counters.contains(name),
            "{name} is no lb-decap counter: {counters:?}"
        );
    }
}

/// The node counters that are not zero (for failure messages).
pub fn nonzero(status: &Status) -> BTreeMap<&str, u64> {
    status
        .counters
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// The status of the lab's VIP at `vip`, port 80/tcp.
pub fn vip_status(status: &Status, vip: IpAddr) -> &VipStatus {
    let prefix = match vip {
        IpAddr::V4(a) => format!("{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("[{a}]:{HTTP_PORT}/"),
    };
    status
        .vips
        .iter()
        .find(|v| v.vip.starts_with(&prefix))
        .unwrap_or_else(|| panic!("VIP {vip} not in status: {:?}", status.vips))
}

/// Waits (20 s at most) until every backend of the lab's VIP at `vip`
/// is up: the start of a lab whose checks must have decided.
pub fn wait_every_backend_up(lab: &Lab, vip: IpAddr) {
    wait_until("every backend up", Duration::from_secs(20), || {
        let status = lab.status().expect("status");
        vip_status(&status, vip)
            .backends
            .iter()
            .all(|b| b.health == HealthStatus::Up)
    });
}

/// Health of backend `address` of the first VIP (None when it is not
/// there).
pub fn health_of(lab: &Lab, address: &str) -> Option<HealthStatus> {
    let address: IpAddr = address.parse().expect("address");
    status(lab).vips[0]
        .backends
        .iter()
        .find(|b| b.address == address)
        .map(|b| b.health)
}

/// Waits up to 10 s for backend `address` of the first VIP to have health
/// `want`.
pub fn wait_health(lab: &Lab, address: &str, want: HealthStatus) {
    wait_until(
        &format!("{address} to become {want}"),
        Duration::from_secs(10),
        || health_of(lab, address) == Some(want),
    );
}

/// A bounded background load on the lab's IPv4 VIP, one request per new
/// connection, for at most `limit`.
pub fn load(lab: &Lab, limit: Duration) -> Load {
    Load::start(&lab.client.netns, IpAddr::V4(VIP4), limit)
}

/// `ip <args>`'s output (in the calling thread's namespace); panics with
/// stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip <args>` in `node`'s namespace (`ip -n`): its output; panics with
/// stderr on failure.
pub fn ip_on(node: &Host, args: &[&str]) -> String {
    let mut all = vec!["-n", node.netns.as_str()];
    all.extend_from_slice(args);
    ip(&all)
}

/// The backend (its name, b1..) lbd's Maglev gives the client flow from
/// `local` to the IPv4 VIP with the lab's first `backends` backends: the
/// model a test compares lbd's choices with (65,537 slots, the default).
pub fn maglev_choice(lab: &Lab, local: std::net::SocketAddr, backends: usize) -> String {
    const SLOTS: u32 = 65_537;
    let keys: Vec<[u8; 4]> = lab.backends[..backends]
        .iter()
        .map(|b| b.ipv4.octets())
        .collect();
    let table = crate::bench::maglev::table_by_address(&keys, &keys, SLOTS);
    let id = table[vip4_http_slot(local, SLOTS)];
    lab.backends[id as usize - 1].name.clone()
}

/// The Maglev slot (of `slots`) of the client flow from `local` to the
/// lab's IPv4 VIP, HTTP port, TCP: where lbd's table is read for it.
pub fn vip4_http_slot(local: std::net::SocketAddr, slots: u32) -> usize {
    use lb_common::{
        consts::{AF_INET, IPPROTO_TCP},
        hash::flow_hash,
        FlowKey,
    };
    use lb_userspace::reconcile::addr_words;
    let (src, _) = addr_words(local.ip());
    let (dst, _) = addr_words(IpAddr::V4(VIP4));
    let key = FlowKey {
        src,
        dst,
        sport: local.port().to_be(),
        dport: crate::lab::HTTP_PORT.to_be(),
        proto: IPPROTO_TCP,
        family: AF_INET,
        _pad: 0,
    };
    (flow_hash(&key) % slots) as usize
}

/// Source addresses of the lab's client for streams to the IPv4 VIP:
/// `moving` whose Maglev choice changes when the fourth backend joins
/// the first three, then `staying` whose choice does not. Picked from
/// the model, so a test of flows that only keep their backend through
/// the connection table never depends on the kernel's port choice.
pub fn sources_by_move(lab: &Lab, moving: usize, staying: usize) -> Vec<std::net::SocketAddr> {
    let source = |port: u16| std::net::SocketAddr::new(IpAddr::V4(lab.client.ipv4), port);
    let moves =
        |port: &u16| maglev_choice(lab, source(*port), 3) != maglev_choice(lab, source(*port), 4);
    let mut ports: Vec<u16> = (20_000..).filter(moves).take(moving).collect();
    ports.extend((20_000..).filter(|p| !moves(p)).take(staying));
    ports.into_iter().map(source).collect()
}

/// Opens `/slow` streams through the IPv4 VIP from `sources_by_move`'s
/// sources (`moving`, then `staying`), each checked to land where the
/// Maglev model says.
pub fn open_streams_by_move(lab: &Lab, moving: usize, staying: usize) -> Vec<crate::http::Stream> {
    sources_by_move(lab, moving, staying)
        .into_iter()
        .map(|from| {
            let stream = crate::http::open_stream_from(&lab.client.netns, from, IpAddr::V4(VIP4));
            assert_eq!(
                maglev_choice(lab, stream.local, 3),
                stream.backend,
                "lbd's choice differs from the model's"
            );
            stream
        })
        .collect()
}

/// A kept-alive connection to the IPv4 VIP from `from`, its first
/// request checked to land on `expected` (the model's pick): the
/// connection and the backend that served it.
pub fn kept_alive_on(
    lab: &Lab,
    from: std::net::SocketAddr,
    expected: &str,
) -> (crate::client::KeepAlive, String) {
    let mut conn =
        crate::client::KeepAlive::open_from_port(&lab.client.netns, IpAddr::V4(VIP4), from.port())
            .expect("open");
    let served = conn.request().expect("request");
    assert_eq!(
        served, expected,
        "lbd's choice for {from} differs from the model's"
    );
    (conn, served)
}

/// `LongStream`s through the IPv4 VIP from `sources_by_move`'s sources
/// (`moving`, then `staying`), each checked to land where the Maglev
/// model says, streaming until a body asked for once `event` is set has
/// arrived (`what` names the event).
pub fn long_streams_by_move(
    lab: &Lab,
    moving: usize,
    staying: usize,
    event: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    what: &'static str,
) -> Vec<crate::http::LongStream> {
    sources_by_move(lab, moving, staying)
        .into_iter()
        .map(|from| {
            let stream = crate::http::LongStream::open(
                &lab.client.netns,
                IpAddr::V4(VIP4),
                Some(from),
                event,
                what,
            );
            assert_eq!(
                maglev_choice(lab, stream.local, 3),
                stream.first.backend,
                "lbd's choice differs from the model's"
            );
            stream
        })
        .collect()
}

/// lbd's Maglev table (65,537 slots, `maglev_mode = "consistent"`) for
/// the lab's IPv4 VIP over `members`, each a lab backend's name and its
/// weight (those up and enabled: a backend down or removed is not one):
/// the model of where a new flow goes, built once for many look-ups.
pub struct MaglevModel {
    table: Vec<u32>,
    names: Vec<String>,
}

impl MaglevModel {
    /// The table of `members` (name, weight), e.g. `[("b1", 100), ("b2",
    /// 100)]`.
    pub fn new(lab: &Lab, members: &[(&str, u32)]) -> Self {
        use lb_userspace::maglev::{build_table, MaglevBackend};
        let keys: Vec<[u8; 4]> = members
            .iter()
            .map(|(name, _)| {
                lab.backends
                    .iter()
                    .find(|b| b.name == *name)
                    .unwrap_or_else(|| panic!("no backend named {name:?}"))
                    .ipv4
                    .octets()
            })
            .collect();
        let backends: Vec<MaglevBackend<'_>> = keys
            .iter()
            .zip(members)
            .zip(1u32..)
            .map(|((key, (_, weight)), id)| MaglevBackend {
                key,
                weight: *weight,
                id,
            })
            .collect();
        MaglevModel {
            table: build_table(&backends, 65_537).expect("maglev table"),
            names: members.iter().map(|(name, _)| (*name).to_owned()).collect(),
        }
    }

    /// The backend (its name) a new flow from `local` to the IPv4 VIP's
    /// HTTP port takes.
    pub fn pick(&self, local: std::net::SocketAddr) -> String {
        let id = self.table[vip4_http_slot(local, self.table.len() as u32)];
        self.names[id as usize - 1].clone()
    }
}

/// `count` source addresses of the lab's client, from `ports` (keep them
/// below the ephemeral range, 32768 and up), whose pick under `from` is
/// one of `stays`
/// (backends that stay through a change) and differs under `to`: a
/// connection opened from one under `from` keeps its backend once `to`
/// is in service only through the connection table.
pub fn sources_moving_between(
    lab: &Lab,
    from: &MaglevModel,
    to: &MaglevModel,
    stays: &[&str],
    ports: std::ops::Range<u16>,
    count: usize,
) -> Vec<std::net::SocketAddr> {
    let source = |port: u16| std::net::SocketAddr::new(IpAddr::V4(lab.client.ipv4), port);
    let found: Vec<std::net::SocketAddr> = ports
        .clone()
        .map(source)
        .filter(|s| {
            let was = from.pick(*s);
            stays.contains(&was.as_str()) && to.pick(*s) != was
        })
        .take(count)
        .collect();
    assert_eq!(found.len(), count, "too few moving sources in {ports:?}");
    found
}

/// Asserts that each of three backends served 33 % ± 8 % of `total`
/// requests (what every lab's Maglev spread over three equal backends
/// gives); `what` names the case in the failure.
pub fn assert_even_shares(
    what: &str,
    by_backend: &std::collections::BTreeMap<String, u64>,
    total: u32,
) {
    assert_eq!(
        by_backend.len(),
        3,
        "{what}: backends that answered: {by_backend:?}"
    );
    for (backend, served) in by_backend {
        let share = *served as f64 / f64::from(total);
        assert!(
            (0.25..=0.41).contains(&share),
            "{what}: {backend} served {:.1}%, outside 33% ± 8%",
            share * 100.0
        );
    }
}

/// The kernel's TCP counter `name` (a `TcpExt:` field of
/// `/proc/net/netstat`, e.g. `TCPSynRetrans`: SYNs sent again) in
/// namespace `netns`; panics when it cannot be read.
pub fn tcp_ext_counter(netns: &str, name: &str) -> u64 {
    proc_net_counter(netns, "netstat", "TcpExt", name)
}

/// The kernel's TCP counter `name` (a `Tcp:` field of `/proc/net/snmp`,
/// e.g. `RetransSegs`: segments sent again, `OutRsts`: resets sent) in
/// namespace `netns`; panics when it cannot be read.
pub fn tcp_counter(netns: &str, name: &str) -> u64 {
    proc_net_counter(netns, "snmp", "Tcp", name)
}

/// Field `name` of the `group:` lines (a line of names, then one of
/// values) of `/proc/net/{file}` in namespace `netns`.
fn proc_net_counter(netns: &str, file: &str, group: &str, name: &str) -> u64 {
    let path = format!("/proc/net/{file}");
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", &path])
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{path} of {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{group}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    let (names, values) = match lines.as_slice() {
        [names, values, ..] => (names, values),
        _ => panic!("no {group} lines in {path} of {netns}:\n{text}"),
    };
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {group} counter {name} in {netns}"));
    values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{group} {name} of {netns} unreadable: {values}"))
}

/// Makes `command`'s child start with no signal blocked. A child inherits
/// the signal mask of the thread that spawns it (the standard library no
/// longer clears it), and lb-demo blocks its stop signals in every thread
/// to take them with `sigwait`: a long-running child (lbd, nginx, a
/// database) would then never see the SIGTERM or SIGINT that stops it.
pub fn with_signals_unblocked(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: runs in the child between fork and exec, calling only
    // async-signal-safe functions (sigemptyset, sigprocmask) on a set on
    // its own stack; nothing is allocated.
    unsafe {
        command.pre_exec(|| {
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            if libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod signal_mask_tests {
    use std::process::Command;

    /// The signals blocked in a child spawned from a thread that blocks
    /// SIGTERM, with and without `with_signals_unblocked`.
    fn blocked_in_child(unblock: bool) -> u64 {
        std::thread::spawn(move || {
            // SAFETY: blocks SIGTERM in this short-lived thread only.
            unsafe {
                let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(set.as_mut_ptr());
                libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
            }
            // Not through a shell: dash clears the mask itself.
            let mut command = Command::new("grep");
            command.args(["SigBlk", "/proc/self/status"]);
            if unblock {
                super::with_signals_unblocked(&mut command);
            }
            let out = command.output().expect("sh");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let hex = text.split_whitespace().nth(1).expect("SigBlk value");
            u64::from_str_radix(hex, 16).expect("hex mask")
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn a_child_starts_with_no_signal_blocked() {
        let sigterm = 1u64 << (libc::SIGTERM - 1);
        assert_ne!(
            blocked_in_child(false) & sigterm,
            0,
            "inherited, as the test assumes"
        );
        assert_eq!(blocked_in_child(true), 0);
    }
}

#[cfg(test)]
mod wait_backup_tests {
    use lb_userspace::vrrp::{driver::InstanceStatus, State};

    /// An instance of VRID 51 in `state`.
    fn instance(state: State) -> InstanceStatus {
        InstanceStatus {
            vrid: 51,
            state,
            configured_priority: 100,
            priority: 100,
            master: None,
            addresses: Vec::new(),
            counters: Default::default(),
            ignored: Default::default(),
            link_down: false,
            link_down_since: None,
            no_source: false,
            no_source_since: None,
        }
    }

    /// An lbd with no VRRP instance (a config that lost its `[[vrrp]]`)
    /// is not a backup; one master among backups is not either.
    #[test]
    fn no_instance_is_no_backup() {
        assert!(!super::all_backup(&[]));
        assert!(super::all_backup(&[instance(State::Backup)]));
        assert!(!super::all_backup(&[
            instance(State::Backup),
            instance(State::Master)
        ]));
    }
}
