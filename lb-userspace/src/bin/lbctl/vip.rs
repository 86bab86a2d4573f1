//! `lbctl vip add|remove|list`.

use lb_userspace::{
    api::{
        client::Client,
        schema::{BackendSpec, VipSpec},
    },
    config::{value, MAX_WEIGHT},
    vip_id::VipId,
};

use crate::{flag_names, health_flags::HealthFlags, output, status::print_vip, Failure};

/// `lbctl vip ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Add a VIP (runtime change: see `lbctl reload --dry-run`).
    Add {
        /// ADDRESS:PORT[/tcp|udp], IPv6 as [ADDRESS]:PORT.
        vip: VipId,
        /// Maglev table size (a prime, default 65537).
        #[arg(long, value_parser = parse_table_size, allow_negative_numbers = true)]
        table_size: Option<u32>,
        /// When no backend is healthy: drop (default) or keep.
        #[arg(long)]
        on_all_down: Option<String>,
        /// How packets reach the backends: dsr-l2 (default), nat, ipip or gue.
        #[arg(long)]
        forwarding: Option<String>,
        /// What picks a new connection's backend: connection (default:
        /// each on its own) or source (client affinity: every
        /// connection of a client to the same backend).
        #[arg(long)]
        affinity: Option<String>,
        /// Seconds after which a drain of one of its backends ends: the
        /// backend goes to maintenance and its remaining flows are cut, but
        /// a NAT VIP's, which stay until they end (1..=604800; default:
        /// never), as the file's drain_timeout_s; `backend drain
        /// --timeout` wins.
        #[arg(long, value_parser = parse_drain_timeout, allow_negative_numbers = true)]
        drain_timeout: Option<i64>,
        /// Seconds a backend that starts taking new flows again (back
        /// up, out of drain or maintenance, added) takes to reach its
        /// full weight, in steps (1..=3600; default: at once), as the
        /// file's slow_start_s.
        #[arg(long, value_parser = parse_slow_start, allow_negative_numbers = true)]
        slow_start: Option<i64>,
        /// NAT only: the VIP's own NAT address (default: the node's
        /// [nat] source of its family).
        #[arg(long)]
        nat_source: Option<std::net::IpAddr>,
        /// A backend: ADDRESS[,weight=W][,mac=MAC][,port=P][,backup]; repeat
        /// for more (backup: takes new flows only while no other can).
        /// Its health checks are the VIP's (`lbctl backend add` gives one
        /// its own).
        #[arg(long = "backend", value_parser = parse_backend)]
        backends: Vec<BackendSpec>,
        /// Show what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// The VIP's health checks (last: their help has its own heading).
        #[command(flatten)]
        health: Box<HealthFlags>,
    },
    /// Remove a VIP: its packets pass up the stack from then on.
    Remove {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Show what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List VIPs and their backends.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A weight argument, checked by the config file's rule so an out-of-range
/// one says the range.
pub(crate) fn parse_weight(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("weight {text:?} is not a whole number (0..={MAX_WEIGHT})"))?;
    value::weight(n).map_err(|e| format!("weight {e}"))
}

/// A Maglev table size, checked by the config file's rule (`table_size`:
/// a prime in its range), so a negative, out-of-range or composite one is
/// refused naming the flag before lbd is asked.
fn parse_table_size(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("table size {text:?} is not a whole number"))?;
    value::table_size(n).map_err(|e| format!("table size {e}"))
}

/// A VIP's drain timeout in seconds, checked by the config file's rule
/// (`drain_timeout_s`) so an out-of-range one says the range before lbd is
/// asked.
pub(crate) fn parse_drain_timeout(text: &str) -> Result<i64, String> {
    seconds(text, "drain timeout", value::drain_timeout_s)
}

/// A VIP's slow start in seconds, checked by the config file's rule
/// (`slow_start_s`), as [`parse_drain_timeout`].
pub(crate) fn parse_slow_start(text: &str) -> Result<i64, String> {
    seconds(text, "slow start", value::slow_start_s)
}

/// A whole number of seconds for `what`, checked by the file's `rule`.
fn seconds<T>(
    text: &str,
    what: &str,
    rule: impl Fn(i64) -> Result<T, value::ValueError>,
) -> Result<i64, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a whole number of seconds"))?;
    rule(n).map_err(|e| format!("{what} {e}"))?;
    Ok(n)
}

/// A backend port argument (NAT VIPs), checked by the config file's rule.
pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    let n: i64 = text
        .parse()
        .map_err(|_| format!("port {text:?} is not a whole number (1..=65535)"))?;
    value::port(n).map_err(|e| format!("port {e}"))
}

/// `ADDRESS[,weight=W][,mac=MAC][,port=P][,backup]`, its values checked by the config file's
/// rules (the VIP-dependent ones are lbd's to check).
pub(crate) fn parse_backend(text: &str) -> Result<BackendSpec, String> {
    let mut parts = text.split(',');
    let address = parts.next().unwrap_or_default().parse().map_err(|_| {
        format!("{text:?}: expected ADDRESS[,weight=W][,mac=MAC][,port=P][,backup]")
    })?;
    let mut spec = BackendSpec {
        address,
        mac: None,
        port: None,
        weight: None,
        backup: false,
        health: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for part in parts {
        let key = part.split_once('=').map_or(part, |(key, _)| key);
        if seen.contains(&key) {
            return Err(format!("{text:?}: {key} is given twice"));
        }
        seen.push(key);
        match part.split_once('=') {
            Some(("weight", w)) => spec.weight = Some(parse_weight(w)?.into()),
            Some(("mac", m)) => {
                value::mac(m).map_err(|e| format!("mac {e}"))?;
                spec.mac = Some(m.to_owned());
            }
            Some(("port", p)) => spec.port = Some(parse_port(p)?.into()),
            None if part == "backup" => spec.backup = true,
            _ => {
                return Err(format!(
                    "{part:?}: expected weight=W, mac=MAC, port=P or backup"
                ))
            }
        }
    }
    Ok(spec)
}

/// Runs a `vip` subcommand.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add {
            vip,
            table_size,
            on_all_down,
            forwarding,
            affinity,
            drain_timeout,
            slow_start,
            nat_source,
            backends,
            health,
            dry_run,
            json,
        } => {
            let spec = VipSpec {
                address: vip.address,
                port: vip.port.into(),
                protocol: Some(vip.protocol.to_string()),
                table_size: table_size.map(i64::from),
                on_all_down,
                drain_timeout_s: drain_timeout,
                forwarding,
                affinity,
                slow_start_s: slow_start,
                nat_source,
                health: health.spec(),
                backends,
            };
            let change = client
                .add_vip(spec, dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::VIP_ADD, true))?;
            output::change(&change, json);
        }
        Command::Remove { vip, dry_run, json } => {
            output::change(&client.remove_vip(vip, dry_run).await?, json);
        }
        Command::List { json } => {
            if json {
                output::json(&client.vips().await?);
            } else {
                // The whole status: it says whose traffic counters could
                // not be read (shown `-`, not as a count of 0).
                let status = client.status().await?;
                for vip in &status.vips {
                    print_vip(vip, &status.traffic_unread);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_a_bare_word_given_once() {
        let spec = parse_backend("198.18.0.21,backup,weight=50").unwrap();
        assert!(spec.backup);
        assert_eq!(spec.weight, Some(50));
        assert!(!parse_backend("198.18.0.21").unwrap().backup);
        // On the wire only when set: an lbd before backups refuses the
        // field by name rather than adding a plain backend.
        let body = serde_json::to_value(&spec).unwrap();
        assert_eq!(body["backup"], serde_json::json!(true));
        let plain = serde_json::to_value(parse_backend("198.18.0.21").unwrap()).unwrap();
        assert!(plain.get("backup").is_none(), "{plain}");
        assert_eq!(
            parse_backend("198.18.0.21,backup,backup").unwrap_err(),
            "\"198.18.0.21,backup,backup\": backup is given twice"
        );
        for text in ["198.18.0.21,backup=true", "198.18.0.21,backups"] {
            let message = parse_backend(text).unwrap_err();
            assert!(
                message.ends_with("expected weight=W, mac=MAC, port=P or backup"),
                "{message:?}"
            );
        }
    }

    #[test]
    fn a_weight_out_of_range_says_the_range() {
        for text in ["198.18.0.11,weight=-1", "198.18.0.11,weight=99999999999"] {
            let message = parse_backend(text).unwrap_err();
            assert!(message.contains("out of range 0..=10000"), "{message:?}");
        }
        let message = parse_backend("198.18.0.11,weight=x").unwrap_err();
        assert!(
            message.contains("weight") && message.contains("0..=10000"),
            "{message:?}"
        );
        assert_eq!(
            parse_weight("-1").unwrap_err(),
            "weight -1 is out of range 0..=10000"
        );
        assert_eq!(parse_weight("10000"), Ok(10_000));
        let spec = parse_backend("198.18.0.11,weight=0,mac=02:00:00:00:00:11").unwrap();
        assert_eq!(spec.weight, Some(0));
        let message = parse_backend("198.18.0.11,mac=01:00:00:00:00:11").unwrap_err();
        assert!(message.contains("multicast"), "{message:?}");
        assert_eq!(
            parse_backend("198.18.0.11,port=8080").unwrap().port,
            Some(8080)
        );
        let message = parse_backend("198.18.0.11,weight=5,weight=50").unwrap_err();
        assert!(message.contains("weight is given twice"), "{message}");
        let message = parse_backend("198.18.0.11,port=0").unwrap_err();
        assert_eq!(message, "port 0 is out of range 1..=65535");
    }

    #[test]
    fn a_nat_vip_and_its_backend_ports_come_from_the_command_line() {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from([
            "lbctl",
            "vip",
            "add",
            "198.18.0.100:80",
            "--forwarding",
            "nat",
            "--nat-source",
            "198.18.0.51",
            "--backend",
            "198.19.2.11,port=8080,weight=5",
        ])
        .unwrap();
        let text = format!("{cli:?}");
        for part in [
            "forwarding: Some(\"nat\")",
            "nat_source: Some(198.18.0.51)",
            "port: Some(8080)",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
    }

    #[test]
    fn a_vips_seconds_come_from_the_command_line_by_the_file_rules() {
        use clap::Parser as _;
        for (flag, field, good, bad_ones, range) in [
            (
                "--drain-timeout",
                "drain_timeout",
                "300",
                ["0", "-1", "604801"],
                "1..=604800",
            ),
            (
                "--slow-start",
                "slow_start",
                "30",
                ["0", "-1", "3601"],
                "1..=3600",
            ),
        ] {
            let parse = |seconds: &str| {
                crate::Cli::try_parse_from([
                    "lbctl",
                    "vip",
                    "add",
                    "198.18.0.100:80",
                    flag,
                    seconds,
                ])
                .map(|cli| format!("{cli:?}"))
                .map_err(|e| e.to_string())
            };
            let text = parse(good).unwrap();
            assert!(text.contains(&format!("{field}: Some({good})")), "{text}");
            for bad in bad_ones {
                let error = parse(bad).unwrap_err();
                assert!(
                    error.contains(&format!("out of range {range}")),
                    "{flag} {bad}: {error}"
                );
            }
            assert!(parse("x").unwrap_err().contains("whole number"), "{flag}");
        }
    }

    /// A negative or out-of-range `--table-size` is refused on the command
    /// line naming the flag and the range (clap alone took `-5` for an
    /// unknown flag and advised `-- -5`), and one that is no prime before
    /// lbd is asked.
    #[test]
    fn a_table_size_is_refused_naming_the_flag_and_its_range() {
        use clap::Parser as _;
        let parse = |size: &str| {
            crate::Cli::try_parse_from([
                "lbctl",
                "vip",
                "add",
                "198.18.0.100:80",
                "--table-size",
                size,
            ])
            .map(|cli| format!("{cli:?}"))
            .map_err(|e| e.to_string())
        };
        let text = parse("251").unwrap();
        assert!(text.contains("table_size: Some(251)"), "{text}");
        for bad in ["-5", "0", "65538", "99999999999"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("--table-size"), "{bad}: {error}");
            assert!(error.contains("out of range 3..=65537"), "{bad}: {error}");
        }
        let error = parse("100").unwrap_err();
        assert!(
            error.contains("--table-size") && error.contains("prime"),
            "{error}"
        );
        assert!(parse("x").unwrap_err().contains("whole number"));
    }

    #[test]
    fn the_command_line_says_the_range_of_a_weight() {
        use clap::Parser as _;
        for args in [
            &["backend", "weight", "198.18.0.100:80", "198.18.0.11", "-1"][..],
            &["backend", "add", "198.18.0.100:80", "198.18.0.11,weight=-1"][..],
            &[
                "vip",
                "add",
                "198.18.0.100:80",
                "--backend",
                "198.18.0.11,weight=20000",
            ][..],
        ] {
            let error = crate::Cli::try_parse_from([&["lbctl"][..], args].concat())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("out of range 0..=10000"),
                "{args:?}: {error}"
            );
        }
    }
}
