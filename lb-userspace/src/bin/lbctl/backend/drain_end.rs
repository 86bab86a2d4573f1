//! What one look at a draining backend says of its drain: still going,
//! drained, emptied by the backend going down, ended by its timeout, or
//! ended by another change.

use lb_common::Mode;
use lb_userspace::api::schema::{BackendState, BackendStatus, HealthStatus};

/// How a drain that `--wait` watched ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DrainEnd {
    /// No live flow left while still draining.
    Drained,
    /// No live flow left while still draining, but the backend was down
    /// (failing its checks) during the drain: the data plane sent it
    /// nothing, and its flows were moved to other backends as their next
    /// packets came, rather than finished on it.
    WentDown,
    /// The drain's timeout ended it: the remaining flows were cut, or
    /// (`flows_cut` false: a NAT VIP) stay on the backend until they end.
    TimedOut {
        /// Whether the timeout cut the remaining flows.
        flows_cut: bool,
    },
    /// Another change ended the drain (undrained, maintenance, removed).
    EndedElsewhere,
}

/// Whether the flows of a backend of a VIP in `mode` are being moved off
/// it: it is down and the data plane sends it nothing. Not for a VIP that
/// fails open (its down backends stay alive and keep their flows), nor
/// for a NAT VIP (a translation cannot move: they stay until they end).
fn flows_moved_off(backend: &BackendStatus, mode: Mode) -> bool {
    backend.health == HealthStatus::Down && !backend.alive && mode != Mode::Nat
}

/// What one look at the backend of a VIP in `mode` says about its drain
/// (None: still going).
pub(super) fn drain_end(backend: Option<&BackendStatus>, mode: Mode) -> Option<DrainEnd> {
    let Some(backend) = backend else {
        return Some(DrainEnd::EndedElsewhere);
    };
    match backend.state {
        // A NAT backend's count is the NAT table's last sweep: one that
        // began before the drain is no answer.
        BackendState::Draining if backend.flows.live == 0 && !backend.flows_counting => {
            if flows_moved_off(backend, mode) {
                Some(DrainEnd::WentDown)
            } else {
                Some(DrainEnd::Drained)
            }
        }
        BackendState::Draining => None,
        _ if backend.drain_timed_out => Some(DrainEnd::TimedOut {
            flows_cut: mode != Mode::Nat,
        }),
        _ => Some(DrainEnd::EndedElsewhere),
    }
}

/// What `drain --wait` has seen of a drain across its looks: a backend
/// that went down at one look and came back up before its count reached
/// 0 had flows moved off it all the same (a moved flow stays where it
/// went), so that drain did not finish cleanly either.
#[derive(Debug, Default)]
pub(super) struct DrainWatch {
    /// Some look saw the backend draining with its flows moved off it.
    went_down: bool,
}

impl DrainWatch {
    /// One look at the backend of a VIP in `mode`: how the drain ended
    /// ([`drain_end`], with `Drained` made `WentDown` if an earlier look
    /// saw it down), None while it goes on.
    pub(super) fn look(&mut self, backend: Option<&BackendStatus>, mode: Mode) -> Option<DrainEnd> {
        self.went_down |=
            backend.is_some_and(|b| b.state == BackendState::Draining && flows_moved_off(b, mode));
        match drain_end(backend, mode) {
            Some(DrainEnd::Drained) if self.went_down => Some(DrainEnd::WentDown),
            end => end,
        }
    }
}
