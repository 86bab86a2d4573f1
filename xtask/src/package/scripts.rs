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
/// restarted. On an upgrade or downgrade (`configure` with the previous
/// version) the new build checks the config (`lbctl config check`), and
/// one it refuses is said loudly, with "do NOT restart lbd": the restart
/// would stop the running lbd for one that does not start. The install
/// goes on either way (the old lbd still runs, and the operator fixes the
/// file or goes back). Only `abort-remove` (dpkg's step after the prerm stopped a
/// removal: a cleanup failed, the package stays) starts again the
/// services the prerm stopped (those it found active, in
/// /run/lbd/package-stopped-units):
/// lbd then checks its backends and drives the program it left attached
/// again, lb-decap applies its config again; a start that fails is said
/// and does not fail the step (the package would be left half-configured).
pub const POSTINST: &str = r#"#!/bin/sh
set -e
case "$1" in
configure)
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        systemd-tmpfiles --create lbd-bgp.conf || true
    fi
    # An upgrade (or a downgrade): the running lbd carries on, and the
    # operator's restart of lbd starts this build on the config as it is.
    # Check it with this build now, while the old lbd still runs.
    config=/etc/lbd/lbd.toml
    if [ -n "$2" ] && [ -f "$config" ] && [ -x /usr/sbin/lbctl ]; then
        if ! refused=$(/usr/sbin/lbctl config check "$config" 2>&1 >/dev/null); then
            cat >&2 <<MESSAGE

lbd: WARNING: this build of lbd refuses $config:
$refused

lbd: WARNING: do NOT restart lbd until \`lbctl config check $config\` passes.
The running lbd (the previous version, $2) carries on. Restarted, it would stop,
and this build would refuse the file and not start: the pinned program would go
on forwarding with no health checks, BGP routes withdrawn, VRRP failed over.
Fix the file, or go back to the previous version ($2) before restarting.

MESSAGE
        fi
    fi
    ;;
abort-remove)
    stopped=/run/lbd/package-stopped-units
    if [ -f "$stopped" ]; then
        if [ -d /run/systemd/system ]; then
            for unit in $(cat "$stopped"); do
                case "$unit" in
                lbd.service|lb-decap.service)
                    echo "lbd: the removal was stopped: starting $unit again (the removal stopped it)" >&2
                    systemctl start "$unit" \
                        || echo "lbd: starting $unit again failed: see systemctl status $unit" >&2
                    ;;
                esac
            done
        fi
        rm -f "$stopped"
    fi
    ;;
esac
exit 0
"#;

/// Where the prerm notes the units it found active before it stopped
/// them, for `postinst abort-remove` (the prerm removes it when the
/// removal goes on).
#[cfg(test)]
const STOPPED: &str = "/run/lbd/package-stopped-units";

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
/// for each of its pin directories that exists: the default and those
/// lb-decap.service names (`LB_DECAP_PIN_DIR` in its `Environment=`,
/// `--pin-dir` in its `ExecStart=`), each passed with `--pin-dir`.
///
/// A cleanup that fails stops the removal (exit 1: dpkg keeps the
/// package and runs `postinst abort-remove`, which starts again what was
/// stopped): removed, the package would leave a program attached, its
/// maps pinned (and maybe BIRD announcing the node) with no binary to
/// take them off. The message names what failed, the manual steps and
/// the way out: `LBD_FORCE_REMOVE=1` lets the removal go on after them.
pub const PRERM: &str = r#"#!/bin/sh
set -e
# The pin directories lb-decap.service names: LB_DECAP_PIN_DIR=DIR in its
# Environment= (a drop-in), --pin-dir DIR or --pin-dir=DIR in its ExecStart=.
decap_pin_dirs() (
    set -f
    next=
    for word in $(systemctl show --property=Environment --value lb-decap.service 2>/dev/null || true) \
        $(systemctl show --property=ExecStart --value lb-decap.service 2>/dev/null || true); do
        if [ -n "$next" ]; then
            echo "$word"
            next=
            continue
        fi
        case "$word" in
        LB_DECAP_PIN_DIR=*) echo "${word#LB_DECAP_PIN_DIR=}" ;;
        --pin-dir=*) echo "${word#--pin-dir=}" ;;
        --pin-dir) next=1 ;;
        esac
    done
)
case "$1" in
remove)
    stopped=/run/lbd/package-stopped-units
    rm -f "$stopped" 2>/dev/null || true
    decap_dirs=/sys/fs/bpf/lb-decap
    if [ -d /run/systemd/system ]; then
        for unit in lbd.service lb-decap.service; do
            if systemctl is-active --quiet "$unit" 2>/dev/null; then
                { mkdir -p /run/lbd && echo "$unit" >> "$stopped"; } 2>/dev/null || true
            fi
        done
        decap_dirs=$(printf '%s\n' "$decap_dirs"; decap_pin_dirs)
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
    failed=
    config=/etc/lbd/lbd.toml
    pin_dir=/sys/fs/bpf/lbd
    routes=
    interface=INTERFACE
    if [ -f "$config" ]; then
        named=$(sed -n "s/^[[:space:]]*interface[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$config" | head -n 1)
        interface=${named:-$interface}
        named=$(sed -n "s/^[[:space:]]*pin_dir[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$config" | head -n 1)
        if [ -n "$named" ]; then
            pin_dir=$named
        fi
        if grep -q '^[[:space:]]*\[bgp\]' "$config"; then
            routes=$(sed -n "s/^[[:space:]]*routes_file[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$config" | head -n 1)
            routes=${routes:-/run/lbd-bgp/vips.conf}
        fi
    fi
    pins=$pin_dir
    if [ "$pins" = off ]; then
        pins=
    fi
    left=
    for record in /run/lbd/*.held.json; do
        if [ -f "$record" ] && grep -q "\"config\": \"$config\"" "$record"; then
            left="the record $record"
            # What that lbd held, whatever the config says now.
            pins=$(sed -n 's/^[[:space:]]*"pin_dir": "\([^"]*\)".*/\1/p' "$record" | head -n 1)
            routes=$(sed -n 's/^[[:space:]]*"routes_file": "\([^"]*\)".*/\1/p' "$record" | head -n 1)
            named=$(sed -n 's/^[[:space:]]*"interface": "\([^"]*\)".*/\1/p' "$record" | head -n 1)
            interface=${named:-$interface}
        fi
    done
    if [ -z "$left" ] && [ "$pin_dir" != off ] && [ -e "$pin_dir" ]; then
        left="pins in $pin_dir"
    fi
    if [ -n "$left" ] && ! /usr/sbin/lbd --config "$config" --cleanup; then
        failed=1
        cat >&2 <<MESSAGE
lbd: 'lbd --config $config --cleanup' failed ($left; its error is above): lbd's program may still be attached, forwarding with no health checks, its maps pinned${pins:+ in $pins}${routes:+, and BIRD may still announce this node}.
MESSAGE
        if [ -n "$routes" ]; then
            cat >&2 <<MESSAGE
lbd: lbd's cleanup keeps the program attached while BIRD refuses the withdrawal of this node's routes (\`birdc configure\` fails) or does not answer: fix BIRD's configuration or start it again, or stop BIRD, then run the removal again.
MESSAGE
        fi
        cat >&2 <<MESSAGE
lbd: by hand: ${routes:+empty the routes file BIRD includes (: > $routes) and run \`birdc configure\`; }${pins:+rm -r $pins (the pinned link goes, and the program with it); }with attach = "tc" on a kernel without tcx, also tc filter del dev $interface ingress pref P, P the priority of the filter running tc_lb in \`tc filter show dev $interface ingress\`.
MESSAGE
    fi
    while IFS= read -r dir; do
        if [ -n "$dir" ] && [ -d "$dir" ] && ! /usr/sbin/lb-decap --pin-dir "$dir" cleanup </dev/null; then
            failed=1
            cat >&2 <<MESSAGE
lbd: 'lb-decap --pin-dir $dir cleanup' failed (its error is above): lb-decap's program may still be attached, its links and maps pinned in $dir. Fix what the error names, then run the removal again; by hand: rm -r $dir (the pinned links go, and the program with them).
MESSAGE
        fi
    done <<DIRS
$(printf '%s\n' "$decap_dirs" | awk '!seen[$0]++')
DIRS
    if [ -n "$failed" ]; then
        if [ "${LBD_FORCE_REMOVE:-}" = 1 ]; then
            echo "lbd: LBD_FORCE_REMOVE=1: removing the package anyway; take what is left off by hand (above): no binary will be left to do it" >&2
        else
            restart=
            if [ -s "$stopped" ]; then
                restart=" and starts again what this removal stopped ($(echo $(cat "$stopped")))"
            fi
            cat >&2 <<MESSAGE
lbd: removal stopped: dpkg keeps the package$restart, so lbd --cleanup and lb-decap cleanup stay at hand. Fix what failed (above), then run the removal again (apt remove lbd, or dpkg -r lbd). To remove the package anyway, with what is left to take off by hand (the steps above): LBD_FORCE_REMOVE=1 apt remove lbd (with sudo: sudo env LBD_FORCE_REMOVE=1 apt remove lbd).
MESSAGE
            exit 1
        fi
    fi
    rm -f "$stopped" 2>/dev/null || true
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
            // Only an aborted removal starts anything: what the prerm
            // stopped (see `an_aborted_removal_starts_again_what_the_prerm_stopped`).
            let script = script.split("abort-remove)").next().unwrap();
            for word in ["systemctl start", "systemctl restart", "enable --now"] {
                assert!(!script.contains(word), "{name} runs {word}");
            }
        }
        assert_eq!(POSTINST.matches("systemctl start").count(), 1);
        // The note of what was stopped: written and removed by the prerm,
        // read by the postinst.
        assert!(PRERM.contains(STOPPED) && POSTINST.contains(STOPPED));
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
        let ran = Fakes {
            config,
            pins,
            records,
            main_pid,
            ..Fakes::default()
        }
        .prerm(dir, action);
        assert!(ran.status.success(), "{}", ran.stderr);
        ran.calls
    }

    /// A fake system for the maintainer scripts: their paths moved under
    /// a directory, and fake `lbd`, `lb-decap` and `systemctl` that record
    /// how they were called (in `calls`).
    #[derive(Default)]
    struct Fakes<'a> {
        /// /etc/lbd/lbd.toml (`@` stands for the directory).
        config: Option<&'a str>,
        /// Directories made under the directory (`bpf/lbd` stands for
        /// /sys/fs/bpf/lbd).
        pins: &'a [&'a str],
        /// lbd records (`/run/lbd/NAME.held.json`, each naming its
        /// config).
        records: &'a [(&'a str, &'a str)],
        /// With a systemd: lbd's main process (0: none).
        main_pid: Option<u32>,
        /// The units `systemctl is-active` says are active.
        active: &'a [&'a str],
        /// lb-decap.service's `Environment` and `ExecStart`, as
        /// `systemctl show --value` prints them (`@`: the directory).
        decap_environment: &'a str,
        decap_exec_start: &'a str,
        /// The binaries whose cleanup fails (exit 1, an error on stderr);
        /// `lbctl`: its `config check` refuses the file (exit 2).
        failing: &'a [&'a str],
        /// Environment variables the script runs with.
        env: &'a [(&'a str, &'a str)],
    }

    /// How a maintainer script under [`Fakes`] ended.
    struct Ran {
        status: std::process::ExitStatus,
        /// The fakes' record of their calls.
        calls: String,
        stderr: String,
    }

    impl Fakes<'_> {
        /// Makes the fake system under `dir` (afresh) and runs PRERM
        /// `action` there.
        fn prerm(&self, dir: &std::path::Path, action: &str) -> Ran {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            std::fs::create_dir_all(dir.join("run/lbd")).unwrap();
            std::fs::create_dir_all(dir.join("systemd")).unwrap();
            let log = dir.join("calls");
            let d = dir.display().to_string();
            for (name, config) in self.records {
                let record = format!(
                    "{{\n  \"config\": \"{}\",\n  \"pid\": 7,\n  \"pin_dir\": \"@/bpf/recorded\"\n}}\n",
                    config.replace("@", &d)
                )
                .replace("@", &d);
                std::fs::write(dir.join(format!("run/lbd/{name}.held.json")), record).unwrap();
            }
            let active: String = self
                .active
                .iter()
                .map(|u| format!("{u}) exit 0 ;; "))
                .collect();
            let systemctl = format!(
                "#!/bin/sh\n\
                 case \"$1\" in\n\
                 show) case \"$*\" in\n\
                 *MainPID*) echo {pid} ;;\n\
                 *Environment*lb-decap.service*) echo '{environment}' ;;\n\
                 *ExecStart*lb-decap.service*) echo '{exec_start}' ;;\n\
                 *) echo ;;\n\
                 esac ;;\n\
                 is-active) case \"$3\" in {active}*) exit 3 ;; esac ;;\n\
                 *) echo \"systemctl $*\" >> {log} ;;\n\
                 esac\n",
                pid = self.main_pid.unwrap_or(0),
                environment = self.decap_environment.replace("@", &d),
                exec_start = self.decap_exec_start.replace("@", &d),
                log = log.display()
            );
            std::fs::write(dir.join("bin/systemctl"), systemctl).unwrap();
            for bin in ["lbd", "lb-decap"] {
                let fail = if self.failing.contains(&bin) {
                    format!(
                        "case \" $* \" in *cleanup*) echo \"{bin}: error: BIRD did not answer\" >&2; exit 1 ;; esac\n"
                    )
                } else {
                    String::new()
                };
                std::fs::write(
                    dir.join("bin").join(bin),
                    format!("#!/bin/sh\necho \"{bin} $*\" >> {}\n{fail}", log.display()),
                )
                .unwrap();
            }
            let refuse = if self.failing.contains(&"lbctl") {
                "case \"$*\" in \"config check\"*) echo \"lbctl: lbd.toml:7: [[vrrp]] notify: /opt/notify is writable by group\" >&2; exit 2 ;; esac\n"
            } else {
                ""
            };
            std::fs::write(
                dir.join("bin/lbctl"),
                format!(
                    "#!/bin/sh\necho \"lbctl $*\" >> {}\n{refuse}echo \"a table of shares\"\n",
                    log.display()
                ),
            )
            .unwrap();
            for bin in ["lbd", "lb-decap", "lbctl", "systemctl"] {
                let status = std::process::Command::new("chmod")
                    .arg("0755")
                    .arg(dir.join("bin").join(bin))
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            if let Some(text) = self.config {
                std::fs::write(dir.join("lbd.toml"), text.replace("@", &d)).unwrap();
            }
            for pin in self.pins {
                std::fs::create_dir_all(dir.join(pin)).unwrap();
            }
            self.run(dir, PRERM, "prerm", action)
        }

        /// Runs `script` (`name` `action`, `action` and its arguments
        /// split at spaces: `configure 0.1.0`) in the fake system made
        /// under `dir` by [`Fakes::prerm`].
        fn run(&self, dir: &std::path::Path, script: &str, name: &str, action: &str) -> Ran {
            let d = dir.display().to_string();
            let systemd = if self.main_pid.is_some() {
                "systemd"
            } else {
                "no-systemd"
            };
            let script = script
                .replace("/run/systemd/system", &format!("{d}/{systemd}"))
                .replace("/run/lbd/", &format!("{d}/run/lbd/"))
                .replace("/etc/lbd/lbd.toml", &format!("{d}/lbd.toml"))
                .replace("/sys/fs/bpf/", &format!("{d}/bpf/"))
                .replace("/usr/sbin/", &format!("{d}/bin/"));
            let path = format!("{d}/bin:{}", std::env::var("PATH").unwrap_or_default());
            let out = std::process::Command::new("sh")
                .args(["-c", &script, name])
                .args(action.split_whitespace())
                .env("PATH", path)
                .env_remove("LBD_FORCE_REMOVE")
                .envs(self.env.iter().copied())
                .output()
                .unwrap();
            Ran {
                status: out.status,
                calls: std::fs::read_to_string(dir.join("calls")).unwrap_or_default(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
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
        // (Named explicitly: not whatever LB_DECAP_PIN_DIR apt's caller has.)
        let calls = prerm_calls(&dir, None, &["bpf/lb-decap"]);
        assert_eq!(
            calls,
            format!("lb-decap --pin-dir {d}/bpf/lb-decap cleanup\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An lb-decap run with another pin directory (`LB_DECAP_PIN_DIR` in
    /// a drop-in's `Environment=`, `--pin-dir` in the unit's `ExecStart`)
    /// is cleaned up too, each directory once; one named that does not
    /// exist is skipped.
    #[test]
    fn prerm_cleans_up_the_lb_decap_pin_directories_the_unit_names() {
        let dir = std::env::temp_dir().join(format!("lbd-prerm-decap-{}", std::process::id()));
        let d = dir.display().to_string();
        let exec_start = "{ path=/usr/sbin/lb-decap ; argv[]=/usr/sbin/lb-decap --pin-dir @/bpf/third run --config /etc/lbd/lb-decap.toml ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }";
        let ran = Fakes {
            pins: &["bpf/other", "bpf/third", "bpf/lb-decap"],
            main_pid: Some(0),
            decap_environment: "RUST_LOG=info LB_DECAP_PIN_DIR=@/bpf/other",
            decap_exec_start: exec_start,
            ..Fakes::default()
        }
        .prerm(&dir, "remove");
        assert!(ran.status.success(), "{}", ran.stderr);
        assert_eq!(
            ran.calls,
            format!(
                "systemctl stop lbd.service lb-decap.service\n\
                 lb-decap --pin-dir {d}/bpf/lb-decap cleanup\n\
                 lb-decap --pin-dir {d}/bpf/other cleanup\n\
                 lb-decap --pin-dir {d}/bpf/third cleanup\n"
            )
        );
        // `--pin-dir=DIR`; the default named again; a directory that is
        // not there.
        let ran = Fakes {
            pins: &["bpf/third"],
            main_pid: Some(0),
            decap_environment: "LB_DECAP_PIN_DIR=@/bpf/lb-decap",
            decap_exec_start: "{ path=/usr/sbin/lb-decap ; argv[]=/usr/sbin/lb-decap run --pin-dir=@/bpf/third --config /etc/lbd/lb-decap.toml ; ignore_errors=no }",
            ..Fakes::default()
        }
        .prerm(&dir, "remove");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ran.status.success(), "{}", ran.stderr);
        assert_eq!(
            ran.calls,
            format!(
                "systemctl stop lbd.service lb-decap.service\n\
                 lb-decap --pin-dir {d}/bpf/third cleanup\n"
            )
        );
    }

    /// A failed cleanup stops the removal (dpkg keeps the binaries, which
    /// alone can take what is left off the node), naming what failed, how
    /// to retry, the manual steps and LBD_FORCE_REMOVE=1; with that set,
    /// the removal goes on after the same steps.
    #[test]
    fn prerm_stops_the_removal_when_a_cleanup_fails() {
        let dir = std::env::temp_dir().join(format!("lbd-prerm-fail-{}", std::process::id()));
        let d = dir.display().to_string();
        let config = "interface = \"eth0\"\n[bgp]\nrouter_id = \"10.0.0.1\"\n";
        let fakes = Fakes {
            config: Some(config),
            pins: &["bpf/lbd"],
            failing: &["lbd"],
            ..Fakes::default()
        };
        let ran = fakes.prerm(&dir, "remove");
        assert!(!ran.status.success(), "{}", ran.stderr);
        assert_eq!(ran.calls, format!("lbd --config {d}/lbd.toml --cleanup\n"));
        for words in [
            "lbd: error: BIRD did not answer",
            &format!("'lbd --config {d}/lbd.toml --cleanup' failed"),
            "removal stopped",
            "BIRD",
            "birdc configure",
            "/run/lbd-bgp/vips.conf",
            &format!("rm -r {d}/bpf/lbd"),
            "tc filter del dev eth0 ingress pref P",
            "run the removal again",
            "LBD_FORCE_REMOVE=1",
        ] {
            assert!(
                ran.stderr.contains(words),
                "{words:?} not in\n{}",
                ran.stderr
            );
        }
        // The pin directory lbd's record names, not the config's.
        let ran = Fakes {
            records: &[("lbd", "@/lbd.toml")],
            ..fakes
        }
        .prerm(&dir, "remove");
        assert!(!ran.status.success(), "{}", ran.stderr);
        assert!(
            ran.stderr.contains(&format!("rm -r {d}/bpf/recorded")),
            "{}",
            ran.stderr
        );
        // lb-decap's cleanup failing: its directory named, lbd's done.
        let ran = Fakes {
            pins: &["bpf/lbd", "bpf/lb-decap"],
            failing: &["lb-decap"],
            ..fakes
        }
        .prerm(&dir, "remove");
        assert!(!ran.status.success(), "{}", ran.stderr);
        assert!(ran.calls.contains("--cleanup"), "{}", ran.calls);
        for words in [
            &format!("'lb-decap --pin-dir {d}/bpf/lb-decap cleanup' failed"),
            &format!("rm -r {d}/bpf/lb-decap"),
            "LBD_FORCE_REMOVE=1",
        ] {
            assert!(
                ran.stderr.contains(words),
                "{words:?} not in\n{}",
                ran.stderr
            );
        }
        assert!(!ran.stderr.contains("birdc"), "{}", ran.stderr);
        // Forced: the removal goes on, the steps said.
        let ran = Fakes {
            env: &[("LBD_FORCE_REMOVE", "1")],
            ..fakes
        }
        .prerm(&dir, "remove");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ran.status.success(), "{}", ran.stderr);
        for words in [
            "LBD_FORCE_REMOVE=1",
            "birdc configure",
            &format!("rm -r {d}/bpf/lbd"),
        ] {
            assert!(
                ran.stderr.contains(words),
                "{words:?} not in\n{}",
                ran.stderr
            );
        }
    }

    /// A removal the prerm stopped makes dpkg run `postinst abort-remove`:
    /// the services the prerm stopped (those active before) are started
    /// again, so lbd checks its backends again and drives the data plane
    /// it left attached; one that was not running stays stopped. A
    /// removal that went through leaves no word for a later postinst.
    #[test]
    fn an_aborted_removal_starts_again_what_the_prerm_stopped() {
        let dir = std::env::temp_dir().join(format!("lbd-abort-remove-{}", std::process::id()));
        let stopped = "systemctl stop lbd.service lb-decap.service\n";
        let fakes = Fakes {
            config: Some("interface = \"eth0\"\n"),
            pins: &["bpf/lbd"],
            main_pid: Some(0),
            active: &["lbd.service"],
            failing: &["lbd"],
            ..Fakes::default()
        };
        let ran = fakes.prerm(&dir, "remove");
        assert!(!ran.status.success(), "{}", ran.stderr);
        let after = fakes.run(&dir, POSTINST, "postinst", "abort-remove");
        assert!(after.status.success(), "{}", after.stderr);
        let restarted = after.calls.strip_prefix(&ran.calls).unwrap_or_default();
        assert_eq!(
            restarted, "systemctl start lbd.service\n",
            "{}",
            after.calls
        );
        // Said once: a second abort-remove starts nothing.
        let again = fakes.run(&dir, POSTINST, "postinst", "abort-remove");
        assert_eq!(again.calls, after.calls);
        // Both were running.
        let both = Fakes {
            active: &["lbd.service", "lb-decap.service"],
            ..fakes
        };
        let ran = both.prerm(&dir, "remove");
        assert!(ran.calls.starts_with(stopped), "{}", ran.calls);
        let after = both.run(&dir, POSTINST, "postinst", "abort-remove");
        let restarted = after.calls.strip_prefix(&ran.calls).unwrap_or_default();
        assert_eq!(
            restarted,
            "systemctl start lbd.service\nsystemctl start lb-decap.service\n"
        );
        // A removal that went through (or was forced): nothing to start.
        for fakes in [
            Fakes {
                failing: &[],
                ..both
            },
            Fakes {
                env: &[("LBD_FORCE_REMOVE", "1")],
                ..both
            },
        ] {
            let ran = fakes.prerm(&dir, "remove");
            assert!(ran.status.success(), "{}", ran.stderr);
            assert!(!dir.join(STOPPED.trim_start_matches('/')).exists());
            let after = fakes.run(&dir, POSTINST, "postinst", "abort-remove");
            assert_eq!(after.calls, ran.calls);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `postinst configure` after an upgrade (dpkg gives the previous
    /// version) checks the config with the new build; a refusal is said
    /// loudly on stderr (what lbctl said, "do NOT restart lbd") and the
    /// install goes on. A first install, no config, or a config the new
    /// build takes: nothing said.
    #[test]
    fn an_upgrade_checks_the_config_with_the_new_build() {
        let dir = std::env::temp_dir().join(format!("lbd-postinst-check-{}", std::process::id()));
        let d = dir.display().to_string();
        let refusing = Fakes {
            config: Some("interface = \"eth0\"\n"),
            failing: &["lbctl"],
            ..Fakes::default()
        };
        refusing.prerm(&dir, "upgrade");
        let ran = refusing.run(&dir, POSTINST, "postinst", "configure 0.1.0");
        assert!(
            ran.status.success(),
            "never fails the install: {}",
            ran.stderr
        );
        assert!(
            ran.calls
                .contains(&format!("lbctl config check {d}/lbd.toml\n")),
            "{}",
            ran.calls
        );
        for words in [
            "WARNING",
            "do NOT restart lbd",
            "[[vrrp]] notify: /opt/notify is writable by group",
            "previous version, 0.1.0",
        ] {
            assert!(
                ran.stderr.contains(words),
                "{words:?} not in\n{}",
                ran.stderr
            );
        }
        assert!(!ran.stderr.contains("a table of shares"), "{}", ran.stderr);
        // A first install: no previous version, nothing checked.
        let first = refusing.run(&dir, POSTINST, "postinst", "configure");
        assert!(first.status.success());
        assert_eq!(first.calls, ran.calls, "nothing more run");
        assert!(!first.stderr.contains("WARNING"), "{}", first.stderr);
        // A config the new build takes: quiet.
        let taking = Fakes {
            failing: &[],
            ..refusing
        };
        taking.prerm(&dir, "upgrade");
        let ran = taking.run(&dir, POSTINST, "postinst", "configure 0.1.0");
        assert!(ran.status.success());
        assert!(ran.calls.contains("config check"), "{}", ran.calls);
        assert_eq!(ran.stderr, "");
        // No config (removed, or never written): nothing to check.
        let none = Fakes {
            config: None,
            ..refusing
        };
        none.prerm(&dir, "upgrade");
        let ran = none.run(&dir, POSTINST, "postinst", "configure 0.1.0");
        assert!(ran.status.success());
        assert!(!ran.calls.contains("config check"), "{}", ran.calls);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The README's upgrade steps check the config with the new build
    /// between the install and the restart.
    #[test]
    fn the_readme_upgrade_checks_the_config_before_the_restart() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("**Upgrading without a hit.**")
            .nth(1)
            .expect("the Upgrading section");
        let block = section
            .split("```sh\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("its commands");
        let line = |words: &str| {
            block
                .lines()
                .position(|l| l.starts_with(words))
                .unwrap_or_else(|| panic!("{words:?} not in\n{block}"))
        };
        let install = line("dpkg -i");
        let check = line("lbctl config check /etc/lbd/lbd.toml");
        let restart = line("systemctl restart lbd");
        assert!(install < check && check < restart, "{block}");
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
