//! Every map of the decap program, with what it is for. lb-decap fills
//! them (and pins them, so a restarted lb-decap updates them in place).

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::LpmTrie, Array, HashMap, PerCpuArray},
};
use lb_common::{
    decap::{
        DecapAddr, DecapConfig, DECAP_ADDRS_MAX, DECAP_COUNTER_COUNT, DECAP_SOURCES_MAX,
        DECAP_VIPS_MAX,
    },
    VipKey,
};

/// Outer destinations this backend accepts: its own addresses. A tunnel
/// packet to any other address is never unwrapped.
#[map]
pub static DECAP_ADDRS: HashMap<DecapAddr, u32> = HashMap::with_max_entries(DECAP_ADDRS_MAX, 0);

/// Inner destinations (VIP address, port, protocol) this backend serves:
/// an unwrapped packet must be for one of them.
#[map]
pub static DECAP_VIPS: HashMap<VipKey, u32> = HashMap::with_max_entries(DECAP_VIPS_MAX, 0);

/// Outer IPv4 sources accepted when `DECAP_F_SOURCES` is set: the
/// balancers' tunnel source prefixes (address bytes in network order).
#[map]
pub static DECAP_SOURCES_V4: LpmTrie<[u8; 4], u32> =
    LpmTrie::with_max_entries(DECAP_SOURCES_MAX, 0);

/// The same for outer IPv6 sources.
#[map]
pub static DECAP_SOURCES_V6: LpmTrie<[u8; 16], u32> =
    LpmTrie::with_max_entries(DECAP_SOURCES_MAX, 0);

/// Node settings (one entry): which encapsulations, which GUE port.
#[map]
pub static DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

/// Per-CPU verdict counters, indexed by `DecapCounter`.
#[map]
pub static DECAP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECAP_COUNTER_COUNT, 0);
