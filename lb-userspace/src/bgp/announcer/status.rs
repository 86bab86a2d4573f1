//! The announcer as the API shows it (`GET /v1/node`'s BGP part): the
//! public status types and how the announcer's state maps onto them.

use std::{collections::BTreeSet, net::IpAddr};

use serde::{Deserialize, Serialize};

use super::{announced, Announcer, Exchange};
use crate::bgp::{
    announce::{Opened, Startup, Withheld},
    routes_file::Family,
    sessions::{self, BgpSession},
};

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
}
