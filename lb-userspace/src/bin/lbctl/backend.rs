//! `lbctl backend add|remove|drain|undrain|maintenance|weight|list`.
//!
//! `drain --wait` is the finish line of a rolling upgrade: it reports the
//! backend's live flows (read from the connection table) as they fall and
//! returns when none is left (exit 0) or when the drain timeout cut the
//! rest (exit 6).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_userspace::{
    api::{
        client::{api_path, Client},
        schema::{BackendState, StateChange, VipStatus, WeightChange},
        Method,
    },
    model::FlowCount,
    reconcile::VipId,
};
use serde_json::json;

use crate::{
    output,
    status::print_vip,
    vip::{parse_backend, parse_weight},
    Failure,
};

/// Exit code when a drain's timeout cut remaining flows.
const EXIT_DRAIN_TIMED_OUT: u8 = 6;

/// Flags every change takes.
#[derive(Debug, clap::Args)]
pub struct ChangeFlags {
    /// Show what it would do (shares before and after); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `lbctl backend ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a backend to a VIP (runtime change: see `lbctl reload --dry-run`).
    Add {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// ADDRESS[,weight=W][,mac=MAC].
        #[arg(value_parser = parse_backend)]
        backend: lb_userspace::api::schema::BackendSpec,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Remove a backend: its established flows are hashed to others.
    Remove {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Stop new flows to a backend; established flows keep going to it.
    Drain {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// Cut the remaining flows after this many seconds (default: the
        /// VIP's drain_timeout_s, else never).
        #[arg(long)]
        timeout: Option<u64>,
        /// Wait until no live flow is left (or the timeout cut them),
        /// reporting the count as it falls.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Give a drained (or in maintenance) backend new flows again.
    Undrain {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Take a backend out at once (its flows move), or back in with --off.
    Maintenance {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// End maintenance.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Change a backend's weight: its share of new flows only.
    Weight {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// 0..=10000.
        #[arg(value_parser = parse_weight, allow_negative_numbers = true)]
        weight: u32,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// List a VIP's backends.
    List {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn backend_path(vip: &VipId, backend: &IpAddr, rest: &[&str]) -> String {
    let vip = vip.to_string();
    let backend = backend.to_string();
    let mut segments = vec!["vips", vip.as_str(), "backends", backend.as_str()];
    segments.extend_from_slice(rest);
    api_path(&segments)
}

/// Runs a `backend` subcommand.
pub async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add {
            vip,
            backend,
            flags,
        } => {
            let path = api_path(&["vips", &vip.to_string(), "backends"]);
            let change =
                output::send_change(client, Method::Post, &path, Some(&backend), flags.dry_run)
                    .await?;
            output::change(&change, flags.json);
        }
        Command::Remove {
            vip,
            backend,
            flags,
        } => {
            let path = backend_path(&vip, &backend, &[]);
            let change =
                output::send_change(client, Method::Delete, &path, None::<&()>, flags.dry_run)
                    .await?;
            output::change(&change, flags.json);
        }
        Command::Drain {
            vip,
            backend,
            timeout,
            wait,
            flags,
        } => {
            let body = StateChange {
                state: BackendState::Draining,
                timeout_s: timeout,
            };
            let path = backend_path(&vip, &backend, &["state"]);
            let change =
                output::send_change(client, Method::Put, &path, Some(&body), flags.dry_run).await?;
            output::change(&change, flags.json);
            if wait && !flags.dry_run {
                return wait_for_drain(client, &vip, &backend, flags.json).await;
            }
        }
        Command::Undrain {
            vip,
            backend,
            flags,
        } => {
            set_state(client, &vip, &backend, BackendState::Enabled, &flags).await?;
        }
        Command::Maintenance {
            vip,
            backend,
            off,
            flags,
        } => {
            let state = if off {
                BackendState::Enabled
            } else {
                BackendState::Maintenance
            };
            set_state(client, &vip, &backend, state, &flags).await?;
        }
        Command::Weight {
            vip,
            backend,
            weight,
            flags,
        } => {
            let path = backend_path(&vip, &backend, &["weight"]);
            let body = WeightChange { weight };
            let change =
                output::send_change(client, Method::Put, &path, Some(&body), flags.dry_run).await?;
            output::change(&change, flags.json);
        }
        Command::List { vip, json } => {
            let status: VipStatus = client
                .get(&api_path(&["vips", &vip.to_string()]), &[])
                .await?;
            if json {
                output::json(&status.backends);
            } else {
                print_vip(&status);
            }
        }
    }
    Ok(())
}

async fn set_state(
    client: &Client,
    vip: &VipId,
    backend: &IpAddr,
    state: BackendState,
    flags: &ChangeFlags,
) -> Result<(), Failure> {
    let path = backend_path(vip, backend, &["state"]);
    let body = StateChange {
        state,
        timeout_s: None,
    };
    let change =
        output::send_change(client, Method::Put, &path, Some(&body), flags.dry_run).await?;
    output::change(&change, flags.json);
    Ok(())
}

/// Polls the backend's flows until none is live, or the drain's deadline
/// put it in maintenance.
async fn wait_for_drain(
    client: &Client,
    vip: &VipId,
    backend: &IpAddr,
    as_json: bool,
) -> Result<(), Failure> {
    let flows_path = backend_path(vip, backend, &["flows"]);
    let vip_path = api_path(&["vips", &vip.to_string()]);
    let started = Instant::now();
    let mut last: Option<u64> = None;
    loop {
        let flows: FlowCount = client.get(&flows_path, &[]).await?;
        let status: VipStatus = client.get(&vip_path, &[]).await?;
        let state = status
            .backends
            .iter()
            .find(|b| b.address == *backend)
            .map(|b| b.state);
        if last != Some(flows.live) {
            if as_json {
                println!(
                    "{}",
                    json!({"backend": backend, "live_flows": flows.live, "closing_flows": flows.closing, "elapsed_s": started.elapsed().as_secs()})
                );
            } else {
                println!(
                    "{backend}: {} live flows ({} closing) after {}s",
                    flows.live,
                    flows.closing,
                    started.elapsed().as_secs()
                );
            }
            last = Some(flows.live);
        }
        if flows.live == 0 {
            if !as_json {
                println!("{backend} is drained: no live flow left");
            }
            return Ok(());
        }
        if state != Some(BackendState::Draining) {
            let state = state.map_or("gone".to_owned(), |s| s.to_string());
            return Err(Failure::new(
                EXIT_DRAIN_TIMED_OUT,
                format!(
                    "{backend} is now {state}: the drain ended with {} live flows cut",
                    flows.live
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
