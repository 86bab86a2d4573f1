//! Types and helpers shared by the XDP data plane (`lb-ebpf`) and the
//! control plane (`lb-userspace`). Everything here is `no_std`, `#[repr(C)]`
//! and made of integers only, so both sides agree on every byte of every map.
#![no_std]
// The data plane's compare-and-swap (the BPF target has no atomic CAS
// types, its instruction set has `cmpxchg`): see `flow_table::Tag`.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
// `flow_table::opaque`: an empty asm block hides a value from the compiler.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

pub mod affinity;
pub mod consts;
pub mod decap;
pub mod flow_table;
pub mod guard;
pub mod hash;
pub mod hook;
pub mod maps;
pub mod mode;
pub mod nat;
pub mod nat_ports;
pub mod stats;
pub mod tunnel;
pub mod vip_index;

pub use affinity::Affinity;
pub use maps::{
    Backend, BenchTemplate, DataplaneEvent, FlowEntry, FlowKey, LbConfig, NatEntry, NatSource,
    ServiceAddr, TrafficCounters, VipKey, VipMeta, BENCH_TEMPLATE_MAX, BENCH_TEMPLATE_MAX_U32,
};
pub use mode::Mode;
pub use tunnel::{TunnelConfig, TunnelHop};
