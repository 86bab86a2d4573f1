//! Running commands: echo them, fail with the command line on error.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
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
    let status = cmd
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
/// reach xtask alone or its whole process group (Ctrl-C). Returns the
/// first signal passed on, if any; then the child's failure is its answer
/// to that signal, not an error.
pub fn exec_passing_signals(cmd: &mut Command) -> anyhow::Result<Option<i32>> {
    eprintln!("+ {}", show(cmd));
    let signals = termination_signals();
    let mut previous = empty_signal_set();
    // SAFETY: blocks the signals in this (xtask's only) thread; the child
    // starts with a clean mask (std resets it).
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, &mut previous) };
    let result = wait_passing_signals(cmd, &signals);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    let (status, passed) = result?;
    if !status.success() && passed.is_none() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(passed)
}

fn wait_passing_signals(
    cmd: &mut Command,
    signals: &libc::sigset_t,
) -> anyhow::Result<(std::process::ExitStatus, Option<i32>)> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", show(cmd)))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid")?;
    let mut passed = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            return Ok((status, passed));
        }
        let poll = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: the signals are blocked; sigtimedwait takes one if pending.
        let signal = unsafe { libc::sigtimedwait(signals, std::ptr::null_mut(), &poll) };
        if signal > 0 {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid, signal) };
            passed.get_or_insert(signal);
        }
    }
}

fn termination_signals() -> libc::sigset_t {
    let mut set = empty_signal_set();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: adds a valid signal to a local set.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

fn empty_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

/// Runs `cmd` quietly and returns its stdout, or None if it fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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
