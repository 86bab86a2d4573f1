//! `cargo xtask package --check`: installs the package on this machine,
//! checks what an operator would (versions, man pages, units, config
//! mode, nothing started), then removes and purges it and checks nothing
//! of it is left. Whatever fails, and whatever SIGINT, SIGTERM or SIGHUP
//! comes meanwhile (Ctrl-C, a CI cancel), the package is purged before
//! returning.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _};

use super::{stdout_of, PACKAGE};
use crate::{
    cmd::{captured, exec, output},
    signals::{ignored_in_child, signal_name, Held, Interrupted},
};

/// The units the package installs, checked with `systemd-analyze verify`.
const UNITS: &[&str] = &[
    "/lib/systemd/system/lbd.service",
    "/lib/systemd/system/lb-decap.service",
];

pub fn run(deb: &Path) -> anyhow::Result<()> {
    refuse_unless_clean()?;
    install_check_purge(
        &mut [
            &mut || exec(dpkg().arg("-i").arg(deb)),
            &mut installed,
            &mut || reinstall_keeps_edits(deb),
            &mut remove_and_purge,
        ],
        &mut clean_up,
    )?;
    eprintln!("package: installed, checked, removed and purged cleanly");
    Ok(())
}

/// Fails if lbd is on this machine already, packaged or not: the check
/// would remove and purge it.
fn refuse_unless_clean() -> anyhow::Result<()> {
    if let Some(status) = status() {
        if status != "not-installed" {
            bail!(
                "package {PACKAGE} is on this machine already ({status}): the check installs \
                 and purges its own, so remove it first (dpkg --purge {PACKAGE})"
            );
        }
    }
    let found = lbd_on_this_machine(Path::new("/"));
    if !found.is_empty() {
        bail!(
            "lbd is on this machine without the package (installed by hand?): {}. The check's \
             removal would stop lbd.service and lb-decap.service, take pinned data planes off \
             (lbd --cleanup, lb-decap cleanup) and its purge would delete /etc/lbd and \
             /var/lib/lbd and empty the BGP routes file: run it on a machine without lbd",
            found.join("; ")
        );
    }
    Ok(())
}

/// One step of [`install_check_purge`].
type Step<'a> = &'a mut dyn FnMut() -> anyhow::Result<()>;

/// Runs `steps` (install, checks, removal) in order up to the first that
/// fails, then `clean_up` whatever happened: nothing the check installed
/// may stay on the machine, since every later check would refuse to run.
/// SIGINT, SIGTERM and SIGHUP (Ctrl-C, a CI cancel) are held off all
/// along: one that comes stops the steps after the running one and fails
/// the run naming it ([`Interrupted`]), once `clean_up` has run to its end.
fn install_check_purge(steps: &mut [Step<'_>], clean_up: Step<'_>) -> anyhow::Result<()> {
    let held = Held::new()?;
    let mut result = Ok(());
    let mut signal = None;
    for step in steps.iter_mut() {
        result = step();
        signal = held.take();
        if result.is_err() || signal.is_some() {
            break;
        }
    }
    if let Some(signal) = signal {
        eprintln!(
            "package: got {}: purging what the check installed",
            signal_name(signal)
        );
    }
    let cleaned = clean_up();
    let signal = signal.or_else(|| held.take());
    drop(held);
    let result = match (result, cleaned) {
        (Ok(()), cleaned) => cleaned,
        (Err(error), Ok(())) => Err(error),
        (Err(error), Err(cleaning)) => {
            Err(cleaning.context(format!("{error:#}; then cleaning up failed")))
        }
    };
    let Some(signal) = signal else {
        return result;
    };
    let interrupted = Interrupted::new(
        signal,
        format!(
            "the package check was interrupted by {}{}",
            signal_name(signal),
            if result.is_ok() {
                " (it has purged what it installed)"
            } else {
                ""
            }
        ),
    );
    Err(match result {
        Ok(()) => interrupted.into(),
        Err(error) => error.context(interrupted),
    })
}

/// dpkg, started with SIGINT, SIGTERM and SIGHUP ignored: killed while
/// unpacking, it would leave the package half-installed, which its purge
/// refuses. [`install_check_purge`] acts on the signal once it is done.
fn dpkg() -> Command {
    let mut cmd = Command::new("dpkg");
    ignored_in_child(&mut cmd);
    cmd
}

/// Takes away what the check installed: the package, if a failed step
/// left it on the machine, and the routes file's directory, which was not
/// there before (see [`lbd_on_this_machine`]).
fn clean_up() -> anyhow::Result<()> {
    let purged = if status().is_some_and(|s| s != "not-installed") {
        exec(dpkg().args(["--purge", PACKAGE]))
    } else {
        Ok(())
    };
    let removed = match Path::new(ROUTES_FILE).parent().filter(|d| d.exists()) {
        Some(dir) => {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
        }
        None => Ok(()),
    };
    purged.and(removed)
}

/// What dpkg says of the package ("installed", "config-files",
/// "not-installed"), or None if it never heard of it.
fn status() -> Option<String> {
    stdout_of(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", PACKAGE]))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn installed() -> anyhow::Result<()> {
    ensure!(
        status().as_deref() == Some("installed"),
        "dpkg -i left {PACKAGE} {:?}",
        status()
    );
    let version = super::package_version();
    for binary in ["lbd", "lbctl", "lb-decap"] {
        let printed = stdout_of(Command::new(format!("/usr/sbin/{binary}")).arg("--version"))?;
        let expected = format!("{binary} {version}");
        ensure!(
            printed.starts_with(&expected),
            "`{binary} --version` printed {printed:?}, not {expected:?}..."
        );
        eprintln!("package: {}", printed.trim());
    }
    for page in ["lbd", "lbctl", "lbctl-node-drain", "lb-decap"] {
        let expected = format!("/usr/share/man/man8/{page}.8.gz");
        ensure!(
            Path::new(&expected).is_file(),
            "dpkg did not install {expected}: does a path-exclude in /etc/dpkg/dpkg.cfg.d \
             (slim container images) leave man pages out?"
        );
        let path = stdout_of(Command::new("man").args(["-w", page]))?;
        ensure!(
            path.trim() == expected,
            "`man -w {page}` found {path:?}, not {expected}"
        );
    }
    let page = stdout_of(
        Command::new("man")
            .arg("lbd")
            .env("LC_ALL", "C")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"),
    )?;
    eprintln!("package: man lbd:\n{}", head(&page, 8));
    ensure!(
        page.contains("lbd - eBPF/XDP L4 load balancer daemon") && page.contains("--cleanup"),
        "`man lbd` shows no NAME line or no --cleanup option:\n{page}"
    );
    verify_units()?;
    let config = Path::new("/etc/lbd/lbd.toml");
    let mode = config
        .metadata()
        .with_context(|| format!("reading {}", config.display()))?
        .permissions()
        .mode();
    ensure!(
        mode & 0o077 == 0,
        "{} has mode {:o}: readable by others",
        config.display(),
        mode & 0o777
    );
    exec(
        Command::new("/usr/sbin/lbctl")
            .args(["config", "check"])
            .arg(config),
    )?;
    ensure!(!lbd_runs()?, "installing the package started lbd");
    Ok(())
}

/// `systemd-analyze verify` on the installed units: it exits 0 on unknown
/// keys and bad values but names the unit, so any line about them fails.
fn verify_units() -> anyhow::Result<()> {
    let output = captured(Command::new("systemd-analyze").arg("verify").args(UNITS))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let names: Vec<&str> = UNITS.iter().filter_map(|u| u.rsplit('/').next()).collect();
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| names.iter().any(|n| l.contains(n)))
        .collect();
    ensure!(
        output.status.success() && complaints.is_empty(),
        "systemd-analyze verify {UNITS:?} ({}):\n{stderr}",
        output.status
    );
    eprintln!(
        "package: systemd-analyze verify: {} units fine",
        UNITS.len()
    );
    Ok(())
}

/// The upgrade path (`dpkg -i` over an installed lbd, here the same
/// version): the operator's edit of the config survives. The shipped text
/// is put back afterwards, so the removal below checks the conffile as
/// shipped. (The prerm's cleanup follows what is pinned, not the config:
/// nothing is, since the check refused to start with pins under
/// /sys/fs/bpf/lbd or /sys/fs/bpf/lb-decap and starts no service.)
fn reinstall_keeps_edits(deb: &Path) -> anyhow::Result<()> {
    let config = Path::new("/etc/lbd/lbd.toml");
    let shipped = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
    let mut edited = shipped.clone();
    edited.extend_from_slice(b"# edited by cargo xtask package --check\n");
    std::fs::write(config, &edited).with_context(|| format!("editing {}", config.display()))?;
    let reinstalled = exec(dpkg().arg("-i").arg(deb));
    let after = std::fs::read(config).with_context(|| format!("reading {}", config.display()));
    std::fs::write(config, &shipped).with_context(|| format!("restoring {}", config.display()))?;
    reinstalled?;
    ensure!(
        after? == edited,
        "dpkg -i over the installed package lost the edit of {}",
        config.display()
    );
    ensure!(
        status().as_deref() == Some("installed"),
        "dpkg -i again left {PACKAGE} {:?}",
        status()
    );
    Ok(())
}

fn remove_and_purge() -> anyhow::Result<()> {
    let listed = listed_paths()?;
    let conffiles = conffiles()?;
    ensure!(
        !conffiles.is_empty(),
        "dpkg lists no conffiles for {PACKAGE}"
    );
    let files: Vec<&PathBuf> = listed.iter().filter(|p| !p.is_dir()).collect();
    exec(dpkg().args(["-r", PACKAGE]))?;
    ensure!(
        status().as_deref() == Some("config-files"),
        "dpkg -r left {PACKAGE} {:?}",
        status()
    );
    for file in &files {
        let kept = conffiles.contains(file);
        ensure!(
            file.exists() == kept,
            "after dpkg -r, {} {}",
            file.display(),
            if kept {
                "is gone (a conffile: kept until purge)"
            } else {
                "is still there"
            }
        );
    }
    exec(dpkg().args(["--purge", PACKAGE]))?;
    ensure!(
        status().is_none_or(|s| s == "not-installed"),
        "dpkg --purge left {PACKAGE} {:?}",
        status()
    );
    for file in &files {
        ensure!(
            !file.exists(),
            "after dpkg --purge, {} is still there",
            file.display()
        );
    }
    for dir in listed.iter().filter(|p| p.is_dir()) {
        ensure!(
            !is_empty_dir(dir)? || owned_by_another_package(dir),
            "after dpkg --purge, the package's empty directory {} is still there",
            dir.display()
        );
    }
    ensure!(
        !Path::new("/etc/lbd").exists(),
        "after dpkg --purge, /etc/lbd is still there"
    );
    // The purge leaves BGP's routes file empty, for a BIRD that still
    // includes it.
    let routes = Path::new(ROUTES_FILE);
    if routes.exists() {
        let left = std::fs::read(routes).with_context(|| format!("reading {ROUTES_FILE}"))?;
        ensure!(
            left.is_empty(),
            "after dpkg --purge, {ROUTES_FILE} still holds {} bytes",
            left.len()
        );
    }
    Ok(())
}

/// The BGP routes file lbd writes and BIRD includes (the tmpfiles entry's).
const ROUTES_FILE: &str = "/run/lbd-bgp/vips.conf";

/// What of an lbd the package does not account for is on the machine
/// under `root` (`/`, or a test's tree): the paths the package's scripts
/// would act on (its units, configs, state, routes file and pins), and
/// running lbd or lb-decap processes not started from a cargo build
/// directory (the test labs' are; the scripts leave those alone). Empty:
/// the check may install, remove and purge.
fn lbd_on_this_machine(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for path in [
        "etc/lbd",
        "var/lib/lbd",
        "run/lbd-bgp",
        "etc/systemd/system/lbd.service",
        "etc/systemd/system/lb-decap.service",
        "lib/systemd/system/lbd.service",
        "lib/systemd/system/lb-decap.service",
        "usr/lib/systemd/system/lbd.service",
        "usr/lib/systemd/system/lb-decap.service",
        "sys/fs/bpf/lbd",
        "sys/fs/bpf/lb-decap",
    ] {
        let full = root.join(path);
        if full.symlink_metadata().is_err() {
            continue;
        }
        // /lib is /usr/lib on a merged-/usr system: name it once.
        let real = full.canonicalize().unwrap_or_else(|_| full.clone());
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        found.push(format!("/{path}"));
    }
    for (pid, exe) in lbd_processes(&root.join("proc")) {
        let from_a_build = exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "debug" || d == "release");
        if !from_a_build {
            found.push(format!("{} running (pid {pid})", exe.display()));
        }
    }
    found
}

/// Processes whose executable is named lbd or lb-decap, under a proc
/// tree: (pid, executable).
fn lbd_processes(proc: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            // A replaced binary reads "/usr/sbin/lbd (deleted)".
            let name = exe.file_name()?.to_str()?.trim_end_matches(" (deleted)");
            ["lbd", "lb-decap"].contains(&name).then_some((pid, exe))
        })
        .collect();
    found.sort();
    found
}

/// `dpkg -L`: the package's files and directories.
fn listed_paths() -> anyhow::Result<Vec<PathBuf>> {
    let listed = stdout_of(Command::new("dpkg-query").args(["-L", PACKAGE]))?;
    Ok(listed
        .lines()
        .filter(|l| l.starts_with('/') && *l != "/.")
        .map(PathBuf::from)
        .collect())
}

/// The conffiles dpkg recorded (" /etc/lbd/lbd.toml MD5" lines).
fn conffiles() -> anyhow::Result<Vec<PathBuf>> {
    let text = stdout_of(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}\n", PACKAGE]))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(PathBuf::from)
        .collect())
}

fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_none())
}

fn owned_by_another_package(dir: &Path) -> bool {
    output(Command::new("dpkg-query").arg("-S").arg(dir)).is_some()
}

/// Whether a process runs /usr/sbin/lbd.
fn lbd_runs() -> anyhow::Result<bool> {
    let lbd = Path::new("/usr/sbin/lbd");
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            if exe == lbd {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn head(text: &str, lines: usize) -> String {
    text.lines().take(lines).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// SIGTERM to this thread alone (other test threads do not block it,
    /// and a signal to the process would go to one of them).
    fn sigterm_to_this_thread() {
        // SAFETY: tgkill on this process's own calling thread.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::getpid(),
                libc::gettid(),
                libc::SIGTERM,
            )
        };
    }

    #[test]
    fn a_check_interrupted_by_a_signal_still_purges_then_fails_naming_it() {
        let calls = std::cell::RefCell::new(Vec::new());
        // A step that notes it ran, then passes.
        let note = |step: &'static str| {
            calls.borrow_mut().push(step);
            Ok(())
        };
        let result = install_check_purge(
            &mut [
                &mut || note("install"),
                &mut || {
                    sigterm_to_this_thread();
                    note("check")
                },
                &mut || note("remove"),
            ],
            &mut || note("purge"),
        );
        assert_eq!(*calls.borrow(), ["install", "check", "purge"]);
        let error = result.expect_err("interrupted");
        assert_eq!(
            error.to_string(),
            "the package check was interrupted by SIGTERM (it has purged what it installed)"
        );
        let interrupted = error.downcast_ref::<Interrupted>().expect("Interrupted");
        assert_eq!(interrupted.exit_code(), std::process::ExitCode::from(143));
    }

    /// The children of this thread, from /proc.
    fn children_of(tid: libc::pid_t) -> Vec<libc::pid_t> {
        let path = format!("/proc/self/task/{tid}/children");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    #[test]
    fn a_hung_step_ends_on_the_signal_and_the_package_is_still_purged() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // SIGTERM to the step's child and to this thread, as Ctrl-C or a
        // CI cancel sends it to the whole process group (the test's group
        // is cargo's, so not to it).
        let sender = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Some(&child) = children_of(tid).first() {
                    // SAFETY: kill(2) and tgkill on this process's own
                    // child and thread.
                    unsafe {
                        libc::kill(child, libc::SIGTERM);
                        libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGTERM);
                    }
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            false
        });
        let mut purged = false;
        // A step that hangs (`systemd-analyze verify` without systemd).
        let result = install_check_purge(
            &mut [&mut || exec(Command::new("sleep").arg("30"))],
            &mut || {
                purged = true;
                Ok(())
            },
        );
        assert!(sender.join().unwrap(), "the step never started its child");
        assert!(purged);
        // The signal ended the child, not its 30 s.
        let error = result.expect_err("interrupted");
        assert_eq!(
            format!("{error:#}"),
            "the package check was interrupted by SIGTERM: sleep 30 failed: signal: 15 (SIGTERM)"
        );
        assert!(error.downcast_ref::<Interrupted>().is_some());
    }

    #[test]
    fn a_signal_during_the_cleanup_lets_it_finish_and_fails_naming_it() {
        let mut purged = false;
        let result = install_check_purge(&mut [&mut || bail!("dpkg -i failed")], &mut || {
            sigterm_to_this_thread();
            purged = true;
            Ok(())
        });
        assert!(purged);
        let error = result.expect_err("interrupted");
        assert_eq!(
            format!("{error:#}"),
            "the package check was interrupted by SIGTERM: dpkg -i failed"
        );
        assert!(error.downcast_ref::<Interrupted>().is_some());

        // Without a signal: the step's failure, and the cleanup's too.
        let result = install_check_purge(
            &mut [&mut || bail!("dpkg -i failed"), &mut || panic!("ran on")],
            &mut || bail!("dpkg --purge failed"),
        );
        let error = result.expect_err("failed");
        assert_eq!(
            format!("{error:#}"),
            "dpkg -i failed; then cleaning up failed: dpkg --purge failed"
        );
        assert!(error.downcast_ref::<Interrupted>().is_none());
    }

    #[test]
    fn a_by_hand_lbd_is_found_and_named_and_a_labs_is_not() {
        let root = std::env::temp_dir().join(format!("xtask-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        assert!(lbd_on_this_machine(&root).is_empty(), "an empty machine");

        // A lab's lbd (a cargo build's binary) and other programs: nothing.
        let process = |pid: u32, exe: &str| {
            let dir = root.join("proc").join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            symlink(exe, dir.join("exe")).unwrap();
        };
        process(100, "/work/target-b/debug/lbd");
        process(101, "/work/main/target/release/lb-decap");
        process(102, "/usr/sbin/nginx");
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        assert!(lbd_on_this_machine(&root).is_empty(), "the labs' processes");

        // README's install by hand: the unit in /etc, the config, the
        // binary running; and lb-decap's unit under a merged /usr.
        let make = |path: &str| {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, "").unwrap();
        };
        make("etc/systemd/system/lbd.service");
        make("etc/lbd/lbd.toml");
        make("usr/lib/systemd/system/lb-decap.service");
        symlink("usr/lib", root.join("lib")).unwrap();
        std::fs::create_dir_all(root.join("var/lib/lbd")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/bpf/lbd")).unwrap();
        make("run/lbd-bgp/vips.conf");
        process(200, "/usr/local/sbin/lbd");
        process(201, "/usr/sbin/lb-decap (deleted)");
        let found = lbd_on_this_machine(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            found,
            [
                "/etc/lbd",
                "/var/lib/lbd",
                "/run/lbd-bgp",
                "/etc/systemd/system/lbd.service",
                "/lib/systemd/system/lb-decap.service",
                "/sys/fs/bpf/lbd",
                "/usr/local/sbin/lbd running (pid 200)",
                "/usr/sbin/lb-decap (deleted) running (pid 201)",
            ]
        );
    }
}
