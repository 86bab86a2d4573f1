//! The commands that change what BIRD does: `configure` (re-read the
//! config) and `disable`/`enable` of lbd's protocols, which needs no
//! parse of the config.

use std::path::Path;

use super::{
    failures::Refused,
    reply::Reply,
    session::{timed, Session},
};

/// What [`toggle`] asks of a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toggle {
    /// `disable "<name>"`: BIRD withdraws every route of the protocol.
    Disable,
    /// `enable "<name>"`: BIRD announces its routes again.
    Enable,
}

impl Toggle {
    fn command(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
        }
    }
}

/// How a [`toggle`] went: what a caller must record is what BIRD did, so
/// one protocol's failure does not hide the others' success.
#[derive(Debug, Default)]
pub(crate) struct Toggled {
    /// The protocols BIRD toggled (or found so already), in order.
    pub(crate) done: Vec<String>,
    /// Why the others were not, if any were not.
    pub(crate) error: Option<anyhow::Error>,
}

impl Toggled {
    /// Ok when every protocol was toggled.
    pub(crate) fn into_result(self) -> anyhow::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// Disables or enables each of `protocols` in the BIRD behind `socket`,
/// whatever its config file says now (no parse: a broken bird.conf does
/// not stop it). BIRD answers `<name>: disabled` (or `already disabled`,
/// and the same for enable), code 0; one it has no protocol of is an
/// error (8003). An error answer for one protocol does not stop the
/// others (each disabled one withdraws); a connection that fails does.
/// A later successful `configure` restarts a disabled protocol as its
/// config says (enabled).
pub(crate) async fn toggle(socket: &Path, protocols: &[String], toggle: Toggle) -> Toggled {
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let exchange = timed(socket, toggle.command(), async {
        let mut session = Session::open(socket).await?;
        for name in protocols {
            let command = format!("{} \"{name}\"", toggle.command());
            let reply = session.ask(&command).await?;
            if reply.is_success() {
                done.push(name.clone());
            } else {
                refused.push(format!(
                    "BIRD answered `{command}` with an error ({}): {}",
                    reply.code, reply.text
                ));
            }
        }
        Ok(())
    })
    .await;
    let error = match (exchange, refused.is_empty()) {
        (Ok(()), true) => None,
        (Ok(()), false) => Some(anyhow::anyhow!(refused.join("; "))),
        (Err(error), true) => Some(error),
        (Err(error), false) => Some(error.context(refused.join("; "))),
    };
    Toggled { done, error }
}

/// Asks the BIRD behind `socket` to re-read its configuration; fails with
/// BIRD's own message when it refuses (a parse error names file and line),
/// and with [`NotRunning`](super::failures::NotRunning) when nothing listens on `socket`.
pub(crate) async fn configure(socket: &Path) -> anyhow::Result<Reply> {
    timed(socket, "configure", async {
        let mut session = Session::open(socket).await?;
        reconfigure(&mut session).await
    })
    .await
}

/// Sends `configure` on `session`; fails unless BIRD applied it.
pub(super) async fn reconfigure(session: &mut Session) -> anyhow::Result<Reply> {
    let reply = session.ask("configure").await?;
    if !reply.is_success() {
        return Err(Refused {
            code: reply.code,
            text: reply.text,
        }
        .into());
    }
    Ok(reply)
}
