//! What lbd learns of BIRD after a configure or a probe: which of lbd's
//! protocols it runs none of, and which of its BGP sessions export lbd's
//! routes, asked on the same connection.

use std::path::Path;

use anyhow::bail;

use super::{
    commands::reconfigure,
    session::{timed, Session},
};
use crate::bgp::sessions::{self, BgpSession};

/// `show protocols "<name>"` found no protocol of that name.
const CODE_NO_PROTOCOLS_MATCH: u16 = 8003;
/// A parse-time error: `show route exported '<session>'` of a session
/// whose channels went down since `show protocols` listed it up answers
/// this, with [`NO_VALID_TABLES`].
const CODE_PARSE_ERROR: u16 = 9001;
/// BIRD's text for a session with no channel up to show routes of.
const NO_VALID_TABLES: &str = "No valid tables";

/// What lbd learns of BIRD after a configure or a status check.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The names among lbd's protocols that BIRD runs none of (see
    /// [`missing_protocols`]).
    pub(crate) missing: Vec<String>,
    /// BIRD's BGP sessions and which of lbd's addresses each exports (see
    /// [`bgp_sessions`]), or why BIRD's answer could not be read.
    pub(crate) sessions: Result<Vec<BgpSession>, String>,
}

/// As [`configure`](super::configure), then, on the same connection, which of `protocols`
/// BIRD runs none of (see [`missing_protocols`]): a BIRD whose config
/// does not include lbd's routes file takes every reconfigure and
/// announces nothing of it; and which of its BGP sessions export the
/// routes of those it runs (see [`bgp_sessions`]).
pub(crate) async fn configure_checked(
    socket: &Path,
    protocols: &[String],
) -> anyhow::Result<Checked> {
    timed(socket, "configure", async {
        let mut session = Session::open(socket).await?;
        reconfigure(&mut session).await?;
        check(&mut session, protocols).await
    })
    .await
}

/// Which of `protocols` BIRD runs none of, then what its BGP sessions
/// export of those it runs. Only the first failing fails: a BIRD that
/// answers the sessions' questions oddly still took the configure.
async fn check(session: &mut Session, protocols: &[String]) -> anyhow::Result<Checked> {
    let missing = missing_protocols(session, protocols).await?;
    let running: Vec<String> = protocols
        .iter()
        .filter(|name| !missing.contains(name))
        .cloned()
        .collect();
    let sessions = bgp_sessions(session, &running).await.map_err(|error| {
        format!(
            "{:#}",
            error.context("asking BIRD which BGP sessions export lbd's routes")
        )
    });
    Ok(Checked { missing, sessions })
}

/// BIRD's BGP sessions (`show protocols`, at most
/// [`sessions::MAX_SESSIONS`]), and for each Established one the
/// addresses it exports of lbd's `protocols` (`show route exported
/// '<session>' protocol '<name>'`: what passed its export filter and was
/// sent). A session whose channels went down since it was listed exports
/// nothing.
async fn bgp_sessions(
    session: &mut Session,
    protocols: &[String],
) -> anyhow::Result<Vec<BgpSession>> {
    let (reply, lines) = session.ask_listing("show protocols").await?;
    if !reply.is_success() {
        bail!(
            "BIRD answered `show protocols` with an error ({}): {}",
            reply.code,
            reply.text
        );
    }
    let mut listed = sessions::parse_protocols(&lines);
    listed.truncate(sessions::MAX_SESSIONS);
    for bgp in listed.iter_mut().filter(|bgp| bgp.established) {
        let Some(name) = sessions::quoted(&bgp.name) else {
            bail!(
                "BIRD's BGP protocol {:?} has a name lbd cannot quote",
                bgp.name
            );
        };
        let mut exports = std::collections::BTreeSet::new();
        for protocol in protocols {
            let Some(protocol) = sessions::quoted(protocol) else {
                bail!("lbd's protocol {protocol:?} has a name lbd cannot quote");
            };
            let command = format!("show route exported {name} protocol {protocol}");
            let (reply, lines) = session.ask_listing(&command).await?;
            if reply.code == CODE_PARSE_ERROR && reply.text.contains(NO_VALID_TABLES) {
                continue;
            }
            if !reply.is_success() {
                bail!(
                    "BIRD answered `{command}` with an error ({}): {}",
                    reply.code,
                    reply.text
                );
            }
            exports.extend(sessions::parse_routes(&lines));
        }
        bgp.exports = exports.into_iter().collect();
    }
    Ok(listed)
}

/// Asks the BIRD behind `socket` how it is (`show status`, which changes
/// nothing), then which of `protocols` it runs none of (see
/// [`missing_protocols`]): succeeds while BIRD runs and answers, whatever
/// its config file says now. Announcements BIRD accepted are checked on
/// this way (see `Announcer::apply`): a BIRD that crashed or hangs since,
/// or whose config no longer includes lbd's routes file, no longer
/// announces them.
pub(crate) async fn probe(socket: &Path, protocols: &[String]) -> anyhow::Result<Checked> {
    timed(socket, "show status", async {
        let mut session = Session::open(socket).await?;
        let reply = session.ask("show status").await?;
        if !reply.is_success() {
            bail!(
                "BIRD answered `show status` with an error ({}): {}",
                reply.code,
                reply.text
            );
        }
        check(&mut session, protocols).await
    })
    .await
}

/// The names among `protocols` that BIRD has no protocol of: it answers
/// `show protocols "<name>"` with [`CODE_NO_PROTOCOLS_MATCH`]. Any other
/// error is an error.
async fn missing_protocols(
    session: &mut Session,
    protocols: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in protocols {
        let command = format!("show protocols \"{name}\"");
        let reply = session.ask(&command).await?;
        if reply.code == CODE_NO_PROTOCOLS_MATCH {
            missing.push(name.clone());
        } else if !reply.is_success() {
            bail!(
                "BIRD answered `{command}` with an error ({}): {}",
                reply.code,
                reply.text
            );
        }
    }
    Ok(missing)
}
