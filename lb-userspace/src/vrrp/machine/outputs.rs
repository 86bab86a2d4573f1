//! What the machine reports to its driver: its [`State`], the
//! [`Action`]s a transition asks for, and its [`Counters`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocol state (RFC 5798 §6.4).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running: before startup and after shutdown.
    #[default]
    Initialize,
    /// Watching the master, ready to take over.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
        })
    }
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send one advert with this priority (0 when stepping down on
    /// shutdown), our VRID, interval and virtual addresses.
    SendAdvert {
        /// The priority to put in the advert.
        priority: u8,
    },
    /// We are now master: add the virtual addresses, send gratuitous ARP /
    /// unsolicited NA, run the master notify.
    BecomeMaster,
    /// We are now backup: remove the virtual addresses if held, run the
    /// backup notify.
    BecomeBackup,
    /// We stopped (shutdown): remove the virtual addresses if held, run the
    /// stop notify.
    BecomeInitialize,
    /// Still master, but another router claims the addresses with a lower
    /// priority (a split brain healing): send gratuitous ARP / unsolicited
    /// NA again, so neighbours that followed the other router come back
    /// (comes right after a [`Action::SendAdvert`]; at most once per
    /// advert interval, so a peer stuck as master causes no storm). Never
    /// while no advert can leave (see [`Machine::source_gone`](super::Machine::source_gone)).
    Reannounce,
    /// Still master, and the interface's link just came back (see
    /// [`Machine::link_up`](super::Machine::link_up)): while it was down the other router may have
    /// taken over and announced the addresses, and it may now step down
    /// on our advert without a word, so send all the gratuitous ARP /
    /// unsolicited NA rounds of a takeover again (comes right after a
    /// [`Action::SendAdvert`]). Never while no advert can leave (see
    /// [`Machine::source_gone`](super::Machine::source_gone)).
    Reclaim,
    /// Still master, and
    /// [`Settings::announce_refresh`](super::Settings::announce_refresh)
    /// has passed since the last refresh (or since becoming master): send one round of
    /// gratuitous ARP / unsolicited NA. Never while no advert can leave
    /// (see [`Machine::source_gone`](super::Machine::source_gone)).
    Refresh,
}

/// What the machine has done since it was created, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    /// Adverts asked for, priority-zero ones included.
    pub adverts_sent: u64,
    /// Adverts handed to [`Machine::on_advert`](super::Machine::on_advert)
    /// for our VRID, priority-zero ones included.
    pub adverts_received: u64,
    /// Priority-zero adverts asked for (on shutdown as master).
    pub priority_zero_sent: u64,
    /// Priority-zero adverts received (a master stepping down).
    pub priority_zero_received: u64,
    /// Transitions to master (a mastership resumed after a restart is not
    /// one: see `resumed`).
    pub became_master: u64,
    /// Transitions to backup (from Initialize or from master).
    pub became_backup: u64,
    /// Masterships resumed at start ([`Machine::resume_master`](super::Machine::resume_master)): a
    /// restarted lbd that was master until moments ago, with no failover
    /// (the backup never took over), so not counted in `became_master`.
    #[serde(default)]
    pub resumed: u64,
}
