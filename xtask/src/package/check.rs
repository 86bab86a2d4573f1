//! `cargo xtask package --check`: installs the package on this machine,
//! checks what an operator would (versions, man pages, units, config
//! mode, nothing started), then removes and purges it and checks nothing
//! of it is left. Whatever fails, the package is purged before returning.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context as _};

use super::{stdout_of, PACKAGE};
use crate::cmd::exec;

/// The units the package installs, checked with `systemd-analyze verify`.
const UNITS: &[&str] = &[
    "/lib/systemd/system/lbd.service",
    "/lib/systemd/system/lb-decap.service",
];

pub fn run(deb: &Path) -> anyhow::Result<()> {
    if let Some(status) = status() {
        if status != "not-installed" {
            bail!(
                "package {PACKAGE} is on this machine already ({status}): the check installs \
                 and purges its own, so remove it first (dpkg --purge {PACKAGE})"
            );
        }
    }
    exec(Command::new("dpkg").arg("-i").arg(deb))?;
    let result = installed()
        .and_then(|()| reinstall_keeps_edits(deb))
        .and_then(|()| remove_and_purge());
    if result.is_err() && status().is_some_and(|s| s != "not-installed") {
        let _ = exec(Command::new("dpkg").args(["--purge", PACKAGE]));
    }
    result?;
    eprintln!("package: installed, checked, removed and purged cleanly");
    Ok(())
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
    let version = env!("CARGO_PKG_VERSION");
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
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .args(UNITS)
        .output()
        .context("starting systemd-analyze")?;
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
/// is put back afterwards, so the removal below sees an untouched config
/// and leaves this machine's data planes alone (see the prerm).
fn reinstall_keeps_edits(deb: &Path) -> anyhow::Result<()> {
    let config = Path::new("/etc/lbd/lbd.toml");
    let shipped = std::fs::read(config).with_context(|| format!("reading {}", config.display()))?;
    let mut edited = shipped.clone();
    edited.extend_from_slice(b"# edited by cargo xtask package --check\n");
    std::fs::write(config, &edited).with_context(|| format!("editing {}", config.display()))?;
    let reinstalled = exec(Command::new("dpkg").arg("-i").arg(deb));
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
    exec(Command::new("dpkg").args(["-r", PACKAGE]))?;
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
    exec(Command::new("dpkg").args(["--purge", PACKAGE]))?;
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
    Ok(())
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
    Command::new("dpkg-query")
        .arg("-S")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
