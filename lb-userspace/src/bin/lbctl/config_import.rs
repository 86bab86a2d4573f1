//! `lbctl config import FILE...`: an existing keepalived + HAProxy or
//! nginx setup written as lbd.toml (see `lb_userspace::import`). The
//! result is loaded as lbd would load it before anything is written, so a
//! refused import leaves no file behind. Notes on what could not be
//! carried over are written to stderr, one a line (`file:line: text`), as
//! well as NOTE comments in the configuration.

use std::{fs, net::IpAddr, path::PathBuf};

use anyhow::Context as _;
use lb_userspace::{
    api::client::ClientError,
    import::{self, Format, Options, Source, VipArg},
};

use crate::Failure;

/// Arguments of `lbctl config import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The files of one node's setup: haproxy.cfg, keepalived.conf,
    /// nginx.conf (the format of each is recognised from its content).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Read every file as this format.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A VIP for a service whose sources name no address (a wildcard bind
    /// without keepalived) or no port (an nginx upstream alone):
    /// ADDRESS[:PORT][/PROTOCOL]; repeat for several.
    #[arg(long = "vip", value_name = "ADDRESS:PORT/PROTOCOL")]
    vips: Vec<VipArg>,
    /// The interface lbd serves on (default: keepalived's `interface`).
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Forwarding mode of every VIP: dsr-l2, nat, ipip or gue (default:
    /// IPVS's lb_kind; for proxies dsr-l2 when the backends listen on the
    /// VIP's port, else nat).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    forwarding: Option<lb_common::Mode>,
    /// NAT address of NAT-mode VIPs (`[nat] source_ipv4`/`source_ipv6`);
    /// give it twice, one of each family, for IPv4 and IPv6 VIPs.
    #[arg(long, value_name = "ADDRESS")]
    nat_source: Vec<IpAddr>,
    /// Write the configuration to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

fn parse_mode(text: &str) -> Result<lb_common::Mode, String> {
    lb_common::Mode::ALL
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| format!("{text:?} is not one of dsr-l2, nat, ipip, gue"))
}

/// Runs the import.
pub(crate) fn run(args: &Args) -> Result<(), Failure> {
    let mut sources = Vec::new();
    for path in &args.files {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        sources.push(Source {
            name: path.display().to_string(),
            text,
        });
    }
    let options = Options {
        format: args.format,
        vips: args.vips.clone(),
        interface: args.interface.clone(),
        forwarding: args.forwarding,
        nat_source: args.nat_source.clone(),
    };
    let imported = import::import(&sources, &options)
        .map_err(|e| Failure::new(ClientError::EXIT_USAGE, e.to_string()))?;
    match &args.output {
        Some(path) => {
            fs::write(path, &imported.text)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "lbctl: wrote {} ({} VIP(s), {} VRRP instance(s))",
                path.display(),
                imported.config.vips.len(),
                imported.config.vrrp.len()
            );
        }
        None => out!("{}", imported.text),
    }
    eprint!("{}", notes_report(&imported.notes));
    Ok(())
}

/// The notes as the terminal shows them: a count, then each note on a
/// line of its own (nothing when there are none), so an operator reads
/// what stayed behind without opening the file.
fn notes_report(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "lbctl: {} note(s) on what could not be carried over (also NOTE comments in the file):\n",
        notes.len()
    );
    for note in notes {
        out.push_str("  ");
        out.push_str(&one_line(note));
        out.push('\n');
    }
    out
}

/// A note as one terminal line: control characters a source's words can
/// hold (an HAProxy `\r\n`) written as escapes, as in the file's comments.
fn one_line(note: &str) -> String {
    note.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_note_is_printed_on_its_own_line() {
        assert_eq!(notes_report(&[]), "");
        let report = notes_report(&[
            "h.cfg:3: balance source: client persistence".to_owned(),
            "h.cfg:9: tcp-check send PING\r\n: not carried over".to_owned(),
        ]);
        assert_eq!(
            report,
            "lbctl: 2 note(s) on what could not be carried over (also NOTE comments in the file):\n  h.cfg:3: balance source: client persistence\n  h.cfg:9: tcp-check send PING\\r\\n: not carried over\n"
        );
    }
}
