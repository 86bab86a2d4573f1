//! lbd's listeners stay bounded under abuse, with the real lbd in the
//! namespace lab: a local user holding more than a thousand TCP connections
//! to the metrics port does not take lbd's file descriptors (health checks,
//! traffic through the VIP and the admin API carry on, a scrape still
//! works); a client scraping back to back on every metrics connection slot
//! does not keep a new scraper out; lbd raises its soft open-file limit to
//! the hard one at start; and clients trickling a byte a second into every
//! admin API slot do not keep `lbctl` out. Needs root.

use std::{
    fs::{self, File},
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    os::{fd::AsRawFd as _, unix::net::UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client,
    lab::{http_get, lbd_binary, Lab, VIP4},
};
use serde_json::Value;

/// HTTP health checks that a loaded 2-core machine cannot fail by
/// delaying a probe or two (500 ms to answer, 3 failures in a row), while
/// checks starved for the seconds the hog runs (lbd too busy with it to
/// probe or read the answers) still take the backends down.
const CHECKS: &str = "[vip.health]\ncheck = \"http\"\npath = \"/health\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 3\n";
/// Where lbd serves its metrics by default (in the LB node's namespace).
const METRICS: &str = "127.0.0.1:9641";
/// Connections the hog holds: more than the default soft limit of 1024.
const HOG: usize = 1100;
/// The admin API's connection slots (`api::server`), and trickling clients
/// beyond them.
const ADMIN_SLOTS: usize = 64;
const TRICKLERS: usize = ADMIN_SLOTS + 16;

/// Raises this process's soft open-file limit to its hard limit: the hog
/// holds more than a thousand sockets.
fn raise_own_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit), 0);
    }
    assert!(
        limit.rlim_cur >= 4 * HOG as u64,
        "the test needs at least {} open files, the hard limit is {}",
        4 * HOG,
        limit.rlim_cur
    );
}

/// Starts lbd on the LB node as process `lbd` under `prlimit
/// --nofile=SOFT:HARD`; returns its pid once it is ready.
fn start_lbd_with_nofile(lab: &mut Lab, config: &str, soft: u64, hard: u64) -> u32 {
    let lbd = lbd_binary().expect("lbd binary");
    let path = lab.dir.join("lbd.toml");
    let lb = lab.lb.clone();
    let config = format!("pin_dir = \"{}\"\n{config}", lab.pin_dir_of(&lb).display());
    fs::write(&path, config).expect("write config");
    let pid = lab
        .spawn(
            "lbd",
            &lb.netns,
            "prlimit",
            &[
                &format!("--nofile={soft}:{hard}"),
                &lbd.to_string_lossy(),
                "--config",
                &path.to_string_lossy(),
            ],
        )
        .expect("start lbd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(lab.xdp_attached(&lb).expect("ip link") && lab.log("lbd").contains("lbd ready")) {
        assert!(lab.is_running("lbd"), "lbd exited:\n{}", lab.log("lbd"));
        assert!(
            Instant::now() < deadline,
            "lbd not ready within 30 s:\n{}",
            lab.log("lbd")
        );
        thread::sleep(Duration::from_millis(100));
    }
    pid
}

/// The soft and hard "Max open files" of process `pid`.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Open file descriptors of process `pid`.
fn fds_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// `lbctl status --json` as JSON, and how long it took; an error if lbctl
/// failed.
fn timed_status(lab: &Lab) -> (Result<Value, String>, Duration) {
    let started = Instant::now();
    let out = lab.lbctl(&["status", "--json"]).expect("run lbctl");
    let elapsed = started.elapsed();
    if !out.status.success() {
        return (
            Err(format!(
                "lbctl status failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            elapsed,
        );
    }
    (
        serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}")),
        elapsed,
    )
}

/// The health of every backend of the first VIP, by address.
fn healths(status: &Value) -> Vec<(String, String)> {
    status["vips"][0]["backends"]
        .as_array()
        .map(|backends| {
            backends
                .iter()
                .map(|b| {
                    (
                        b["address"].as_str().unwrap_or("?").to_owned(),
                        b["health"].as_str().unwrap_or("?").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_up(status: &Value) -> bool {
    let healths = healths(status);
    !healths.is_empty() && healths.iter().all(|(_, h)| h == "up")
}

/// Enters network namespace `netns` on the calling thread.
fn enter_netns(netns: &str) {
    let file = File::open(Path::new("/run/netns").join(netns)).expect("open netns");
    // SAFETY: setns on a namespace fd affects only this thread.
    let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
}

/// What a hog or a trickler did.
#[derive(Debug, Default)]
struct Counts {
    /// Connections made (reconnections included).
    connects: usize,
    /// Connections that could not be made.
    failed: usize,
    /// Connections the server closed (and that were made again).
    closed_by_server: usize,
}

/// A local user holding `count` TCP connections to an address in a
/// namespace, sending nothing: every one the server closes is opened again.
struct Hog {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    thread: thread::JoinHandle<Counts>,
}

impl Hog {
    fn start(netns: &str, address: SocketAddr, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let netns = netns.to_owned();
        let thread = thread::spawn({
            let stop = Arc::clone(&stop);
            let open = Arc::clone(&open);
            move || {
                enter_netns(&netns);
                let mut counts = Counts::default();
                let mut streams: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
                while !stop.load(Ordering::Relaxed) {
                    for slot in &mut streams {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Some(stream) = slot {
                            if closed(stream) {
                                *slot = None;
                                counts.closed_by_server += 1;
                            }
                        }
                        if slot.is_none() {
                            match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
                                Ok(stream) => {
                                    let _ = stream.set_nonblocking(true);
                                    *slot = Some(stream);
                                    counts.connects += 1;
                                }
                                Err(_) => counts.failed += 1,
                            }
                        }
                    }
                    open.store(streams.iter().flatten().count(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(200));
                }
                counts
            }
        });
        Self { stop, open, thread }
    }

    /// Connections open now (from the hog's side).
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes every connection; what the hog did.
    fn release(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("hog thread")
    }
}

/// Whether the server closed a non-blocking `stream` (EOF or an error).
fn closed(stream: &mut impl std::io::Read) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn a_metrics_connection_hog_leaves_lbd_serving() {
    raise_own_nofile();
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config_for(&["b1", "b2", "b3"], CHECKS);
    // The default soft limit, and no room above it: only bounding the
    // listeners protects lbd here.
    let pid = start_lbd_with_nofile(&mut lab, &config, 1024, 1024);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !timed_status(&lab).0.as_ref().is_ok_and(all_up) {
        assert!(Instant::now() < deadline, "backends never came up");
        thread::sleep(Duration::from_millis(100));
    }
    let baseline = fds_of(pid);
    println!("lbd {pid}: {baseline} open files before the hog");

    let lb_netns = lab.lb.netns.clone();
    let address: SocketAddr = METRICS.parse().expect("address");
    let hog = Hog::start(&lb_netns, address, HOG);
    let started = Instant::now();
    while hog.open() < HOG && started.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(100));
    }
    println!(
        "the hog holds {} connections to {METRICS} after {:?}",
        hog.open(),
        started.elapsed()
    );

    // While the hog keeps every connection open (and opens again those lbd
    // closes), lbd keeps checking, forwarding and answering.
    let mut problems = Vec::new();
    let mut most_fds = 0;
    let mut slowest_status = Duration::ZERO;
    let mut scraped_during = false;
    for round in 0..8 {
        thread::sleep(Duration::from_millis(500));
        most_fds = most_fds.max(fds_of(pid));
        let (status, elapsed) = timed_status(&lab);
        slowest_status = slowest_status.max(elapsed);
        // 5 s: a loaded 2-core machine also runs the hog and lbctl's own
        // start; an admin socket starved by the storm takes lbctl's 10 s
        // timeout (or never answers).
        if elapsed > Duration::from_secs(5) {
            problems.push(format!("round {round}: lbctl status took {elapsed:?}"));
        }
        match status {
            Ok(status) if all_up(&status) => {}
            Ok(status) => problems.push(format!(
                "round {round}: backends not all up: {:?}",
                healths(&status)
            )),
            Err(error) => problems.push(format!("round {round}: {error} after {elapsed:?}")),
        }
        let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 20).expect("burst");
        if tally.failed > 0 {
            problems.push(format!(
                "round {round}: {} of 20 requests through the VIP failed: {:?}",
                tally.failed, tally.errors
            ));
        }
        if round >= 4 && !scraped_during {
            // A scrape gets in even now: a new connection takes the slot of
            // the oldest one that has sent no request.
            scraped_during = matches!(
                http_get(&lb_netns, &format!("http://{METRICS}/metrics")),
                Ok((200, ref text)) if text.contains("lbd_build_info")
            );
        }
    }
    println!(
        "during the hog: lbd had at most {most_fds} open files; slowest lbctl status {slowest_status:?}; \
         the hog holds {} connections",
        hog.open()
    );
    if !scraped_during {
        problems.push("no scrape succeeded while the hog held its connections".to_owned());
    }
    // The metrics listener holds at most its 64 connections (and the one
    // being let in); the rest is the checks, lbctl and the like.
    if most_fds > baseline + 64 + 16 {
        problems.push(format!(
            "lbd's open files grew from {baseline} to {most_fds} under the hog"
        ));
    }
    let counts = hog.release();
    println!("the hog: {counts:?}");
    assert!(
        counts.connects >= HOG,
        "the hog never held {HOG} connections: {counts:?}"
    );

    // Once the hog is gone, scrapes work at once.
    let scrape = http_get(&lb_netns, &format!("http://{METRICS}/metrics"));
    match scrape {
        Ok((200, text)) if text.contains("lbd_build_info") => {}
        other => problems.push(format!("scrape after the hog: {other:?}")),
    }
    let log = lab.log("lbd");
    if log.contains("Too many open files") {
        problems.push("lbd ran out of file descriptors (EMFILE in its log)".to_owned());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The metrics listener's connection slots (`daemon::http`).
const METRICS_SLOTS: usize = 64;

/// A client holding `count` keep-alive connections to lbd's metrics, each
/// sending the next scrape as soon as the last answer is in, with one more
/// pipelined behind it: every connection is always busy or about to be.
/// A connection the server closes is opened again at once.
struct ScrapeHog {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<Counts>>,
}

/// Reads one HTTP answer off `reader`: whether it said `Connection:
/// close`; an error once the connection is gone.
fn read_answer(reader: &mut BufReader<TcpStream>) -> std::io::Result<bool> {
    let mut line = String::new();
    let mut length = 0usize;
    let mut close = false;
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if first {
            first = false;
            if !line.starts_with("HTTP/1.1 ") {
                return Err(ErrorKind::InvalidData.into());
            }
            continue;
        }
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse().map_err(|_| ErrorKind::InvalidData)?;
        }
        if header == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(close)
}

impl ScrapeHog {
    fn start(netns: &str, address: SocketAddr, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let answered = Arc::clone(&answered);
                let netns = netns.to_owned();
                thread::spawn(move || {
                    enter_netns(&netns);
                    let request = b"GET /metrics HTTP/1.1\r\nHost: lbd\r\n\r\n";
                    let mut counts = Counts::default();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(stream) =
                            TcpStream::connect_timeout(&address, Duration::from_secs(2))
                        else {
                            counts.failed += 1;
                            thread::sleep(Duration::from_millis(50));
                            continue;
                        };
                        counts.connects += 1;
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
                        let mut writer = stream.try_clone().expect("clone the stream");
                        let mut reader = BufReader::new(stream);
                        // Two in flight: the next scrape is there before
                        // the answer to this one is out.
                        if writer.write_all(request).is_err() || writer.write_all(request).is_err()
                        {
                            continue;
                        }
                        while !stop.load(Ordering::Relaxed) {
                            match read_answer(&mut reader) {
                                Ok(close) => {
                                    answered.fetch_add(1, Ordering::Relaxed);
                                    if close {
                                        counts.closed_by_server += 1;
                                        break;
                                    }
                                    if writer.write_all(request).is_err() {
                                        break;
                                    }
                                }
                                Err(_) => {
                                    counts.closed_by_server += 1;
                                    break;
                                }
                            }
                        }
                    }
                    counts
                })
            })
            .collect();
        Self {
            stop,
            answered,
            threads,
        }
    }

    /// Scrapes answered so far.
    fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Counts::default();
        for thread in self.threads {
            let counts = thread.join().expect("scrape hog thread");
            total.connects += counts.connects;
            total.failed += counts.failed;
            total.closed_by_server += counts.closed_by_server;
        }
        total
    }
}

#[test]
fn a_client_scraping_back_to_back_on_every_metrics_slot_leaves_room_for_a_scrape() {
    let mut lab = Lab::start(1).expect("lab");
    let config = lab.lbd_config_for(&["b1"], "");
    lab.start_lbd(&config).expect("lbd");
    let lb_netns = lab.lb.netns.clone();
    let address: SocketAddr = METRICS.parse().expect("address");
    let url = format!("http://{METRICS}/metrics");
    let hog = ScrapeHog::start(&lb_netns, address, METRICS_SLOTS);
    // Every slot taken, each connection answered at least a few times.
    let started = Instant::now();
    while hog.answered() < 8 * METRICS_SLOTS && started.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(50));
    }
    let warmed_up = hog.answered();

    // A new scraper gets in within one answer of a hog's connection, again
    // and again (http_get gives up after 5 s; without room, it would wait
    // for a hog's connection to reach its 30 s age limit).
    let mut problems = Vec::new();
    let mut times = Vec::new();
    for round in 0..5 {
        let asked = Instant::now();
        match http_get(&lb_netns, &url) {
            Ok((200, text)) if text.contains("lbd_build_info") => times.push(asked.elapsed()),
            other => problems.push(format!(
                "round {round}: scrape during the hog after {:?}: {other:?}",
                asked.elapsed()
            )),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let (status, elapsed) = timed_status(&lab);
    if let Err(error) = status {
        problems.push(format!(
            "lbctl status during the hog: {error} after {elapsed:?}"
        ));
    }
    let answered = hog.answered();
    let counts = hog.stop();
    println!(
        "scrapes during the hog took {times:?}; the hog: {answered} answers ({warmed_up} before the first new scrape), {counts:?}"
    );
    assert!(
        warmed_up >= 8 * METRICS_SLOTS,
        "the hog never got going: {warmed_up} answers, {counts:?}"
    );
    // The check is the five scrapes above, each in within 5 s: the hog's
    // own closes say nothing (each one it opens again makes room for
    // itself by closing another of its connections).
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn lbd_raises_its_soft_open_file_limit() {
    let mut lab = Lab::start(1).expect("lab");
    let config = lab.lbd_config_for(&["b1"], "");
    let pid = start_lbd_with_nofile(&mut lab, &config, 1024, 8192);
    assert_eq!(nofile_of(pid), (8192, 8192));
    let log = lab.log("lbd");
    assert!(
        log.contains("RLIMIT_NOFILE") && log.contains("8192"),
        "the log says the limit:\n{log}"
    );
}

/// Clients that each connect to a Unix socket and send a request head one
/// byte a second, never finishing it; a client the server closes connects
/// again at once.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Counts>,
}

impl Trickle {
    fn start(socket: PathBuf, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let head = b"GET /v1/status HTTP/1.1\r\nHost: lbd\r\nX-Slow: ";
                let mut counts = Counts::default();
                let mut streams: Vec<Option<(UnixStream, usize)>> =
                    (0..clients).map(|_| None).collect();
                let mut tick = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Every 100 ms: reconnect what was closed; every second: a byte each.
                    let send = tick.is_multiple_of(10);
                    tick = tick.wrapping_add(1);
                    for slot in &mut streams {
                        if let Some((stream, _)) = slot {
                            if closed(stream) {
                                *slot = None;
                                counts.closed_by_server += 1;
                            }
                        }
                        if slot.is_none() {
                            match UnixStream::connect(&socket) {
                                Ok(stream) => {
                                    let _ = stream.set_nonblocking(true);
                                    *slot = Some((stream, 0));
                                    counts.connects += 1;
                                }
                                Err(_) => counts.failed += 1,
                            }
                        }
                        if let (true, Some((stream, sent))) = (send, slot.as_mut()) {
                            let byte = head.get(*sent).copied().unwrap_or(b'a');
                            if stream.write(&[byte]).is_ok() {
                                *sent += 1;
                            }
                        }
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                counts
            }
        });
        Self { stop, thread }
    }

    fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("trickle thread")
    }
}

#[test]
fn lbctl_gets_in_while_slow_clients_fill_the_admin_api() {
    let mut lab = Lab::start(1).expect("lab");
    let config = lab.lbd_config_for(&["b1"], "");
    lab.start_lbd(&config).expect("lbd");
    let trickle = Trickle::start(lab.admin_socket(), TRICKLERS);
    // Let them take every slot (and queue the rest in the backlog).
    thread::sleep(Duration::from_secs(2));

    let mut times = Vec::new();
    for _ in 0..6 {
        let (status, elapsed) = timed_status(&lab);
        times.push(elapsed);
        if let Err(error) = status {
            let counts = trickle.stop();
            panic!("lbctl status under {TRICKLERS} slow clients: {error} after {elapsed:?} ({counts:?})");
        }
        thread::sleep(Duration::from_millis(700));
    }
    let counts = trickle.stop();
    println!("lbctl status took {times:?} under {TRICKLERS} slow clients ({counts:?})");
    // 5 s: slack for a loaded 2-core machine; a status stuck behind the
    // tricklers waits lbctl's 10 s timeout and fails.
    assert!(
        times.iter().all(|t| *t < Duration::from_secs(5)),
        "lbctl status too slow under {TRICKLERS} slow clients: {times:?}"
    );
    // The tricklers were there all along: each got in (or waited in the
    // backlog), and sent its bytes.
    assert!(counts.connects >= TRICKLERS, "{counts:?}");
}
