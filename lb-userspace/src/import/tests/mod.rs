//! Tests of the importer: each format with the configurations common HA
//! guides show, joined setups, and broken input refused at its line.

mod haproxy;
mod join;
mod keepalived;
mod nginx;

use std::net::IpAddr;

use super::{import, ImportError, Imported, Options, Source, VipArg};
use crate::config::{BackendConfig, VipConfig};

/// Imports `files` (name, text) with `options`.
fn run(files: &[(&str, &str)], options: &Options) -> Result<Imported, ImportError> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    import(&sources, options)
}

/// Imports what must import.
fn ok(files: &[(&str, &str)], options: &Options) -> Imported {
    run(files, options).unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// The error of what must be refused, as the operator sees it.
fn refused(files: &[(&str, &str)], options: &Options) -> String {
    match run(files, options) {
        Ok(imported) => panic!("imported:\n{}", imported.text),
        Err(e) => e.to_string(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn vip(text: &str) -> VipArg {
    text.parse().expect("--vip")
}

/// (address, weight) of each backend.
fn weights(vip: &VipConfig) -> Vec<(IpAddr, u32)> {
    vip.backends
        .iter()
        .map(|b: &BackendConfig| (b.address, b.weight))
        .collect()
}

/// The addresses of a VIP's backups (`backup = true`).
fn backups(vip: &VipConfig) -> Vec<IpAddr> {
    vip.backends
        .iter()
        .filter(|b| b.backup)
        .map(|b| b.address)
        .collect()
}

/// Whether lbd, loading the imported config (every backend's health
/// unknown, so in service; MACs known), sends the first VIP's new flows to
/// its backups.
fn serves_on_backups(imported: &Imported) -> bool {
    let model = crate::model::Model::from_config(&imported.config);
    model
        .vips
        .values()
        .next()
        .is_some_and(|v| v.on_backups(&|_| Some([2, 0, 0, 0, 0, 1])))
}

/// The `KEY = ...  # comment` lines of the imported text, in VIP order,
/// with their alignment spaces as one.
fn key_lines(imported: &Imported, key: &str) -> Vec<String> {
    let start = format!("{key} =");
    imported
        .text
        .lines()
        .filter(|l| l.trim_start().starts_with(&start))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The `affinity = ...  # comment` lines (see [`key_lines`]).
fn affinity_lines(imported: &Imported) -> Vec<String> {
    key_lines(imported, "affinity")
}

/// The first `slow_start_s = ...  # comment` line (see [`key_lines`]).
fn slow_start_line(imported: &Imported) -> Option<String> {
    key_lines(imported, "slow_start_s").into_iter().next()
}

/// Options with `--interface eth0`.
fn on_eth0() -> Options {
    Options {
        interface: Some("eth0".to_owned()),
        ..Options::default()
    }
}

/// Options with `--interface eth0` and a NAT address of each family.
fn with_nat() -> Options {
    Options {
        nat_source: vec![ip("198.18.0.50"), ip("2001:2::50")],
        ..on_eth0()
    }
}

/// Whether a note of `imported` contains `needle`.
fn has_note(imported: &Imported, needle: &str) -> bool {
    imported.notes.iter().any(|n| n.contains(needle))
}

/// A defaults section of a TCP setup.
const TCP: &str = "defaults\n  mode tcp\n  timeout connect 5s\n";

/// haproxy.cfg: `body` after a TCP defaults section.
fn tcp_haproxy(body: &str) -> String {
    format!("{TCP}{body}")
}

#[test]
fn vip_arguments_are_read_with_and_without_port_and_protocol() {
    assert_eq!(
        vip("198.18.0.100:80/tcp"),
        VipArg {
            address: ip("198.18.0.100"),
            port: Some(80),
            protocol: Some(crate::config::Protocol::Tcp)
        }
    );
    assert_eq!(vip("[2001:2::100]:53/udp").port, Some(53));
    assert_eq!(vip("2001:2::100").port, None);
    assert_eq!(vip("198.18.0.100").protocol, None);
    for bad in [
        "198.18.0.100:0",
        "host:80",
        "198.18.0.100:80/sctp",
        "198.18.0.100:x",
    ] {
        assert!(bad.parse::<VipArg>().is_err(), "{bad}");
    }
}

#[test]
fn a_file_of_no_known_format_is_refused_unless_forced() {
    let text = "# an empty haproxy.cfg\n";
    assert_eq!(
        refused(&[("lb.cfg", text)], &on_eth0()),
        "lb.cfg: not recognised as HAProxy, keepalived or nginx configuration: name the format with --format"
    );
    let forced = Options {
        format: Some(super::Format::Haproxy),
        ..on_eth0()
    };
    assert!(refused(&[("lb.cfg", text)], &forced).starts_with("nothing to import"));
}

/// Every prefix of the guide configurations (cut anywhere, mid-word,
/// mid-quote, mid-block) is imported or refused, never a panic; a refusal
/// names a line of the file or the setup.
#[test]
fn every_truncation_of_the_guide_files_is_imported_or_refused_cleanly() {
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        nat_source: vec![ip("198.18.0.50")],
        ..on_eth0()
    };
    for (name, text) in [
        ("haproxy.cfg", haproxy::HAPROXY),
        ("keepalived.conf", haproxy::KEEPALIVED),
        ("app.conf", nginx::UPSTREAM),
        ("ipvs.conf", keepalived::IPVS),
    ] {
        let lines = text.lines().count();
        for (cut, _) in text.char_indices() {
            let prefix = format!("{}é\"{{", &text[..cut]);
            for source in [&text[..cut], prefix.as_str()] {
                if let Err(e) = run(&[(name, source)], &options) {
                    assert!(
                        e.line.is_none_or(|l| (1..=lines + 1).contains(&l)),
                        "{e} for {source:?}"
                    );
                }
            }
        }
    }
}
