//! The database seed scenario's real components (issue 12): a PostgreSQL
//! server and PgBouncer instances (the Debian packages) started as
//! processes inside the lab's namespaces, and a `pgbench` driver that runs
//! from the client and reports what happened as typed numbers.
//!
//! Both servers refuse to run as root, so they run as the Debian
//! `postgres` system user; their data, config, pid and log files live in
//! the lab's run directory and they listen only on their host's lab
//! addresses (no Unix sockets), so labs running side by side never meet.
//! The hosts stay unmodified: nothing on `lo`, no sysctls. Every server is
//! stopped and waited for when its handle drops, also when a test fails.

use std::{
    fs::{self, File},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::{fs::chown, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};

use crate::{
    lab::{in_netns, Host},
    topology::{Attach, NetworkSpec, Topology},
};

/// Port PostgreSQL listens on.
pub const POSTGRES_PORT: u16 = 5432;
/// Port every PgBouncer listens on (and a NAT VIP in front of them).
pub const PGBOUNCER_PORT: u16 = 6432;
/// The role pgbench connects as (the cluster's bootstrap superuser).
pub const DB_USER: &str = "pgbench";
/// The database pgbench works in.
pub const DB_NAME: &str = "postgres";
/// Where Debian's `pgbouncer` package puts the server.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
/// The system user both servers run as (Debian's packages create it).
const SYSTEM_USER: &str = "postgres";
/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after its stop signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Numbers pgbench runs' output files apart.
static PGBENCH_SEQ: AtomicU32 = AtomicU32::new(0);

/// The routed lab of the seed scenario: `Topology::routed` with `lbs` LB
/// nodes and `bouncers` unmodified backend hosts (`b1` ..., the
/// PgBouncers), plus one more host (the last backend, the database) on a
/// network of its own (198.19.3.0/24, 2001:2:3::/64) behind router `r2`,
/// so the PgBouncers reach PostgreSQL through a router too.
pub fn seed_topology(lbs: usize, bouncers: usize, static_vip: bool) -> Topology {
    let mut topology = Topology::routed(lbs, bouncers + 1, static_vip);
    let r2 = topology
        .routers
        .iter()
        .position(|r| r.name == "r2")
        .unwrap_or(topology.routers.len().saturating_sub(1));
    let db_network = topology.networks.len();
    topology.networks.push(NetworkSpec {
        name: "db".to_owned(),
        ipv4: Ipv4Addr::new(198, 19, 3, 0),
        ipv6: Ipv6Addr::new(0x2001, 2, 3, 0, 0, 0, 0, 0),
        gateway: Some(r2),
    });
    if let Some(router) = topology.routers.get_mut(r2) {
        router.legs.push(Attach {
            network: db_network,
            host: 1,
        });
    }
    if let Some(db) = topology.backends.last_mut() {
        *db = Attach {
            network: db_network,
            host: 10,
        };
    }
    topology
}

/// The directory of the installed PostgreSQL's programs: Debian puts them
/// in `/usr/lib/postgresql/<major>/bin`; the highest major present wins.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let majors = fs::read_dir(root).with_context(|| {
        format!(
            "reading {}: is PostgreSQL installed (`cargo xtask setup`)?",
            root.display()
        )
    })?;
    majors
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no /usr/lib/postgresql/<major>/bin/postgres: install `postgresql`"))
}

/// A system user's ids.
#[derive(Debug, Clone, Copy)]
struct SystemUser {
    uid: u32,
    gid: u32,
}

/// The ids of the `postgres` system user, from /etc/passwd.
fn system_user() -> anyhow::Result<SystemUser> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() != Some(&SYSTEM_USER) {
                return None;
            }
            Some(SystemUser {
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .ok_or_else(|| anyhow!("no `{SYSTEM_USER}` user: install `postgresql`"))
}

/// Creates `dir` owned by `user` (the servers write their files there).
fn owned_dir(dir: &Path, user: SystemUser) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    chown(dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown {}", dir.display()))
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A server process started by this module: stopped with its own signal
/// and waited for when dropped.
struct Server {
    name: String,
    child: Child,
    log: PathBuf,
    stop_signal: i32,
}

impl Server {
    /// Starts `program args` as `user` inside namespace `netns` (the child
    /// is forked by a thread that entered it), stdout and stderr to `log`.
    fn spawn(
        name: &str,
        netns: &str,
        user: SystemUser,
        program: &Path,
        args: &[String],
        log: &Path,
        stop_signal: i32,
    ) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(log.parent().unwrap_or(Path::new("/")))
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .uid(user.uid)
            .gid(user.gid);
        let child = in_netns(netns, move || command.spawn())?
            .with_context(|| format!("starting {} in {netns}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            stop_signal,
        })
    }

    /// Waits until `ready` holds; fails with the log's tail when the
    /// process exits first or the time runs out.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not accept connections within {READY_TIMEOUT:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the process still runs.
    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends the stop signal and waits; SIGKILL after `STOP_TIMEOUT`.
    fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, self.stop_signal) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, tail(&self.log, 40));
        }
        self.stop();
    }
}

/// Whether a PostgreSQL-protocol server at `address` accepts connections,
/// asked with `pg_isready` from inside `netns`.
fn is_ready(bin: &Path, netns: &str, address: SocketAddr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin.join("pg_isready"))
        .args(["-q", "-t", "1", "-U", DB_USER, "-d", DB_NAME, "-h"])
        .arg(address.ip().to_string())
        .arg("-p")
        .arg(address.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A PostgreSQL server on a lab host, listening on its IPv4 and IPv6
/// addresses, trusting the lab networks. Stopped (fast shutdown) on drop.
pub struct Postgres {
    /// The host it runs on.
    pub host: Host,
    /// Its IPv4 address and port.
    pub address: SocketAddr,
    /// Its IPv6 address and port.
    pub address_v6: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    server: Server,
}

impl Postgres {
    /// Creates a cluster under `<run_dir>/postgres` (initdb as the
    /// `postgres` user) and starts the server on `host`; returns once it
    /// accepts connections.
    pub fn start(host: &Host, run_dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let user = system_user()?;
        let dir = run_dir.join("postgres");
        owned_dir(&dir, user)?;
        let data = dir.join("data");
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                DB_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(&dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .uid(user.uid)
            .gid(user.gid)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb {} failed ({}):\n{}{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Later settings win: appended to the file initdb wrote. A
        // throwaway cluster: durability off, small memory, no Unix socket.
        let settings = format!(
            "\n# lab settings\nlisten_addresses = '{}, {}'\nport = {POSTGRES_PORT}\n\
             unix_socket_directories = ''\nmax_connections = 100\nshared_buffers = 16MB\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             logging_collector = off\nlog_connections = off\n",
            host.ipv4, host.ipv6
        );
        let conf = data.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(&settings);
        fs::write(&conf, text)?;
        // Only the lab's ranges, no password (pgbench and the PgBouncers).
        fs::write(
            data.join("pg_hba.conf"),
            "host all all 198.18.0.0/15 trust\nhost all all 2001:2::/48 trust\n",
        )?;
        let log = dir.join("postgres.log");
        let mut server = Server::spawn(
            "postgres",
            &host.netns,
            user,
            &bin.join("postgres"),
            &["-D".to_owned(), data.to_string_lossy().into_owned()],
            &log,
            // Fast shutdown: sessions are ended, not waited for.
            libc::SIGINT,
        )?;
        let address = SocketAddr::new(IpAddr::V4(host.ipv4), POSTGRES_PORT);
        let netns = host.netns.clone();
        server.wait_ready(|| is_ready(&bin, &netns, address))?;
        Ok(Self {
            host: host.clone(),
            address,
            address_v6: SocketAddr::new(IpAddr::V6(host.ipv6), POSTGRES_PORT),
            data,
            server,
        })
    }

    /// Whether the server still runs.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.server.log).unwrap_or_default()
    }
}

/// A PgBouncer on a lab host in transaction pooling mode, listening on the
/// host's addresses on `PGBOUNCER_PORT`, pointing at a PostgreSQL over the
/// lab's network. Stopped (immediate shutdown) on drop.
pub struct PgBouncer {
    /// The host it runs on.
    pub host: Host,
    /// Its IPv4 address and port.
    pub address: SocketAddr,
    /// Its IPv6 address and port.
    pub address_v6: SocketAddr,
    /// Its ini file.
    pub ini: PathBuf,
    server: Server,
}

impl PgBouncer {
    /// Writes `<run_dir>/pgbouncer-<host>/` (ini, userlist, pid and log
    /// files) and starts PgBouncer on `host` in front of `postgres`;
    /// returns once it accepts connections.
    pub fn start(host: &Host, postgres: SocketAddr, run_dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        if !Path::new(PGBOUNCER).exists() {
            bail!("no {PGBOUNCER}: install `pgbouncer` (`cargo xtask setup`)");
        }
        let user = system_user()?;
        let dir = run_dir.join(format!("pgbouncer-{}", host.name));
        owned_dir(&dir, user)?;
        let userlist = dir.join("userlist.txt");
        fs::write(&userlist, format!("\"{DB_USER}\" \"\"\n"))?;
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\n{DB_NAME} = host={} port={} dbname={DB_NAME}\n\n\
                 [pgbouncer]\nlisten_addr = {}, {}\nlisten_port = {PGBOUNCER_PORT}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npidfile = {}\n\
                 pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 log_connections = 0\nlog_disconnections = 0\n",
                postgres.ip(),
                postgres.port(),
                host.ipv4,
                host.ipv6,
                userlist.display(),
                dir.join("pgbouncer.pid").display(),
            ),
        )?;
        let log = dir.join("pgbouncer.log");
        let name = format!("pgbouncer-{}", host.name);
        let mut server = Server::spawn(
            &name,
            &host.netns,
            user,
            Path::new(PGBOUNCER),
            &[ini.to_string_lossy().into_owned()],
            &log,
            // Immediate shutdown (SIGINT would wait for clients).
            libc::SIGTERM,
        )?;
        let address = SocketAddr::new(IpAddr::V4(host.ipv4), PGBOUNCER_PORT);
        let netns = host.netns.clone();
        server.wait_ready(|| is_ready(&bin, &netns, address))?;
        Ok(Self {
            host: host.clone(),
            address,
            address_v6: SocketAddr::new(IpAddr::V6(host.ipv6), PGBOUNCER_PORT),
            ini,
            server,
        })
    }

    /// Whether PgBouncer still runs.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Kills PgBouncer with SIGKILL (a crash: its clients' connections
    /// are reset) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.server.child.kill()?;
        self.server.child.wait()?;
        Ok(())
    }
}

/// The whole database side of the seed scenario: PostgreSQL on one host
/// and a PgBouncer on each of the others. Dropping it stops the
/// PgBouncers first (fields drop in order), then PostgreSQL.
pub struct PgStack {
    /// The PgBouncers, in host order.
    pub bouncers: Vec<PgBouncer>,
    /// The server behind them.
    pub postgres: Postgres,
}

impl PgStack {
    /// Starts PostgreSQL on `db` and a PgBouncer on every host of
    /// `bouncers`, their files under `run_dir` (the lab's directory).
    pub fn start(db: &Host, bouncers: &[Host], run_dir: &Path) -> anyhow::Result<Self> {
        let postgres = Postgres::start(db, run_dir).context("starting PostgreSQL")?;
        let bouncers = bouncers
            .iter()
            .map(|host| {
                PgBouncer::start(host, postgres.address, run_dir)
                    .with_context(|| format!("starting PgBouncer on {}", host.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { bouncers, postgres })
    }
}

/// How long a pgbench run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// `-t`: this many transactions per client.
    Transactions(u32),
    /// `-T`: this many seconds.
    Seconds(u32),
}

/// A pgbench run: the built-in TPC-B-like script, simple query protocol
/// (what a PgBouncer in transaction mode serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Concurrent clients (`-c`).
    pub clients: u32,
    /// Worker threads (`-j`).
    pub threads: u32,
    /// How long it lasts.
    pub length: Length,
    /// `-C`: a new connection for every transaction (default: each client
    /// keeps its connection).
    pub connect_per_transaction: bool,
    /// `-P`: a progress line every this many seconds (0: none).
    pub progress_s: u32,
}

impl Run {
    /// The transactions asked for (`-t` × clients); None for timed runs.
    pub fn requested(&self) -> Option<u64> {
        match self.length {
            Length::Transactions(t) => Some(u64::from(t) * u64::from(self.clients)),
            Length::Seconds(_) => None,
        }
    }

    /// The longest the run may take before it is killed.
    fn limit(&self) -> Duration {
        match self.length {
            Length::Transactions(t) => Duration::from_secs(60 + u64::from(t) / 10),
            Length::Seconds(s) => Duration::from_secs(u64::from(s) + 30),
        }
    }
}

/// One progress line (`-P`): seconds since the start, and the interval's
/// transactions per second and failures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Transactions per second in the interval.
    pub tps: f64,
    /// Failed transactions in the interval (pgbench 15 prints them).
    pub failed: u64,
}

/// What a pgbench run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// "number of transactions actually processed".
    pub processed: u64,
    /// What it says was asked for (`-t` runs print `processed/asked`).
    pub asked: Option<u64>,
    /// "number of failed transactions" (pgbench 15 and later; 0 before).
    pub failed: u64,
    /// Transactions per second (without the initial connection time).
    pub tps: f64,
    /// The progress lines, when asked for.
    pub progress: Vec<Progress>,
}

/// The number right after `key` in `text` (up to the first non-digit).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix(key))?;
    let digits: String = line
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Parses pgbench's summary (stdout) and progress lines (stderr).
pub fn parse_report(stdout: &str, stderr: &str) -> anyhow::Result<Report> {
    const PROCESSED: &str = "number of transactions actually processed:";
    let processed = number_after(stdout, PROCESSED)
        .ok_or_else(|| anyhow!("no `{PROCESSED}` line in pgbench's output:\n{stdout}"))?;
    let asked = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix(PROCESSED))
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, asked)| asked.trim().parse().ok());
    let failed = number_after(stdout, "number of failed transactions:").unwrap_or(0);
    let tps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("no `tps = ` line in pgbench's output:\n{stdout}"))?;
    let progress = stderr.lines().filter_map(parse_progress).collect();
    Ok(Report {
        processed,
        asked,
        failed,
        tps,
        progress,
    })
}

/// `progress: 2.0 s, 812.0 tps, lat 4.9 ms stddev 1.2, 0 failed`.
fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim().strip_prefix("progress:")?;
    let mut parts = rest.split(',').map(str::trim);
    let at_s = parts.next()?.strip_suffix(" s")?.parse().ok()?;
    let tps = parts.next()?.strip_suffix(" tps")?.parse().ok()?;
    let failed = parts
        .find_map(|p| p.strip_suffix(" failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Some(Progress { at_s, tps, failed })
}

/// Runs pgbench from a lab namespace against one PostgreSQL-protocol
/// address (a PostgreSQL, a PgBouncer or a VIP in front of them). Its
/// output goes to files in `dir`, named by `label`.
#[derive(Debug, Clone)]
pub struct Pgbench {
    /// The namespace it runs in (the client's).
    pub netns: String,
    /// Where it connects.
    pub target: SocketAddr,
    /// Where its output files go.
    pub dir: PathBuf,
}

impl Pgbench {
    /// A driver for `target` from `netns`, output files in `dir`.
    pub fn new(netns: &str, target: SocketAddr, dir: &Path) -> Self {
        Self {
            netns: netns.to_owned(),
            target,
            dir: dir.to_owned(),
        }
    }

    /// `pgbench -i -s <scale>`: creates and fills the tables (scale 1 is
    /// 100,000 accounts).
    pub fn init(&self, scale: u32) -> anyhow::Result<()> {
        let args = vec!["-i".to_owned(), "-q".to_owned(), format!("-s{scale}")];
        let (status, stdout, stderr) =
            self.pgbench(&args, "pgbench-init", Duration::from_secs(120))?;
        if !status.success() {
            bail!(
                "pgbench -i against {} failed ({status}):\n{stderr}{stdout}",
                self.target
            );
        }
        Ok(())
    }

    /// A bounded run; fails when pgbench exits non-zero (a client aborted:
    /// an error it does not retry, such as a lost connection), with its
    /// stderr, or when its output cannot be read.
    pub fn run(&self, run: &Run) -> anyhow::Result<Report> {
        let mut args = vec![
            "-n".to_owned(), // the tables were vacuumed by -i
            format!("-c{}", run.clients),
            format!("-j{}", run.threads.max(1)),
        ];
        args.push(match run.length {
            Length::Transactions(t) => format!("-t{t}"),
            Length::Seconds(s) => format!("-T{s}"),
        });
        if run.connect_per_transaction {
            args.push("-C".to_owned());
        }
        if run.progress_s > 0 {
            args.push(format!("-P{}", run.progress_s));
        }
        let (status, stdout, stderr) = self.pgbench(&args, "pgbench-run", run.limit())?;
        if !status.success() {
            bail!(
                "pgbench against {} failed ({status}); stderr:\n{}\nstdout:\n{stdout}",
                self.target,
                last_lines(&stderr, 30)
            );
        }
        parse_report(&stdout, &stderr)
    }

    /// Runs pgbench with `args` plus the connection options; kills it
    /// after `limit`. Returns (status, stdout, stderr).
    fn pgbench(
        &self,
        args: &[String],
        label: &str,
        limit: Duration,
    ) -> anyhow::Result<(ExitStatus, String, String)> {
        fs::create_dir_all(&self.dir)?;
        let seq = PGBENCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let base = self
            .dir
            .join(format!("{label}-{}-{seq}", self.target.port()));
        let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(bin_dir()?.join("pgbench"))
            .args(args)
            .arg("-h")
            .arg(self.target.ip().to_string())
            .arg("-p")
            .arg(self.target.port().to_string())
            .args(["-U", DB_USER, DB_NAME])
            .env("LC_ALL", "C")
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGSSLMODE", "disable")
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .context("starting pgbench")?;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "pgbench against {} still ran after {limit:?}:\n{}",
                    self.target,
                    tail(&err_path, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Ok((
            status,
            fs::read_to_string(&out_path).unwrap_or_default(),
            fs::read_to_string(&err_path).unwrap_or_default(),
        ))
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// Runs one SQL statement with `psql` from `netns` against `target`;
/// returns its rows unaligned, one a line, columns split by `|`.
pub fn query(netns: &str, target: SocketAddr, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin_dir()?.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(target.ip().to_string())
        .arg("-p")
        .arg(target.port().to_string())
        .args(["-U", DB_USER, "-d", DB_NAME, "-c", sql])
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", "disable")
        .stdin(Stdio::null())
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} against {target} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pgbench 15.18 (Debian) printed for `-c4 -T2 -P1` in the lab.
    const TIMED_STDOUT: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
query mode: simple
number of clients: 4
number of threads: 1
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 851
number of failed transactions: 0 (0.000%)
latency average = 9.389 ms
latency stddev = 6.321 ms
initial connection time = 1.288 ms
tps = 423.925118 (without initial connection time)
";
    const TIMED_STDERR: &str = "progress: 1.0 s, 482.7 tps, lat 8.150 ms stddev 5.940, 0 failed
progress: 2.0 s, 363.9 tps, lat 11.041 ms stddev 6.468, 0 failed
";

    #[test]
    fn a_timed_run_with_progress_is_read_whole() {
        let report = parse_report(TIMED_STDOUT, TIMED_STDERR).expect("report");
        assert_eq!(
            report,
            Report {
                processed: 851,
                asked: None,
                failed: 0,
                tps: 423.925118,
                progress: vec![
                    Progress {
                        at_s: 1.0,
                        tps: 482.7,
                        failed: 0
                    },
                    Progress {
                        at_s: 2.0,
                        tps: 363.9,
                        failed: 0
                    },
                ],
            }
        );
    }

    #[test]
    fn a_counted_run_reports_what_was_asked_and_failures() {
        let stdout = TIMED_STDOUT
            .replace(
                "duration: 2 s\n",
                "number of transactions per client: 100\n",
            )
            .replace("processed: 851", "processed: 397/400")
            .replace(
                "failed transactions: 0 (0.000%)",
                "failed transactions: 3 (0.750%)",
            );
        let stderr = "progress: 1.0 s, 10.0 tps, lat 8.1 ms stddev 5.9, 3 failed\n";
        let report = parse_report(&stdout, stderr).expect("report");
        assert_eq!((report.processed, report.asked), (397, Some(400)));
        assert_eq!(report.failed, 3);
        assert_eq!(report.progress[0].failed, 3);
    }

    #[test]
    fn output_without_the_summary_is_an_error_not_zeroes() {
        let cut = TIMED_STDOUT.replace("number of transactions actually processed: 851\n", "");
        assert!(parse_report(&cut, "").is_err());
        let cut = TIMED_STDOUT.replace("tps = 423.925118 (without initial connection time)\n", "");
        assert!(parse_report(&cut, "").is_err());
        assert!(parse_report("", "").is_err());
    }
}
