//! The thin driver around [`super::announce`]: turns each plan into the
//! routes file and a BIRD reconfigure, only when the announced set
//! changes, and retries with a backoff while BIRD is unreachable or
//! refuses (the file is written either way, so a BIRD that starts later
//! reads the right routes). The backoff holds back only a retry of the
//! set that failed: a changed set is written and sent at once. The
//! exchange with BIRD runs in a task of its own, one at a time, so a BIRD
//! that hangs never stalls lbd's loop; its [`Outcome`] comes back through
//! [`Announcer::take_outcomes`]. While the set stays the one BIRD
//! accepted, BIRD is asked how it is every [`PROBE_INTERVAL`]: a BIRD
//! that crashed or hangs no longer announces it, and the node must not
//! go on saying it is in sync. After each reconfigure and each such check
//! BIRD is also asked for the routes file's protocols: a BIRD whose
//! config does not include the file takes every reconfigure and
//! announces none of it, and is not in sync either. A BIRD that refuses
//! its own config (bird.conf broken) runs on with the one it read before:
//! a withdrawal that leaves a family nothing to announce (a drain, a
//! stop) then disables lbd's protocol of that family (no parse needed),
//! which the next configure BIRD takes enables again. A withdrawal of
//! some of a family's addresses is not done that way (it would take the
//! family's other addresses off the network, on every node sharing the
//! broken bird.conf): it fails and is retried, as any refusal.

mod bird_exchange;
mod outcomes;
mod startup_gate;
mod status;
mod withdraw_all;

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    announce::{Plan, Startup},
    routes_file::{self, Family},
};
use crate::config::BgpConfig;

pub(crate) use bird_exchange::Outcome;
use bird_exchange::{BirdExchange, Exchange, SessionsSeen};
pub use status::{AddressExports, BgpStatus, StartupStatus, WithheldAddress};
pub use withdraw_all::withdraw;
pub(crate) use withdraw_all::withdraw_routes;

/// First wait before trying BIRD again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How often BIRD is asked how it is (`show status`) while the set it
/// accepted stays the one wanted. Without it, a BIRD that crashed after
/// accepting a set would leave `in_sync` (and `lbd_bgp_in_sync`, which
/// `LbdBgpNotInSync` alerts on after a minute) true for good.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// This node's announcements and how BIRD took them.
pub(crate) struct Announcer {
    config: BgpConfig,
    startup: Startup,
    /// The plan last computed (for logging what changed, and status).
    plan: Plan,
    /// The set BIRD last accepted this run (None: none yet).
    applied: Option<BTreeSet<IpAddr>>,
    /// The set last written and sent, whatever came of it.
    attempted: Option<BTreeSet<IpAddr>>,
    /// What BIRD's running config may announce: the set of the last
    /// configure it took (at start, what the routes file held), with every
    /// set it may have read since (no answer); a set it refused changes
    /// nothing (it runs on with the config it read before). A refused
    /// withdrawal disables the families it leaves nothing to announce.
    may_announce: BTreeSet<IpAddr>,
    /// The families whose protocol lbd disabled because BIRD refused its
    /// config; enabled again after the next configure BIRD takes.
    disabled: BTreeSet<Family>,
    /// BIRD's refusal of its config, until it takes one again.
    config_error: Option<String>,
    /// The exchange with BIRD that runs now, if one does (at most one).
    in_flight: Option<Exchange>,
    /// When BIRD is next asked how it is, while the set it accepted is
    /// the one wanted (None: not before an exchange succeeds).
    probe_at: Option<Instant>,
    /// Where exchanges report, and the loop's end (taken once).
    outcomes_tx: mpsc::Sender<Outcome>,
    outcomes_rx: Option<mpsc::Receiver<Outcome>>,
    /// After a failure: not before this, unless the set changes.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Reconfigures BIRD accepted.
    applies: u64,
    /// Writes or reconfigures that failed.
    failures: u64,
    last_error: Option<String>,
    /// BIRD's BGP sessions as the last exchange that succeeded read them
    /// (None: none did since the last failure, so they are unknown).
    sessions: Option<SessionsSeen>,
    /// Addresses wanted announced that no Established session exported
    /// at the last look (logged once when they become so).
    unexported: BTreeSet<IpAddr>,
}

impl Announcer {
    /// The announcer of a node that `adopted` its data plane (or not),
    /// with or without sync peers to wait for. The gate lets addresses
    /// through at once only when the previous lbd's routes were kept (its
    /// routes file still announces), and only theirs: after a stop that
    /// withdrew them the peers' routing tables moved on, and this node's
    /// flow table is stale; an address they did not announce (a VIP added
    /// to the file before the restart) waits for its first checks.
    pub(crate) fn new(config: BgpConfig, adopted: bool, has_peers: bool, now: Instant) -> Self {
        let in_file = routes_file::announced(&config.routes_file);
        let kept = if adopted {
            in_file.clone()
        } else {
            BTreeSet::new()
        };
        if adopted && kept.is_empty() {
            info!("BGP: data plane adopted but its routes were withdrawn; waiting for the peers' flows and the first health checks as a fresh node does");
        } else if !kept.is_empty() {
            info!(kept = ?kept, "BGP: routes kept across the restart; announcing their addresses at once, the others once their first health checks decided");
        }
        let startup = Startup::new(kept, has_peers, config.startup_wait, now);
        let (outcomes_tx, outcomes_rx) = mpsc::channel(1);
        Self {
            config,
            startup,
            plan: Plan::new(),
            applied: None,
            attempted: None,
            may_announce: in_file,
            disabled: BTreeSet::new(),
            config_error: None,
            in_flight: None,
            probe_at: None,
            outcomes_tx,
            outcomes_rx: Some(outcomes_rx),
            retry_at: None,
            backoff: RETRY_MIN,
            applies: 0,
            failures: 0,
            last_error: None,
            sessions: None,
            unexported: BTreeSet::new(),
        }
    }

    /// The config it runs with.
    pub(crate) fn config(&self) -> &BgpConfig {
        &self.config
    }

    /// The receiving end of the exchanges' outcomes, once (for the
    /// engine's loop, which hands each to [`Self::on_outcome`]).
    pub(crate) fn take_outcomes(&mut self) -> Option<mpsc::Receiver<Outcome>> {
        self.outcomes_rx.take()
    }

    /// Makes BIRD announce what `plan` says, if that differs from what it
    /// announces: writes the routes file and starts the reconfigure in a
    /// task (never waits for BIRD). While one runs, the next set waits for
    /// its outcome; after a failure, only a retry of the same set waits
    /// for the backoff. While the set wanted is the one BIRD accepted,
    /// BIRD is asked how it is every [`PROBE_INTERVAL`] instead (in a
    /// task too); if it does not answer, the set counts as unknown and is
    /// sent again.
    pub(crate) fn apply(&mut self, plan: Plan, now: Instant) {
        self.log_changes(&plan);
        self.plan = plan;
        let wanted: BTreeSet<IpAddr> = announced(&self.plan);
        if self.in_flight.is_some() {
            return;
        }
        if self.applied.as_ref() == Some(&wanted) {
            if self.probe_at.is_some_and(|at| now >= at) {
                self.start(Exchange::Probe, wanted);
            }
            return;
        }
        let retry = self.attempted.as_ref() == Some(&wanted);
        if retry && self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.attempted = Some(wanted.clone());
        let text = routes_file::render(&self.config.protocol, &wanted);
        if let Err(error) = routes_file::write(&self.config.routes_file, &text) {
            self.failed(format!("{error:#}"), now);
            return;
        }
        self.start(Exchange::Configure, wanted);
    }

    /// Starts `exchange` with BIRD in a task of its own, about `set`.
    fn start(&mut self, exchange: Exchange, set: BTreeSet<IpAddr>) {
        self.in_flight = Some(exchange);
        let bird = BirdExchange {
            socket: self.config.bird_socket.clone(),
            routes: self.config.routes_file.clone(),
            stem: self.config.protocol.clone(),
        };
        // Only a family the set leaves empty: disabling one that keeps an
        // address would withdraw that too.
        let kept: BTreeSet<Family> = set.iter().map(|address| Family::of(*address)).collect();
        let emptied: BTreeSet<Family> = self
            .may_announce
            .difference(&set)
            .map(|address| Family::of(*address))
            .filter(|family| !kept.contains(family))
            .collect();
        let disabled = self.disabled.clone();
        let outcomes = self.outcomes_tx.clone();
        tokio::spawn(async move {
            let result = match exchange {
                Exchange::Configure => bird.configure(&emptied, &disabled).await,
                Exchange::Probe => bird.probe().await,
            };
            // The loop is gone only when lbd stops.
            let _ = outcomes
                .send(Outcome {
                    set,
                    exchange,
                    result,
                })
                .await;
        });
    }

    /// The names of the protocols of `families`.
    fn protocols(&self, families: &BTreeSet<Family>) -> Vec<String> {
        families
            .iter()
            .map(|family| family.protocol(&self.config.protocol))
            .collect()
    }

    /// A write or an exchange failed: what BIRD announces is unknown now
    /// (the routes file may hold the set that failed, and BIRD reads it
    /// when it restarts), so nothing counts as applied until an exchange
    /// succeeds; the next `apply` writes and sends whatever is wanted
    /// then, even the set last applied.
    fn failed(&mut self, error: String, now: Instant) {
        self.applied = None;
        self.probe_at = None;
        self.sessions = None;
        self.failures += 1;
        warn!(%error, retry_in_ms = self.backoff.as_millis(), "BGP: announcing through BIRD failed");
        self.last_error = Some(error);
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    fn log_changes(&self, plan: &Plan) {
        for (address, reason) in plan {
            let before = self.plan.get(address);
            if before == Some(reason) {
                continue;
            }
            match reason {
                None => info!(%address, "BGP: announcing"),
                Some(reason) => info!(%address, reason = reason.name(), "BGP: withdrawing"),
            }
        }
        for address in self.plan.keys().filter(|a| !plan.contains_key(a)) {
            info!(%address, "BGP: withdrawing (no longer a VIP address announced here)");
        }
    }
}

fn announced(plan: &Plan) -> BTreeSet<IpAddr> {
    plan.iter()
        .filter(|(_, reason)| reason.is_none())
        .map(|(address, _)| *address)
        .collect()
}

#[cfg(test)]
mod tests;
