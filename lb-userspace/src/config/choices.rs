//! The closed choices a configuration makes, as types: the hook and how
//! it attaches, how Maglev tables follow changes, what a VIP with no
//! backend up does, the protocol, the log format and the admin socket's
//! group. Each shows as the word the file uses for it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The group given the admin socket, as the config names it; resolved when
/// lbd binds the socket, so a group created later still works after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSocketGroup {
    /// A group name, looked up in the system's group database.
    Name(String),
    /// A numeric group id.
    Gid(u32),
}

impl fmt::Display for AdminSocketGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminSocketGroup::Name(name) => f.write_str(name),
            AdminSocketGroup::Gid(gid) => write!(f, "{gid}"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// What a VIP does when none of its backends is healthy; written `drop` or
/// `keep` in the file, the API and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AllDown {
    /// Drop new flows: clients fail fast.
    #[default]
    #[serde(rename = "drop")]
    Drop,
    /// Keep sending to the backends as if they were up (fail open), for
    /// when the checks, not the service, are likely wrong.
    #[serde(rename = "keep")]
    KeepLast,
}

impl fmt::Display for AllDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllDown::Drop => "drop",
            AllDown::KeepLast => "keep",
        })
    }
}

/// The hook and XDP mode, as lb-decap names them too.
pub use lb_common::hook::{Attach, XdpMode};

/// How Maglev tables change when the backend set does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaglevMode {
    /// Every table is rebuilt as a pure function of the backend set: two
    /// nodes with the same backends agree on every slot, whatever happened
    /// before (a failover moves no untracked flow). A removal moves more
    /// than the removed backend's slots when backends are many.
    #[default]
    Consistent,
    /// The table in service is updated: only the slots that must move do
    /// (one removal of N moves 1/N). Tables depend on the history of
    /// changes, so VRRP peers can disagree on slots; only flows missing
    /// from the connection table notice.
    Minimal,
}

impl MaglevMode {
    /// Every mode.
    pub const ALL: [MaglevMode; 2] = [MaglevMode::Consistent, MaglevMode::Minimal];

    /// The mode as spelt in the configuration file (and the API).
    pub const fn name(self) -> &'static str {
        match self {
            MaglevMode::Consistent => "consistent",
            MaglevMode::Minimal => "minimal",
        }
    }
}

impl fmt::Display for MaglevMode {
    /// Writes the mode as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Transport protocol of a VIP, because a service is identified by address, port and
/// protocol together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    #[default]
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number (6 or 17), as the BPF program matches it in packet headers.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol with this IP protocol number, if it is one we balance
    /// (reading maps a previous lbd wrote).
    pub(crate) fn from_number(number: u8) -> Option<Self> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    /// Writes `tcp` or `udp`, as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}
