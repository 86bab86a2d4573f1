//! The backend state file's format: the JSON it holds, the states of the
//! backends that are not enabled it records, and their drain times as
//! wall clock.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    daemon::engine::BackendKey,
    model::{AdminState, BackendState, Model},
    vip_id::VipId,
};

/// The file format's version: a file of another is refused.
const VERSION: u32 = 1;

/// Each backend that is not enabled: its admin state and whether its
/// drain timed out (what the file keeps).
pub(super) type Snapshot = BTreeMap<BackendKey, (AdminState, bool)>;

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
}

/// The states of `model`'s backends that are not enabled.
pub(super) fn snapshot(model: &Model) -> Snapshot {
    model
        .vips
        .iter()
        .flat_map(|(id, vip)| {
            vip.backends
                .iter()
                .filter(|(_, b)| b.admin != AdminState::Enabled)
                .map(|(address, b)| ((*id, *address), (b.admin, b.drain_timed_out)))
        })
        .collect()
}

/// `snapshot` as the file's text, its instants taken at `now` = `wall`.
pub(super) fn encode(snapshot: &Snapshot, now: Instant, wall: SystemTime) -> String {
    let wall_ms = unix_ms(wall);
    let at = |instant: Instant| {
        if instant >= now {
            wall_ms.saturating_add(millis(instant - now))
        } else {
            wall_ms.saturating_sub(millis(now - instant))
        }
    };
    let backends = snapshot
        .iter()
        .map(|((id, address), (admin, timed_out))| {
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

pub(super) fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(UNIX_EPOCH).map_or(0, millis)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
