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

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    announce::{
        Gate, Opened, PeerDumps, Plan, Startup, Withheld, DUMP_CAP_FACTOR, DUMP_PROGRESS_WINDOW,
    },
    bird,
    routes_file::{self, Family},
    sessions::{self, BgpSession},
};
use crate::config::BgpConfig;

/// First wait before trying BIRD again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How often BIRD is asked how it is (`show status`) while the set it
/// accepted stays the one wanted. Without it, a BIRD that crashed after
/// accepting a set would leave `in_sync` (and `lbd_bgp_in_sync`, which
/// `LbdBgpNotInSync` alerts on after a minute) true for good.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// The kind of an exchange with BIRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    /// The routes file was written: BIRD is asked to read it.
    Configure,
    /// Nothing changed: BIRD is asked whether it still runs and answers.
    Probe,
}

/// How one reconfigure ended, handed back to the engine's loop (see
/// [`Announcer::on_outcome`]).
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The set the routes file held when BIRD was asked.
    set: BTreeSet<IpAddr>,
    /// What BIRD was asked.
    exchange: Exchange,
    /// BIRD's answer: on success, what its BGP sessions export (or why
    /// that could not be read).
    result: Result<SessionsSeen, Failure>,
}

/// BIRD's BGP sessions as an exchange read them, or why it could not.
type SessionsSeen = Result<Vec<BgpSession>, String>;

/// Why an exchange with BIRD failed.
#[derive(Debug)]
enum Failure {
    /// BIRD refused its config (its message) on a configure; `disabled`
    /// the families whose protocol was disabled instead (those the set
    /// leaves nothing to announce), `disabling` why the others of them
    /// were not.
    Refused {
        error: String,
        disabled: BTreeSet<Family>,
        disabling: Option<String>,
    },
    /// BIRD took its config, then what followed failed: the routes file
    /// not included, or re-enabling a protocol. BIRD's config is fine,
    /// and its configure restarted any protocol lbd disabled.
    Configured(String),
    /// Anything else: no answer, not running.
    Other(String),
}

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

/// `GET /v1/node`'s BGP part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// Addresses lbd wants announced now (its plan: BIRD announces them
    /// once it took the set, see `in_sync`; until then it may announce
    /// what it read before).
    pub announced: Vec<IpAddr>,
    /// Addresses lbd wants withdrawn, and why (BIRD may still announce
    /// them while not `in_sync`: `last_error` names those it still does).
    pub withheld: Vec<WithheldAddress>,
    /// The start-up gate.
    pub startup: StartupStatus,
    /// Whether BIRD has accepted the current set, and no exchange that
    /// may send it another runs.
    pub in_sync: bool,
    /// Reconfigures BIRD accepted since start.
    pub applies: u64,
    /// Failed writes, reconfigures or status checks since start.
    pub failures: u64,
    /// The last failure, if the last try failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// BIRD refuses its own config (bird.conf, or a file it includes, is
    /// broken): its message, until BIRD takes a configure again. BIRD runs
    /// on with the config it read before, so lbd withdraws by disabling
    /// its protocols (see `disabled`) and cannot announce anything new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bird_config_error: Option<String>,
    /// lbd's protocols disabled because BIRD refused its config while
    /// an address of theirs was to be withdrawn: BIRD announces none of
    /// their routes until it takes a configure again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
    /// BIRD's BGP sessions, each Established or not, and which of lbd's
    /// addresses each exports, as BIRD said after the last reconfigure or
    /// status check (every 10 s). None while unknown: BIRD not asked yet,
    /// or the last exchange failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<BgpSession>>,
    /// Why BIRD's answer about its sessions could not be read, if it
    /// could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_error: Option<String>,
    /// For every address lbd wants announced or withdrawn, how many
    /// Established BGP sessions export it (`in_sync` only says BIRD took
    /// lbd's set: a session that is down, or whose export filter lets
    /// none of lbd's routes through, tells the router nothing). Empty
    /// while `sessions` is unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exporting: Vec<AddressExports>,
    /// BIRD's control socket.
    pub bird_socket: String,
    /// The routes file.
    pub routes_file: String,
}

/// How many Established BGP sessions export one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressExports {
    /// The VIP address.
    pub address: IpAddr,
    /// Established sessions exporting it: 0 for an address wanted
    /// announced means the routers do not hear of this node for it.
    pub sessions: u32,
}

/// The start-up gate, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartupStatus {
    /// Waiting for the peers' flows and the first health checks (or the
    /// start-up wait).
    Waiting,
    /// A restart that kept its routes: their addresses are announced, the
    /// others wait for their first health checks (or the start-up wait).
    Kept,
    /// Open, and why.
    Open(Opened),
}

/// One withdrawn address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldAddress {
    /// The VIP address.
    pub address: IpAddr,
    /// Why it is not announced.
    pub reason: Withheld,
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

    /// Moves the start-up gate on (see [`Startup`]): `dumps` where every
    /// sync peer's full dump stands, `undecided` the announced addresses
    /// with a checked backend whose first health is not decided yet. Logs
    /// when the wait passes with a dump still arriving (the gate waits on
    /// for it), and when it opens: with a warning naming the peers whose
    /// dump did not finish when it opens without them.
    pub(crate) fn update_startup(
        &mut self,
        dumps: &PeerDumps,
        undecided: &BTreeSet<IpAddr>,
        now: Instant,
    ) {
        let peers_awaited = matches!(self.startup, Startup::Waiting { peers: true, .. });
        let was_extended = self.startup.is_extended();
        let wait_ms = self.config.startup_wait.as_millis();
        let cap_ms = self
            .config
            .startup_wait
            .saturating_mul(DUMP_CAP_FACTOR)
            .as_millis();
        let Some(opened) = self.startup.update(dumps, undecided, now) else {
            if self.startup.is_extended() && !was_extended {
                warn!(
                    wait_ms,
                    cap_ms,
                    peers = %dumps.unfinished(now),
                    "BGP: the start-up wait passed while a peer's full dump is still arriving; not announcing until it completes, stops arriving, or the cap passes"
                );
            }
            return;
        };
        let peers_missing = peers_awaited && !dumps.all_done();
        match opened {
            Opened::WaitElapsed => {
                let missing = match (peers_missing, undecided.is_empty()) {
                    (true, false) => {
                        "every sync peer sent its flows and the first health checks decided"
                    }
                    (true, true) => "every sync peer sent its flows",
                    _ => "the first health checks decided",
                };
                if peers_missing {
                    warn!(
                        wait_ms,
                        reason = opened.name(),
                        unfinished = %dumps.unfinished(now),
                        "BGP: the start-up wait passed before {missing}; announcing what the model says now, without the flows of the peers whose dump did not finish"
                    );
                } else {
                    warn!(
                        wait_ms,
                        reason = opened.name(),
                        "BGP: the start-up wait passed before {missing}; announcing what the model says now"
                    );
                }
            }
            Opened::DumpStalled => warn!(
                wait_ms,
                reason = opened.name(),
                unfinished = %dumps.unfinished(now),
                window_ms = DUMP_PROGRESS_WINDOW.as_millis(),
                "BGP: a peer's full dump stopped arriving before its end while the start-up gate waited on for it; announcing without the rest of its flows (flows the routers move here that this node lacks are balanced again)"
            ),
            Opened::CapElapsed => warn!(
                wait_ms,
                cap_ms,
                reason = opened.name(),
                unfinished = %dumps.unfinished(now),
                "BGP: peers' full dumps were still arriving when the start-up gate's cap passed; announcing without the flows still on their way (raise startup_wait_ms for tables this large)"
            ),
            _ => info!(reason = opened.name(), "BGP: start-up gate open"),
        }
    }

    /// Whether the start-up gate is open for every address.
    pub(crate) fn started(&self) -> bool {
        self.startup.is_open()
    }

    /// What the start-up gate lets through now.
    pub(crate) fn gate(&self) -> Gate<'_> {
        self.startup.gate()
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

    /// Takes the outcome of the exchange that ran; the next
    /// [`Self::apply`] sends whatever is wanted now.
    pub(crate) fn on_outcome(&mut self, outcome: Outcome, now: Instant) {
        self.in_flight = None;
        match (outcome.exchange, outcome.result) {
            (Exchange::Configure, Ok(sessions)) => {
                self.saw_sessions(sessions, &outcome.set);
                info!(announced = ?outcome.set, "BGP: BIRD reconfigured");
                if self.config_error.take().is_some() {
                    info!("BGP: BIRD takes its config again");
                }
                if !self.disabled.is_empty() {
                    info!(protocols = ?self.protocols(&self.disabled), "BGP: protocols disabled while BIRD refused its config are enabled again");
                }
                self.disabled.clear();
                self.may_announce = outcome.set.clone();
                self.applied = Some(outcome.set);
                self.applies += 1;
                self.retry_at = None;
                self.backoff = RETRY_MIN;
                self.last_error = None;
                self.probe_at = Some(now + PROBE_INTERVAL);
            }
            (Exchange::Probe, Ok(sessions)) => {
                self.saw_sessions(sessions, &outcome.set);
                self.probe_at = Some(now + PROBE_INTERVAL);
            }
            (
                _,
                Err(Failure::Refused {
                    error,
                    disabled,
                    disabling,
                }),
            ) => {
                self.config_error = Some(error.clone());
                let mut message = error.clone();
                if !disabled.is_empty() {
                    let protocols = self.protocols(&disabled);
                    // Once, not on every retry while it lasts.
                    if !disabled.is_subset(&self.disabled) {
                        error!(%error, ?protocols, "BGP: BIRD refuses its config (bird.conf or a file it includes is broken), so a withdrawal cannot be read: disabled lbd's protocols of the families left with nothing to announce instead (every address of theirs is withdrawn) until BIRD takes its config again; fix bird.conf (`birdc configure` must succeed), lbd retries");
                    }
                    self.disabled.extend(disabled);
                    message.push_str(&format!(
                        "; withdrawn by disabling {} instead (bird.conf must be fixed)",
                        protocols.join(", ")
                    ));
                }
                if let Some(disabling) = disabling {
                    error!(%error, %disabling, "BGP: BIRD refuses its config (bird.conf or a file it includes is broken), and disabling lbd's protocols instead failed: BIRD may still announce what this node withdraws");
                    message.push_str(&format!(
                        "; disabling lbd's protocols instead failed: {disabling}"
                    ));
                }
                let stuck: Vec<IpAddr> = self
                    .may_announce
                    .difference(&outcome.set)
                    .filter(|address| !self.disabled.contains(&Family::of(**address)))
                    .copied()
                    .collect();
                if !stuck.is_empty() {
                    message.push_str(&format!(
                        "; BIRD still announces {stuck:?}: their families keep other addresses, so their protocols are not disabled (bird.conf must be fixed)"
                    ));
                }
                self.failed(message, now);
            }
            (_, Err(Failure::Configured(error))) => {
                if self.config_error.take().is_some() {
                    info!("BGP: BIRD takes its config again");
                }
                // BIRD's configure restarted what lbd disabled (as its
                // config says: enabled), whatever came after it.
                self.disabled.clear();
                self.may_announce = outcome.set;
                self.failed(error, now);
            }
            (exchange, Err(Failure::Other(error))) => {
                if exchange == Exchange::Configure {
                    // BIRD may have read it before the exchange failed.
                    self.may_announce.extend(outcome.set);
                }
                self.failed(error, now);
            }
        }
    }

    /// Takes what BIRD said of its BGP sessions after BIRD took `set`
    /// (see [`Self::log_exports`]); warns once when it cannot be read.
    fn saw_sessions(&mut self, seen: SessionsSeen, set: &BTreeSet<IpAddr>) {
        match &seen {
            // BIRD's `show route exported` may lag a reconfigure by a
            // moment: only a check of the set BIRD took already logs.
            Ok(listed) if self.applied.as_ref() == Some(set) => self.log_exports(listed, set),
            Ok(_) => {}
            Err(error) => {
                if !matches!(self.sessions, Some(Err(_))) {
                    warn!(%error, "BGP: cannot tell which BIRD BGP sessions export lbd's routes");
                }
            }
        }
        self.sessions = Some(seen);
    }

    /// Logs each address of `set` that no Established session of
    /// `listed` exports, once when it becomes so, and once when one does
    /// again.
    fn log_exports(&mut self, listed: &[BgpSession], set: &BTreeSet<IpAddr>) {
        let unexported: BTreeSet<IpAddr> = set
            .iter()
            .filter(|address| sessions::exporting(listed, **address) == 0)
            .copied()
            .collect();
        let established: Vec<&str> = listed
            .iter()
            .filter(|s| s.established)
            .map(|s| s.name.as_str())
            .collect();
        for address in unexported.difference(&self.unexported) {
            warn!(%address, ?established, "BGP: BIRD took the address, but no Established BGP session exports it: the routers do not send this node its traffic (check the sessions' neighbor and AS, and that their export filter names lbd's protocols; lbctl node status lists them)");
        }
        for address in self.unexported.difference(&unexported) {
            if set.contains(address) {
                info!(%address, "BGP: an Established BGP session exports the address again");
            }
        }
        self.unexported = unexported;
    }

    /// The names of the protocols of `families`.
    fn protocols(&self, families: &BTreeSet<Family>) -> Vec<String> {
        families
            .iter()
            .map(|family| family.protocol(&self.config.protocol))
            .collect()
    }

    /// Whether BIRD, refusing its config, announces none of lbd's routes
    /// and none are wanted: every address its running config may announce
    /// is of a family lbd disabled (a drain or a stop, say, withdrawn
    /// that way).
    fn withdrawn_by_disabling(&self, wanted: &BTreeSet<IpAddr>) -> bool {
        wanted.is_empty()
            && self.config_error.is_some()
            && !self.disabled.is_empty()
            && self
                .may_announce
                .iter()
                .all(|address| self.disabled.contains(&Family::of(*address)))
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

    /// Withdraws every address now (a stop for good).
    pub(crate) async fn withdraw_all(&mut self) -> anyhow::Result<()> {
        withdraw(&self.config).await?;
        self.applied = Some(BTreeSet::new());
        self.may_announce.clear();
        Ok(())
    }

    /// Status for the API.
    pub(crate) fn status(&self) -> BgpStatus {
        let wanted = announced(&self.plan);
        BgpStatus {
            announced: wanted.iter().copied().collect(),
            withheld: self
                .plan
                .iter()
                .filter_map(|(address, reason)| {
                    reason.map(|reason| WithheldAddress {
                        address: *address,
                        reason,
                    })
                })
                .collect(),
            startup: match self.startup {
                Startup::Waiting { .. } => StartupStatus::Waiting,
                Startup::Kept { .. } => StartupStatus::Kept,
                Startup::Open(opened) => StartupStatus::Open(opened),
            },
            // While a reconfigure runs, BIRD is being sent a set that may
            // differ from `wanted` (a drain right after an undrain):
            // nothing is in sync until it answers. A status check sends
            // none: it changes nothing until it fails. A BIRD refusing its
            // config announces nothing wanted once lbd disabled its
            // protocols (a drain is done then).
            in_sync: self.in_flight != Some(Exchange::Configure)
                && (self.applied.as_ref() == Some(&wanted) || self.withdrawn_by_disabling(&wanted)),
            applies: self.applies,
            failures: self.failures,
            last_error: self.last_error.clone(),
            bird_config_error: self.config_error.clone(),
            disabled: self.protocols(&self.disabled),
            sessions: self
                .sessions
                .as_ref()
                .and_then(|seen| seen.as_ref().ok())
                .cloned(),
            sessions_error: self
                .sessions
                .as_ref()
                .and_then(|seen| seen.as_ref().err())
                .cloned(),
            exporting: match &self.sessions {
                Some(Ok(listed)) => self
                    .plan
                    .keys()
                    .map(|address| AddressExports {
                        address: *address,
                        sessions: sessions::exporting(listed, *address),
                    })
                    .collect(),
                _ => Vec::new(),
            },
            bird_socket: self.config.bird_socket.display().to_string(),
            routes_file: self.config.routes_file.display().to_string(),
        }
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

/// The error of a BIRD that took the exchange but runs none of the
/// `missing` protocols the routes file at `routes` defines: its config
/// does not include the file, so it announces nothing of lbd's (or only
/// what the operator's own protocols say, which no drain withdraws).
fn not_included(routes: &std::path::Path, missing: &[String]) -> String {
    let file = routes.display();
    format!(
        "BIRD runs no protocol {} (`show protocols` matches none): its config does not include lbd's routes file {file}, so it announces none of lbd's routes; bird.conf must include it (`include \"{file}\";` at the top level), and lbd tries again",
        missing.join(", ")
    )
}

/// One exchange's view of BIRD: its socket, the routes file and the
/// stem of the file's protocols.
struct BirdExchange {
    socket: std::path::PathBuf,
    routes: std::path::PathBuf,
    stem: String,
}

impl BirdExchange {
    /// Has BIRD read its config, then checks it runs the file's
    /// protocols. When BIRD refuses its config, the protocols of the
    /// `emptied` families (left with nothing to announce, one address of
    /// theirs BIRD may announce withdrawn) are disabled instead; once it
    /// takes it, those lbd `disabled` before are enabled (BIRD 2's
    /// configure restarts them as their config says anyway: this makes
    /// sure).
    async fn configure(
        &self,
        emptied: &BTreeSet<Family>,
        disabled: &BTreeSet<Family>,
    ) -> Result<SessionsSeen, Failure> {
        let protocols = routes_file::protocols(&self.stem);
        let names = |families: &BTreeSet<Family>| -> Vec<String> {
            families.iter().map(|f| f.protocol(&self.stem)).collect()
        };
        match bird::configure_checked(&self.socket, &protocols).await {
            Ok(checked) if !checked.missing.is_empty() => {
                Err(Failure::Configured(not_included(&self.routes, &checked.missing)))
            }
            Ok(checked) if disabled.is_empty() => Ok(checked.sessions),
            Ok(checked) => bird::toggle(&self.socket, &names(disabled), bird::Toggle::Enable)
                .await
                .into_result()
                .map(|()| checked.sessions)
                .map_err(|error| {
                    Failure::Configured(format!(
                        "{:#}",
                        error.context("BIRD took its config again; enabling the protocols lbd disabled while it refused it")
                    ))
                }),
            Err(error) if bird::is_refused(&error) => {
                let toggled = if emptied.is_empty() {
                    bird::Toggled::default()
                } else {
                    bird::toggle(&self.socket, &names(emptied), bird::Toggle::Disable).await
                };
                Err(Failure::Refused {
                    error: format!("{error:#}"),
                    disabled: emptied
                        .iter()
                        .filter(|family| toggled.done.contains(&family.protocol(&self.stem)))
                        .copied()
                        .collect(),
                    disabling: toggled.error.map(|error| format!("{error:#}")),
                })
            }
            Err(error) => Err(Failure::Other(format!("{error:#}"))),
        }
    }

    /// Asks BIRD how it is, and whether it runs the file's protocols.
    async fn probe(&self) -> Result<SessionsSeen, Failure> {
        let protocols = routes_file::protocols(&self.stem);
        match bird::probe(&self.socket, &protocols)
            .await
            .context("checking on BIRD, which had accepted the set announced now")
        {
            Ok(checked) if checked.missing.is_empty() => Ok(checked.sessions),
            Ok(checked) => Err(Failure::Other(not_included(&self.routes, &checked.missing))),
            Err(error) => Err(Failure::Other(format!("{error:#}"))),
        }
    }
}

fn announced(plan: &Plan) -> BTreeSet<IpAddr> {
    plan.iter()
        .filter(|(_, reason)| reason.is_none())
        .map(|(address, _)| *address)
        .collect()
}

/// Withdraws every address of `config` (an empty routes file, then a
/// reconfigure): a stop for good.
pub async fn withdraw(config: &BgpConfig) -> anyhow::Result<()> {
    withdraw_routes(&crate::ownership::held::HeldBgp::from(config)).await
}

/// Withdraws every address of the announcement `held` describes (its
/// routes file emptied, then its BIRD reconfigured): also with no lbd
/// running, from the record of what the lbd that ran held
/// (`lbd --release-vips`, `--cleanup`), whatever the config says now. A
/// BIRD that refuses its config (bird.conf broken) has both of lbd's
/// protocols disabled instead, which withdraws as well; the next
/// configure it takes enables them again, with the emptied file.
pub(crate) async fn withdraw_routes(held: &crate::ownership::held::HeldBgp) -> anyhow::Result<()> {
    routes_file::write(
        &held.routes_file,
        &routes_file::render(&held.protocol, &BTreeSet::new()),
    )?;
    match bird::configure(&held.bird_socket).await {
        Ok(_) => {
            info!(routes_file = %held.routes_file.display(), "BGP: every address withdrawn");
            Ok(())
        }
        Err(refused) if bird::is_refused(&refused) => {
            let protocols = routes_file::protocols(&held.protocol);
            bird::toggle(&held.bird_socket, &protocols, bird::Toggle::Disable)
                .await
                .into_result()
                .with_context(|| {
                    format!("{refused:#}; and disabling lbd's protocols instead failed too")
                })?;
            error!(error = %format!("{refused:#}"), ?protocols, "BGP: BIRD refuses its config (bird.conf or a file it includes is broken): every address withdrawn by disabling lbd's protocols instead; fix bird.conf (`birdc configure` must succeed), which enables them again");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        path::PathBuf,
        sync::{
            atomic::{AtomicU32, Ordering},
            Arc,
        },
    };

    use super::*;
    use crate::config::Announced;
    use crate::test_scratch::ScratchDir;

    const A: &str = "198.18.0.100";

    /// A directory of this test's, removed when dropped.
    struct Scratch(ScratchDir);

    impl Scratch {
        fn new(tag: &str) -> Self {
            Self(ScratchDir::new(&format!("announcer-{tag}")))
        }

        fn config(&self) -> BgpConfig {
            BgpConfig {
                bird_socket: self.0.join("bird.ctl"),
                routes_file: self.0.join("vips.conf"),
                protocol: "lbd_vips".into(),
                addresses: Announced::EveryVip,
                startup_wait: Duration::from_secs(10),
                node_state_file: self.0.join("node.state"),
            }
        }
    }

    fn plan(announced: bool) -> Plan {
        let reason = (!announced).then_some(Withheld::NoHealthyBackend);
        [(A.parse().unwrap(), reason)].into()
    }

    fn routes(config: &BgpConfig) -> String {
        std::fs::read_to_string(&config.routes_file).unwrap()
    }

    #[tokio::test]
    async fn after_a_failure_a_changed_set_is_written_and_sent_at_once() {
        let scratch = Scratch::new("backoff");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        // No BIRD: the announcement fails and backs off.
        announcer.apply(plan(true), t0);
        assert!(routes(&config).contains(&format!("route {A}/32")));
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(announcer.status().failures, 1);
        // The same set again, within the backoff: held back.
        announcer.apply(plan(true), t0 + Duration::from_millis(10));
        assert!(outcomes.try_recv().is_err());
        assert!(announcer.in_flight.is_none());
        // The VIP loses its backends: withdrawn at once, backoff or not.
        announcer.apply(plan(false), t0 + Duration::from_millis(20));
        assert!(
            !routes(&config).contains("route "),
            "the file is rewritten for a changed set: {}",
            routes(&config)
        );
        let outcome = outcomes.recv().await.unwrap();
        assert!(outcome.set.is_empty());
        announcer.on_outcome(outcome, t0 + Duration::from_millis(20));
        assert_eq!(announcer.status().failures, 2);
    }

    /// A failed exchange leaves what BIRD announces unknown (the file holds
    /// the set that failed, which a restarted BIRD reads): wanting the set
    /// applied before it again is written and sent, not taken as done.
    #[tokio::test]
    async fn after_a_failure_the_set_applied_before_is_sent_again() {
        let scratch = Scratch::new("unknown");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
        announcer.apply(plan(true), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        bird.await.unwrap();
        assert!(announcer.status().in_sync);
        // BIRD is gone: the withdrawal is written, and fails.
        announcer.apply(plan(false), t0);
        assert!(!routes(&config).contains("route "));
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(announcer.status().failures, 1);
        // The VIP is back: the file says so again, and BIRD is asked.
        announcer.apply(plan(true), t0);
        assert!(
            routes(&config).contains(&format!("route {A}/32")),
            "the file still withdraws: {}",
            routes(&config)
        );
        assert!(
            !announcer.status().in_sync,
            "not in sync until BIRD answers"
        );
        let outcome = outcomes.recv().await.unwrap();
        assert!(outcome.result.is_err(), "sent to BIRD (still gone)");
    }

    /// A BIRD on `socket` that takes one connection and answers each
    /// command on it with `answer(command)`; once lbd closes it, BIRD
    /// goes away (its socket removed). The task returns the commands.
    fn fake_bird(
        socket: &std::path::Path,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let path = socket.to_owned();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut commands = Vec::new();
            while let Ok(Some(command)) = lines.next_line().await {
                // lbd may close as soon as it read what it needs.
                let _ = write.write_all(answer(&command).as_bytes()).await;
                commands.push(command);
            }
            drop(listener);
            let _ = std::fs::remove_file(path);
            commands
        })
    }

    /// BIRD's answer to `show protocols "<name>"` when it runs `name`.
    fn protocol_listed(command: &str) -> Option<String> {
        let name = command
            .strip_prefix("show protocols \"")?
            .strip_suffix('"')?;
        Some(format!(
            "2002-Name       Proto      Table      State  Since         Info\n\
             1002-{name}  Static     master4    up     07:35:47.183  \n0000 \n"
        ))
    }

    /// A BIRD on `socket` whose config includes the routes file: it
    /// answers lbd's first command with `reply` and lists the protocols
    /// it is asked for, then goes away (see [`fake_bird`]).
    fn bird_answering(
        socket: &std::path::Path,
        reply: &'static str,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        fake_bird(socket, move |command| {
            protocol_listed(command).unwrap_or_else(|| reply.to_owned())
        })
    }

    /// What lbd asks after `first`: whether BIRD runs both protocols of
    /// the routes file, then its BGP sessions (none here).
    fn then_protocols(first: &str) -> Vec<String> {
        vec![
            first.to_owned(),
            "show protocols \"lbd_vips4\"".to_owned(),
            "show protocols \"lbd_vips6\"".to_owned(),
            "show protocols".to_owned(),
        ]
    }

    /// A stop after the hook was lost awaits `withdraw_all` (see
    /// `daemon::stopping::WithdrawFirst::Withdraw`): it empties the routes file and
    /// reconfigures BIRD even while the exchange the loop started is still
    /// in flight (a slow BIRD), when the loop's own `apply` of the
    /// withdrawal returned without writing anything.
    #[tokio::test]
    async fn a_withdrawal_on_stop_is_sent_while_an_exchange_is_in_flight() {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let scratch = Scratch::new("inflight");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let _outcomes = announcer.take_outcomes().unwrap();
        let listener = tokio::net::UnixListener::bind(&config.bird_socket).unwrap();
        // The first connection is answered never (BIRD is slow); the
        // second's commands are answered and returned.
        let (asked, slow_asked) = tokio::sync::oneshot::channel();
        let bird = tokio::spawn(async move {
            let (slow, _) = listener.accept().await.unwrap();
            let (slow_read, mut slow_write) = slow.into_split();
            slow_write
                .write_all(b"0001 BIRD 2.0.12 ready.\n")
                .await
                .unwrap();
            let mut slow_lines = tokio::io::BufReader::new(slow_read).lines();
            let first = slow_lines.next_line().await.unwrap();
            let _ = asked.send(first);
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let mut commands = Vec::new();
            while let Ok(Some(command)) = lines.next_line().await {
                let _ = write.write_all(b"0003 Reconfigured\n").await;
                commands.push(command);
            }
            drop((slow_lines, slow_write));
            commands
        });
        announcer.apply(plan(true), t0);
        assert_eq!(announcer.in_flight, Some(Exchange::Configure));
        assert_eq!(slow_asked.await.unwrap().as_deref(), Some("configure"));
        // The hook is lost: the loop's withdrawal waits for the exchange.
        announcer.apply(plan(false), t0);
        assert!(routes(&config).contains(&format!("route {A}/32")));
        tokio::time::timeout(Duration::from_secs(5), announcer.withdraw_all())
            .await
            .expect("in time")
            .expect("withdrawn");
        assert!(
            !routes(&config).contains("route "),
            "the file still announces: {}",
            routes(&config)
        );
        assert_eq!(bird.await.unwrap(), ["configure"]);
    }

    /// A BIRD whose config does not include the routes file takes every
    /// reconfigure (`0003 Reconfigured`) and announces nothing of lbd's:
    /// asked after the reconfigure, it runs no protocol of the file, so
    /// the node is not in sync, and the error says bird.conf must
    /// include the file.
    #[tokio::test]
    async fn a_bird_that_does_not_include_the_routes_file_is_not_in_sync() {
        let scratch = Scratch::new("noinclude");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = fake_bird(&config.bird_socket, |command| {
            if command.starts_with("show protocols") {
                "8003 No protocols match\n".to_owned()
            } else {
                "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n"
                    .to_owned()
            }
        });
        announcer.apply(plan(true), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(bird.await.unwrap()[0], "configure");
        let status = announcer.status();
        assert!(
            !status.in_sync,
            "BIRD announces nothing of lbd's: {status:?}"
        );
        assert_eq!(status.applies, 0, "{status:?}");
        assert_eq!(status.failures, 1, "{status:?}");
        let error = status.last_error.unwrap_or_default();
        let file = config.routes_file.display().to_string();
        assert!(
            error.contains(&format!("include \"{file}\";"))
                && error.contains("lbd_vips4")
                && error.contains("bird.conf"),
            "{error}"
        );
    }

    /// BIRD included the file when it took the set, then its config lost
    /// the `include` and it was reconfigured by hand: the status check
    /// finds lbd's protocols gone, and the node is no longer in sync.
    #[tokio::test]
    async fn a_status_check_finds_the_routes_file_no_longer_included() {
        let scratch = Scratch::new("uninclude");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
        announcer.apply(plan(true), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(bird.await.unwrap(), then_protocols("configure"));
        assert!(announcer.status().in_sync);

        let bird = fake_bird(&config.bird_socket, |command| {
            if command.starts_with("show protocols") {
                "8003 No protocols match\n".to_owned()
            } else {
                "1000-BIRD 2.0.12\n0013 Daemon is up and running\n".to_owned()
            }
        });
        let t1 = t0 + PROBE_INTERVAL;
        announcer.apply(plan(true), t1);
        assert_eq!(announcer.in_flight, Some(Exchange::Probe));
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t1);
        assert_eq!(bird.await.unwrap()[0], "show status");
        let status = announcer.status();
        assert!(!status.in_sync, "{status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains(&config.routes_file.display().to_string())),
            "{status:?}"
        );
    }

    /// BIRD accepted the set, then crashed: nothing changes in lbd, so no
    /// reconfigure would find out. The status check does, every
    /// PROBE_INTERVAL: the node is no longer in sync (and the alert on
    /// `lbd_bgp_in_sync` can fire), and once BIRD answers again the set
    /// is sent again and the node is in sync again.
    #[tokio::test]
    async fn a_bird_that_went_away_after_accepting_the_set_is_found_out() {
        let scratch = Scratch::new("probe");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
        announcer.apply(plan(true), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(bird.await.unwrap(), then_protocols("configure"));
        assert!(announcer.status().in_sync);

        // BIRD is up: the status check asks it, and the node stays in
        // sync, also while the check runs (it sends BIRD no other set).
        let bird = bird_answering(
            &config.bird_socket,
            "1000-BIRD 2.0.12\n0013 Daemon is up and running\n",
        );
        announcer.apply(plan(true), t0 + PROBE_INTERVAL - Duration::from_millis(1));
        assert!(announcer.in_flight.is_none(), "not before the interval");
        let t1 = t0 + PROBE_INTERVAL;
        announcer.apply(plan(true), t1);
        assert_eq!(announcer.in_flight, Some(Exchange::Probe));
        assert!(announcer.status().in_sync, "a check sends no other set");
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t1);
        assert_eq!(bird.await.unwrap(), then_protocols("show status"));
        assert!(announcer.status().in_sync);
        assert_eq!(announcer.status().applies, 1, "nothing reconfigured");

        // BIRD is gone now (its socket removed): the next check fails.
        let t2 = t1 + PROBE_INTERVAL;
        announcer.apply(plan(true), t2 - Duration::from_millis(1));
        assert!(announcer.in_flight.is_none());
        announcer.apply(plan(true), t2);
        let outcome = outcomes.recv().await.unwrap();
        assert_eq!(outcome.exchange, Exchange::Probe);
        announcer.on_outcome(outcome, t2);
        let status = announcer.status();
        assert!(!status.in_sync, "BIRD crashed: {status:?}");
        assert_eq!(status.failures, 1);
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("BIRD is not running")),
            "{status:?}"
        );

        // BIRD is back: after the backoff the set is written and sent
        // again, and the node is in sync once BIRD takes it.
        let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
        announcer.apply(plan(true), t2 + RETRY_MIN);
        assert_eq!(announcer.in_flight, Some(Exchange::Configure));
        assert!(routes(&config).contains(&format!("route {A}/32")));
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t2 + RETRY_MIN);
        assert_eq!(bird.await.unwrap(), then_protocols("configure"));
        let status = announcer.status();
        assert!(status.in_sync, "{status:?}");
        assert_eq!(status.applies, 2);
    }

    /// Accepts on `socket` and never greets, until aborted.
    fn hung_bird(socket: &std::path::Path) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        })
    }

    /// A drain right after an undrain: BIRD accepted the withdrawal
    /// before, the announcement is on its way, and the plan withdraws
    /// again. The set wanted is the one applied, yet BIRD is being told
    /// to announce: not in sync until that exchange ends and the
    /// withdrawal is sent again.
    #[tokio::test]
    async fn nothing_is_in_sync_while_bird_is_being_sent_another_set() {
        let scratch = Scratch::new("inflight");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
        announcer.apply(plan(false), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        bird.await.unwrap();
        assert!(announcer.status().in_sync, "the withdrawal was taken");
        let hung = hung_bird(&config.bird_socket);
        announcer.apply(plan(true), t0);
        assert_eq!(
            announcer.in_flight,
            Some(Exchange::Configure),
            "the announcement is on its way"
        );
        announcer.apply(plan(false), t0);
        assert!(announcer.status().announced.is_empty());
        assert!(
            !announcer.status().in_sync,
            "BIRD is being told to announce {A}"
        );
        hung.abort();
    }

    #[tokio::test]
    async fn a_bird_that_never_answers_holds_no_caller_and_one_exchange_runs_at_a_time() {
        let scratch = Scratch::new("hung");
        let config = scratch.config();
        // Accepts and never greets.
        let listener = tokio::net::UnixListener::bind(&config.bird_socket).unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let _outcomes = announcer.take_outcomes().unwrap();
        let started = Instant::now();
        announcer.apply(plan(true), t0);
        announcer.apply(plan(false), t0);
        announcer.apply(plan(true), t0);
        // 2 s: slack for a loaded machine, still far below the 5 s
        // EXCHANGE_TIMEOUT an apply that waited for this BIRD would take.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "apply waited for BIRD: {:?}",
            started.elapsed()
        );
        // The first exchange connects (polled: a loaded machine may be
        // slow to run it); the later applies start no second one.
        let connected = Instant::now();
        while accepted.load(Ordering::SeqCst) == 0 {
            assert!(
                connected.elapsed() < Duration::from_secs(4),
                "no exchange reached BIRD"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one exchange at a time");
        let status = announcer.status();
        assert!(!status.in_sync);
        assert_eq!(status.announced, vec![A.parse::<IpAddr>().unwrap()]);
        server.abort();
    }

    #[test]
    fn the_gate_opens_at_once_only_when_the_previous_routes_were_kept() {
        let scratch = Scratch::new("gate");
        let config = scratch.config();
        let now = Instant::now();
        let startup = |adopted| {
            Announcer::new(config.clone(), adopted, true, now)
                .status()
                .startup
        };
        assert_eq!(
            startup(true),
            StartupStatus::Waiting,
            "no routes file: the routes were not kept"
        );
        routes_file::write(
            &config.routes_file,
            &routes_file::render("lbd_vips", &BTreeSet::new()),
        )
        .unwrap();
        assert_eq!(
            startup(true),
            StartupStatus::Waiting,
            "withdrawn by the stop: wait for the peers"
        );
        let kept: BTreeSet<IpAddr> = [A.parse().unwrap()].into();
        routes_file::write(&config.routes_file, &routes_file::render("lbd_vips", &kept)).unwrap();
        assert_eq!(
            startup(true),
            StartupStatus::Kept,
            "a restart that kept its routes"
        );
        assert_eq!(
            Announcer::new(config.clone(), true, true, now).gate(),
            Gate::Only(&kept),
            "only the kept routes' addresses go through at once"
        );
        assert_eq!(
            startup(false),
            StartupStatus::Waiting,
            "a fresh node waits whatever the file says"
        );
    }

    /// The driver feeds the gate where the peers' dumps stand: a fresh
    /// node whose peer's dump is still arriving when the start-up wait
    /// passes stays `waiting` (announcing nothing), and once that dump
    /// stops arriving the status says why the gate opened
    /// (`dump-stalled`); a peer that sent nothing opens it at the wait.
    #[test]
    fn a_dump_arriving_at_the_wait_holds_the_announcement_until_it_stalls() {
        use super::super::announce::DumpProgress;
        let scratch = Scratch::new("dump-gate");
        let config = scratch.config();
        let wait = config.startup_wait;
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let peer = |progress| PeerDumps(vec![("198.18.2.12:7946".to_owned(), progress)]);
        let none = BTreeSet::new();

        let mut announcer = Announcer::new(config.clone(), false, true, t0);
        let last_frame = t0 + wait - ms(200);
        let arriving = peer(DumpProgress::Arriving(last_frame));
        announcer.update_startup(&arriving, &none, t0 + wait);
        assert_eq!(announcer.status().startup, StartupStatus::Waiting);
        assert_eq!(announcer.gate(), Gate::Closed);
        assert!(!announcer.started());
        announcer.update_startup(&arriving, &none, last_frame + DUMP_PROGRESS_WINDOW);
        assert_eq!(
            announcer.status().startup,
            StartupStatus::Open(Opened::DumpStalled)
        );
        assert!(announcer.started());

        let mut announcer = Announcer::new(config, false, true, t0);
        announcer.update_startup(&peer(DumpProgress::Nothing), &none, t0 + wait);
        assert_eq!(
            announcer.status().startup,
            StartupStatus::Open(Opened::WaitElapsed),
            "a peer that sends nothing does not hold the gate"
        );
    }

    /// A BIRD on `socket` that answers every command of every connection
    /// with `answer(command)` until `stop`ped; `log` has the commands.
    struct ServingBird {
        task: tokio::task::JoinHandle<()>,
        log: Arc<std::sync::Mutex<Vec<String>>>,
        socket: PathBuf,
    }

    impl ServingBird {
        fn start(
            socket: &std::path::Path,
            answer: impl Fn(&str) -> String + Send + Sync + 'static,
        ) -> Self {
            use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::UnixListener::bind(socket).unwrap();
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let commands = log.clone();
            let answer = Arc::new(answer);
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (read, mut write) = stream.into_split();
                    write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
                    let mut lines = tokio::io::BufReader::new(read).lines();
                    while let Ok(Some(command)) = lines.next_line().await {
                        let _ = write.write_all(answer(&command).as_bytes()).await;
                        commands.lock().unwrap().push(command);
                    }
                }
            });
            Self {
                task,
                log,
                socket: socket.to_owned(),
            }
        }

        /// The commands so far, taken.
        fn commands(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }

        fn stop(self) {
            self.task.abort();
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    /// BIRD 2.0.12's answers while bird.conf does not parse: it refuses
    /// every configure, and disables or enables a protocol it runs.
    fn refusing_bird(command: &str) -> String {
        if command == "configure" {
            return "0002-Reading configuration from /etc/bird/bird.conf\n8002 /etc/bird/bird.conf:3:1 syntax error, unexpected CF_SYM_UNDEFINED\n".to_owned();
        }
        toggled(command).unwrap_or_else(|| "9001 syntax error\n".to_owned())
    }

    /// BIRD 2.0.12's answer to `disable "<name>"` or `enable "<name>"`.
    fn toggled(command: &str) -> Option<String> {
        let (verb, name) = command.split_once(' ')?;
        let name = name.strip_prefix('"')?.strip_suffix('"')?;
        match verb {
            "disable" => Some(format!("0009-{name}: disabled\n0000 \n")),
            "enable" => Some(format!("0011-{name}: enabled\n0000 \n")),
            _ => None,
        }
    }

    /// BIRD 2.0.12's answers once bird.conf parses again.
    fn taking_bird(command: &str) -> String {
        protocol_listed(command)
            .or_else(|| toggled(command))
            .unwrap_or_else(|| "0003 Reconfigured\n".to_owned())
    }

    /// A BIRD whose bird.conf broke refuses every configure, so a
    /// withdrawal cannot be read: lbd disables its protocol of the family
    /// withdrawn (no parse needed), which withdraws, and the status says
    /// BIRD refuses its config. With nothing wanted (a drain), BIRD
    /// announces what lbd wants. A refused announcement disables nothing.
    /// Once bird.conf parses again the next configure is taken, and the
    /// protocol is enabled again.
    #[tokio::test]
    async fn a_withdrawal_bird_cannot_read_disables_the_familys_protocol() {
        let scratch = Scratch::new("refused");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = ServingBird::start(&config.bird_socket, taking_bird);
        announcer.apply(plan(true), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(bird.commands(), then_protocols("configure"));
        assert!(announcer.status().in_sync);
        bird.stop();

        // bird.conf broke; the VIP is withdrawn (a drain, say).
        let bird = ServingBird::start(&config.bird_socket, refusing_bird);
        announcer.apply(plan(false), t0);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t0);
        assert_eq!(
            bird.commands(),
            ["configure", "disable \"lbd_vips4\""],
            "only IPv4's protocol lost an address"
        );
        let status = announcer.status();
        assert!(
            status
                .bird_config_error
                .as_deref()
                .is_some_and(|e| e.contains("syntax error")),
            "{status:?}"
        );
        assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("withdrawn by disabling lbd_vips4")),
            "{status:?}"
        );
        assert!(
            status.in_sync,
            "BIRD announces nothing of lbd's: {status:?}"
        );
        assert_eq!(status.failures, 1);

        // Announcing again cannot be read either; nothing is disabled.
        let t1 = t0 + Duration::from_millis(1);
        announcer.apply(plan(true), t1);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t1);
        assert_eq!(bird.commands(), ["configure"]);
        let status = announcer.status();
        assert!(!status.in_sync, "the VIP is not announced: {status:?}");
        assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
        bird.stop();

        // bird.conf mended: lbd's retry is taken, and enables the protocol.
        let bird = ServingBird::start(&config.bird_socket, taking_bird);
        let t2 = t1 + RETRY_MAX;
        announcer.apply(plan(true), t2);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, t2);
        let mut expected = then_protocols("configure");
        expected.push("enable \"lbd_vips4\"".to_owned());
        assert_eq!(bird.commands(), expected);
        let status = announcer.status();
        assert!(status.in_sync, "{status:?}");
        assert_eq!(status.bird_config_error, None, "{status:?}");
        assert!(status.disabled.is_empty(), "{status:?}");
        bird.stop();
    }

    /// A stop's withdrawal (also the unit's stop path and a cleanup, from
    /// the record) that BIRD cannot read disables both of lbd's protocols
    /// instead: the routes are withdrawn, and the stop goes on. If BIRD
    /// refuses that too, the withdrawal fails.
    #[tokio::test]
    async fn a_stop_bird_cannot_read_withdraws_by_disabling() {
        let scratch = Scratch::new("stoprefused");
        let config = scratch.config();
        let bird = ServingBird::start(&config.bird_socket, refusing_bird);
        withdraw(&config).await.unwrap();
        assert_eq!(
            bird.commands(),
            [
                "configure",
                "disable \"lbd_vips4\"",
                "disable \"lbd_vips6\""
            ]
        );
        assert!(!routes(&config).contains("route "));
        bird.stop();

        let bird = ServingBird::start(&config.bird_socket, |command| {
            if command == "configure" {
                refusing_bird(command)
            } else {
                "8003 No protocols match\n".to_owned()
            }
        });
        let error = format!("{:#}", withdraw(&config).await.unwrap_err());
        assert!(
            error.contains("syntax error") && error.contains("8003"),
            "{error}"
        );
        bird.stop();
    }

    /// A BIRD that takes every configure and runs lbd's protocols, with
    /// one BGP session, `router1_v4`: Established and exporting `A` when
    /// `up`, else Active (its neighbour does not answer), as Debian bird2
    /// 2.0.12 answers.
    fn bird_with_session(up: bool) -> impl Fn(&str) -> String + Send + Sync + 'static {
        move |command: &str| {
            if let Some(listed) = protocol_listed(command) {
                return listed;
            }
            match command {
                "show protocols" if up => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n lbd_vips6  Static     master6    up     16:48:55.115  \n router1_v4 BGP        ---        up     16:48:56.088  Established   \n0000 \n".to_owned(),
                "show protocols" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n lbd_vips6  Static     master6    up     16:48:55.115  \n router1_v4 BGP        ---        start  16:50:24.948  Active        Socket: Connection refused\n0000 \n".to_owned(),
                "show route exported 'router1_v4' protocol 'lbd_vips4'" if up => format!("1007-Table master4:\n {A}/32      blackhole [lbd_vips4 16:48:55.115] * (200)\n0000 \n"),
                "show route exported 'router1_v4' protocol 'lbd_vips6'" if up => "0000 \n".to_owned(),
                "show route exported 'router1_v4' protocol 'lbd_vips4'" | "show route exported 'router1_v4' protocol 'lbd_vips6'" => "9001 No valid tables\n".to_owned(),
                "show status" => "1000-BIRD 2.0.12\n0013 Daemon is up and running\n".to_owned(),
                _ => "0003 Reconfigured\n".to_owned(),
            }
        }
    }

    /// BIRD takes lbd's set and runs its protocols, but its only BGP
    /// session is Active (a mistyped neighbour or AS): in sync, yet the
    /// address is exported by no Established session, and the status
    /// says so; once the session is up and exports it, the next status
    /// check counts it.
    #[tokio::test]
    async fn an_address_no_established_session_exports_is_told_apart_from_in_sync() {
        let scratch = Scratch::new("exports");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        assert_eq!(
            announcer.status().sessions,
            None,
            "unknown before BIRD is asked"
        );
        let bird = ServingBird::start(&config.bird_socket, bird_with_session(false));
        exchange(&mut announcer, &mut outcomes, plan(true), t0).await;
        let status = announcer.status();
        assert!(status.in_sync, "{status:?}");
        assert_eq!(
            status.exporting,
            [AddressExports {
                address: A.parse().unwrap(),
                sessions: 0
            }],
            "{status:?}"
        );
        let sessions = status.sessions.unwrap();
        assert_eq!(sessions.len(), 1);
        assert!(!sessions[0].established);
        assert!(sessions[0].info.starts_with("Active"), "{sessions:?}");
        bird.stop();

        // The session comes up: the next status check sees A exported.
        let bird = ServingBird::start(&config.bird_socket, bird_with_session(true));
        let t1 = t0 + PROBE_INTERVAL;
        exchange(&mut announcer, &mut outcomes, plan(true), t1).await;
        assert_eq!(bird.commands()[0], "show status");
        let status = announcer.status();
        assert_eq!(status.exporting[0].sessions, 1, "{status:?}");
        assert_eq!(
            status.sessions.unwrap()[0].exports,
            [A.parse::<IpAddr>().unwrap()]
        );
        bird.stop();

        // BIRD gone: what its sessions export is unknown, not 0 or 1.
        let t2 = t1 + PROBE_INTERVAL;
        exchange(&mut announcer, &mut outcomes, plan(true), t2).await;
        let status = announcer.status();
        assert!(!status.in_sync);
        assert_eq!(status.sessions, None, "{status:?}");
        assert!(status.exporting.is_empty(), "{status:?}");
    }

    /// Another IPv4 VIP address, and an IPv6 one.
    const B: &str = "198.18.0.101";
    const A6: &str = "2001:2::100";

    /// A plan of `addresses`, each announced or not.
    fn plan_of(addresses: &[(&str, bool)]) -> Plan {
        addresses
            .iter()
            .map(|(address, announced)| {
                let reason = (!announced).then_some(Withheld::NoHealthyBackend);
                (address.parse().unwrap(), reason)
            })
            .collect()
    }

    /// Has `announcer` send `plan` to `bird`, and takes the outcome.
    async fn exchange(
        announcer: &mut Announcer,
        outcomes: &mut mpsc::Receiver<Outcome>,
        plan: Plan,
        now: Instant,
    ) {
        announcer.apply(plan, now);
        let outcome = outcomes.recv().await.unwrap();
        announcer.on_outcome(outcome, now);
    }

    /// With bird.conf broken (on every node alike, from config
    /// management), one VIP of a family losing its backends must not
    /// disable the family's protocol: that would withdraw every other
    /// VIP of it, from every node. The withdrawal fails instead (BIRD
    /// still announces that VIP, and says so); only a family left with
    /// nothing to announce is disabled.
    #[tokio::test]
    async fn a_refused_withdrawal_of_part_of_a_family_disables_nothing() {
        let scratch = Scratch::new("partial");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = ServingBird::start(&config.bird_socket, taking_bird);
        let both = plan_of(&[(A, true), (B, true)]);
        exchange(&mut announcer, &mut outcomes, both, t0).await;
        assert!(announcer.status().in_sync);
        bird.stop();

        let bird = ServingBird::start(&config.bird_socket, refusing_bird);
        let one = plan_of(&[(A, true), (B, false)]);
        exchange(&mut announcer, &mut outcomes, one, t0).await;
        assert_eq!(bird.commands(), ["configure"], "{A} stays announced");
        let status = announcer.status();
        assert!(status.disabled.is_empty(), "{status:?}");
        assert!(status.bird_config_error.is_some(), "{status:?}");
        assert!(!status.in_sync, "BIRD still announces {B}: {status:?}");
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("syntax error") && e.contains(B)),
            "{status:?}"
        );

        // Nothing of IPv4 left to announce: now its protocol is disabled.
        let t1 = t0 + RETRY_MAX;
        let none = plan_of(&[(A, false), (B, false)]);
        exchange(&mut announcer, &mut outcomes, none, t1).await;
        assert_eq!(bird.commands(), ["configure", "disable \"lbd_vips4\""]);
        let status = announcer.status();
        assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
        assert!(status.in_sync, "{status:?}");
        bird.stop();
    }

    /// A drain with bird.conf broken where BIRD disables one protocol and
    /// refuses the other: the one it disabled is recorded (status, and
    /// enabled again later), and the other's failure is reported.
    #[tokio::test]
    async fn a_protocol_disabled_is_recorded_when_disabling_another_fails() {
        let scratch = Scratch::new("halfdisabled");
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = ServingBird::start(&config.bird_socket, taking_bird);
        let both = plan_of(&[(A, true), (A6, true)]);
        exchange(&mut announcer, &mut outcomes, both, t0).await;
        assert!(announcer.status().in_sync);
        bird.stop();

        let bird = ServingBird::start(&config.bird_socket, |command| {
            if command == "disable \"lbd_vips6\"" {
                "8003 No protocols match\n".to_owned()
            } else {
                refusing_bird(command)
            }
        });
        let none = plan_of(&[(A, false), (A6, false)]);
        exchange(&mut announcer, &mut outcomes, none, t0).await;
        assert_eq!(
            bird.commands(),
            [
                "configure",
                "disable \"lbd_vips4\"",
                "disable \"lbd_vips6\""
            ]
        );
        let status = announcer.status();
        assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
        let error = status.last_error.unwrap_or_default();
        assert!(
            error.contains("withdrawn by disabling lbd_vips4")
                && error.contains("disable \"lbd_vips6\"")
                && error.contains("8003"),
            "{error}"
        );
        assert!(!status.in_sync, "BIRD may still announce {A6}");
        bird.stop();
    }

    /// Once BIRD takes its config again, the status no longer says it
    /// refuses it, nor that a protocol is disabled (the configure
    /// restarted it), even when what follows the configure fails: the
    /// enable, or the check that BIRD includes the routes file.
    #[tokio::test]
    async fn a_configure_bird_takes_ends_the_refusal_whatever_follows() {
        for (tag, answer) in [
            (
                "enablefails",
                (|command: &str| {
                    if command.starts_with("enable") {
                        "9001 syntax error\n".to_owned()
                    } else {
                        taking_bird(command)
                    }
                }) as fn(&str) -> String,
            ),
            ("notincluded", |command: &str| {
                if command.starts_with("show protocols") {
                    "8003 No protocols match\n".to_owned()
                } else {
                    taking_bird(command)
                }
            }),
        ] {
            let scratch = Scratch::new(tag);
            let config = scratch.config();
            let t0 = Instant::now();
            let mut announcer = Announcer::new(config.clone(), false, false, t0);
            let mut outcomes = announcer.take_outcomes().unwrap();
            let bird = ServingBird::start(&config.bird_socket, taking_bird);
            exchange(&mut announcer, &mut outcomes, plan(true), t0).await;
            bird.stop();
            let bird = ServingBird::start(&config.bird_socket, refusing_bird);
            exchange(&mut announcer, &mut outcomes, plan(false), t0).await;
            assert_eq!(announcer.status().disabled, ["lbd_vips4"]);
            bird.stop();

            let bird = ServingBird::start(&config.bird_socket, answer);
            let t1 = t0 + RETRY_MAX;
            exchange(&mut announcer, &mut outcomes, plan(true), t1).await;
            assert_eq!(bird.commands()[0], "configure", "{tag}");
            let status = announcer.status();
            assert_eq!(status.bird_config_error, None, "{tag}: {status:?}");
            assert!(status.disabled.is_empty(), "{tag}: {status:?}");
            assert!(!status.in_sync, "{tag}: {status:?}");
            assert!(status.last_error.is_some(), "{tag}: {status:?}");
            bird.stop();
        }
    }
}
