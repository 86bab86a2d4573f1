//! The announcer's start-up gate: moving it on as the peers' dumps and
//! the first health checks arrive, logging why it opens, and what it
//! lets through.

use std::{collections::BTreeSet, net::IpAddr, time::Instant};

use tracing::{info, warn};

use super::Announcer;
use crate::bgp::announce::{
    Gate, Opened, PeerDumps, Startup, DUMP_CAP_FACTOR, DUMP_PROGRESS_WINDOW,
};

impl Announcer {
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
}
