//! What an operator meets around the data plane, end to end in the lab:
//! metric series follow the VIPs and backends that exist (a removed one's
//! go, a re-added one starts from zero), lbctl exits quietly when its
//! output is closed, and the demo tears its lab down however it is
//! stopped. Needs root.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{BufRead as _, BufReader, Read as _},
    net::IpAddr,
    os::{
        fd::{FromRawFd as _, OwnedFd},
        unix::process::{CommandExt as _, ExitStatusExt as _},
    },
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use lb_tests::{
    client,
    lab::{http_get, namespaces_with_prefix, pins_with_prefix, sweep_stale_labs, Lab, VIP4},
    support::{lbctl_command, lbctl_ok, status, wait_until},
};

const VIP: &str = "198.18.0.100:80/tcp";
/// HTTP checks frequent enough that histograms and counters move within the
/// test, slow enough that a loaded CI machine does not fail a healthy backend.
const FAST_CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";

/// lbd's metrics, in the classic text format, scraped where lbd serves
/// them (loopback of the LB node).
fn scrape(lab: &Lab) -> String {
    let (code, text) =
        http_get(&lab.lb.netns, "http://127.0.0.1:9641/metrics").expect("scrape /metrics");
    assert_eq!(code, 200, "/metrics answered {code}:\n{text}");
    text
}

/// The series of a scrape: every sample line's name and labels.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_owned()
        })
        .collect()
}

/// The value of sample `name{labels}`, if the scrape has it.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn backend_labels(vip: &str, backend: IpAddr) -> String {
    format!("vip=\"{vip}\",backend=\"{backend}\"")
}

/// 16 VIPs added and removed through lbctl leave exactly the series there
/// were before; a backend removed and added again starts from zero (no
/// traffic of its previous life, a check histogram whose count is the
/// check counter), and so does a VIP removed and added again.
#[test]
fn removed_vips_and_backends_leave_no_series_and_come_back_clean() {
    let mut lab = Lab::start(2).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config_for(&["b1", "b2"], FAST_CHECKS);
    lab.start_lbd(&config).expect("lbd");
    wait_until("both backends up", Duration::from_secs(10), || {
        status(&lab).vips[0]
            .backends
            .iter()
            .all(|b| b.health == lb_userspace::api::schema::HealthStatus::Up)
    });
    let b1 = lab.backends[0].ipv4.to_string();
    let b2_address = IpAddr::V4(lab.backends[1].ipv4);
    let b2 = b2_address.to_string();
    let before = series(&scrape(&lab));

    // 16 VIPs with two backends each, TCP-checked (refused: nothing listens
    // on those ports; every check is observed all the same).
    // The first is HTTP-checked, on the backends' nginx (port 80), its
    // settings given on the command line.
    let ports: Vec<u16> = (8001..=8016).collect();
    for port in &ports {
        let vip = format!("{VIP4}:{port}/tcp");
        let mut args = vec!["vip", "add", &vip, "--backend", &b1, "--backend", &b2];
        if *port == 8001 {
            args.extend([
                "--check",
                "http",
                "--check-port",
                "80",
                "--check-path",
                "/?from=lbctl",
                "--check-interval-ms",
                "200",
                "--check-timeout-ms",
                "150",
                "--check-rise",
                "1",
            ]);
        }
        lbctl_ok(&lab, &args);
    }
    let http_vip = format!("{VIP4}:8001/tcp");
    wait_until(
        "the HTTP-checked VIP's backends up",
        Duration::from_secs(5),
        || {
            status(&lab)
                .vips
                .iter()
                .find(|v| v.vip == http_vip)
                .is_some_and(|v| {
                    v.backends.iter().all(|b| {
                        b.health == lb_userspace::api::schema::HealthStatus::Up
                            && b.check.as_ref().is_some_and(|c| {
                                c.kind == lb_userspace::api::schema::CheckKind::Http
                                    && c.target.as_deref().is_some_and(|t| t.ends_with(":80"))
                            })
                    })
                })
        },
    );
    // The running configuration says so, as a file would.
    let dump = lbctl_ok(&lab, &["config", "dump"]);
    assert!(
        dump.contains("path = \"/?from=lbctl\"") && dump.contains("interval_ms = 200"),
        "{dump}"
    );
    wait_until(
        "every added backend checked once",
        Duration::from_secs(15),
        || {
            status(&lab)
                .vips
                .iter()
                .flat_map(|v| &v.backends)
                .all(|b| b.check.as_ref().is_some_and(|c| c.checks > 0))
        },
    );
    assert!(series(&scrape(&lab)).len() > before.len());

    for port in &ports {
        lbctl_ok(&lab, &["vip", "remove", &format!("{VIP4}:{port}/tcp")]);
    }
    let after = series(&scrape(&lab));
    // The kept VIP's backends may have failed a check meanwhile (a loaded
    // machine): a failure reason's series is theirs to add.
    let failures_of_kept = format!("lbd_health_check_failures_total{{vip=\"{VIP}\"");
    let left: Vec<&String> = after
        .difference(&before)
        .filter(|s| !s.starts_with(&failures_of_kept))
        .collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(
        left.is_empty() && gone.is_empty(),
        "{} series before, {} after adding and removing 16 VIPs; left behind: {left:#?}; gone: {gone:#?}",
        before.len(),
        after.len()
    );

    // A backend removed and added again: traffic and checks from zero.
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 40).expect("burst");
    assert_eq!(tally.failed, 0, "{tally:?}");
    let labels = backend_labels(VIP, b2_address);
    let served = sample(&scrape(&lab), "lbd_backend_packets_total", &labels).unwrap_or(0.0);
    assert!(served > 0.0, "b2 served nothing: {tally:?}");
    lbctl_ok(&lab, &["backend", "remove", VIP, &b2]);
    lbctl_ok(&lab, &["backend", "add", VIP, &b2]);
    let text = scrape(&lab);
    for family in [
        "lbd_backend_packets_total",
        "lbd_backend_bytes_total",
        "lbd_backend_new_flows_total",
    ] {
        assert_eq!(
            sample(&text, family, &labels),
            Some(0.0),
            "{family} of b2 added again is not 0:\n{text}"
        );
    }
    wait_until("b2 checked again", Duration::from_secs(10), || {
        status(&lab).vips[0]
            .backends
            .iter()
            .find(|b| b.address == b2_address)
            .and_then(|b| b.check.as_ref())
            .is_some_and(|c| c.checks >= 3)
    });
    // Counter and histogram are read a moment apart: a check may land in
    // between, so look for one scrape where they agree. Spaced wider than
    // lbd's render budget (four a second): each scrape is a render of its
    // own, not the previous one shared.
    let mut seen = Vec::new();
    let agreed = (0..20).any(|_| {
        let text = scrape(&lab);
        let checks = sample(&text, "lbd_health_checks_total", &labels);
        let observed = sample(&text, "lbd_health_check_duration_seconds_count", &labels);
        seen.push((checks, observed));
        thread::sleep(Duration::from_millis(300));
        checks.is_some() && checks == observed
    });
    assert!(
        agreed,
        "b2's check counter and histogram count disagree (counter, histogram): {seen:?}"
    );

    // The VIP removed and added again starts with no traffic.
    let vip_label = format!("vip=\"{VIP}\"");
    let text = scrape(&lab);
    let packets = sample(&text, "lbd_vip_packets_total", &vip_label).unwrap_or(0.0);
    assert!(packets > 0.0, "no traffic counted for {VIP}:\n{text}");
    lbctl_ok(&lab, &["vip", "remove", VIP]);
    lbctl_ok(
        &lab,
        &["vip", "add", VIP, "--backend", &b1, "--backend", &b2],
    );
    let text = scrape(&lab);
    for family in [
        "lbd_vip_packets_total",
        "lbd_vip_bytes_total",
        "lbd_vip_new_flows_total",
    ] {
        assert_eq!(
            sample(&text, family, &vip_label),
            Some(0.0),
            "{family} of {VIP} added again is not 0:\n{text}"
        );
    }
}

/// A pipe whose buffer holds one page, so a command with more output than
/// that is still writing when the reader goes.
fn small_pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds on success.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        0,
        "pipe2"
    );
    // SAFETY: both fds were just created and are owned here only.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own pipe.
    unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 4096) };
    (read, write)
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs lbctl with stdout on a pipe; `reader` reads from it, then the pipe
/// is closed. Returns the exit status and stderr.
fn with_closed_stdout(lab: &Lab, args: &[&str], reader: impl FnOnce(File)) -> (ExitStatus, String) {
    let (read, write) = small_pipe();
    let mut command = lbctl_command(lab, args);
    command.stdout(Stdio::from(write)).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn lbctl");
    drop(command); // our copy of the pipe's write end
    reader(read);
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    (wait_exit(&mut child, Duration::from_secs(10)), stderr)
}

/// Every lbctl command that prints, with its output closed after one line
/// (as `| head -1` does) or before anything was written (as `| true`
/// does), exits quietly: killed by SIGPIPE like any Unix filter, nothing
/// on stderr.
#[test]
fn lbctl_exits_quietly_when_its_output_is_closed() {
    let mut lab = Lab::start(1).expect("lab");
    // Enough VIPs and backends for every listing to outgrow the pipe: 120
    // backends (MACs given, so nothing is resolved) on one VIP, 20 more
    // VIPs.
    let mut config = lab.lbd_config_for(&["b1"], "[vip.health]\ncheck = \"none\"\n");
    for i in 1..=120 {
        config.push_str(&format!(
            "  [[vip.backend]]\n  address = \"198.18.1.{i}\"\n  mac = \"02:00:00:00:01:{i:02x}\"\n"
        ));
    }
    for port in 9001..=9020 {
        config.push_str(&format!(
            "\n[[vip]]\naddress = \"{VIP4}\"\nport = {port}\n[vip.health]\ncheck = \"none\"\n  [[vip.backend]]\n  address = \"198.18.1.1\"\n  mac = \"02:00:00:00:01:01\"\n"
        ));
    }
    lab.start_lbd(&config).expect("lbd");
    let commands: [&[&str]; 6] = [
        &["status"],
        &["vip", "list"],
        &["backend", "list", VIP],
        &["status", "--json"],
        &["config", "dump"],
        &["completions", "bash"],
    ];
    for args in commands {
        let full = lbctl_ok(&lab, args);
        assert!(
            full.len() > 8 * 1024,
            "lbctl {args:?} prints only {} bytes: too little to fill the pipe",
            full.len()
        );
        let head_1 = |read: File| {
            let mut line = String::new();
            BufReader::with_capacity(1, read)
                .read_line(&mut line)
                .expect("read a line");
            assert!(!line.is_empty(), "lbctl {args:?} printed nothing");
        };
        for (how, result) in [
            ("after one line", with_closed_stdout(&lab, args, head_1)),
            ("before any output", with_closed_stdout(&lab, args, drop)),
        ] {
            let (exit, stderr) = result;
            assert!(
                stderr.is_empty(),
                "lbctl {args:?} with its output closed {how} wrote to stderr ({exit}):\n{stderr}"
            );
            assert_eq!(
                exit.signal(),
                Some(libc::SIGPIPE),
                "lbctl {args:?} with its output closed {how}: {exit}"
            );
        }
    }
}

/// One demo run at a time: each builds a lab of five namespaces.
static DEMO: Mutex<()> = Mutex::new(());

/// The demo (lb-demo, as `cargo xtask demo` runs it) in a process group of
/// its own, as a shell starts a pipeline; dropping it kills whatever is left
/// and sweeps its lab, so a failed test leaks nothing either.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Vec<String>,
    prefix: Option<String>,
}

impl Demo {
    /// Starts `program args` (lb-demo itself, or a parent that runs it)
    /// with default signal actions, as from an interactive shell.
    fn start(program: &str, args: &[&str]) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start the demo");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Self {
            child,
            lines,
            output: Vec::new(),
            prefix: None,
        }
    }

    /// Waits for a line containing `text`; learns the lab's prefix on the
    /// way (from "lbd is running on <prefix>-lb").
    fn wait_for(&mut self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "the demo never printed {text:?}:\n{}",
                    self.output.join("\n")
                );
            };
            if let Some(rest) = line.strip_prefix("lbd is running on ") {
                self.prefix = rest
                    .split_whitespace()
                    .next()
                    .and_then(|netns| netns.strip_suffix("-lb"))
                    .map(str::to_owned);
            }
            let found = line.contains(text);
            self.output.push(line);
            if found {
                return;
            }
        }
    }

    fn prefix(&self) -> String {
        self.prefix
            .clone()
            .unwrap_or_else(|| panic!("no lab prefix in:\n{}", self.output.join("\n")))
    }

    /// Every process in the lab's namespaces; a failing `ip netns list`
    /// or `ip netns pids` fails the test instead of reading as none.
    fn lab_processes(&self) -> Vec<i32> {
        self.lab_process_ids()
            .unwrap_or_else(|e| panic!("the demo lab's processes: {e:#}"))
    }

    /// [`Self::lab_processes`] as a result, for the clean-up in `drop`
    /// (which must not panic).
    fn lab_process_ids(&self) -> anyhow::Result<Vec<i32>> {
        let mut pids = Vec::new();
        for netns in namespaces_with_prefix(&self.prefix())? {
            let out = Command::new("ip")
                .args(["netns", "pids", &netns])
                .output()
                .with_context(|| format!("starting ip netns pids {netns}"))?;
            if !out.status.success() {
                bail!(
                    "ip netns pids {netns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|p| p.trim().parse::<i32>().ok()),
            );
        }
        Ok(pids)
    }

    /// Sends `signal` to the demo's whole process group, as a terminal's
    /// Ctrl-C does.
    fn signal_group(&self, signal: i32) {
        let group = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: plain killpg(2) on the group this test made.
        assert_eq!(unsafe { libc::killpg(group, signal) }, 0, "killpg");
    }

    /// Waits until the lab is gone, or panics after `limit` saying what
    /// is left; returns how long that took.
    fn assert_torn_down(&mut self, processes: &[i32], limit: Duration) -> Duration {
        let prefix = self.prefix();
        let alive = |pid: &&i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, s)| s.starts_with('Z'))
            })
        };
        let start = Instant::now();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.output.push(line);
            }
            let namespaces = namespaces_with_prefix(&prefix).expect("ip netns list");
            let pins = pins_with_prefix(&prefix).expect("the labs' pins");
            let running: Vec<&i32> = processes.iter().filter(alive).collect();
            if namespaces.is_empty() && pins.is_empty() && running.is_empty() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{limit:?} after the signal the lab is still there: namespaces {namespaces:?}, pins {pins:?}, processes {running:?}\n{}",
                self.output.join("\n")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.child.id()) {
            // SAFETY: plain killpg(2) on the group this test made.
            unsafe { libc::killpg(group, libc::SIGKILL) };
        }
        let _ = self.child.wait();
        // A demo killed before its teardown leaves a lab of a dead pid.
        if let Some(prefix) = &self.prefix {
            if namespaces_with_prefix(prefix).map_or(true, |n| !n.is_empty()) {
                for pid in self.lab_process_ids().unwrap_or_default() {
                    // SAFETY: plain kill(2) on a process of that lab.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                thread::sleep(Duration::from_millis(200));
                sweep_stale_labs();
            }
        }
    }
}

fn lb_demo() -> &'static str {
    env!("CARGO_BIN_EXE_lb-demo")
}

/// `lb-demo --keep` shows `lbctl status` with what it sent; Ctrl-C on it
/// (SIGINT to its whole process group: the demo, lbd and the nginx
/// processes) tears the lab down.
#[test]
fn ctrl_c_tears_the_kept_demo_lab_down() {
    let _one = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let mut demo = Demo::start(lb_demo(), &["--keep", "--requests", "10"]);
    demo.wait_for("Press Ctrl-C", Duration::from_secs(90));
    // It showed lbctl's view: each VIP with the requests it counted.
    let shown = demo.output.join("\n");
    for vip in ["VIP 198.18.0.100:80/tcp", "VIP [2001:2::100]:80/tcp"] {
        assert!(
            shown.contains(&format!("{vip}  dsr-l2  table 65537")),
            "{vip} in the demo's lbctl status:\n{shown}"
        );
    }
    assert!(shown.contains("new flows 10\n"), "{shown}");
    let processes = demo.lab_processes();
    assert!(processes.len() >= 4, "lab processes: {processes:?}");
    demo.signal_group(libc::SIGINT);
    demo.assert_torn_down(&processes, Duration::from_secs(30));
}

/// Ctrl-C while the demo is still sending its requests tears the lab down
/// too (and does not wait for the requests to finish).
#[test]
fn ctrl_c_during_the_requests_tears_the_demo_lab_down() {
    let _one = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let mut demo = Demo::start(lb_demo(), &["--requests", "100000"]);
    demo.wait_for("lbd is running", Duration::from_secs(90));
    let processes = demo.lab_processes();
    // lbd and the three nginx masters at least: the teardown check below
    // has processes to see gone.
    assert!(processes.len() >= 4, "lab processes: {processes:?}");
    thread::sleep(Duration::from_millis(500));
    demo.signal_group(libc::SIGINT);
    let took = demo.assert_torn_down(&processes, Duration::from_secs(30));
    // It did not wait for the requests: the first VIP's 100,000 were
    // never reported done (they take minutes in the lab).
    let output = demo.output.join("\n");
    assert!(
        !output.contains("100000 requests to"),
        "the demo finished a burst before tearing down:\n{output}"
    );
    println!("demo torn down {took:?} after Ctrl-C during its requests");
}

/// When whatever started the demo dies without passing a signal on (a
/// killed `cargo xtask demo`), the demo notices and tears its lab down.
#[test]
fn the_demo_lab_goes_when_its_parent_dies() {
    let _one = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    assert!(Path::new(lb_demo()).exists());
    // sh stays the demo's parent (it has more to do after it).
    let mut demo = Demo::start(
        "sh",
        &[
            "-c",
            "\"$0\" --keep --requests 10; echo demo done",
            lb_demo(),
        ],
    );
    demo.wait_for("Press Ctrl-C", Duration::from_secs(90));
    let processes = demo.lab_processes();
    assert!(processes.len() >= 4, "lab processes: {processes:?}");
    let parent = i32::try_from(demo.child.id()).expect("pid");
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(parent, libc::SIGKILL) }, 0);
    let _ = demo.child.wait();
    demo.assert_torn_down(&processes, Duration::from_secs(30));
}
