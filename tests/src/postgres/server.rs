//! The process handle both servers share: started as the `postgres`
//! system user inside a lab namespace, waited for until it accepts
//! connections, stopped and reaped when dropped.

use std::{
    fs::{self, File},
    net::SocketAddr,
    os::unix::{fs::chown, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};

use super::{DB_NAME, DB_USER};
use crate::lab::in_netns;

/// The system user both servers run as (Debian's packages create it).
const SYSTEM_USER: &str = "postgres";
/// How long a server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after its stop signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A system user's ids.
#[derive(Debug, Clone, Copy)]
pub(super) struct SystemUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// The ids of the `postgres` system user, from /etc/passwd.
pub(super) fn system_user() -> anyhow::Result<SystemUser> {
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
pub(super) fn owned_dir(dir: &Path, user: SystemUser) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    chown(dir, Some(user.uid), Some(user.gid)).with_context(|| format!("chown {}", dir.display()))
}

/// The last `lines` lines of the file at `path` (empty when unreadable).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A server process started by this module: stopped with its own signal
/// and waited for when dropped.
pub(super) struct Server {
    name: String,
    pub(super) child: Child,
    pub(super) log: PathBuf,
    stop_signal: i32,
}

impl Server {
    /// Starts `program args` as `user` inside namespace `netns` (the child
    /// is forked by a thread that entered it), stdout and stderr to `log`.
    pub(super) fn spawn(
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
        crate::support::with_signals_unblocked(&mut command)
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
    pub(super) fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
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
    pub(super) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends the stop signal and waits; SIGKILL after `STOP_TIMEOUT`.
    pub(super) fn stop(&mut self) -> Option<ExitStatus> {
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
pub(super) fn is_ready(bin: &Path, netns: &str, address: SocketAddr) -> bool {
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
