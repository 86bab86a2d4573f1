//! `lbctl backend add|remove|drain|wait|undrain|maintenance|weight|list`.
//!
//! `drain --wait` is the finish line of a rolling upgrade: it reports the
//! backend's live flows (read from the connection table) as they fall and
//! returns when none is left (exit 0), when the drain timeout ended the
//! drain (exit 6: the rest cut, or for a NAT VIP left on the backend until
//! they end), when another change ended the drain (exit 7), or when none
//! is left because the backend went down (exit 9: its flows were moved to
//! other backends, not finished; a script must not take that as drained).
//! Idle flows (silent past the idle timeout, not ended) do not hold it,
//! but are counted and named in the outcome: they are still sent to the
//! backend. `backend wait` watches a drain already running the same way,
//! changing nothing.
//!
//! This module holds the subcommands and their changes; `drain --wait`
//! and `backend wait` are in the files beside it.

mod drain_end;
mod drain_report;
mod drain_wait;
#[cfg(test)]
mod tests;
mod vrrp_note;

use std::{net::IpAddr, time::Instant};

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::{BackendState, StateChange},
    },
    config::value,
    vip_id::VipId,
};

use self::{
    drain_report::failed_line,
    drain_wait::{drain_deadline, wait_for_drain, Watching},
    vrrp_note::vrrp_note,
};
use crate::{
    flag_names,
    health_flags::HealthFlags,
    output,
    status::print_vip,
    vip::{parse_backend, parse_weight},
    Failure,
};

/// Exit code when a drain's timeout ended it with flows left (cut, or a
/// NAT VIP's left on the backend).
pub(crate) const EXIT_DRAIN_TIMED_OUT: u8 = 6;
/// Exit code when another change ended a drain `--wait` was watching.
pub(crate) const EXIT_DRAIN_ENDED_ELSEWHERE: u8 = 7;
/// Exit code when a drain `--wait` was watching ran out of flows because
/// the backend went down: they were moved to other backends, not finished.
pub(crate) const EXIT_DRAIN_WENT_DOWN: u8 = 9;

/// Flags every change takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ChangeFlags {
    /// Show what it would do (shares before and after); change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `lbctl backend ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Add a backend to a VIP (runtime change: see `lbctl reload --dry-run`).
    Add {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// ADDRESS[,weight=W][,mac=MAC][,port=P][,backup] (port: NAT VIPs
        /// only; backup: takes new flows only while no other backend of
        /// the VIP can).
        #[arg(value_parser = |t: &str| parse_backend(t).map(Box::new))]
        backend: Box<lb_userspace::api::schema::BackendSpec>,
        #[command(flatten)]
        flags: ChangeFlags,
        /// Its own health checks: the flags given override its VIP's
        /// (last: their help has its own heading).
        #[command(flatten)]
        health: Box<HealthFlags>,
    },
    /// Remove a backend: its established flows are hashed to others (a
    /// NAT VIP's connections end: their translations are freed and their
    /// packets dropped, the clients not told).
    Remove {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Stop new flows to a backend; established flows keep going to it.
    ///
    /// Drains reach the sync peers: on a node that replicates to peers,
    /// each peer running this release takes the drain within seconds
    /// (with its deadline); drain on a peer of an earlier release too
    /// (the answer names any peer not known to take it). A backend
    /// already draining keeps its drain's start and deadline unless
    /// --timeout is given, which sets the new one (the answer says
    /// which): running it again (with --wait, to watch) changes nothing
    /// else; `lbctl backend wait` watches a drain without making one.
    Drain {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// End the drain after this many seconds (0: never; default: the
        /// VIP's drain_timeout_s, else never): the backend goes to
        /// maintenance and its remaining flows are cut, but for a NAT
        /// VIP, whose connections stay on it until they end. The answer
        /// shows the effective deadline (0..=604800).
        #[arg(long, value_parser = parse_drain_timeout, allow_negative_numbers = true)]
        timeout: Option<u64>,
        /// Wait until no live flow is left (or the timeout ended the
        /// drain), reporting the count as it falls. Idle flows (silent
        /// past tcp_idle_timeout_s or udp_idle_timeout_s, not ended) do
        /// not hold it: they are counted, and the outcome says how many
        /// are still pinned to the backend (they break if it stops).
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
        #[command(flatten)]
        flags: ChangeFlags,
    },
    /// Wait for a drain already running to end, changing nothing: what
    /// `drain --wait` does once its drain is made (after an ssh session
    /// dropped, say, or from another terminal). Same progress, outcome
    /// and exit codes; a backend not draining is exit 7 (6 if its
    /// drain's timeout ended it).
    Wait {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// Print NDJSON: the progress lines, then the outcome.
        #[arg(long)]
        json: bool,
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
    /// Take a backend out at once (no new flows; its established flows
    /// move to others, but a NAT VIP's stay until they end), or back in
    /// with --off.
    Maintenance {
        /// ADDRESS:PORT[/tcp|udp].
        vip: VipId,
        /// Backend address.
        backend: IpAddr,
        /// End maintenance (only: a draining backend is refused, and
        /// nothing changes; `undrain` ends a drain).
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

/// A drain's own timeout in seconds: 0 (never), else checked by the
/// VIP's `drain_timeout_s` rule, so that one out of range is refused
/// naming `--timeout` before lbd is asked (whose error would name its
/// API field).
fn parse_drain_timeout(text: &str) -> Result<u64, String> {
    let n: i64 = text.parse().map_err(|_| {
        format!("drain timeout {text:?} is not a whole number of seconds (0: never)")
    })?;
    if n != 0 {
        value::drain_timeout_s(n).map_err(|e| format!("drain timeout {e} (or 0: never)"))?;
    }
    u64::try_from(n).map_err(|_| format!("drain timeout {n} is negative"))
}

/// Runs a `backend` subcommand.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Add {
            vip,
            mut backend,
            health,
            flags,
        } => {
            backend.health = health.spec();
            let change = client
                .add_backend(vip, *backend, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, &[], true))?;
            output::change(&change, flags.json);
        }
        Command::Remove {
            vip,
            backend,
            flags,
        } => {
            let change = client.remove_backend(vip, backend, flags.dry_run).await?;
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
                from: None,
            };
            let change = client
                .set_state(vip, backend, body, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::BACKEND_DRAIN, false))?;
            if wait && !flags.dry_run {
                // With --json, stdout is NDJSON: the change on one line,
                // then the progress lines and the outcome's.
                if flags.json {
                    outln!(
                        "{}",
                        output::json_line(&output::with_warnings(&change, &[]))
                    );
                    for warning in &change.warnings {
                        output::warning(warning);
                    }
                } else {
                    output::change(&change, false);
                }
                let deadline = match change.drain.as_ref().and_then(|d| d.timeout_s) {
                    Some(s) => Some(drain_deadline(
                        Instant::now(),
                        s,
                        "timeout_s",
                        (vip, backend),
                    )?),
                    None => None,
                };
                // The outcome line has every warning of the command.
                let mut warnings = change.warnings.clone();
                warnings.extend(vrrp_note(client, vip).await);
                let waited = wait_for_drain(
                    client,
                    (vip, backend),
                    deadline,
                    Watching::Made,
                    flags.json.then_some(&warnings[..]),
                )
                .await;
                if let (Err(failure), true) = (&waited, flags.json) {
                    if let Some(line) = failed_line(backend, failure, &warnings) {
                        outln!("{line}");
                    }
                }
                return waited;
            }
            output::change(&change, flags.json);
        }
        Command::Wait { vip, backend, json } => {
            let warnings: Vec<String> = vrrp_note(client, vip).await.into_iter().collect();
            // The deadline is lbd's: the first look takes it from
            // `drain_remaining_s`.
            let waited = wait_for_drain(
                client,
                (vip, backend),
                None,
                Watching::Existing,
                json.then_some(&warnings[..]),
            )
            .await;
            if let (Err(failure), true) = (&waited, json) {
                if let Some(line) = failed_line(backend, failure, &warnings) {
                    outln!("{line}");
                }
            }
            return waited;
        }
        Command::Undrain {
            vip,
            backend,
            flags,
        } => {
            set_state(client, vip, backend, BackendState::Enabled, &flags).await?;
        }
        Command::Maintenance {
            vip,
            backend,
            off: false,
            flags,
        } => {
            set_state(client, vip, backend, BackendState::Maintenance, &flags).await?;
        }
        Command::Maintenance {
            vip,
            backend,
            off: true,
            flags,
        } => {
            // The API has one way back to service, `enabled`, which ends
            // a drain as well: --off looks first, and ends only maintenance.
            // What it saw is the change's precondition (`from`): lbd
            // refuses it (409) if a drain came in between, rather than
            // ending that drain.
            let current = client
                .vip(vip)
                .await?
                .backends
                .into_iter()
                .find(|b| b.address == backend)
                .map(|b| b.state);
            if let Some(why) = not_in_maintenance(vip, backend, current) {
                return Err(Failure::new(ClientError::EXIT_USAGE, why));
            }
            let body = StateChange {
                state: BackendState::Enabled,
                timeout_s: None,
                from: current,
            };
            let change = client.set_state(vip, backend, body, flags.dry_run).await?;
            output::change(&change, flags.json);
        }
        Command::Weight {
            vip,
            backend,
            weight,
            flags,
        } => {
            let change = client
                .set_weight(vip, backend, weight, flags.dry_run)
                .await
                .map_err(|e| flag_names::refused(e, flag_names::BACKEND_WEIGHT, false))?;
            output::change(&change, flags.json);
        }
        Command::List { vip, json } => {
            let status = client.vip(vip).await?;
            if json {
                output::json(&status.backends);
            } else {
                // Which counters could not be read is in the whole status
                // (shown `-`, not as a count of 0).
                let unread = client.status().await?.traffic_unread;
                print_vip(&status, &unread);
            }
        }
    }
    Ok(())
}

/// Why `maintenance --off` refuses `backend` of `vip` in `state`: it
/// ends maintenance only, and sending `enabled` to a draining backend
/// would end its drain instead. One in maintenance or enabled (where
/// `enabled` changes nothing, as before) is not refused, nor one not
/// found (None: lbd's answer to the change names it, exit 3).
fn not_in_maintenance(vip: VipId, backend: IpAddr, state: Option<BackendState>) -> Option<String> {
    match state? {
        BackendState::Maintenance | BackendState::Enabled => None,
        BackendState::Draining => Some(format!(
            "backend {backend} of VIP {vip} is draining, not in maintenance: `maintenance --off` ends only maintenance, and nothing was changed; `lbctl backend undrain {vip} {backend}` ends the drain"
        )),
    }
}

/// Sets one backend's admin state (enabled by undrain, maintenance)
/// outside a drain: no deadline and nothing to wait for, so the change
/// is printed as lbd answers it.
async fn set_state(
    client: &Client,
    vip: VipId,
    backend: IpAddr,
    state: BackendState,
    flags: &ChangeFlags,
) -> Result<(), Failure> {
    let body = StateChange {
        state,
        timeout_s: None,
        from: None,
    };
    let change = client.set_state(vip, backend, body, flags.dry_run).await?;
    output::change(&change, flags.json);
    Ok(())
}
