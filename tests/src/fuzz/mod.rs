//! What the fuzz targets in `fuzz/` check, one function per target, each
//! taking the raw input and panicking when a property fails. They live
//! here, not in the fuzz crate, so that the corpus test replays every
//! committed input (crashes found earlier included) with plain `cargo test`
//! on stable, and clippy and rustfmt see them; the targets are one-liners.
//! [`fn@seeds`] makes the starting corpora from our own encoders.

use std::{
    cell::RefCell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use lb_userspace::{
    api::route::{vip_id, Call, Route},
    api::{
        client::api_path,
        code, convert,
        schema::{BackendSpec, NodeChange, StateChange, VipSpec, WeightChange},
        server::parse_request,
        Request, Response,
    },
    bgp::NodeState,
    config::{self, Config, VipConfig},
    mac::Mac,
    sync::{
        wire::{self, Message, Role, Transcript},
        FlowRecord, NatFlowRecord, NatHalf, NatTuple,
    },
    vip_id::VipId,
    vrrp::{
        machine::{Machine, Settings},
        net::parse_ipv4,
        packet::{checksum, validate, Advertisement, ChecksumMode, EncodeError, Family},
        VRRP_MCAST_V4, VRRP_MCAST_V6, VRRP_TTL,
    },
};

use lb_common::stats::Counter;

use crate::{
    oracle::{check_verdict, Service},
    packet::{self, Flow, LB_MAC},
    testbed::{action, vip4_tcp, vip4_udp, vip6_tcp, TestBed},
};

mod api_request;
mod config_file;
mod seeds;
mod sync_frame;
mod vrrp_advert;
mod xdp_packet;

pub use api_request::{api_request, http_request};
pub use config_file::config;
pub use seeds::seeds;
pub use sync_frame::sync_frame;
pub use vrrp_advert::{vrrp_advert, vrrp_flags, vrrp_input};
pub use xdp_packet::{packet, MAX_FRAME};

/// The check of one fuzz target: panics on a property that fails.
pub type Check = fn(&[u8]);

/// The fuzz targets: name (the `fuzz/fuzz_targets/NAME.rs` and
/// `fuzz/corpus/NAME/` it goes with) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("vrrp_advert", vrrp_advert),
    ("api_request", api_request),
    ("config", config),
    ("sync_frame", sync_frame),
    ("packet", packet),
];
