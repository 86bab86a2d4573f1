//! What the Debian package holds and where: one table, so the file list is
//! reviewed (and tested) in one place. Paths are relative to the package
//! root (`usr/sbin/lbd` installs as `/usr/sbin/lbd`).

use anyhow::{bail, Context as _};

/// Where a packaged file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A release binary from the target directory's `release`, stripped.
    Binary(&'static str),
    /// A file of the repository, copied as is.
    File(&'static str),
    /// A file of the repository whose "Install by hand" block is dropped
    /// and whose /usr/local paths are rewritten for the package
    /// ([`packaged_text`]): the systemd units and the tmpfiles.d entry.
    Adapted(&'static str),
    /// `lbctl completions SHELL`.
    Completion(&'static str),
    /// The Debian copyright file, from the workspace's license.
    Copyright,
}

/// One file of the package.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub source: Source,
    /// Install path, relative to /.
    pub path: &'static str,
    pub mode: u32,
}

/// The configuration examples: dpkg keeps the operator's edits across
/// upgrades and removes them only on purge. lbd.toml may hold secrets
/// (sync keys' paths, BIRD socket): root's only.
pub const CONFFILES: &[&str] = &["etc/lbd/lbd.toml", "etc/lbd/lb-decap.toml"];

/// Every file but the man pages (generated, one per command and
/// subcommand: see [`MAN_DIR`]).
pub const FILES: &[Entry] = &[
    Entry {
        source: Source::Binary("lbd"),
        path: "usr/sbin/lbd",
        mode: 0o755,
    },
    Entry {
        source: Source::Binary("lbctl"),
        path: "usr/sbin/lbctl",
        mode: 0o755,
    },
    Entry {
        source: Source::Binary("lb-decap"),
        path: "usr/sbin/lb-decap",
        mode: 0o755,
    },
    Entry {
        source: Source::Adapted("deploy/systemd/lbd.service"),
        path: "lib/systemd/system/lbd.service",
        mode: 0o644,
    },
    Entry {
        source: Source::Adapted("deploy/systemd/lb-decap.service"),
        path: "lib/systemd/system/lb-decap.service",
        mode: 0o644,
    },
    Entry {
        source: Source::Adapted("deploy/tmpfiles.d/lbd-bgp.conf"),
        path: "usr/lib/tmpfiles.d/lbd-bgp.conf",
        mode: 0o644,
    },
    Entry {
        source: Source::File("examples/lbd.toml"),
        path: "etc/lbd/lbd.toml",
        mode: 0o600,
    },
    Entry {
        source: Source::File("examples/lb-decap.toml"),
        path: "etc/lbd/lb-decap.toml",
        mode: 0o644,
    },
    Entry {
        source: Source::Completion("bash"),
        path: "usr/share/bash-completion/completions/lbctl",
        mode: 0o644,
    },
    Entry {
        source: Source::Completion("zsh"),
        path: "usr/share/zsh/vendor-completions/_lbctl",
        mode: 0o644,
    },
    Entry {
        source: Source::Completion("fish"),
        path: "usr/share/fish/vendor_completions.d/lbctl.fish",
        mode: 0o644,
    },
    Entry {
        source: Source::File("observability/grafana/lbd-dashboard.json"),
        path: "usr/share/lbd/grafana/lbd-dashboard.json",
        mode: 0o644,
    },
    Entry {
        source: Source::File("observability/prometheus/lbd-alerts.yml"),
        path: "usr/share/lbd/prometheus/lbd-alerts.yml",
        mode: 0o644,
    },
    Entry {
        source: Source::File("README.md"),
        path: "usr/share/doc/lbd/README.md",
        mode: 0o644,
    },
    Entry {
        source: Source::Copyright,
        path: "usr/share/doc/lbd/copyright",
        mode: 0o644,
    },
];

/// Where the man pages go (gzipped, mode 0644).
pub const MAN_DIR: &str = "usr/share/man/man8";

/// How each binary writes its man pages into a directory (the arguments
/// before it): lbd's and lb-decap's generators are hidden options, lbctl's
/// is its `man` subcommand.
pub const MAN_GENERATORS: &[(&str, &[&str])] = &[
    ("lbd", &["--generate-man"]),
    ("lbctl", &["man"]),
    ("lb-decap", &["--generate-man"]),
];

/// Path rewrites from a by-hand install (/usr/local) to the package's.
const REWRITES: &[(&str, &str)] = &[
    ("/usr/local/sbin/", "/usr/sbin/"),
    ("/usr/local/share/doc/lbd/", "/usr/share/doc/lbd/"),
];

/// The marker line of the by-hand install steps in the shipped units and
/// tmpfiles entry; the block is this line and the `#   ` lines after it.
const BY_HAND: &str = "# Install by hand";

/// The packaged version of a shipped unit (or tmpfiles entry): the same
/// text without its "Install by hand" steps and with the package's paths,
/// so there is one unit text to maintain. Fails if the block is missing or
/// a /usr/local path is left (the shipped file changed shape).
pub fn packaged_text(name: &str, shipped: &str) -> anyhow::Result<String> {
    let mut lines = shipped.lines().peekable();
    let mut out = Vec::new();
    let mut found = false;
    while let Some(line) = lines.next() {
        if line.starts_with(BY_HAND) {
            found = true;
            while lines.peek().is_some_and(|next| next.starts_with("#   ")) {
                lines.next();
            }
            continue;
        }
        out.push(line);
    }
    if !found {
        bail!("{name}: no \"{BY_HAND}\" block to drop from the packaged copy");
    }
    let mut text = out.join("\n");
    text.push('\n');
    for (from, to) in REWRITES {
        text = text.replace(from, to);
    }
    if let Some(line) = text.lines().find(|l| l.contains("/usr/local")) {
        bail!("{name}: the packaged copy still names /usr/local: {line:?}");
    }
    Ok(text)
}

/// debian/copyright (machine-readable format) for the whole package.
pub fn copyright(license: &str) -> String {
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: lbd\n\
         \n\
         Files: *\n\
         Copyright: the lbd developers\n\
         License: {license}\n"
    )
}

/// Reads a repository file for [`Source::File`] / [`Source::Adapted`].
pub fn read_source(root: &std::path::Path, relative: &str) -> anyhow::Result<Vec<u8>> {
    let path = root.join(relative);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::root;

    #[test]
    fn every_source_file_exists_and_every_path_is_unique_and_relative() {
        let mut seen = std::collections::HashSet::new();
        for entry in FILES {
            assert!(!entry.path.starts_with('/'), "{entry:?}");
            assert!(seen.insert(entry.path), "{} twice", entry.path);
            if let Source::File(file) | Source::Adapted(file) = entry.source {
                assert!(root().join(file).is_file(), "{file} is missing");
            }
        }
    }

    #[test]
    fn the_package_holds_what_the_issue_lists() {
        let paths: Vec<&str> = FILES.iter().map(|e| e.path).collect();
        for wanted in [
            "usr/sbin/lbd",
            "usr/sbin/lbctl",
            "usr/sbin/lb-decap",
            "lib/systemd/system/lbd.service",
            "lib/systemd/system/lb-decap.service",
            "usr/lib/tmpfiles.d/lbd-bgp.conf",
            "etc/lbd/lbd.toml",
            "etc/lbd/lb-decap.toml",
            "usr/share/bash-completion/completions/lbctl",
            "usr/share/zsh/vendor-completions/_lbctl",
            "usr/share/fish/vendor_completions.d/lbctl.fish",
            "usr/share/lbd/grafana/lbd-dashboard.json",
            "usr/share/lbd/prometheus/lbd-alerts.yml",
            "usr/share/doc/lbd/README.md",
            "usr/share/doc/lbd/copyright",
        ] {
            assert!(paths.contains(&wanted), "{wanted} is not packaged");
        }
        let generators: Vec<&str> = MAN_GENERATORS.iter().map(|(bin, _)| *bin).collect();
        let binaries: Vec<&str> = FILES
            .iter()
            .filter_map(|e| match e.source {
                Source::Binary(bin) => Some(bin),
                _ => None,
            })
            .collect();
        assert_eq!(generators, binaries, "every binary gets its man pages");
    }

    #[test]
    fn conffiles_are_the_files_under_etc_and_the_lbd_config_is_private() {
        let under_etc: Vec<&str> = FILES
            .iter()
            .map(|e| e.path)
            .filter(|p| p.starts_with("etc/"))
            .collect();
        assert_eq!(under_etc, CONFFILES);
        let lbd = FILES.iter().find(|e| e.path == "etc/lbd/lbd.toml").unwrap();
        assert_eq!(lbd.mode & 0o077, 0);
        for entry in FILES {
            let executable = matches!(entry.source, Source::Binary(_));
            assert_eq!(entry.mode & 0o111 != 0, executable, "{entry:?}");
        }
    }

    #[test]
    fn packaged_units_run_the_packaged_binaries_and_configs() {
        for (shipped, binary, config) in [
            (
                "deploy/systemd/lbd.service",
                "/usr/sbin/lbd ",
                "/etc/lbd/lbd.toml",
            ),
            (
                "deploy/systemd/lb-decap.service",
                "/usr/sbin/lb-decap ",
                "/etc/lbd/lb-decap.toml",
            ),
        ] {
            let text = std::fs::read_to_string(root().join(shipped)).unwrap();
            let packaged = packaged_text(shipped, &text).unwrap();
            let exec = packaged
                .lines()
                .find(|l| l.starts_with("ExecStart="))
                .unwrap();
            assert!(exec.starts_with(&format!("ExecStart={binary}")), "{exec}");
            assert!(exec.contains(config), "{exec}");
            assert!(!packaged.contains(BY_HAND) && !packaged.contains("#   install"));
            assert!(packaged.contains("Documentation=file:///usr/share/doc/lbd/README.md"));
            // Everything else is the shipped text.
            let kept = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
            assert_eq!(kept(&text), kept(&packaged), "{shipped}");
        }
        let tmpfiles =
            std::fs::read_to_string(root().join("deploy/tmpfiles.d/lbd-bgp.conf")).unwrap();
        let packaged = packaged_text("lbd-bgp.conf", &tmpfiles).unwrap();
        assert!(packaged.contains("f /run/lbd-bgp/vips.conf 0644 root root -"));
        assert!(!packaged.contains("install -m"));
    }

    /// The programs the packaged units run besides the package's own, and
    /// the Debian package each comes from: an Essential one, since the
    /// control's Depends lists only the binaries' shared libraries (a
    /// minimal Debian 12, debootstrap's minbase, has nothing else).
    const UNIT_PROGRAMS: &[(&str, &str)] = &[("/bin/sh", "dash")];

    /// The program of each `Exec*=` line of `unit` (after systemd's
    /// `-`, `+`, `@`, `:` and `!` prefixes).
    fn exec_programs(unit: &str) -> Vec<&str> {
        unit.lines()
            .filter_map(|l| {
                let (key, value) = l.trim().split_once('=')?;
                key.starts_with("Exec").then_some(value)
            })
            .filter_map(|v| {
                v.trim_start_matches(['-', '+', '@', ':', '!'])
                    .split_whitespace()
                    .next()
            })
            .collect()
    }

    /// The package dpkg says installed `path`, if dpkg knows it here.
    fn owner(path: &str) -> Option<String> {
        let out = crate::cmd::output(std::process::Command::new("dpkg-query").args(["-S", path]))?;
        out.lines()
            .filter(|l| !l.starts_with("diversion by"))
            .find_map(|l| Some(l.split_once(": ")?.0.to_owned()))
    }

    #[test]
    fn units_run_only_the_packaged_binaries_and_essential_programs() {
        let packaged: Vec<String> = FILES
            .iter()
            .filter(|e| matches!(e.source, Source::Binary(_)))
            .map(|e| format!("/{}", e.path))
            .collect();
        let units = FILES.iter().filter(|e| e.path.ends_with(".service"));
        let mut units_seen = 0;
        for entry in units {
            let Source::Adapted(shipped) = entry.source else {
                panic!("{entry:?}");
            };
            units_seen += 1;
            let text = std::fs::read_to_string(root().join(shipped)).unwrap();
            let unit = packaged_text(shipped, &text).unwrap();
            for program in exec_programs(&unit) {
                assert!(
                    packaged.iter().any(|p| p == program)
                        || UNIT_PROGRAMS.iter().any(|(p, _)| *p == program),
                    "{shipped} runs {program}: neither packaged nor in UNIT_PROGRAMS \
                     (an Essential package's program)"
                );
            }
        }
        assert_eq!(units_seen, 2);
        // The table, where dpkg can tell.
        for (program, package) in UNIT_PROGRAMS {
            if let Some(owner) = owner(program) {
                assert_eq!(owner, *package, "{program}");
                let essential =
                    crate::cmd::output(std::process::Command::new("dpkg-query").args([
                        "-W",
                        "-f=${Essential}",
                        package,
                    ]));
                assert_eq!(essential.as_deref(), Some("yes"), "{package}");
            }
        }
        assert_eq!(
            exec_programs("ExecReload=-/bin/kill -HUP $MAINPID\nExecStopPost=+/x y\nUser=a\n"),
            ["/bin/kill", "/x"]
        );
    }

    /// The `/proc/sys` trees a unit's program writes: lbd switches its
    /// interface's `forwarding` (NAT, tunnelled VIPs) and `accept_local`
    /// (checks through the tunnel) on; lb-decap writes none.
    const SYSCTL_TREES: &[(&str, &[&str])] = &[
        (
            "deploy/systemd/lbd.service",
            &["/proc/sys/net/ipv4/conf", "/proc/sys/net/ipv6/conf"],
        ),
        ("deploy/systemd/lb-decap.service", &[]),
    ];

    /// Whether a unit with `ProtectKernelTunables=yes` keeps `tree`
    /// writable: a `ReadWritePaths=` entry at or above it under /proc/sys
    /// (a deeper ReadWritePaths= is mounted over the read-only /proc/sys).
    fn sysctl_tree_writable(unit: &str, tree: &str) -> bool {
        let protected = unit
            .lines()
            .any(|l| l.trim() == "ProtectKernelTunables=yes");
        if !protected {
            return true;
        }
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix("ReadWritePaths="))
            .flat_map(str::split_whitespace)
            .map(|p| p.trim_start_matches(['-', '+']))
            .any(|p| p.starts_with("/proc/sys/") && tree.starts_with(p))
    }

    #[test]
    fn units_that_protect_kernel_tunables_keep_the_sysctls_they_write_writable() {
        for (shipped, trees) in SYSCTL_TREES {
            let text = std::fs::read_to_string(root().join(shipped)).unwrap();
            for tree in *trees {
                assert!(
                    sysctl_tree_writable(&text, tree),
                    "{shipped}: ProtectKernelTunables=yes without ReadWritePaths=-{tree}"
                );
            }
        }
        // The check itself: a protected unit without the paths fails it.
        let bare = "ProtectKernelTunables=yes\nReadWritePaths=-/sys/fs/bpf\n";
        assert!(!sysctl_tree_writable(bare, "/proc/sys/net/ipv4/conf"));
        let other = "ProtectKernelTunables=yes\nReadWritePaths=-/proc/sys/net/ipv6/conf\n";
        assert!(!sysctl_tree_writable(other, "/proc/sys/net/ipv4/conf"));
        assert!(sysctl_tree_writable(
            "ReadWritePaths=-/sys/fs/bpf\n",
            "/proc/sys/net/ipv4/conf"
        ));
    }

    #[test]
    fn a_shipped_file_of_another_shape_is_refused_by_name() {
        let error = packaged_text("x.service", "[Service]\nExecStart=/usr/sbin/x\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("x.service: no \"# Install by hand\""),
            "{error}"
        );
        let error = packaged_text(
            "y.service",
            "# Install by hand:\n#   cp y /usr/local/sbin\n[Service]\nExecStart=/usr/local/bin/y\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("/usr/local/bin/y"), "{error}");
    }
}
