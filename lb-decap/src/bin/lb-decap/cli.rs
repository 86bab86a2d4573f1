//! The command line lb-decap takes (its arguments, and the man pages
//! rendered from them), and below it what its commands do (the binary's
//! own modules, under `src/bin/lb-decap/` as lbctl's are under
//! lb-userspace's `src/bin/lbctl/`).

mod apply_file;
mod early_signals;
mod foreground;
mod reapply;
mod reload_failure;
mod vip_recheck;

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser, Subcommand};

pub(crate) use apply_file::{apply, warn_not_local};
pub(crate) use foreground::foreground;

/// Where the package installs the config (a conffile, beside lbd's), so
/// `lb-decap run` without `--config` reads the file the operator edited.
const DEFAULT_CONFIG: &str = "/etc/lbd/lb-decap.toml";

/// Unwraps IPIP, IP6IP6, 4in6 and GUE packets addressed to this backend
/// and to one of its VIPs, and hands the inner packet to the stack.
#[derive(Debug, Parser)]
#[command(version = env!("LB_BUILD_VERSION"))]
pub(crate) struct Cli {
    /// Where the program, its link and its maps are pinned (on a BPF
    /// filesystem; /sys/fs/bpf is mounted if needed).
    #[arg(
        long,
        global = true,
        env = "LB_DECAP_PIN_DIR",
        default_value = "/sys/fs/bpf/lb-decap"
    )]
    pub(crate) pin_dir: PathBuf,
    /// Detach the program and remove every pin (same as `cleanup`).
    #[arg(long)]
    pub(crate) cleanup: bool,
    /// Write the man pages (lb-decap.8, lb-decap-SUBCOMMAND.8) into DIR and
    /// exit (for packaging).
    #[arg(long, value_name = "DIR", hide = true)]
    pub(crate) generate_man: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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

/// The man pages (lb-decap.8 and one per subcommand), rendered from the
/// clap definitions so they never drift from `--help`.
pub(crate) fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    for path in lb_manpage::write_pages(Cli::command(), dir)? {
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let layout = include_str!("../../../../xtask/src/package/layout.rs");
        let unit = include_str!("../../../../deploy/systemd/lb-decap.service");
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
