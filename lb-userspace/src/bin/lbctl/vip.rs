//! `lbctl vip add|remove|list`.

use lb_userspace::{
    api::{
        client::Client,
        schema::{BackendSpec, VipSpec},
    },
    vip_id::VipId,
};

use crate::{output, status::print_vip, Failure};

/// `lbctl vip ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a VIP (runtime change: see `lbctl reload --dry-run`).
    Add {
        /// ADDRESS:PORT[/tcp|udp], IPv6 as [ADDRESS]:PORT.
        vip: VipId,
        /// Maglev table size (a prime, default 65537).
        #[arg(long)]
        table_size: Option<u32>,
        /// When no backend is healthy: drop (default) or keep.
        #[arg(long)]
        on_all_down: Option<String>,
        /// A backend: ADDRESS[,weight=W][,mac=MAC]; repeat for more.
        #[arg(long = "backend", value_parser = parse_backend)]
        backends: Vec<BackendSpec>,
        /// Show what it would do; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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

/// `ADDRESS[,weight=W][,mac=MAC]`.
pub fn parse_backend(text: &str) -> Result<BackendSpec, String> {
    let mut parts = text.split(',');
    let address = parts
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| format!("{text:?}: expected ADDRESS[,weight=W][,mac=MAC]"))?;
    let mut spec = BackendSpec {
        address,
        mac: None,
        weight: None,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("weight", w)) => {
                spec.weight = Some(
                    w.parse()
                        .map_err(|_| format!("weight {w:?} is not a number"))?,
                )
            }
            Some(("mac", m)) => spec.mac = Some(m.to_owned()),
            _ => return Err(format!("{part:?}: expected weight=W or mac=MAC")),
        }
    }
    Ok(spec)
}

/// Runs a `vip` subcommand.
pub async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add {
            vip,
            table_size,
            on_all_down,
            backends,
            dry_run,
            json,
        } => {
            let spec = VipSpec {
                address: vip.address,
                port: vip.port,
                protocol: Some(vip.protocol.to_string()),
                table_size,
                on_all_down,
                backends,
            };
            output::change(&client.add_vip(spec, dry_run).await?, json);
        }
        Command::Remove { vip, dry_run, json } => {
            output::change(&client.remove_vip(vip, dry_run).await?, json);
        }
        Command::List { json } => {
            let vips = client.vips().await?;
            if json {
                output::json(&vips);
            } else {
                vips.iter().for_each(print_vip);
            }
        }
    }
    Ok(())
}
