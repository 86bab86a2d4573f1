//! The backend state file's format: the JSON it holds, the states of the
//! backends that are not enabled it records, and their drain times as
//! wall clock. On a node that shares backend states with sync peers it
//! also records when each state was made (`changed_unix_ms`), enabled
//! ones included, so that a restarted node does not take back a peer's
//! older state over a newer one of its own (see `shared_states`).

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    daemon::engine::{shared_states::Stamps, BackendKey},
    model::{AdminState, BackendState, Model},
    vip_id::VipId,
};

/// The file format's version: a file of another is refused.
const VERSION: u32 = 1;

/// Each backend that is not enabled, or whose state was stamped: its
/// admin state, whether its drain timed out and when its state was made
/// (what the file keeps).
pub(in crate::daemon::engine) type Snapshot = BTreeMap<BackendKey, (AdminState, bool, Option<u64>)>;

/// The backend state file's content.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    backends: Vec<Recorded>,
}

/// One backend's recorded state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Recorded {
    /// `ADDRESS:PORT/PROTOCOL`.
    pub(super) vip: String,
    pub(super) backend: IpAddr,
    /// `draining` or `maintenance`.
    pub(super) state: BackendState,
    /// When the drain started (draining only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) drain_started_unix_ms: Option<u64>,
    /// When its drain's timeout ends it (draining only; none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) drain_deadline_unix_ms: Option<u64>,
    /// In maintenance because its drain timed out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) drain_timed_out: bool,
    /// When an operator made this state (wall clock, where it was made):
    /// only on a node that shares backend states with sync peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) changed_unix_ms: Option<u64>,
}

/// The states of `model`'s backends that are not enabled.
#[cfg(test)]
pub(super) fn snapshot(model: &Model) -> Snapshot {
    snapshot_with(model, &Stamps::new())
}

/// The states of `model`'s backends that are not enabled or that
/// `stamps` has a time for, with that time.
pub(in crate::daemon::engine) fn snapshot_with(model: &Model, stamps: &Stamps) -> Snapshot {
    model
        .vips
        .iter()
        .flat_map(|(id, vip)| {
            vip.backends.iter().filter_map(|(address, b)| {
                let key = (*id, *address);
                let stamp = stamps.get(&key).map(|s| s.unix_ms);
                (b.admin != AdminState::Enabled || stamp.is_some())
                    .then_some((key, (b.admin, b.drain_timed_out, stamp)))
            })
        })
        .collect()
}

/// `instant` as wall-clock milliseconds, `now` being `wall_ms`.
pub(in crate::daemon::engine) fn unix_ms_at(instant: Instant, now: Instant, wall_ms: u64) -> u64 {
    if instant >= now {
        wall_ms.saturating_add(millis(instant - now))
    } else {
        wall_ms.saturating_sub(millis(now - instant))
    }
}

/// When a drain that started at wall-clock `at` started, as an instant,
/// `now` being `wall_ms` (a start in the future, by a clock set back or a
/// peer's clock ahead, is now).
pub(in crate::daemon::engine) fn drain_start_at(at: u64, now: Instant, wall_ms: u64) -> Instant {
    let ago = Duration::from_millis(wall_ms.saturating_sub(at));
    now.checked_sub(ago).unwrap_or(now)
}

/// A drain's deadline at wall-clock `at` as an instant, `now` being
/// `wall_ms`: no later than a week from now (the longest a drain may
/// ask for), so a clock set back cannot push it out of reach; one that
/// passed is now (the drain ends at the next tick, as its timeout does).
pub(in crate::daemon::engine) fn drain_deadline_at(at: u64, now: Instant, wall_ms: u64) -> Instant {
    let left = Duration::from_millis(at.saturating_sub(wall_ms));
    now + left.min(crate::model::MAX_DRAIN_TIMEOUT)
}

/// `snapshot` as the file's text, its instants taken at `now` = `wall`.
pub(super) fn encode(snapshot: &Snapshot, now: Instant, wall: SystemTime) -> String {
    let wall_ms = unix_ms(wall);
    let at = |instant: Instant| unix_ms_at(instant, now, wall_ms);
    let backends = snapshot
        .iter()
        .map(|((id, address), (admin, timed_out, changed))| {
            let (started, deadline) = match admin {
                AdminState::Draining { since, deadline } => (Some(at(*since)), deadline.map(at)),
                AdminState::Enabled | AdminState::Maintenance => (None, None),
            };
            Recorded {
                vip: id.to_string(),
                backend: *address,
                state: admin.state(),
                drain_started_unix_ms: started,
                drain_deadline_unix_ms: deadline,
                drain_timed_out: *timed_out,
                changed_unix_ms: *changed,
            }
        })
        .collect();
    let file = StateFile {
        version: VERSION,
        backends,
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// The entries of a backend state file's `text`.
pub(super) fn decode(text: &str) -> anyhow::Result<Vec<Recorded>> {
    let file: StateFile = serde_json::from_str(text).context("not a backend state file")?;
    anyhow::ensure!(
        file.version == VERSION,
        "version {} (this lbd reads version {VERSION})",
        file.version
    );
    for entry in &file.backends {
        entry
            .vip
            .parse::<VipId>()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("the entry of backend {}", entry.backend))?;
    }
    Ok(file.backends)
}

pub(in crate::daemon::engine) fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
