//! The thin driver around [`super::announce`]: turns each plan into the
//! routes file and a BIRD reconfigure, only when the announced set
//! changes, and retries with a backoff while BIRD is unreachable or
//! refuses (the file is written either way, so a BIRD that starts later
//! reads the right routes).

use std::{
    collections::BTreeSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    announce::{Opened, Plan, Startup, Withheld},
    bird, routes_file,
};
use crate::config::BgpConfig;

/// First wait before trying BIRD again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// This node's announcements and how BIRD took them.
pub(crate) struct Announcer {
    config: BgpConfig,
    startup: Startup,
    /// The plan last computed (for logging what changed, and status).
    plan: Plan,
    /// The set BIRD last accepted this run (None: none yet).
    applied: Option<BTreeSet<IpAddr>>,
    /// After a failure: not before this, unless the set changes.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Reconfigures BIRD accepted.
    applies: u64,
    /// Writes or reconfigures that failed.
    failures: u64,
    last_error: Option<String>,
}

/// `GET /v1/node`'s BGP part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// Addresses announced now.
    pub announced: Vec<IpAddr>,
    /// Addresses withdrawn, and why.
    pub withheld: Vec<WithheldAddress>,
    /// The start-up gate.
    pub startup: StartupStatus,
    /// Whether BIRD has accepted the current set.
    pub in_sync: bool,
    /// Reconfigures BIRD accepted since start.
    pub applies: u64,
    /// Failed writes or reconfigures since start.
    pub failures: u64,
    /// The last failure, if the last try failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// BIRD's control socket.
    pub bird_socket: String,
    /// The routes file.
    pub routes_file: String,
}

/// The start-up gate, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartupStatus {
    /// Waiting for the peers' flows (or the start-up wait).
    Waiting,
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
    /// with or without sync peers to wait for.
    pub(crate) fn new(config: BgpConfig, adopted: bool, has_peers: bool, now: Instant) -> Self {
        let startup = Startup::new(adopted, has_peers, config.startup_wait, now);
        Self {
            config,
            startup,
            plan: Plan::new(),
            applied: None,
            retry_at: None,
            backoff: RETRY_MIN,
            applies: 0,
            failures: 0,
            last_error: None,
        }
    }

    /// Moves the start-up gate on (see [`Startup`]); logs when it opens.
    pub(crate) fn update_startup(&mut self, peers_dumped: bool, now: Instant) {
        if let Some(opened) = self.startup.update(peers_dumped, now) {
            match opened {
                Opened::WaitElapsed => warn!(
                    wait_ms = self.config.startup_wait.as_millis(),
                    "BGP: the start-up wait passed before every sync peer sent its flows; announcing anyway"
                ),
                _ => info!(reason = ?opened, "BGP: start-up gate open"),
            }
        }
    }

    /// Whether the start-up gate is open.
    pub(crate) fn started(&self) -> bool {
        self.startup.is_open()
    }

    /// The config it runs with.
    pub(crate) fn config(&self) -> &BgpConfig {
        &self.config
    }

    /// Makes BIRD announce what `plan` says, if that differs from what it
    /// announces (or a retry is due).
    pub(crate) async fn apply(&mut self, plan: Plan, now: Instant) {
        self.log_changes(&plan);
        self.plan = plan;
        let wanted: BTreeSet<IpAddr> = announced(&self.plan);
        if self.applied.as_ref() == Some(&wanted) {
            return;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return;
        }
        match self.push(&wanted).await {
            Ok(()) => {
                self.applied = Some(wanted);
                self.applies += 1;
                self.retry_at = None;
                self.backoff = RETRY_MIN;
                self.last_error = None;
            }
            Err(error) => {
                self.failures += 1;
                warn!(error = %format!("{error:#}"), retry_in_ms = self.backoff.as_millis(), "BGP: announcing through BIRD failed");
                self.last_error = Some(format!("{error:#}"));
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
            }
        }
    }

    /// Withdraws every address now (a stop for good).
    pub(crate) async fn withdraw_all(&mut self) -> anyhow::Result<()> {
        withdraw(&self.config).await?;
        self.applied = Some(BTreeSet::new());
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
                Startup::Open(opened) => StartupStatus::Open(opened),
            },
            in_sync: self.applied.as_ref() == Some(&wanted),
            applies: self.applies,
            failures: self.failures,
            last_error: self.last_error.clone(),
            bird_socket: self.config.bird_socket.display().to_string(),
            routes_file: self.config.routes_file.display().to_string(),
        }
    }

    async fn push(&self, wanted: &BTreeSet<IpAddr>) -> anyhow::Result<()> {
        routes_file::write(
            &self.config.routes_file,
            &routes_file::render(&self.config.protocol, wanted),
        )?;
        bird::configure(&self.config.bird_socket).await?;
        info!(announced = ?wanted, "BGP: BIRD reconfigured");
        Ok(())
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

/// Withdraws every address of `config` (an empty routes file, then a
/// reconfigure): a stop for good, also with no lbd running
/// (`lbd --release-vips`).
pub async fn withdraw(config: &BgpConfig) -> anyhow::Result<()> {
    routes_file::write(
        &config.routes_file,
        &routes_file::render(&config.protocol, &BTreeSet::new()),
    )?;
    bird::configure(&config.bird_socket).await?;
    info!(routes_file = %config.routes_file.display(), "BGP: every address withdrawn");
    Ok(())
}
