//! Which lbd wrote a record (pid, boot, start time), and whether that
//! is the lbd that ran last: apart because the backend state file names
//! its writer the same way (see `backends_writer`).

use serde::{Deserialize, Serialize};

use crate::ownership::held::{self, Held};

/// Names one lbd process: its pid, its boot and when it started (see
/// `held::Held`), so a record it wrote is known to be its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Writer {
    pub(super) pid: u32,
    pub(super) boot_id: String,
    #[serde(default)]
    pub(super) started: Option<u64>,
}

impl Writer {
    /// This process.
    pub(crate) fn current() -> Self {
        Self {
            pid: std::process::id(),
            boot_id: held::boot_id(),
            started: held::process_started(),
        }
    }

    /// The lbd the record of what it held names.
    pub(crate) fn of(held: &Held) -> Self {
        Self {
            pid: held.pid,
            boot_id: held.boot_id.clone(),
            started: held.started,
        }
    }

    /// Whether it says when it started: every build that records that
    /// also keeps the backend state file (see `backends_writer`).
    pub(in crate::daemon::engine) fn records_its_start(&self) -> bool {
        self.started.is_some()
    }

    /// The lbd `pid` of boot `boot`, started at `started`.
    #[cfg(test)]
    pub(in crate::daemon::engine) fn for_test(pid: u32, boot: &str, started: Option<u64>) -> Self {
        Self {
            pid,
            boot_id: boot.to_owned(),
            started,
        }
    }
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(started) = self.started {
            write!(f, " started at tick {started}")?;
        }
        write!(f, " of boot {}", self.boot_id)
    }
}

/// Why the record written by `writer` was not the last lbd's, which the
/// record of what it held names `previous` (None: there is none of this
/// boot, `boot` = this boot's id); None when it was.
pub(super) fn not_the_last_lbds(
    writer: Option<&Writer>,
    previous: Option<&Writer>,
    boot: &str,
) -> Option<String> {
    let Some(writer) = writer else {
        return Some("it does not name the lbd that wrote it".to_owned());
    };
    match previous {
        Some(previous) if previous == writer => None,
        Some(previous) => Some(format!(
            "it was written by lbd {writer}, but the lbd that ran last was {previous} (one that keeps no such record, an older build, ran since)"
        )),
        // The first lbd since a reboot: nothing of the boot before says
        // which lbd ran last.
        None if writer.boot_id != boot || boot.is_empty() => None,
        None => Some(format!(
            "it was written by lbd {writer} in this boot, but no record of what the lbd that ran last held is left (an lbd stopped for good, or lbd --cleanup ran, since)"
        )),
    }
}
