//! Taking an exchange's [`Outcome`]: what BIRD took,
//! refused or did not answer changes what the announcer believes BIRD
//! announces, and which BGP sessions export lbd's routes.

use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use tracing::{error, info, warn};

use super::{
    bird_exchange::{Failure, SessionsSeen},
    Announcer, Exchange, Outcome, PROBE_INTERVAL, RETRY_MIN,
};
use crate::bgp::{
    routes_file::Family,
    sessions::{self, BgpSession},
};

impl Announcer {
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
}
