//! The package's control file and maintainer scripts. The scripts never
//! start a service (the operator edits /etc/lbd first), and an upgrade
//! never stops one: `systemctl restart lbd` after `dpkg -i` is the
//! operator's hitless step (README "Upgrading").

/// DEBIAN/control.
pub struct Control<'a> {
    pub version: &'a str,
    pub architecture: &'a str,
    /// From dpkg-shlibdeps (libc6, libgcc-s1).
    pub depends: &'a str,
    /// Installed size in KiB.
    pub installed_kib: u64,
}

impl Control<'_> {
    /// The control file's text.
    pub fn render(&self) -> String {
        format!(
            "Package: lbd\n\
             Version: {version}\n\
             Architecture: {architecture}\n\
             Maintainer: lbd developers <lbd@invalid>\n\
             Installed-Size: {size}\n\
             Depends: {depends}\n\
             Suggests: bird2, prometheus\n\
             Section: net\n\
             Priority: optional\n\
             Description: eBPF/XDP layer-4 load balancer\n \
             lbd balances TCP and UDP flows to backends with Maglev hashing in an XDP\n \
             (or tc) program: direct server return, IPIP/GUE tunnels or NAT, health\n \
             checks, VRRP pairs or active-active nodes behind BGP ECMP, flow\n \
             replication, and a pinned data plane that keeps forwarding across\n \
             restarts and upgrades. lbctl is its command line; lb-decap unwraps\n \
             tunnelled packets on backends.\n",
            version = self.version,
            architecture = self.architecture,
            size = self.installed_kib,
            depends = self.depends,
        )
    }
}

/// postinst: systemd learns the units and creates /run/lbd-bgp (BIRD's
/// include must exist before BIRD starts); nothing is started or
/// restarted.
pub const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemd-tmpfiles --create lbd-bgp.conf || true
fi
exit 0
"#;

/// prerm: on removal (not on upgrade: the running lbd and its pinned data
/// plane carry on until the operator restarts it; nor on `deconfigure`,
/// dpkg's step while another package replaces one lbd depends on or
/// conflicts with, after which lbd stays installed and `postinst
/// configure` starts nothing) stop the services and
/// take the data planes off the node, since nothing could manage them once
/// the binaries are gone. lbd is stopped for good (SIGINT to its main
/// process, then `systemctl stop` once it exited, or after 30 s): it hands
/// its VRRP addresses over (priority 0), withdraws its BGP routes and
/// forwards until their traffic is quiet before it detaches, where
/// `systemctl stop` alone (SIGTERM, a restart's stop) would leave the
/// program for a next lbd and the cleanup after it would cut the flows
/// still arriving. lbd's cleanup then runs when anything may be left:
/// a record of an lbd started with the config
/// (`/run/lbd/*.held.json`, which names its pin directory whatever the
/// config says now), or the pin directory the config names (`pin_dir`,
/// quoted either way; default /sys/fs/bpf/lbd; "off": none). (Not on
/// the config alone: an edited config may never have run.) lb-decap's
/// when its pin directory (the unit's default) exists.
pub const PRERM: &str = r#"#!/bin/sh
set -e
case "$1" in
remove)
    if [ -d /run/systemd/system ]; then
        pid=$(systemctl show --property=MainPID --value lbd.service 2>/dev/null || true)
        if [ -n "$pid" ] && [ "$pid" != 0 ] && kill -INT "$pid" 2>/dev/null; then
            waited=0
            while [ "$waited" -lt 300 ] && kill -0 "$pid" 2>/dev/null; do
                sleep 0.1
                waited=$((waited + 1))
            done
        fi
        systemctl stop lbd.service lb-decap.service || true
    fi
    config=/etc/lbd/lbd.toml
    pin_dir=/sys/fs/bpf/lbd
    if [ -f "$config" ]; then
        named=$(sed -n "s/^[[:space:]]*pin_dir[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$config" | head -n 1)
        if [ -n "$named" ]; then
            pin_dir=$named
        fi
    fi
    left=
    for record in /run/lbd/*.held.json; do
        if [ -f "$record" ] && grep -q "\"config\": \"$config\"" "$record"; then
            left="the record $record"
        fi
    done
    if [ -z "$left" ] && [ "$pin_dir" != off ] && [ -e "$pin_dir" ]; then
        left="pins in $pin_dir"
    fi
    if [ -n "$left" ]; then
        /usr/sbin/lbd --config "$config" --cleanup \
            || echo "lbd: 'lbd --cleanup' failed ($left): the data plane may still be attached" >&2
    fi
    if [ -d /sys/fs/bpf/lb-decap ]; then
        /usr/sbin/lb-decap cleanup \
            || echo "lbd: 'lb-decap cleanup' failed: its program may still be attached" >&2
    fi
    ;;
esac
exit 0
"#;

/// postrm: purge removes /etc/lbd (with whatever the operator put there),
/// lbd's state (/var/lib/lbd: a node's drain; the packaged lbd's
/// `/run/lbd/lbd.*.state`: backends' drain and maintenance, a node's
/// drain without `[bgp]`, VRRP resume records, which a reinstall with the
/// same VIPs would otherwise restore before any reboot) and the units'
/// enablement links. (Its record of what it holds, `/run/lbd/lbd.held.json`,
/// stays if the removal's cleanup failed: it names what is still attached.) The BGP routes file is left there, emptied: BIRD's config may
/// still include it, and BIRD refuses to start (or reconfigure) when an
/// included file is missing. (After a reboot nothing creates it: README
/// says to take the include out before uninstalling.)
pub const POSTRM: &str = r#"#!/bin/sh
set -e
case "$1" in
purge)
    rm -rf /etc/lbd /var/lib/lbd
    rm -f /run/lbd/lbd.*.state
    if [ -f /run/lbd-bgp/vips.conf ]; then
        : > /run/lbd-bgp/vips.conf
    fi
    for unit in lbd.service lb-decap.service; do
        rm -f "/etc/systemd/system/multi-user.target.wants/$unit"
    done
    ;;
esac
case "$1" in
remove|purge)
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
    ;;
esac
exit 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_valid_sh_and_never_start_a_service() {
        for (name, script) in [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(status.success(), "{name} is not valid sh");
            assert!(script.starts_with("#!/bin/sh\nset -e\n"), "{name}");
            for word in ["systemctl start", "systemctl restart", "enable --now"] {
                assert!(!script.contains(word), "{name} runs {word}");
            }
        }
        // Only removal stops lbd: an upgrade keeps it running.
        assert!(PRERM.contains("remove)") && !PRERM.contains("upgrade"));
        // /etc/lbd goes only on purge.
        let purge = POSTRM.split("purge)").nth(1).unwrap();
        assert!(purge.trim_start().starts_with("rm -rf /etc/lbd"));
        assert!(
            purge.contains("/var/lib/lbd"),
            "the node's state goes on purge"
        );
        assert_eq!(POSTRM.matches("/etc/lbd").count(), 1);
    }

    /// Runs PRERM `remove` with its paths moved under `dir` and fake
    /// binaries that record how they were called; returns the record.
    fn prerm_calls(dir: &std::path::Path, config: Option<&str>, pins: &[&str]) -> String {
        prerm_calls_with(dir, config, pins, &[], None, "remove")
    }

    /// As [`prerm_calls`], with lbd records (`/run/lbd/NAME.held.json`,
    /// each naming its config) and, if `main_pid` is given, a systemd
    /// (a fake `systemctl` giving `main_pid` as lbd's main process).
    fn prerm_calls_with(
        dir: &std::path::Path,
        config: Option<&str>,
        pins: &[&str],
        records: &[(&str, &str)],
        main_pid: Option<u32>,
        action: &str,
    ) -> String {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("run/lbd")).unwrap();
        std::fs::create_dir_all(dir.join("systemd")).unwrap();
        let log = dir.join("calls");
        let d = dir.display().to_string();
        for (name, config) in records {
            let record = format!(
                "{{\n  \"config\": \"{}\",\n  \"pid\": 7\n}}\n",
                config.replace("@", &d)
            );
            std::fs::write(dir.join(format!("run/lbd/{name}.held.json")), record).unwrap();
        }
        let systemctl = format!(
            "#!/bin/sh\ncase \"$1\" in\nshow) echo {} ;;\n*) echo \"systemctl $*\" >> {} ;;\nesac\n",
            main_pid.unwrap_or(0),
            log.display()
        );
        std::fs::write(dir.join("bin/systemctl"), systemctl).unwrap();
        for bin in ["lbd", "lb-decap", "systemctl"] {
            let path = dir.join("bin").join(bin);
            if bin != "systemctl" {
                std::fs::write(
                    &path,
                    format!("#!/bin/sh\necho \"{bin} $*\" >> {}\n", log.display()),
                )
                .unwrap();
            }
            let status = std::process::Command::new("chmod")
                .arg("0755")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success());
        }
        if let Some(text) = config {
            std::fs::write(dir.join("lbd.toml"), text.replace("@", &d)).unwrap();
        }
        for pin in pins {
            std::fs::create_dir_all(dir.join(pin)).unwrap();
        }
        let systemd = if main_pid.is_some() {
            "systemd"
        } else {
            "no-systemd"
        };
        let script = PRERM
            .replace("/run/systemd/system", &format!("{d}/{systemd}"))
            .replace("/run/lbd/", &format!("{d}/run/lbd/"))
            .replace("/etc/lbd/lbd.toml", &format!("{d}/lbd.toml"))
            .replace("/sys/fs/bpf/", &format!("{d}/bpf/"))
            .replace("/usr/sbin/", &format!("{d}/bin/"));
        let path = format!("{d}/bin:{}", std::env::var("PATH").unwrap_or_default());
        let status = std::process::Command::new("sh")
            .args(["-c", &script, "prerm", action])
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read_to_string(&log).unwrap_or_default()
    }

    /// Under systemd lbd is stopped for good first: SIGINT to its main
    /// process (a VRRP handover, a BGP withdrawal, forwarding until
    /// quiet), waited for, and only then `systemctl stop` and the cleanup.
    #[test]
    fn prerm_stops_lbd_for_good_before_systemctl_stop() {
        let dir = std::env::temp_dir().join(format!("lbd-prerm-int-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("calls");
        // lbd's stand-in: notes SIGINT in the same log, then exits; reaped
        // at once, as systemd reaps lbd (the prerm waits while it exists).
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(format!(
            "trap 'echo SIGINT >> {}; exit 0' INT; while :; do sleep 0.05; done",
            log.display()
        ));
        // A shell cannot trap a signal ignored when it started (POSIX), and
        // a test run started in the background of a non-interactive shell
        // (`cargo xtask test &`) ignores SIGINT: the stand-in would then
        // never exit. lbd under systemd starts with SIGINT at its default.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut sh, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let lbd = sh.spawn().unwrap();
        let pid = lbd.id();
        let reaped = std::thread::spawn(move || {
            let mut lbd = lbd;
            lbd.wait()
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        let d = dir.display().to_string();
        let started = std::time::Instant::now();
        let calls = prerm_calls_with(
            &dir,
            Some("interface = \"eth0\"\n"),
            &["bpf/lbd"],
            &[],
            Some(pid),
            "remove",
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the prerm waited for lbd past its exit"
        );
        let status = reaped.join().unwrap().unwrap();
        assert!(status.success(), "{status:?}");
        assert_eq!(
            calls,
            format!(
                "SIGINT\nsystemctl stop lbd.service lb-decap.service\nlbd --config {d}/lbd.toml --cleanup\n"
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prerm_cleans_up_what_is_pinned_whatever_the_config_says() {
        let dir = std::env::temp_dir().join(format!("lbd-prerm-{}", std::process::id()));
        let d = dir.display().to_string();
        let example = "interface = \"eth0\"\n";
        // The shipped example, run as is: its pins are taken off.
        let calls = prerm_calls(&dir, Some(example), &["bpf/lbd"]);
        assert_eq!(calls, format!("lbd --config {d}/lbd.toml --cleanup\n"));
        // An edited config that never ran: nothing pinned, nothing run.
        let calls = prerm_calls(&dir, Some("interface = \"eth1\"\n"), &[]);
        assert_eq!(calls, "");
        // The pin directory the config names, not the default.
        let named = "interface = \"eth0\"\npin_dir = \"@/bpf/mine\" # here\n";
        assert_eq!(prerm_calls(&dir, Some(named), &["bpf/lbd"]), "");
        let calls = prerm_calls(&dir, Some(named), &["bpf/mine"]);
        assert_eq!(calls, format!("lbd --config {d}/lbd.toml --cleanup\n"));
        // pin_dir = "off": lbd pins nothing.
        let off = "interface = \"eth0\"\npin_dir = \"off\"\n";
        assert_eq!(prerm_calls(&dir, Some(off), &["bpf/lbd"]), "");
        // Quoted either way, as TOML allows.
        let single = "interface = \"eth0\"\npin_dir = '@/bpf/mine'\n";
        let calls = prerm_calls(&dir, Some(single), &["bpf/mine"]);
        assert_eq!(calls, format!("lbd --config {d}/lbd.toml --cleanup\n"));
        // pin_dir edited since the lbd that pinned started: its record
        // decides (it names where that lbd pinned), not the file.
        let records = [("lbd", "@/lbd.toml")];
        let calls = prerm_calls_with(&dir, Some(named), &["bpf/lbd"], &records, None, "remove");
        assert_eq!(calls, format!("lbd --config {d}/lbd.toml --cleanup\n"));
        // A record of an lbd started with another config is not ours.
        let other = [("lbd-other", "/etc/lbd/other.toml")];
        assert_eq!(
            prerm_calls_with(&dir, Some(named), &[], &other, None, "remove"),
            ""
        );
        // lb-decap: its pins decide too.
        let calls = prerm_calls(&dir, None, &["bpf/lb-decap"]);
        assert_eq!(calls, "lb-decap cleanup\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `prerm deconfigure` (dpkg's step while another package replaces
    /// one lbd depends on; lbd stays installed and nothing restarts it
    /// after) stops nothing and cleans nothing up, as `upgrade`.
    #[test]
    fn prerm_deconfigure_or_upgrade_leaves_lbd_running() {
        let dir = std::env::temp_dir().join(format!("lbd-prerm-deconf-{}", std::process::id()));
        for action in ["deconfigure", "upgrade", "failed-upgrade"] {
            let calls = prerm_calls_with(
                &dir,
                Some("interface = \"eth0\"\n"),
                &["bpf/lbd", "bpf/lb-decap"],
                &[],
                Some(4_000_000),
                action,
            );
            assert_eq!(calls, "", "prerm {action}");
        }
        // The same tree on removal: stopped and cleaned up.
        let calls = prerm_calls_with(
            &dir,
            Some("interface = \"eth0\"\n"),
            &["bpf/lbd", "bpf/lb-decap"],
            &[],
            Some(4_000_000),
            "remove",
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            calls.contains("systemctl stop") && calls.contains("--cleanup"),
            "{calls}"
        );
    }

    #[test]
    fn purge_empties_the_routes_file_bird_includes_and_removes_the_rest() {
        let dir = std::env::temp_dir().join(format!("lbd-postrm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.display().to_string();
        for sub in ["etc/lbd", "var/lib/lbd", "run/lbd-bgp", "run/lbd", "wants"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("etc/lbd/lbd.toml"), "interface = \"eth0\"\n").unwrap();
        std::fs::write(dir.join("var/lib/lbd/drain"), "1").unwrap();
        let run = dir.join("run/lbd");
        for state in [
            "lbd.backends.state",
            "lbd.node.state",
            "lbd.vrrp-51-v4.state",
        ] {
            std::fs::write(run.join(state), "{}").unwrap();
        }
        // Another lbd's (its own admin socket) and the lock files stay.
        std::fs::write(run.join("lab.backends.state"), "{}").unwrap();
        std::fs::write(run.join("lbd-xdp-eth0.net1.lock"), "").unwrap();
        let routes = dir.join("run/lbd-bgp/vips.conf");
        std::fs::write(&routes, "protocol static lbd_vips4 { }\n").unwrap();
        std::fs::write(dir.join("wants/lbd.service"), "").unwrap();
        let script = POSTRM
            .replace("/run/systemd/system", &format!("{d}/no-systemd"))
            .replace(
                "/etc/systemd/system/multi-user.target.wants",
                &format!("{d}/wants"),
            )
            .replace("/etc/lbd", &format!("{d}/etc/lbd"))
            .replace("/var/lib/lbd", &format!("{d}/var/lib/lbd"))
            .replace("/run/lbd-bgp", &format!("{d}/run/lbd-bgp"))
            .replace("/run/lbd/", &format!("{d}/run/lbd/"));
        // Removal (not purge) touches none of it.
        let postrm = |action: &str| {
            let status = std::process::Command::new("sh")
                .args(["-c", &script, "postrm", action])
                .status()
                .unwrap();
            assert!(status.success(), "postrm {action}");
        };
        postrm("remove");
        assert!(dir.join("etc/lbd/lbd.toml").exists());
        assert!(run.join("lbd.backends.state").exists());
        assert!(std::fs::metadata(&routes).unwrap().len() > 0);
        postrm("purge");
        let left = std::fs::read(&routes);
        let gone = [
            "etc/lbd",
            "var/lib/lbd",
            "wants/lbd.service",
            "run/lbd/lbd.backends.state",
            "run/lbd/lbd.node.state",
            "run/lbd/lbd.vrrp-51-v4.state",
        ]
        .map(|p| dir.join(p).exists());
        let kept = ["lab.backends.state", "lbd-xdp-eth0.net1.lock"].map(|p| run.join(p).exists());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(left.unwrap(), b"", "the routes file stays, empty");
        assert_eq!(gone, [false; 6]);
        assert_eq!(kept, [true; 2]);
    }

    #[test]
    fn control_has_the_mandatory_fields_and_a_folded_description() {
        let text = Control {
            version: "1.2.3",
            architecture: "amd64",
            depends: "libc6 (>= 2.34)",
            installed_kib: 42,
        }
        .render();
        for field in [
            "Package: lbd\n",
            "Version: 1.2.3\n",
            "Architecture: amd64\n",
            "Maintainer: ",
            "Installed-Size: 42\n",
            "Depends: libc6 (>= 2.34)\n",
        ] {
            assert!(text.contains(field), "{field} missing in\n{text}");
        }
        let description = text.split("Description: ").nth(1).unwrap();
        assert!(
            description.lines().skip(1).all(|l| l.starts_with(' ')),
            "{text}"
        );
        assert!(text.ends_with('\n'));
    }
}
