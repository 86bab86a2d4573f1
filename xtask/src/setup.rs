//! Installs what the project needs on a fresh Debian 12 machine, and does
//! nothing (quickly) for what is already there:
//! - the nightly toolchain's `rust-src` (the eBPF crate builds `core`);
//! - `bpf-linker`, built against the nightly compiler's own LLVM, since no
//!   system LLVM of that version exists (a prefix directory with two links
//!   to the toolchain's libLLVM; the linker keeps it as its rpath);
//! - Debian packages the lab, demo and tests run.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _};

use crate::cmd::{command, exec, output};

/// Debian packages the lab uses: nginx backends, iproute2 for namespaces,
/// bpftool for the tests that inspect and detach lbd's links, ping
/// (`iputils-ping`) for the benchmark's neighbour entries,
/// ethtool for veth offloads, curl for poking the lab by hand, keepalived as
/// the VRRP peer of the interoperability tests, prometheus (and promtool) for
/// the metrics tests; wrk, haproxy and nginx's stream module for the
/// end-to-end benchmark; PostgreSQL (server, `pgbench`, `pg_isready`) and
/// PgBouncer for the database seed scenario (issue 12); BIRD 2 (`bird2`)
/// as the BGP speaker of every lbd node and of the router in the
/// active-active lab (issue 14: lbd writes its routes, BIRD announces them,
/// the router's BIRD merges them into ECMP routes); dpkg-dev (its
/// dpkg-shlibdeps), binutils (strip), man-db and systemd (systemd-analyze,
/// nothing started) for building and checking the Debian package; perf
/// (`linux-perf`) for the benchmark's profile of the XDP program (issue 16);
/// g++ (with gcc) for the fuzz targets, whose libfuzzer-sys build script
/// compiles libFuzzer's C++ with `c++` and libstdc++'s headers; openssl
/// (the command) for the TLS check lab's self-signed certificates. The lab
/// runs its own instances of the servers, inside its namespaces; the
/// packaged services an install starts are stopped again
/// ([`stop_packaged_services`]).
const PACKAGES: &[&str] = &[
    "nginx",
    "iproute2",
    "ethtool",
    "curl",
    "procps",
    "keepalived",
    "prometheus",
    "wrk",
    "haproxy",
    "libnginx-mod-stream",
    "postgresql",
    "postgresql-client",
    "pgbouncer",
    "bird2",
    "dpkg-dev",
    "binutils",
    "man-db",
    "systemd",
    "linux-perf",
    "bpftool",
    "iputils-ping",
    "g++",
    "openssl",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM majors bpf-linker [`BPF_LINKER_VERSION`] can be built against
/// (its `llvm-N` features); the nightly compiler's LLVM must be one of them.
const BPF_LINKER_LLVM_MAJORS: &[u32] = &[21, 22, 23];

/// The toolchain's name, once, for the two constants below.
macro_rules! nightly {
    () => {
        "nightly"
    };
}
/// The toolchain the eBPF crates, their lints and the fuzz targets build
/// with: every nightly of xtask names it through this constant or
/// [`PLUS_NIGHTLY`].
pub const NIGHTLY: &str = nightly!();
/// [`NIGHTLY`] as cargo's and rustc's toolchain argument.
pub const PLUS_NIGHTLY: &str = concat!("+", nightly!());
/// The nightly this project was last verified with (its `rustc -vV`
/// commit date; LLVM 22). Not pinned: CI's machines come with `nightly`
/// installed and setup installs only `rust-src` and `clippy` for it; a
/// different nightly gets a warning naming this one.
const VERIFIED_NIGHTLY_DATE: &str = "2026-05-19";

pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let nightly = installed_components(NIGHTLY);
    if nightly.is_empty() {
        exec(&mut command(
            "rustup",
            &["toolchain", "install", NIGHTLY, "--profile", "minimal"],
        ))?;
    }
    // rust-src: the eBPF crate builds `core`; clippy: `xtask lint` checks
    // the eBPF crate on its own target.
    add_missing_components(NIGHTLY, &nightly, &["rust-src", "clippy"])?;
    // The host crates' lints.
    let stable = installed_components("stable");
    add_missing_components("stable", &stable, &["clippy", "rustfmt"])
}

fn installed_components(toolchain: &str) -> String {
    output(&mut command(
        "rustup",
        &["component", "list", "--toolchain", toolchain, "--installed"],
    ))
    .unwrap_or_default()
}

fn add_missing_components(toolchain: &str, installed: &str, wanted: &[&str]) -> anyhow::Result<()> {
    for component in wanted {
        if !installed.lines().any(|l| l.starts_with(component)) {
            exec(&mut command(
                "rustup",
                &["component", "add", component, "--toolchain", toolchain],
            ))?;
        }
    }
    Ok(())
}

/// The nightly compiler's sysroot and LLVM major version; fails if
/// bpf-linker cannot be built against that LLVM, and warns if the nightly
/// is not the verified one.
fn nightly_llvm() -> anyhow::Result<(PathBuf, u32)> {
    let version = output(&mut command("rustc", &[PLUS_NIGHTLY, "-vV"])).ok_or_else(|| {
        anyhow!("`rustc {PLUS_NIGHTLY} -vV` failed: is the {NIGHTLY} toolchain installed?")
    })?;
    let facts = RustcVersion::parse(&version)?;
    if let Some(warning) = facts.drift() {
        eprintln!("setup: warning: {warning}");
    }
    facts.check_llvm()?;
    let sysroot = output(&mut command("rustc", &[PLUS_NIGHTLY, "--print", "sysroot"]))
        .ok_or_else(|| anyhow!("`rustc {PLUS_NIGHTLY} --print sysroot` failed"))?;
    Ok((PathBuf::from(sysroot.trim()), facts.llvm_major))
}

/// What `rustc -vV` says that setup needs.
#[derive(Debug, PartialEq, Eq)]
struct RustcVersion {
    /// `commit-date:` (YYYY-MM-DD).
    commit_date: String,
    /// The major of `LLVM version:`.
    llvm_major: u32,
}

impl RustcVersion {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .ok_or_else(|| anyhow!("no `{name}` line in `rustc {PLUS_NIGHTLY} -vV`:\n{text}"))
        };
        let llvm = field("LLVM version:")?;
        let llvm_major = llvm
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| {
                anyhow!("`LLVM version: {llvm}` in `rustc {PLUS_NIGHTLY} -vV` has no major")
            })?;
        Ok(Self {
            commit_date: field("commit-date:")?.to_owned(),
            llvm_major,
        })
    }

    /// Fails unless bpf-linker can be built against this LLVM.
    fn check_llvm(&self) -> anyhow::Result<()> {
        if BPF_LINKER_LLVM_MAJORS.contains(&self.llvm_major) {
            return Ok(());
        }
        bail!(
            "the {NIGHTLY} toolchain (from {}) has LLVM {}, but bpf-linker {BPF_LINKER_VERSION} \
             builds only against LLVM {}: raise BPF_LINKER_VERSION in xtask/src/setup.rs to a \
             bpf-linker release with an `llvm-{}` feature (and BPF_LINKER_LLVM_MAJORS with it); \
             the project was verified with nightly-{VERIFIED_NIGHTLY_DATE} (LLVM 22)",
            self.commit_date,
            self.llvm_major,
            BPF_LINKER_LLVM_MAJORS
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.llvm_major
        )
    }

    /// A warning when this is not the nightly the project was verified with.
    fn drift(&self) -> Option<String> {
        (self.commit_date != VERIFIED_NIGHTLY_DATE).then(|| {
            format!(
                "the {NIGHTLY} toolchain is from {}, the project was verified with the \
                 nightly of {VERIFIED_NIGHTLY_DATE} (LLVM 22): a failure to build or lint \
                 the eBPF crates may come from the difference",
                self.commit_date
            )
        })
    }
}

fn bpf_linker() -> anyhow::Result<()> {
    let (sysroot, major) = nightly_llvm()?;
    let current = output(&mut command("bpf-linker", &["--version"])).unwrap_or_default();
    let prefix = home()?.join(format!(".local/share/lb-llvm/llvm-{major}"));
    if current.contains(BPF_LINKER_VERSION) && prefix.join("lib/libLLVM.so").exists() {
        return Ok(());
    }
    // A prefix whose lib/ holds the nightly's libLLVM under the name the
    // build links against and under its soname, for the loader.
    let lib_dir = sysroot.join("lib");
    let libllvm = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .ok_or_else(|| anyhow!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let soname = libllvm
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", libllvm.display()))?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = prefix_lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    let feature = format!("llvm-{major}");
    let mut cmd = command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ],
    );
    cmd.env("LLVM_PREFIX", &prefix);
    exec(&mut cmd)
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output(&mut command("dpkg-query", &["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if output(&mut command("id", &["-u"]))
        .as_deref()
        .map(str::trim)
        != Some("0")
    {
        bail!("Debian packages {missing:?} are missing and installing them needs root");
    }
    exec(&mut command("apt-get", &["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    let mut cmd = command("apt-get", &args);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    exec(&mut cmd)?;
    stop_packaged_services(&missing);
    Ok(())
}

/// The services Debian starts (and enables at boot) when it installs
/// their package, which the lab runs its own instances of: (package,
/// systemd unit, process name). postgresql.service is
/// postgresql-common's: stopping it stops the clusters (their
/// `postgresql@` units are PartOf it), whose server is `postgres`. BIRD's
/// would also greet a later lbd install with a BIRD whose config does not
/// include lbd's routes file.
const SERVICES: &[(&str, &str, &str)] = &[
    ("nginx", "nginx.service", "nginx"),
    ("prometheus", "prometheus.service", "prometheus"),
    ("haproxy", "haproxy.service", "haproxy"),
    ("postgresql", "postgresql.service", "postgres"),
    ("pgbouncer", "pgbouncer.service", "pgbouncer"),
    ("bird2", "bird.service", "bird"),
];

/// Stops (and under systemd disables) the [`SERVICES`] that installing
/// `installed` started, so that they do not sit on the machine's ports.
/// Only the packaged services: the lab's own servers (another
/// checkout's suite or benchmark, running now) share this
/// PID namespace, so stopping processes by name would kill them too.
/// Failures are warnings: the packages are installed.
fn stop_packaged_services(installed: &[&str]) {
    let services: Vec<_> = SERVICES
        .iter()
        .filter(|(package, ..)| installed.contains(package))
        .collect();
    if services.is_empty() {
        return;
    }
    if Path::new("/run/systemd/system").exists() {
        for (_, unit, _) in services {
            if let Err(e) = exec(&mut command("systemctl", &["disable", "--now", unit])) {
                eprintln!("setup: warning: {e:#}");
            }
        }
        return;
    }
    // No systemd: the packages' init scripts started daemons, which init
    // adopted, in the host's network namespace.
    let Some(host) = netns(Path::new("/proc/1")) else {
        eprintln!(
            "setup: warning: cannot read init's network namespace: packaged services left running"
        );
        return;
    };
    let names: Vec<&str> = services.iter().map(|(.., name)| *name).collect();
    for pid in packaged_daemons(&processes(), &names, &host) {
        eprintln!("setup: stopping the packaged daemon {pid} (SIGTERM)");
        // SAFETY: plain kill(2).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            let e = std::io::Error::last_os_error();
            eprintln!("setup: warning: stopping {pid}: {e}");
        }
    }
}

/// A process, as [`packaged_daemons`] tells the packaged services from
/// the lab's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Process {
    pid: i32,
    /// Its name (`comm`).
    name: String,
    /// Its parent's pid.
    parent: i32,
    /// Its network namespace (`/proc/PID/ns/net`'s link, `net:[INODE]`);
    /// None if unreadable.
    netns: Option<String>,
}

/// The pids of `processes` that are packaged daemons of `names`: named
/// one of them, children of init (the init scripts' daemons detach) and
/// in init's network namespace `host`. The lab's instances run in its
/// namespaces, children of the process that started them.
fn packaged_daemons(processes: &[Process], names: &[&str], host: &str) -> Vec<i32> {
    processes
        .iter()
        .filter(|p| {
            names.contains(&p.name.as_str()) && p.parent == 1 && p.netns.as_deref() == Some(host)
        })
        .map(|p| p.pid)
        .collect()
}

/// The processes in /proc (those that vanish while read are left out).
fn processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, parent) = parse_stat(&stat)?;
            Some(Process {
                pid,
                name,
                parent,
                netns: netns(&entry.path()),
            })
        })
        .collect()
}

/// The name and the parent's pid from `/proc/PID/stat` (`PID (NAME) S
/// PPID ...`; the name may hold spaces and parentheses).
fn parse_stat(stat: &str) -> Option<(String, i32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let parent = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((name, parent))
}

/// The network namespace of the process at `proc_dir` (`/proc/PID`).
fn netns(proc_dir: &Path) -> Option<String> {
    fs::read_link(proc_dir.join("ns/net"))
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rustc +nightly -vV` of the verified nightly.
    const VERIFIED_VV: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\n\
        binary: rustc\n\
        commit-hash: e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a\n\
        commit-date: 2026-05-19\n\
        host: x86_64-unknown-linux-gnu\n\
        release: 1.97.0-nightly\n\
        LLVM version: 22.1.4\n";

    #[test]
    fn only_the_packaged_daemons_are_stopped_not_the_labs_instances() {
        let host = "net:[4026531840]";
        let process = |pid, name: &str, parent, netns: Option<&str>| Process {
            pid,
            name: name.to_owned(),
            parent,
            netns: netns.map(str::to_owned),
        };
        let processes = [
            // What the packages' init scripts started.
            process(300, "prometheus", 1, Some(host)),
            process(301, "haproxy", 1, Some(host)),
            // A running suite's or benchmark's: in the lab's namespaces,
            // children of the test process, or orphans init adopted.
            process(400, "prometheus", 399, Some("net:[4026532999]")),
            process(401, "haproxy", 399, Some("net:[4026532998]")),
            process(402, "haproxy", 1, Some("net:[4026532997]")),
            // Someone's own in the host's namespace, from a shell.
            process(500, "prometheus", 499, Some(host)),
            // A packaged haproxy's worker: stops with its master.
            process(302, "haproxy", 301, Some(host)),
            // Gone or unreadable.
            process(303, "prometheus", 1, None),
            // Not a service setup stops.
            process(304, "nginx", 1, Some(host)),
            process(305, "sshd", 1, Some(host)),
        ];
        assert_eq!(
            packaged_daemons(&processes, &["prometheus", "haproxy"], host),
            [300, 301]
        );
        assert!(packaged_daemons(&processes, &[], host).is_empty());
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let me = processes().into_iter().find(|p| p.pid == pid).unwrap();
        // SAFETY: getppid has no preconditions.
        assert_eq!(me.parent, unsafe { libc::getppid() });
        assert_eq!(me.netns, netns(Path::new("/proc/self")));
        assert!(me.netns.is_some_and(|n| n.starts_with("net:[")));
    }

    #[test]
    fn proc_stat_gives_the_name_and_the_parent() {
        assert_eq!(
            parse_stat("301 (haproxy) S 1 301 301 0 -1 4194624 ..."),
            Some(("haproxy".to_owned(), 1))
        );
        assert_eq!(
            parse_stat("7 (a (b) c) R 42 7 7"),
            Some(("a (b) c".to_owned(), 42))
        );
        assert_eq!(parse_stat("7 (x"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn the_services_setup_stops_come_from_packages_it_installs() {
        for (package, unit, name) in SERVICES {
            assert!(PACKAGES.contains(package), "{package}");
            assert!(unit.ends_with(".service") && !name.is_empty(), "{package}");
        }
    }

    /// The packages setup installs that come with a daemon Debian enables
    /// and starts on install (its own unit or, for `postgresql`,
    /// postgresql-common's, which stops the clusters with it), and that
    /// unit. Each has a [`SERVICES`] row, but keepalived: its unit starts
    /// only with an /etc/keepalived/keepalived.conf
    /// (ConditionFileNotEmpty), which no package ships.
    const DAEMONS: &[(&str, &str)] = &[
        ("nginx", "nginx.service"),
        ("prometheus", "prometheus.service"),
        ("haproxy", "haproxy.service"),
        ("postgresql", "postgresql.service"),
        ("pgbouncer", "pgbouncer.service"),
        ("bird2", "bird.service"),
        ("keepalived", "keepalived.service"),
    ];

    #[test]
    fn every_daemon_an_install_starts_is_stopped_again() {
        for (package, unit) in DAEMONS {
            assert!(PACKAGES.contains(package), "{package}");
            let row = SERVICES.iter().find(|(p, ..)| p == package);
            if *package == "keepalived" {
                assert_eq!(row, None);
                continue;
            }
            let row = row.unwrap_or_else(|| panic!("{package} ({unit}) has no SERVICES row"));
            assert_eq!(row.1, *unit, "{package}");
            // Where the package is installed (setup ran), its unit is
            // there by that name.
            let installed = output(&mut command("dpkg-query", &["-W", "-f=${Status}", package]))
                .is_some_and(|s| s.contains("install ok installed"));
            if installed {
                let path = Path::new("/lib/systemd/system").join(unit);
                assert!(path.exists(), "{package}: no {}", path.display());
            }
        }
        for (package, ..) in SERVICES {
            assert!(
                DAEMONS.iter().any(|(p, _)| p == package),
                "{package} is not in DAEMONS"
            );
        }
    }

    #[test]
    fn the_verified_nightly_passes_without_a_warning() {
        let facts = RustcVersion::parse(VERIFIED_VV).unwrap();
        assert_eq!(
            facts,
            RustcVersion {
                commit_date: "2026-05-19".into(),
                llvm_major: 22
            }
        );
        facts.check_llvm().unwrap();
        assert_eq!(facts.drift(), None);
        assert_eq!(PLUS_NIGHTLY, format!("+{NIGHTLY}"));
    }

    #[test]
    fn an_llvm_bpf_linker_cannot_build_against_is_refused_naming_the_supported_ones() {
        let newer = VERIFIED_VV
            .replace("LLVM version: 22.1.4", "LLVM version: 24.0.0")
            .replace("commit-date: 2026-05-19", "commit-date: 2027-01-02");
        let facts = RustcVersion::parse(&newer).unwrap();
        let error = facts.check_llvm().unwrap_err().to_string();
        assert!(error.contains("has LLVM 24"), "{error}");
        assert!(error.contains("only against LLVM 21, 22, 23"), "{error}");
        assert!(error.contains("2027-01-02"), "{error}");
        let warning = facts.drift().unwrap();
        assert!(
            warning.contains("2027-01-02") && warning.contains("2026-05-19"),
            "{warning}"
        );
        for major in [20, 24] {
            let facts = RustcVersion {
                commit_date: "2026-05-19".into(),
                llvm_major: major,
            };
            assert!(facts.check_llvm().is_err(), "LLVM {major}");
        }
        for major in [21, 23] {
            let facts = RustcVersion {
                commit_date: "2026-05-19".into(),
                llvm_major: major,
            };
            facts.check_llvm().unwrap();
        }
        assert!(RustcVersion::parse("rustc 1.97.0-nightly\n").is_err());
        assert!(RustcVersion::parse("commit-date: x\nLLVM version: x.1\n").is_err());
    }

    /// Every program the suite, the demo, the benchmarks and xtask run, and
    /// the Debian package it comes from. A program with no row here fails
    /// the test below; a row whose package setup does not install (and
    /// Debian does not always have) fails it too.
    const PROGRAMS: &[(&str, &str)] = &[
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("ss", "iproute2"),
        ("nstat", "iproute2"),
        ("ethtool", "ethtool"),
        ("ping", "iputils-ping"),
        ("curl", "curl"),
        ("sysctl", "procps"),
        ("pkill", "procps"),
        ("keepalived", "keepalived"),
        ("prometheus", "prometheus"),
        ("promtool", "prometheus"),
        ("wrk", "wrk"),
        ("haproxy", "haproxy"),
        ("nginx", "nginx"),
        ("bird", "bird2"),
        ("birdc", "bird2"),
        ("bpftool", "bpftool"),
        ("perf", "linux-perf"),
        ("initdb", "postgresql"),
        ("postgres", "postgresql"),
        ("pgbench", "postgresql"),
        ("psql", "postgresql-client"),
        ("pg_isready", "postgresql-client"),
        ("pgbouncer", "pgbouncer"),
        ("openssl", "openssl"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
        ("man", "man-db"),
        ("systemd-analyze", "systemd"),
        ("systemctl", "systemd"),
        // Not started by the sources: libfuzzer-sys's build script runs it
        // (`cargo xtask fuzz`).
        ("c++", "g++"),
        // Essential: on every Debian system.
        ("dpkg", "dpkg"),
        ("dpkg-deb", "dpkg"),
        ("dpkg-query", "dpkg"),
        ("apt-get", "apt"),
        ("cat", "coreutils"),
        ("chmod", "coreutils"),
        ("date", "coreutils"),
        ("id", "coreutils"),
        ("md5sum", "coreutils"),
        ("sleep", "coreutils"),
        ("gzip", "gzip"),
        ("grep", "grep"),
        ("sh", "dash"),
        ("mount", "mount"),
        ("prlimit", "util-linux"),
        ("setpriv", "util-linux"),
        // Not from Debian: the toolchain setup extends, and the checkout.
        ("cargo", "rustup"),
        ("rustc", "rustup"),
        ("rustup", "rustup"),
        ("bpf-linker", "rustup"),
        ("git", "the checkout"),
    ];
    /// Debian's essential packages (and apt), there without setup.
    const ESSENTIAL: &[&str] = &[
        "dpkg",
        "apt",
        "coreutils",
        "gzip",
        "grep",
        "dash",
        "mount",
        "util-linux",
    ];

    /// Programs named in `text` in the ways the sources start them: a
    /// string literal given to `Command::new`, to xtask's `command`, to the
    /// lab's `run`, or joined to PostgreSQL's bin directory, and the
    /// program `ip netns exec` runs. Absolute paths are left out (the
    /// package's own binaries).
    fn programs_started_in(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for prefix in [
            "Command::new(\"",
            " command(\"",
            "(command(\"",
            " run(\"",
            "bin.join(\"",
            "bin_dir()?.join(\"",
        ] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                if let Some(end) = rest.find('"') {
                    found.push(rest[..end].to_owned());
                }
            }
        }
        // After `ip netns exec`'s namespace argument: the next literal of
        // the same list, or the first of the next `.args([`.
        for (at, _) in text.match_indices("\"exec\",") {
            let rest = &text[at + "\"exec\",".len()..];
            let Some(end_of_ns) = rest.find([',', ']']) else {
                continue;
            };
            let Some(quote) = rest[end_of_ns..].find('"').map(|q| end_of_ns + q) else {
                continue;
            };
            let gap: String = rest[end_of_ns..quote]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if gap != "," && gap != "]).args([" {
                continue;
            }
            if let Some(end) = rest[quote + 1..].find('"') {
                found.push(rest[quote + 1..quote + 1 + end].to_owned());
            }
        }
        found.retain(|p| !p.starts_with('/'));
        found
    }

    fn rust_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn setup_installs_every_program_the_suite_and_the_demo_run() {
        let root = crate::cmd::root();
        let mut files = Vec::new();
        for dir in ["tests", "xtask/src"] {
            rust_files(&root.join(dir), &mut files);
        }
        let mut started = std::collections::BTreeMap::<String, PathBuf>::new();
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            for program in programs_started_in(&text) {
                started.entry(program).or_insert_with(|| file.clone());
            }
        }
        // The scan finds what it must (bpftool was missing once).
        for known in [
            "bpftool", "promtool", "birdc", "bird", "pgbench", "initdb", "ethtool", "ss", "wrk",
        ] {
            assert!(started.contains_key(known), "the scan missed {known}");
        }
        let unknown: Vec<String> = started
            .iter()
            .filter(|(program, _)| !PROGRAMS.iter().any(|(p, _)| p == program))
            .map(|(program, file)| format!("`{program}` ({})", file.display()))
            .collect();
        assert!(
            unknown.is_empty(),
            "programs with no row in PROGRAMS (add each with its Debian package, and the \
             package to setup's PACKAGES): {unknown:#?}"
        );
        for (program, package) in PROGRAMS {
            assert!(
                PACKAGES.contains(package)
                    || ESSENTIAL.contains(package)
                    || ["rustup", "the checkout"].contains(package),
                "`{program}` comes from the Debian package {package}, which setup does not install"
            );
        }
    }

    #[test]
    fn the_scan_reads_each_way_of_starting_a_program() {
        let text = r#"
            Command::new("bpftool").args(["link"]);
            let _ = command("pkill", &["-x", "prometheus"]);
            run("mount", &["-t", "bpf"]);
            Command::new(bin.join("initdb"));
            .arg(bin_dir()?.join("pgbench"))
            .args(["netns", "exec", &lab.client.netns, "wrk"])
            &["netns", "exec", netns,
              "ethtool", "-K"],
            .args(["netns", "exec", &node.netns])
            .args(["sysctl", "-n"])
            .args(["netns", "exec", netns])
            .arg(lbd).arg("--pin-dir")
        "#;
        assert_eq!(
            programs_started_in(text),
            ["bpftool", "pkill", "mount", "initdb", "pgbench", "wrk", "ethtool", "sysctl"]
        );
    }
}
