//! VRRP version 3 (RFC 5798), as keepalived 2.2.7 speaks it with
//! `vrrp_version 3`: the advertisement codec ([`packet`]) and the protocol
//! state machine ([`machine`]). Both are pure; the sockets and the task that
//! drives a [`Machine`] live beside them, on a thread of their own
//! ([`runtime`]).

pub(crate) mod addresses;
pub(crate) mod announce;
mod complaints;
pub mod driver;
pub mod machine;
pub mod net;
pub(crate) mod notify_program;
pub mod packet;
mod runtime;

pub use machine::{Action, Counters, Machine, Settings, SettingsError, State};
pub use packet::{
    validate, validate_from, Advertisement, ChecksumMode, DecodeError, EncodeError, Family,
    Invalid, IPPROTO_VRRP, VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL,
};
