//! The state file: what an instance records of itself (master with each
//! advert, a restart, backup, stopped), and whether the next lbd resumes
//! mastership on it without a failover.

use std::{path::Path, time::Duration};

use tracing::debug;

use super::{settings_of, Driver};
use crate::{config::VrrpConfig, vrrp::Settings};

/// What a state file records of an instance, for the next lbd (see
/// [`Record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    /// Master: written with every advert that left. What a crash leaves,
    /// so it never resumes (a crash loop would hold the addresses, the
    /// backup's timer reset at each start).
    Master,
    /// Master until the deliberate restart that wrote it
    /// ([`Instance::abandon`](super::Instance::abandon)), which kept the last advert's time: the
    /// next lbd resumes within the window.
    Restarting,
    /// Backup.
    Backup,
    /// Stopped (stepped down, addresses released).
    Stopped,
}

impl Recorded {
    /// The record's first word.
    fn word(self) -> &'static str {
        match self {
            Recorded::Master => "master",
            Recorded::Restarting => "restarting",
            Recorded::Backup => "backup",
            Recorded::Stopped => "stopped",
        }
    }

    /// The state a record's first word names.
    fn parse(word: &str) -> Option<Self> {
        [
            Recorded::Master,
            Recorded::Restarting,
            Recorded::Backup,
            Recorded::Stopped,
        ]
        .into_iter()
        .find(|state| state.word() == word)
    }
}

/// A state file's line: `<state> <at> <advertised>`, `at` the
/// CLOCK_MONOTONIC nanoseconds it was written at (for a restart record,
/// those of the last advert: see [`restart_record`]; survives the
/// process, not a reboot, nor does /run), `advertised` the advert interval
/// the instance advertised, in centiseconds (absent from the files of
/// older lbds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    /// What the instance was.
    pub(super) state: Recorded,
    /// When (CLOCK_MONOTONIC ns).
    pub(super) at: u64,
    /// The advert interval advertised (cs), if recorded.
    pub(super) advertised: Option<u16>,
}

impl Record {
    /// Reads a state file's text; `None` if it is not a record (empty,
    /// cut short, an unknown state, no time).
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let state = Recorded::parse(words.next()?)?;
        let at = words.next()?.parse().ok()?;
        // Unreadable is as absent.
        let advertised = words.next().and_then(|cs| cs.parse().ok());
        Some(Self {
            state,
            at,
            advertised,
        })
    }

    /// The line written to a state file.
    pub(super) fn line(&self) -> String {
        match self.advertised {
            Some(cs) => format!("{} {} {cs}\n", self.state.word(), self.at),
            None => format!("{} {}\n", self.state.word(), self.at),
        }
    }
}

/// What a state file's record means for the next start of its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resumption {
    /// A restart record within the resume window: master at once.
    Resume,
    /// Master within the window, but no restart record: the previous lbd
    /// crashed (or was one that wrote none, see [`Instance::resumes`](super::Instance::resumes)).
    /// Starts as the protocol says, so the peer takes over.
    NotAfterCrash,
    /// Anything else: starts as the protocol says.
    No,
}

/// What `record` (a state file's, `None`: none or unreadable) means for a
/// start of an instance of `config` at `now` (CLOCK_MONOTONIC ns): only a
/// restart record ([`Recorded::Restarting`]) written less than the resume
/// window ago (see [`resume_window`]) resumes. A record from the future
/// (another boot's clock) is not trusted.
pub(super) fn resume_decision(record: Option<Record>, config: &VrrpConfig, now: u64) -> Resumption {
    let Some(record) = record else {
        return Resumption::No;
    };
    let recent = now >= record.at
        && Duration::from_nanos(now - record.at) < resume_window(config, record.advertised);
    match record.state {
        Recorded::Restarting if recent => Resumption::Resume,
        Recorded::Master if recent => Resumption::NotAfterCrash,
        _ => Resumption::No,
    }
}

/// The record a deliberate restart leaves in place of `current` (the state
/// file's): a master record becomes a restart record, keeping the last
/// advert's time (the backup's master-down timer runs from it, not from
/// the restart) and interval. Anything else (a backup, a stopped instance,
/// nothing readable) is left as is: `None`.
pub(super) fn restart_record(current: Option<Record>) -> Option<Record> {
    current
        .filter(|record| record.state == Recorded::Master)
        .map(|record| Record {
            state: Recorded::Restarting,
            ..record
        })
}

/// Reads the record of the state file at `path`; `None` if there is none
/// or it is not one.
pub(super) fn read_record(path: &Path) -> Option<Record> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| Record::parse(&text))
}

/// How long after the last master record of a state file an instance of
/// `config` may still resume mastership: the shortest master-down interval
/// any peer can run (see [`Settings::shortest_master_down_interval`]),
/// less [`resume_margin`]. A
/// backup measures it with the advert interval it learned from the adverts
/// it heard, that is, the one the previous lbd advertised (`advertised`,
/// centiseconds, recorded in the state file), not the one `config` (maybe
/// edited since) names; a file without it (an older lbd's) falls back to
/// `config`'s.
pub(super) fn resume_window(config: &VrrpConfig, advertised: Option<u16>) -> Duration {
    let configured = settings_of(config);
    let settings = Settings {
        adver_interval_cs: advertised.unwrap_or(configured.adver_interval_cs),
        ..configured
    };
    let interval = Duration::from_millis(u64::from(settings.adver_interval_cs) * 10);
    settings
        .shortest_master_down_interval()
        .saturating_sub(resume_margin(interval))
}

/// The least time a resumed master must have left before the backup's
/// timer runs out, for advert interval `interval`: [`RESUME_MARGIN`],
/// but no more than half the interval, so no interval leaves the window
/// empty (with adverts 0.2 s apart or less the margin is half of one).
///
/// It only has to cover what follows the decision, and that is short:
/// the decision comes at the very start of the new lbd's start (see
/// `Engine::start`), and after it only the instance's checks (one
/// netlink address dump), the VRRP thread, its socket and the first
/// advert remain, milliseconds; plus the little the backup's timer may
/// have started before the record's time (taken once the last advert's
/// send returned). Everything else a restart takes (where in the advert
/// interval the signal fell, the old lbd's shutdown, `--release-vips`,
/// the new lbd's start up to the decision) runs before the decision, and
/// the window measures it: a larger margin would only turn restarts that
/// could have resumed hitlessly into failovers.
fn resume_margin(interval: Duration) -> Duration {
    RESUME_MARGIN.min(interval / 2)
}

/// See [`resume_margin`].
const RESUME_MARGIN: Duration = Duration::from_millis(100);

impl Driver {
    /// Records the state, when, and the advert interval this instance
    /// advertises (centiseconds), for the next lbd after a restart (see
    /// [`resume_window`]). A tiny write to a tmpfs, once per advert while
    /// master.
    pub(super) fn record_state(&self, state: Recorded) {
        if let Some(path) = &self.state_file {
            let record = Record {
                state,
                at: crate::clock::monotonic_ns(),
                advertised: Some(self.machine.settings().adver_interval_cs),
            };
            if let Err(error) = std::fs::write(path, record.line()) {
                debug!(path = %path.display(), %error, "recording the VRRP state failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;
