//! Types and helpers shared by the XDP data plane (`lb-ebpf`) and the
//! control plane (`lb-userspace`). Everything here is `no_std`, `#[repr(C)]`
//! and made of integers only, so both sides agree on every byte of every map.
#![no_std]

pub mod consts;
pub mod decap;
pub mod hash;
pub mod maps;
pub mod mode;
pub mod nat;
pub mod stats;
pub mod tunnel;

pub use maps::{
    Backend, BenchTemplate, DataplaneEvent, FlowEntry, FlowKey, LbConfig, NatEntry, NatSource,
    TrafficCounters, VipKey, VipMeta, BENCH_TEMPLATE_MAX, BENCH_TEMPLATE_MAX_U32,
};
pub use mode::Mode;
pub use tunnel::{TunnelConfig, TunnelHop};
