//! Running commands: echo them, fail with the command line on error.
//! Every command xtask starts while it holds SIGINT, SIGTERM and SIGHUP
//! off ([`Held`]) is started here, with the mask from before
//! ([`as_before_held`]), so that a signal still ends a hung one.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use anyhow::{bail, Context as _};

use crate::signals::{as_before_held, signal_name, Held, Interrupted};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The directory the cargo commands xtask runs build into (`debug/`,
/// `release/`, `package/` under it): `$CARGO_TARGET_DIR`, else the
/// workspace's `target`. A binary xtask runs, hands to the tests or
/// packages is looked up here, never in `./target`, so that it is the one
/// the build just before made.
pub fn target_dir() -> PathBuf {
    target_dir_for(&root(), std::env::var_os("CARGO_TARGET_DIR").as_deref())
}

/// [`target_dir`] for the workspace at `root` and the value of
/// `CARGO_TARGET_DIR`: a relative one is taken from `root`, where xtask
/// runs cargo ([`command`]); unset or empty, `root/target`. (Cargo's
/// `build.target-dir` setting is not read: set the variable instead.)
fn target_dir_for(root: &Path, cargo_target_dir: Option<&OsStr>) -> PathBuf {
    match cargo_target_dir {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// A command to run from the workspace root.
pub fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    cmd
}

/// Runs `cmd`, echoing it; fails unless it exits 0.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", show(cmd));
    let status = as_before_held(cmd)
        .status()
        .with_context(|| format!("starting {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` like [`exec`], but instead of dying on SIGINT, SIGTERM or
/// SIGHUP, passes them on to it and waits until it has finished: for a
/// child that cleans up on those signals (the demo's lab), whether they
/// reach xtask alone or its whole process group (Ctrl-C). Fails if the
/// child fails, and also, naming the signal, if one was passed on however
/// the child then exited: an interrupted run is not a successful one.
pub fn exec_passing_signals(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", show(cmd));
    let held = Held::new()?;
    let (status, passed) = held
        .wait_passing_on(cmd)
        .with_context(|| format!("running {}", show(cmd)))?;
    drop(held);
    if let Some(signal) = passed {
        return Err(Interrupted::new(
            signal,
            format!(
                "{} was interrupted by {} (passed on to it; it has finished: {status})",
                show(cmd),
                signal_name(signal)
            ),
        )
        .into());
    }
    if !status.success() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout, or None if it fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = as_before_held(cmd).stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` quietly and returns its exit status, stdout and stderr,
/// for a caller that judges them itself; fails only if it cannot start.
pub(crate) fn captured(cmd: &mut Command) -> anyhow::Result<Output> {
    as_before_held(cmd)
        .output()
        .with_context(|| format!("starting {}", show(cmd)))
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Fails unless running as root (BPF, namespaces and apt need it).
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run it as root");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_directory_follows_cargo_target_dir() {
        let main = Path::new("/work/main");
        assert_eq!(target_dir_for(main, None), Path::new("/work/main/target"));
        assert_eq!(
            target_dir_for(main, Some(OsStr::new(""))),
            Path::new("/work/main/target")
        );
        assert_eq!(
            target_dir_for(main, Some(OsStr::new("/work/target-b"))),
            Path::new("/work/target-b")
        );
        // Relative: from the workspace root, where xtask runs cargo.
        assert_eq!(
            target_dir_for(main, Some(OsStr::new("../target-c"))),
            Path::new("/work/main/../target-c")
        );
        assert_eq!(
            target_dir_for(main, Some(OsStr::new("out"))),
            Path::new("/work/main/out")
        );
        // This process's own: the variable as cargo ran the tests.
        assert_eq!(
            target_dir(),
            target_dir_for(&root(), std::env::var_os("CARGO_TARGET_DIR").as_deref())
        );
    }

    #[test]
    fn a_run_interrupted_by_a_signal_fails_naming_it_even_if_the_child_exits_0() {
        let ready = std::env::temp_dir().join(format!("xtask-signal-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // SIGTERM to this thread alone (other test threads do not block
        // it), once the child is ready for it: the child runs until it
        // gets the signal, so exec_passing_signals still blocks it here
        // and its sigtimedwait takes it.
        let flag = ready.clone();
        let sender = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if flag.exists() {
                    // SAFETY: a thread-directed signal the target blocks
                    // (see above).
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGTERM) };
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            false
        });
        // A child that cleans up on SIGTERM and exits 0, as the demo does.
        let mut child = Command::new("sh");
        child.args([
            "-c",
            "trap 'kill $!; exit 0' TERM; sleep 30 & touch \"$0\"; wait",
        ]);
        child.arg(&ready);
        let result = exec_passing_signals(&mut child);
        let _ = std::fs::remove_file(&ready);
        assert!(sender.join().unwrap(), "the child never got ready");
        let message = result.expect_err("interrupted").to_string();
        assert!(message.contains("interrupted by SIGTERM"), "{message}");
        assert!(message.contains("exit status: 0"), "{message}");

        // The child starts with the signals unblocked (std would hand it
        // this thread's mask, blocked): one it sends itself kills it, and
        // that fails (none was passed on); a child that exits 0 passes.
        let mut child = Command::new("sh");
        child.args(["-c", "kill -TERM $$"]);
        let error = exec_passing_signals(&mut child).expect_err("killed");
        assert!(error.to_string().contains("failed: signal: 15"), "{error}");
        exec_passing_signals(Command::new("sh").args(["-c", "exit 0"])).unwrap();
    }
}
