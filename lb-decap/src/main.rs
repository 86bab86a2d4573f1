//! `lb-decap`: unwraps tunnelled direct-server-return packets on a backend
//! (see the library's doc and README "Running lb-decap on a backend").

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use lb_decap::{
    config::{Attach, Settings, Vip},
    dataplane,
    local::{self, Change, VipWatch},
    maps,
    owner::Ownership,
    pins::PinDir,
    signals::{Request, Signals},
    status,
    watch::{self, Seen, Snapshot, Watched},
};
use tracing::{debug, error, info, warn};

/// Where the package installs the config (a conffile, beside lbd's), so
/// `lb-decap run` without `--config` reads the file the operator edited.
const DEFAULT_CONFIG: &str = "/etc/lbd/lb-decap.toml";

/// Unwraps IPIP, IP6IP6, 4in6 and GUE packets addressed to this backend
/// and to one of its VIPs, and hands the inner packet to the stack.
#[derive(Debug, Parser)]
#[command(version = env!("LB_BUILD_VERSION"))]
struct Cli {
    /// Where the program, its link and its maps are pinned (on a BPF
    /// filesystem; /sys/fs/bpf is mounted if needed).
    #[arg(
        long,
        global = true,
        env = "LB_DECAP_PIN_DIR",
        default_value = "/sys/fs/bpf/lb-decap"
    )]
    pin_dir: PathBuf,
    /// Detach the program and remove every pin (same as `cleanup`).
    #[arg(long)]
    cleanup: bool,
    /// Write the man pages (lb-decap.8, lb-decap-SUBCOMMAND.8) into DIR and
    /// exit (for packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    generate_man: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the config, then stay in the foreground (for systemd):
    /// SIGHUP applies the file again, SIGTERM/SIGINT exit and leave the
    /// program attached (a restart keeps decapsulating). Every 2 s the
    /// interfaces are checked: one recreated, its link pin gone (or,
    /// with `addresses` omitted, their addresses changed), the
    /// configuration last applied is applied again with the interfaces
    /// read anew (only SIGHUP reads the file); if that fails, lb-decap
    /// exits non-zero (for
    /// Restart=on-failure). Every 30 s the VIPs are checked for being
    /// local (held by an interface), a change logged. While it runs, it
    /// holds its interfaces in the pin directory: another lb-decap there
    /// is refused for them, and may not remove their links.
    Run {
        /// The configuration file.
        #[arg(long, env = "LB_DECAP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Apply the config and exit; the program stays attached.
    Apply {
        /// The configuration file.
        #[arg(long, env = "LB_DECAP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the config and print what it resolves to; change nothing.
    Check {
        /// The configuration file.
        #[arg(long, env = "LB_DECAP_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the attachment, the configuration in the maps and the
    /// counters.
    Status,
    /// Detach the program and remove every pin: the interface is as
    /// before lb-decap.
    Cleanup,
}

/// Blocks SIGHUP, SIGTERM and SIGINT before anything else (see
/// [`Signals`]): until `run` waits on them, SIGHUP's default action would
/// end lb-decap while it starts (a `systemctl reload` right after
/// `systemctl start`), an exit systemd counts as clean and does not
/// restart. Commands other than `run` put the mask back (`run`).
fn block_signals_first() -> anyhow::Result<Signals> {
    Signals::block()
}

fn main() -> std::process::ExitCode {
    let signals = match block_signals_first() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("lb-decap: error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse(), signals) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-decap: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the command of `cli`; `signals` (blocked first thing in `main`)
/// go to `run`'s loop, and any other command puts the mask back first.
fn run(cli: Cli, signals: Signals) -> anyhow::Result<()> {
    if let Some(dir) = &cli.generate_man {
        signals.restore()?;
        return write_man_pages(dir);
    }
    let pins = PinDir::new(&cli.pin_dir);
    let command = match (cli.cleanup, cli.command) {
        (true, None) => Command::Cleanup,
        (true, Some(command)) => {
            anyhow::bail!("--cleanup takes no command (got {command:?}); use `lb-decap cleanup`")
        }
        (false, Some(command)) => command,
        (false, None) => {
            anyhow::bail!("no command given (run, apply, check, status, cleanup; see --help)")
        }
    };
    // Only `run` waits on the signals: the other commands put the mask
    // back, so they end on them at once, as before.
    match command {
        Command::Run { config } => foreground(&config, &pins, signals),
        Command::Apply { config } => {
            signals.restore()?;
            apply(&config, &pins, None).map(drop)
        }
        Command::Check { config } => {
            signals.restore()?;
            let settings = Settings::load(&config)?;
            for warning in settings.warnings() {
                warn!("{}: {warning}", config.display());
            }
            warn_not_local(&config, &settings.vips);
            let mode = match settings.attach {
                Attach::Xdp => format!(" (xdp mode {})", settings.xdp_mode),
                Attach::Tc => String::new(),
            };
            let interfaces = match settings.interfaces.as_slice() {
                [one] => format!("interface {one}"),
                _ => format!("interfaces {}", settings.interface_names()),
            };
            println!(
                "{}: valid; {interfaces}, attach {}{mode}",
                config.display(),
                settings.attach,
            );
            print!(
                "{}",
                status::describe(
                    &settings.config,
                    &settings.addresses,
                    &settings.sources,
                    &settings.vips
                )
            );
            Ok(())
        }
        Command::Status => {
            signals.restore()?;
            print!("{}", status::report(&pins)?);
            Ok(())
        }
        Command::Cleanup => {
            signals.restore()?;
            let removed = dataplane::cleanup(&pins)?;
            info!(removed, dir = %pins.root().display(), "cleaned up");
            Ok(())
        }
    }
}

/// The man pages (lb-decap.8 and one per subcommand), rendered from the
/// clap definitions so they never drift from `--help`.
fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    for path in lb_manpage::write_pages(Cli::command(), dir)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Takes the signals that came while lb-decap started (they are blocked
/// from the first line of `main`); returns whether one asked it to stop.
/// A SIGHUP among them needs no reload: the first apply reads the file.
fn stop_requested_before_start(signals: &Signals) -> anyhow::Result<bool> {
    let mut stop = false;
    while let Some(request) = signals.next_within(std::time::Duration::ZERO)? {
        stop |= request == Request::Stop;
    }
    Ok(stop)
}

/// What an apply did and was made against (for `run`'s watches).
struct Done {
    /// The interfaces and links, for the 2 s look.
    snapshot: Snapshot,
    /// The VIPs applied, for the periodic local check.
    vips: Vec<Vip>,
    /// Those found not local (warned about).
    not_local: BTreeSet<IpAddr>,
    /// The settings applied: what a re-apply after an interface change
    /// starts from (only SIGHUP reads the file again).
    settings: Settings,
}

/// Applies the file (with `owner`, as `run`, holding its interfaces);
/// returns what it was done against.
fn apply(config: &Path, pins: &PinDir, owner: Option<&mut Ownership>) -> anyhow::Result<Done> {
    let settings = Settings::load(config)?;
    for warning in settings.warnings() {
        warn!("{}: {warning}", config.display());
    }
    apply_settings(config, settings, pins, owner)
}

/// Applies `settings` (read from `config`, named in messages); returns
/// what it was done against.
fn apply_settings(
    config: &Path,
    settings: Settings,
    pins: &PinDir,
    owner: Option<&mut Ownership>,
) -> anyhow::Result<Done> {
    // Read before the apply: a change during it is seen at the next look.
    let ifindexes = settings
        .interfaces
        .iter()
        .map(|name| lb_decap::interface::index(name).with_context(|| format!("interface {name}")))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let applied = match owner {
        Some(owner) => dataplane::apply_owned(&settings, pins, owner),
        None => dataplane::apply(&settings, pins),
    }
    .with_context(|| format!("applying {}", config.display()))?;
    info!(
        interfaces = %settings.interface_names(),
        attach = settings.attach.name(),
        addresses = settings.addresses.len(),
        sources = settings.sources.len(),
        vips = settings.vips.len(),
        ?applied,
        "configuration applied"
    );
    let not_local = warn_not_local(config, &settings.vips);
    // With `xdp_mode = "auto"`, the tc link if native XDP was unavailable.
    let watched = settings
        .interfaces
        .iter()
        .zip(ifindexes)
        .map(|(name, ifindex)| Watched {
            name: name.clone(),
            ifindex,
            link_path: dataplane::serving_link(&settings, pins, name),
        })
        .collect();
    Ok(Done {
        snapshot: Snapshot::new(&settings, watched),
        vips: settings.vips.clone(),
        not_local,
        settings,
    })
}

/// Warns about each VIP of `config` that is not local (`local`); returns
/// them.
fn warn_not_local(config: &Path, vips: &[Vip]) -> BTreeSet<IpAddr> {
    match local::not_local(vips) {
        Ok(missing) => {
            for address in &missing {
                warn!("{}: {}", config.display(), local::warning(*address));
            }
            missing
        }
        Err(error) => {
            warn!(
                error = format!("{error:#}"),
                "could not check whether the VIPs are local"
            );
            BTreeSet::new()
        }
    }
}

/// `run`: apply (unless a stop came during start-up: then nothing), then
/// wait for signals, looking at the interfaces every
/// `watch::INTERVAL` between them (and at the VIPs every
/// `local::VIP_INTERVAL`). A failing SIGHUP reload is logged and the
/// running configuration kept; after an interface changed, the settings
/// last applied are applied again with the interfaces read anew (the
/// file is read only on SIGHUP, so a pending edit neither goes live nor
/// stops `run`); a failing re-apply after an interface changed is an
/// error (exit non-zero: decapsulation has stopped, and
/// systemd's Restart=on-failure tries again), unless the interface went
/// away meanwhile: that is waited for. The interfaces stay held
/// (`owner`) until it exits.
fn foreground(config: &Path, pins: &PinDir, signals: Signals) -> anyhow::Result<()> {
    if stop_requested_before_start(&signals)? {
        info!("stopped before applying anything; nothing changed");
        return Ok(());
    }
    let mut owner = Ownership::new();
    let mut done = apply(config, pins, Some(&mut owner))?;
    let mut vips = VipWatch::new(done.not_local.clone(), Instant::now());
    info!(
        "running; SIGHUP reloads {}, SIGTERM exits (the program stays attached)",
        config.display()
    );
    // The last "not ready" said, so a long wait is logged once.
    let mut waiting: Option<String> = None;
    loop {
        match signals.next_within(watch::INTERVAL)? {
            Some(Request::Reload) => {
                info!("SIGHUP: reloading");
                match apply(config, pins, Some(&mut owner)) {
                    Ok(applied) => {
                        vips = VipWatch::new(applied.not_local.clone(), Instant::now());
                        done = applied;
                    }
                    Err(e) => error!(error = format!("{e:#}"), "{}", reload_failed(&e)),
                }
            }
            Some(Request::Stop) => {
                info!("stopping; the decap program stays attached (`lb-decap cleanup` removes it)");
                return Ok(());
            }
            None => {
                match done.snapshot.look() {
                    Seen::Same => {}
                    Seen::NotReady(what) => {
                        if waiting.as_ref() != Some(&what) {
                            warn!(%what, "waiting for the interface before applying again");
                            waiting = Some(what);
                        }
                    }
                    Seen::Changed(what) => {
                        waiting = None;
                        warn!(%what, "interface changed; applying the configuration in force again (the file is read again only on SIGHUP)");
                        let last = &done.settings;
                        let again = reapply(
                            &what,
                            || {
                                let settings = last.refreshed().with_context(|| {
                                    format!(
                                        "re-reading the interfaces of the configuration applied from {}",
                                        config.display()
                                    )
                                })?;
                                apply_settings(config, settings, pins, Some(&mut owner))
                            },
                            || done.snapshot.look(),
                        )?;
                        match again {
                            Reapplied::Done(applied) => {
                                vips = VipWatch::new(applied.not_local.clone(), Instant::now());
                                done = applied;
                            }
                            Reapplied::NotReady(now) => waiting = Some(now),
                        }
                    }
                }
                recheck_vips(&mut vips, &done.vips);
            }
        }
    }
}

/// The periodic check of the VIPs (when due): a VIP that stopped being
/// local is warned about once, one local again noted.
fn recheck_vips(watch: &mut VipWatch, vips: &[Vip]) {
    let now = Instant::now();
    if !watch.due(now) {
        return;
    }
    let missing = match local::not_local(vips) {
        Ok(missing) => missing,
        Err(error) => {
            debug!(
                error = format!("{error:#}"),
                "could not check whether the VIPs are local"
            );
            watch.missing().clone()
        }
    };
    for change in watch.update(missing, now) {
        match change {
            Change::Lost(address) => warn!("{}", local::warning(address)),
            Change::Back(address) => info!(%address, "VIP is local again"),
        }
    }
}

/// What a failed reload leaves in force, in words for its log line: the
/// previous configuration, unless the maps could be neither updated nor
/// put back.
fn reload_failed(error: &anyhow::Error) -> &'static str {
    if error.downcast_ref::<maps::PartlyApplied>().is_some() {
        "reload failed half-way: the maps hold part of the new configuration (`lb-decap status` shows what is in force)"
    } else {
        "reload failed; the previous configuration stays in force"
    }
}

/// How a re-apply after a change of the interface ended.
#[derive(Debug)]
enum Reapplied<T> {
    /// Applied.
    Done(T),
    /// Failed, and the interface is not ready now (gone again since the
    /// look): waited for like any other (said in words); the snapshot stays.
    NotReady(String),
}

/// Applies again after a look saw `what` change. A failure is an error,
/// unless `look` then finds the interface not ready (it went away between
/// the look and the apply): that is logged and waited for.
fn reapply<T>(
    what: &str,
    apply: impl FnOnce() -> anyhow::Result<T>,
    look: impl FnOnce() -> Seen,
) -> anyhow::Result<Reapplied<T>> {
    match apply() {
        Ok(done) => Ok(Reapplied::Done(done)),
        Err(e) => match look() {
            Seen::NotReady(now) => {
                warn!(
                    error = format!("{e:#}"),
                    %now,
                    "re-applying failed with the interface not ready; waiting for it"
                );
                Ok(Reapplied::NotReady(now))
            }
            Seen::Same | Seen::Changed(_) => Err(e).with_context(|| {
                format!("re-applying after a change of the interface ({what}); decapsulation may have stopped")
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    /// Set in the children the tests below run: which test's child part.
    const SIGNAL_CHILD: &str = "LB_DECAP_TEST_EARLY_SIGNAL_CHILD";

    /// Runs the test `name` again in a child process with [`SIGNAL_CHILD`]
    /// set; returns how it ended and its output.
    fn run_child(name: &str) -> (std::process::ExitStatus, String) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(SIGNAL_CHILD, "1")
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, output)
    }

    /// A SIGHUP (`systemctl reload lb-decap` right after `systemctl start`:
    /// with Type=simple the start returns at the fork) that arrives while
    /// lb-decap still starts must not end it: killed by SIGHUP, it would
    /// exit in a way systemd counts as clean and does not restart, with
    /// nothing applied. `main` blocks the signals before anything else (as
    /// the child does here), and the SIGHUP waits for `run` (taken before
    /// its first apply, which reads the file, or by its loop: a reload).
    #[test]
    fn a_sighup_before_the_arguments_are_read_does_not_kill_lb_decap() {
        if std::env::var_os(SIGNAL_CHILD).is_some() {
            let signals = block_signals_first().unwrap();
            // SAFETY: raise(3) on this thread.
            assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
            println!("survived the SIGHUP");
            let waiting = signals.next_within(std::time::Duration::ZERO).unwrap();
            println!("then waited for: {waiting:?}");
            return;
        }
        let (status, output) =
            run_child("tests::a_sighup_before_the_arguments_are_read_does_not_kill_lb_decap");
        assert_eq!(status.signal(), None, "{output}");
        assert!(status.success(), "{output}");
        assert!(output.contains("survived the SIGHUP"), "{output}");
        assert!(output.contains("then waited for: Some(Reload)"), "{output}");
        // And `main` does so first, before the logging and the arguments.
        let source = include_str!("main.rs");
        let body = source
            .split("\nfn main() -> std::process::ExitCode {\n")
            .nth(1)
            .expect("main");
        let first = body
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .expect("a statement");
        assert!(first.contains("block_signals_first()"), "{first}");
    }

    /// Signals that came while lb-decap started, before `run` applies:
    /// a stop ends it with nothing touched (as the default action did),
    /// a SIGHUP is taken (the first apply reads the file anyway).
    #[test]
    fn a_stop_before_the_first_apply_is_seen_and_a_reload_absorbed() {
        let signals = Signals::block().unwrap();
        assert!(!stop_requested_before_start(&signals).unwrap());
        // SAFETY: raise(3) on this thread, where the signals are blocked:
        // they stay pending for the waits below.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert!(!stop_requested_before_start(&signals).unwrap());
        assert_eq!(
            signals.next_within(std::time::Duration::ZERO).unwrap(),
            None
        );
        for stop in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
            assert_eq!(unsafe { libc::raise(stop) }, 0);
            assert!(stop_requested_before_start(&signals).unwrap(), "{stop}");
            assert_eq!(
                signals.next_within(std::time::Duration::ZERO).unwrap(),
                None
            );
        }
    }

    /// Only `run` waits on the blocked signals: any other command (here
    /// `check`, failing on a missing file) puts the mask back first, so a
    /// SIGTERM or SIGINT still ends a one-shot `cleanup` or `apply` at
    /// once, as before.
    #[test]
    fn commands_other_than_run_stay_killable() {
        if std::env::var_os(SIGNAL_CHILD).is_some() {
            let signals = block_signals_first().unwrap();
            let cli = Cli::parse_from([
                "lb-decap",
                "check",
                "--config",
                "/nonexistent/lb-decap-test.toml",
            ]);
            let error = run(cli, signals).expect_err("no such file");
            println!("check failed: {error:#}");
            // SAFETY: raise(3) on this thread.
            assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
            println!("survived the SIGTERM");
            return;
        }
        let (status, output) = run_child("tests::commands_other_than_run_stay_killable");
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{output}");
        assert!(output.contains("check failed"), "{output}");
        assert!(!output.contains("survived"), "{output}");
    }

    #[test]
    fn a_reapply_failing_because_the_interface_went_away_waits_for_it() {
        let gone = || Seen::NotReady("interface eth9 is gone".into());
        let failed = || -> anyhow::Result<u32> { Err(anyhow::anyhow!("no such device")) };
        match reapply("recreated", failed, gone).expect("waited for") {
            Reapplied::NotReady(now) => assert_eq!(now, "interface eth9 is gone"),
            Reapplied::Done(_) => panic!("not applied"),
        }
        // Still there: the failure is an error.
        let error = reapply("recreated", failed, || Seen::Same).expect_err("fatal");
        assert!(format!("{error:#}").contains("no such device"), "{error:#}");
        let error =
            reapply("recreated", failed, || Seen::Changed("again".into())).expect_err("fatal");
        assert!(format!("{error:#}").contains("re-applying"), "{error:#}");
        assert!(matches!(
            reapply("recreated", || Ok(7), || panic!("not looked at")),
            Ok(Reapplied::Done(7))
        ));
    }

    /// An update of a fresh decap object's maps that fails half-way (a
    /// 33-bit IPv4 source prefix, which the kernel refuses, after the
    /// VIP is added), wrapped as `apply` wraps it. With `frozen`,
    /// DECAP_CONFIG refuses writes from the start (`BPF_MAP_FREEZE`), so
    /// putting the maps back fails too.
    fn failed_update(frozen: bool) -> anyhow::Error {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        /// `BPF_MAP_FREEZE` in the kernel's `enum bpf_cmd`.
        const BPF_MAP_FREEZE: libc::c_long = 22;
        let settings = |sources: Vec<lb_decap::sources::Prefix>| Settings {
            interfaces: vec!["lo".to_owned()],
            attach: Attach::Xdp,
            xdp_mode: lb_decap::config::XdpMode::Auto,
            addresses: vec!["198.19.2.11".parse().expect("address")],
            addresses_from_interface: false,
            sources,
            vips: vec!["198.18.0.100:80/tcp".parse().expect("vip")],
            config: lb_common::decap::DecapConfig {
                gue_port: 0,
                flags: lb_common::decap::DECAP_F_IPIP,
            },
        };
        let mut ebpf = dataplane::load_object().expect("the decap object (runs as root)");
        let mut taken = maps::take(&mut ebpf).expect("maps");
        if frozen {
            let aya::maps::Map::Array(config) = &taken[2] else {
                panic!("DECAP_CONFIG is not an array");
            };
            let mut attr = [0u32; 32];
            attr[0] = u32::try_from(config.fd().as_fd().as_raw_fd()).expect("fd");
            // SAFETY: a zeroed `union bpf_attr` of that size naming the map.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_FREEZE,
                    attr.as_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
        }
        let bad = lb_decap::sources::Prefix {
            addr: "198.18.201.0".parse().expect("address"),
            len: 33,
        };
        maps::Maps::borrowed(&mut taken)
            .expect("views")
            .sync(&settings(vec![bad]))
            .expect_err("a 33-bit prefix")
            .context("applying /etc/lbd/lb-decap.toml")
    }

    #[test]
    fn a_failed_reload_says_whether_the_previous_configuration_stays_in_force() {
        let put_back = failed_update(false);
        assert!(
            reload_failed(&put_back).contains("the previous configuration stays in force"),
            "{put_back:#}"
        );
        let partly = failed_update(true);
        assert!(
            format!("{partly:#}").contains("putting them back failed too"),
            "{partly:#}"
        );
        assert!(
            reload_failed(&partly).contains("the maps hold part of the new configuration"),
            "{partly:#}"
        );
    }

    /// The default of `--config` of `command`.
    fn config_default(command: &str) -> String {
        let cli = Cli::command();
        let sub = cli.find_subcommand(command).expect("subcommand");
        let arg = sub
            .get_arguments()
            .find(|a| a.get_id() == "config")
            .expect("--config");
        let values = arg.get_default_values();
        assert_eq!(values.len(), 1, "{command}");
        values[0].to_string_lossy().into_owned()
    }

    #[test]
    fn the_default_config_is_the_packaged_conffile_and_the_units() {
        let layout = include_str!("../../xtask/src/package/layout.rs");
        let unit = include_str!("../../deploy/systemd/lb-decap.service");
        let installed = format!("path: \"{}\"", DEFAULT_CONFIG.trim_start_matches('/'));
        assert!(
            layout.contains(&format!(
                "source: Source::File(\"examples/lb-decap.toml\"),\n        {installed}"
            )),
            "the package does not install examples/lb-decap.toml at {DEFAULT_CONFIG}"
        );
        for command in ["run", "apply", "check"] {
            assert_eq!(config_default(command), DEFAULT_CONFIG, "{command}");
        }
        let configs: Vec<&str> = unit
            .lines()
            .filter(|l| l.starts_with("Exec") && l.contains("--config"))
            .filter_map(|l| l.split("--config ").nth(1))
            .collect();
        assert_eq!(configs, [DEFAULT_CONFIG, DEFAULT_CONFIG], "{unit}");
        assert!(
            unit.contains(&format!("examples/lb-decap.toml {DEFAULT_CONFIG}")),
            "the unit's by-hand steps install the config elsewhere"
        );
    }
}
