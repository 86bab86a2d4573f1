//! Per-CPU scratch space for the NAT path's large values. The BPF stack is
//! 512 bytes for the whole call chain and the packet path already uses
//! much of it, so a new flow's two entries and reply key and the FIB's
//! parameter block live in a one-slot per-CPU array instead (a program
//! runs to completion on its CPU, so nothing else uses the slot meanwhile).
//! It also launders the header offsets (see `layout`).

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::bindings::bpf_fib_lookup;
use lb_common::{FlowKey, NatEntry, VipMeta};

use crate::{nat::rewrite::Layout, parse::Packet};

/// Largest IP header offset: Ethernet and two VLAN tags.
const L3_OFF_MAX: u32 = 22;
/// Largest transport header offset the NAT path rewrites at: more than
/// any IPv4 header allows, and all a tc program sees linear anyway.
const L4_OFF_MAX: u32 = 256;
/// Largest offset of an ICMP error's quoted transport header: the ICMP
/// header and a quoted IPv4 header with options after the largest
/// `L4_OFF_MAX`.
const QUOTE_L4_OFF_MAX: u32 = L4_OFF_MAX + 8 + 60;

/// The values, one field per use.
#[repr(C)]
pub struct NatScratch {
    /// A new flow's reply key (its destination port is the allocation).
    pub reply_key: FlowKey,
    /// A new flow's reply entry.
    pub reply: NatEntry,
    /// A new flow's forward entry.
    pub entry: NatEntry,
    /// The reply key's table hash (`hash::table_hash`), once its port is
    /// chosen.
    pub reply_place: u32,
    /// Where the reply entry went (a position of its two buckets' ways).
    pub reply_pos: u32,
    /// The answer of the NAT table's last insert (`table::insert`),
    /// passed through memory.
    pub inserted: u32,
    /// The source-port search's first free candidates (see
    /// `ports::reserve`): their ports (network order).
    pub candidate_ports: [u16; 2],
    /// Their reply keys' table hashes.
    pub candidate_places: [u32; 2],
    /// How many it found (up to two), passed through memory.
    pub candidates: u32,
    /// `bpf_fib_lookup` parameters and results.
    pub fib: bpf_fib_lookup,
    /// The flow key of an event about a next hop (the gateway to resolve).
    pub gateway: FlowKey,
    /// `Packet::l3_off`, passed through memory (see `layout`).
    pub l3_off: u32,
    /// `Packet::l4_off`, passed through memory.
    pub l4_off: u32,
    /// `Packet::quote_l4_off`, passed through memory.
    pub quote_l4_off: u32,
    /// The tunnel path's reading of the inner header, passed through
    /// memory (`forward::tunnel::encap::launder`): its length.
    pub inner_len: u32,
    /// The same: TOS / traffic class.
    pub inner_tos: u32,
    /// A NAT'd packet too big for its route: its length (IP header's),
    /// for the answer `nat::finish` builds (`too_big::reply`).
    pub too_big_len: u32,
    /// The tunnel path's reading again: the inner packet's share of a
    /// GUE checksum, `u64::MAX` for none.
    pub csum_part: u64,
    /// The packet `nat::queue` left for `nat::finish`.
    pub packet: Packet,
    /// Its VIP (a forward packet's).
    pub vip: VipMeta,
}

/// The packet's header offsets as values the verifier knows only by their
/// bounds. The parser leaves them as a different constant or range on
/// each of its paths (VLAN tags, IPv4 options, IPv6 extension headers);
/// read back from a map they are one bounded unknown, so the NAT path is
/// verified once per family and protocol instead of once per parser path
/// (about 10x fewer instructions to verify). None when the transport
/// header lies beyond what the NAT path rewrites (an IPv6 extension chain
/// longer than `L4_OFF_MAX`).
#[inline(always)]
pub fn layout(scratch: &mut NatScratch, packet: &Packet) -> Option<Layout> {
    // SAFETY: plain stores and loads to this CPU's slot; volatile so the
    // compiler keeps the round trip the verifier must not see through.
    let (l3_off, l4_off, quote_l4_off) = unsafe {
        write_volatile(addr_of_mut!(scratch.l3_off), packet.l3_off as u32);
        write_volatile(addr_of_mut!(scratch.l4_off), packet.l4_off as u32);
        write_volatile(
            addr_of_mut!(scratch.quote_l4_off),
            packet.quote_l4_off as u32,
        );
        (
            read_volatile(addr_of_mut!(scratch.l3_off)),
            read_volatile(addr_of_mut!(scratch.l4_off)),
            read_volatile(addr_of_mut!(scratch.quote_l4_off)),
        )
    };
    if l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX || quote_l4_off > QUOTE_L4_OFF_MAX {
        return None;
    }
    Some(Layout {
        l3_off: l3_off as usize,
        l4_off: l4_off as usize,
        quote_l4_off: quote_l4_off as usize,
    })
}
