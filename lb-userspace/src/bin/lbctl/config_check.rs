//! `lbctl config check FILE`: what lbd would do with a config, without
//! touching the node. Shares come from the same Maglev builder lbd uses.
//! Doubtful values (a VIP without backends, all weights 0, a loopback or
//! broadcast address) are warned about on stderr (and with `--json` in
//! the answer's `warnings`); the file is still valid.

use std::{net::IpAddr, path::PathBuf};

use anyhow::Context as _;
use lb_userspace::{
    api::client::ClientError,
    config::{self, Config, ConfigError},
    mac::Mac,
    maglev::{self, MaglevBackend},
    reconcile::{address_bytes, VipId},
};
use serde::Serialize;

use crate::Failure;

/// Arguments of `lbctl config check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config file.
    file: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct VipReport {
    vip: String,
    table_size: u32,
    backends: Vec<BackendReport>,
}

#[derive(Debug, Serialize)]
struct BackendReport {
    address: IpAddr,
    mac: Option<Mac>,
    weight: u32,
    /// Fraction of the Maglev table, i.e. of new flows.
    share: f64,
}

/// Runs the check: a file lbd would refuse is bad input (exit 2, as
/// `lbctl reload` of it is), one that cannot be read another failure
/// (exit 1).
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    let config = Config::load(&args.file).map_err(|error| {
        let code = match error {
            ConfigError::Io { .. } => ClientError::EXIT_OTHER,
            _ => ClientError::EXIT_USAGE,
        };
        Failure::new(code, error.to_string())
    })?;
    report(args, &config).map_err(Failure::from)
}

/// Prints what lbd would do with the valid `config`.
fn report(args: &Args, config: &Config) -> anyhow::Result<()> {
    let mut vips = Vec::new();
    for vip in &config.vips {
        let keys: Vec<Vec<u8>> = vip
            .backends
            .iter()
            .map(|b| address_bytes(b.address))
            .collect();
        let members: Vec<MaglevBackend<'_>> = vip
            .backends
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(i, (b, key))| MaglevBackend {
                key,
                weight: b.weight,
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            })
            .collect();
        let id = VipId::of(vip);
        let table =
            maglev::build_table(&members, vip.table_size).with_context(|| format!("VIP {id}"))?;
        let shares = maglev::shares(&table);
        vips.push(VipReport {
            vip: id.to_string(),
            table_size: vip.table_size,
            backends: vip
                .backends
                .iter()
                .enumerate()
                .map(|(i, b)| BackendReport {
                    address: b.address,
                    mac: b.mac,
                    weight: b.weight,
                    share: u32::try_from(i + 1)
                        .ok()
                        .and_then(|id| shares.get(&id).copied())
                        .unwrap_or(0.0),
                })
                .collect(),
        });
    }
    let mut warnings: Vec<String> = config::warnings(config)
        .iter()
        .map(ToString::to_string)
        .collect();
    warnings.extend(missing_interface(
        &config.interface,
        interface_exists,
        interface_names,
    ));
    for warning in &warnings {
        crate::output::warning(&format!("{}: {warning}", args.file.display()));
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json_report(args, config, &vips, &warnings))?
        );
        return Ok(());
    }
    out!("{}", text_report(args, config, &vips));
    Ok(())
}

/// `config check --json`: one object, the text's facts: the file, its
/// node settings, each VIP's backends and shares (`vips`), and the
/// `warnings` (also on stderr; empty when none), as every `--json`
/// answer of a command that can warn has them.
fn json_report(
    args: &Args,
    config: &Config,
    vips: &[VipReport],
    warnings: &[String],
) -> serde_json::Value {
    let xdp_mode = (config.attach == config::Attach::Xdp).then(|| config.xdp_mode.to_string());
    serde_json::json!({
        "file": args.file,
        "valid": true,
        "interface": config.interface,
        "attach": config.attach.to_string(),
        "xdp_mode": xdp_mode,
        "conntrack_size": config.conntrack_size,
        "half_open_size": config.half_open_size,
        "vips": vips,
        "warnings": warnings,
    })
}

/// `config check`'s text: that the file is valid, its node settings,
/// and each VIP's backends and shares.
fn text_report(args: &Args, config: &Config, vips: &[VipReport]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: valid; interface {}, attach {}{}, connection table {} flows, half-open table {} flows",
        args.file.display(),
        config.interface,
        config.attach,
        if config.attach == config::Attach::Xdp {
            format!(" (xdp mode {})", config.xdp_mode)
        } else {
            String::new()
        },
        config.conntrack_size,
        config.half_open_size
    );
    for vip in vips {
        let _ = writeln!(out, "VIP {} (table size {})", vip.vip, vip.table_size);
        for b in &vip.backends {
            let _ = writeln!(
                out,
                "  {:<40} weight {:>5}  share {:>6.2}%  mac {}",
                b.address.to_string(),
                b.weight,
                b.share * 100.0,
                b.mac
                    .map_or("(from neighbour table)".to_owned(), |m| m.to_string())
            );
        }
    }
    out
}

/// The warning for an `interface` no interface of this machine (this
/// network namespace) has, naming the ones it has: lbd would refuse to
/// start ("interface … not found"), and under systemd retry every 2 s. A
/// warning, not an error: the file may be checked on another machine
/// than the one it is for.
fn missing_interface(
    name: &str,
    exists: impl Fn(&str) -> bool,
    names: impl Fn() -> Vec<String>,
) -> Option<String> {
    if exists(name) {
        return None;
    }
    let mut names = names();
    names.sort();
    Some(format!(
        "interface {name} does not exist on this machine (it has {}): lbd would not start here with this file (\"interface {name} not found\"); fine if the file is for another machine",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ))
}

/// Whether this network namespace has an interface named `name`.
fn interface_exists(name: &str) -> bool {
    std::ffi::CString::new(name)
        // SAFETY: a NUL-terminated name; the call reads it only.
        .is_ok_and(|name| unsafe { libc::if_nametoindex(name.as_ptr()) } != 0)
}

/// The names of this network namespace's interfaces (from
/// `/sys/class/net`; none if it cannot be read).
fn interface_names() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    /// An `interface` this machine does not have is warned about, naming
    /// the ones it has (a typo shows); one it has is not. The file stays
    /// valid: it may be for another machine.
    #[test]
    fn an_interface_this_machine_lacks_is_warned_about() {
        let names = || vec!["lo".to_owned(), "eth0".to_owned()];
        assert_eq!(missing_interface("eth0", |n| n == "eth0", names), None);
        let warning = missing_interface("eht0", |n| n == "eth0", names).expect("a warning");
        assert!(
            warning.starts_with("interface eht0 does not exist on this machine (it has eth0, lo)"),
            "{warning}"
        );
        assert!(interface_exists("lo"), "every namespace has lo");
        assert!(!interface_exists("lbd-no-such-if"));
        assert!(interface_names().contains(&"lo".to_owned()));
    }

    /// `--json` is one object with the text's facts and the warnings
    /// (which stderr has too), not a bare VIP array without them.
    #[test]
    fn the_json_has_the_node_settings_and_the_warnings() {
        let dir = ScratchDir::new("lbctl-config-json");
        let file = dir.join("lbd.toml");
        std::fs::write(
            &file,
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n",
        )
        .unwrap();
        let args = Args {
            file: file.clone(),
            json: true,
        };
        let config = Config::load(&file).unwrap();
        let warnings = vec!["a warning".to_owned()];
        let value = json_report(&args, &config, &[], &warnings);
        assert_eq!(value["interface"], "eth0", "{value}");
        assert_eq!(value["valid"], true, "{value}");
        assert_eq!(value["vips"], serde_json::json!([]), "{value}");
        assert_eq!(
            value["warnings"],
            serde_json::json!(["a warning"]),
            "{value}"
        );
        assert_eq!(value["file"], file.to_string_lossy().as_ref(), "{value}");
        assert!(value["conntrack_size"].is_u64(), "{value}");
    }

    /// A file lbd would refuse is bad input (exit 2, as `lbctl reload`
    /// of the same file and `config import`'s refusals are); a file that
    /// cannot be read is another failure (exit 1), so a script can tell
    /// "the file is invalid" from "the check could not run".
    #[test]
    fn an_invalid_file_is_exit_2_and_an_unreadable_one_exit_1() {
        let dir = ScratchDir::new("lbctl-config-check");
        let check = |file: PathBuf| {
            run(&Args { file, json: true })
                .err()
                .map(|failure| (failure.code, failure.message))
        };
        let valid = dir.join("valid.toml");
        std::fs::write(
            &valid,
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n",
        )
        .unwrap();
        assert_eq!(check(valid), None);
        let invalid = dir.join("invalid.toml");
        std::fs::write(
            &invalid,
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 0\n",
        )
        .unwrap();
        let (code, message) = check(invalid).unwrap();
        assert_eq!(code, ClientError::EXIT_USAGE, "{message}");
        assert!(message.contains("port"), "{message}");
        let not_toml = dir.join("not-toml.toml");
        std::fs::write(&not_toml, "interface = \n").unwrap();
        assert_eq!(check(not_toml).unwrap().0, ClientError::EXIT_USAGE);
        let (code, message) = check(dir.join("missing.toml")).unwrap();
        assert_eq!(code, ClientError::EXIT_OTHER, "{message}");
        assert!(message.contains("missing.toml"), "{message}");
    }
}
