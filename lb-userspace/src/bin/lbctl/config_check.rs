//! `lbctl config check FILE`: what lbd would do with a config, without
//! touching the node. Shares come from the same Maglev builder lbd uses.
//! Doubtful values (a VIP without backends, all weights 0, a loopback or
//! broadcast address) are warned about on stderr; the file is still valid.

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
    for warning in config::warnings(config) {
        eprintln!("lbctl: warning: {}: {warning}", args.file.display());
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&vips)?);
        return Ok(());
    }
    outln!(
        "{}: valid; interface {}, attach {}{}, connection table {} flows, half-open table {} flows",
        args.file.display(),
        config.interface,
        config.attach,
        if config.attach == lb_userspace::config::Attach::Xdp {
            format!(" (xdp mode {})", config.xdp_mode)
        } else {
            String::new()
        },
        config.conntrack_size,
        config.half_open_size
    );
    for vip in &vips {
        outln!("VIP {} (table size {})", vip.vip, vip.table_size);
        for b in &vip.backends {
            outln!(
                "  {:<40} weight {:>5}  share {:>6.2}%  mac {}",
                b.address.to_string(),
                b.weight,
                b.share * 100.0,
                b.mac
                    .map_or("(from neighbour table)".to_owned(), |m| m.to_string())
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file lbd would refuse is bad input (exit 2, as `lbctl reload`
    /// of the same file and `config import`'s refusals are); a file that
    /// cannot be read is another failure (exit 1), so a script can tell
    /// "the file is invalid" from "the check could not run".
    #[test]
    fn an_invalid_file_is_exit_2_and_an_unreadable_one_exit_1() {
        let dir = std::env::temp_dir().join(format!("lbctl-config-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
