//! Which interface a failed probe is blamed on (the route's egress, or
//! lbd's own), and how long a failure blamed on another interface than
//! lbd's own is discounted: a grace, not for ever.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

use super::super::{
    machine::CheckSettings,
    probe::{FailureReason, Outcome, ProbeResult},
};

/// The longest wait for the kernel's route of a failed check: the check's
/// own timeout, at most a second (the probe took its own already), so a
/// lookup that never answers cannot stall a check.
pub(super) fn route_lookup_timeout(settings: &CheckSettings) -> Duration {
    settings.timeout.min(Duration::from_secs(1))
}

/// The interface a failed check is discounted for, from `egress`, the
/// kernel's answer now (the interface the check's route leaves by, None:
/// no route), and `own_down`, lbd's own interface while it is down (now,
/// or when the probe began):
/// - the route leaves by an interface that is down: that one;
/// - it leaves by lbd's own interface, up again: lbd's, if it was down
///   when the probe began (the link came back while the check waited);
/// - the kernel has no route: lbd's, while it is down (taken down, its
///   routes went with it), else none: the backend is unreachable;
/// - the kernel could not be asked: none, the failure counts.
///
/// Another interface being up, lbd's own state says nothing of the check.
pub(super) fn blame(
    egress: &anyhow::Result<Option<crate::netlink::Egress>>,
    own_down: Option<String>,
) -> Option<String> {
    match egress {
        Ok(Some(egress)) if !egress.up => Some(egress.name.clone()),
        Ok(Some(egress)) => own_down.filter(|own| *own == egress.name),
        Ok(None) => own_down,
        Err(_) => None,
    }
}

/// `result` as it counts while `interface_down` (its name) is down: a
/// failure becomes [`FailureReason::InterfaceDown`], which moves no
/// streak; a success, or a failure already this node's, stays.
pub(super) fn discounted(result: ProbeResult, interface_down: Option<String>) -> ProbeResult {
    match (result.outcome, interface_down) {
        (Outcome::Failure(failure), Some(interface)) if !failure.is_local() => ProbeResult {
            outcome: Outcome::Failure(FailureReason::InterfaceDown {
                interface,
                failure: Box::new(failure),
            }),
            latency: result.latency,
        },
        (outcome, _) => ProbeResult {
            outcome,
            latency: result.latency,
        },
    }
}

/// One check's record of another interface than lbd's own that a failure
/// was blamed on (see [`blame`]): since when it has been, so its failures
/// are discounted for a grace only. A carrier flap of a link towards
/// backends takes none of them down; a link that stays without carrier
/// (its routes kept, marked linkdown, so the data plane still sends new
/// flows by it) must not keep its backends up for hours while their
/// flows are black-holed. lbd's own interface needs no bound: while it
/// is down the node serves nothing, and the engine warns of it.
#[derive(Debug, Default)]
pub(super) struct SecondaryDown {
    /// The interface, and when a failure was first blamed on it.
    since: Option<(String, Instant)>,
}

impl SecondaryDown {
    /// The interface a failure at `now` is discounted for, given the one
    /// [`blame`] found (`blamed`) and lbd's own (`own`): `blamed`, but
    /// for another interface only until `grace` has passed since it was
    /// first blamed (while it stays so); and whether to warn that its
    /// failures are discounted (the first time only).
    pub(super) fn bounded(
        &mut self,
        blamed: Option<String>,
        own: Option<&str>,
        now: Instant,
        grace: Duration,
    ) -> (Option<String>, bool) {
        let Some(interface) = blamed else {
            self.since = None;
            return (None, false);
        };
        if own == Some(interface.as_str()) {
            self.since = None;
            return (Some(interface), false);
        }
        match &self.since {
            Some((name, since)) if *name == interface => {
                let within = now.saturating_duration_since(*since) < grace;
                (within.then_some(interface), false)
            }
            _ => {
                self.since = Some((interface.clone(), now));
                (Some(interface), true)
            }
        }
    }
}
