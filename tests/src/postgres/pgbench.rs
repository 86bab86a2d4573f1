//! The pgbench driver: what a run asks for, and running it from a lab
//! namespace with its output kept in files.

use std::{
    fs::{self, File},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{
    bin_dir,
    report::{parse_report, Report},
    server::tail,
    DB_NAME, DB_USER,
};

/// Numbers pgbench runs' output files apart.
static PGBENCH_SEQ: AtomicU32 = AtomicU32::new(0);

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
