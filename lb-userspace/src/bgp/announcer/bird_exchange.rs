//! One exchange with BIRD, run in a task of its own: what it asks
//! (configure or status check), how it ends ([`Outcome`]), and the BIRD
//! side of it. Apart from the announcer's state, which it never touches.

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::Context as _;

use crate::bgp::{
    bird,
    routes_file::{self, Family},
    sessions::BgpSession,
};

/// The kind of an exchange with BIRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exchange {
    /// The routes file was written: BIRD is asked to read it.
    Configure,
    /// Nothing changed: BIRD is asked whether it still runs and answers.
    Probe,
}

/// How one reconfigure ended, handed back to the engine's loop (see
/// [`Announcer::on_outcome`](super::Announcer::on_outcome)).
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The set the routes file held when BIRD was asked.
    pub(super) set: BTreeSet<IpAddr>,
    /// What BIRD was asked.
    pub(super) exchange: Exchange,
    /// BIRD's answer: on success, what its BGP sessions export (or why
    /// that could not be read).
    pub(super) result: Result<SessionsSeen, Failure>,
}

/// BIRD's BGP sessions as an exchange read them, or why it could not.
pub(super) type SessionsSeen = Result<Vec<BgpSession>, String>;

/// Why an exchange with BIRD failed.
#[derive(Debug)]
pub(super) enum Failure {
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
pub(super) struct BirdExchange {
    pub(super) socket: std::path::PathBuf,
    pub(super) routes: std::path::PathBuf,
    pub(super) stem: String,
}

impl BirdExchange {
    /// Has BIRD read its config, then checks it runs the file's
    /// protocols. When BIRD refuses its config, the protocols of the
    /// `emptied` families (left with nothing to announce, one address of
    /// theirs BIRD may announce withdrawn) are disabled instead; once it
    /// takes it, those lbd `disabled` before are enabled (BIRD 2's
    /// configure restarts them as their config says anyway: this makes
    /// sure).
    pub(super) async fn configure(
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
    pub(super) async fn probe(&self) -> Result<SessionsSeen, Failure> {
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
