//! The VIP index: which VIP a packet is addressed to, found by the data
//! plane with plain memory reads instead of a kernel hash-map call.
//!
//! Why: every packet starts with this question, and the kernel's hash map
//! answers it through three function calls (hash, chain walk, key compare)
//! that cost more than the rest of a tracked flow's path on CPUs whose
//! return-stack mitigations make calls dear. `VIPS` (the hash map) stays
//! the authoritative copy that lbd writes and reads back; `VIP_INDEX` is
//! an array lbd keeps equal to it, mapped into lbd's memory
//! (`BPF_F_MMAPABLE`) and written in place.
//!
//! Layout: bucket 0 is the header (`VipIndexHeader`: a write generation
//! and an overflow count); buckets 1 to `mask + 1` each hold
//! `VIP_INDEX_WAYS` slots of 32 bytes (one cache line per bucket). A VIP
//! lives in one of its two buckets (cuckoo hashing, two choices of two
//! slots: at the index's size, at most half its slots are ever used, where
//! such a table practically never fails to place a key).
//!
//! Concurrency: lbd (one writer) makes the generation odd, changes slots,
//! and makes it even again; a reader reads the generation before and after
//! its lookup, and a lookup that overlapped a write (odd, or changed) is
//! `Unsure`: the data plane then asks `VIPS`. A VIP's meta alone (a
//! Maglev flip) changes with one aligned 64-bit store, seen whole or not
//! at all, as the hash map's replace was. A VIP lbd could not place
//! (overflow, practically never) is only in `VIPS`: while the header
//! counts one, every miss is `Unsure`.
//!
//! Both sides run on x86-64 (the flow table's assumption too): stores are
//! seen in program order, and loads are not reordered with each other.

use crate::{VipKey, VipMeta};

/// Slots per bucket (a bucket is one cache line).
pub const VIP_INDEX_WAYS: usize = 2;

/// One slot: a VIP's key and its meta, packed (see `pack_meta`).
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipSlot {
    /// Destination address, network order (IPv4: the first word).
    pub addr: [u32; 4],
    /// Port, protocol and family (`slot_tag`); 0: the slot is empty.
    pub tag: u32,
    /// Unused (zero).
    pub _pad: u32,
    /// The VIP's meta (`pack_meta`).
    pub meta: u64,
}

/// A bucket of the index (and, at index 0, its header's place).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipIndexBucket {
    /// The slots.
    pub slots: [VipSlot; VIP_INDEX_WAYS],
}

/// Bucket 0 of the index, seen as its header.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipIndexHeader {
    /// Odd while lbd changes slots; bumped by two per change.
    pub generation: u64,
    /// VIPs in `VIPS` the index could not place (0 but for a table that
    /// ran out of room, which its size rules out in practice).
    pub overflow: u64,
    /// Unused (zero).
    pub _pad: [u64; 6],
}

const _: () = assert!(core::mem::size_of::<VipSlot>() == 32);
const _: () = assert!(core::mem::size_of::<VipIndexBucket>() == 64);
const _: () = assert!(core::mem::size_of::<VipIndexHeader>() == 64);

/// Buckets of slots (the header not counted) for `max_vips` VIPs: a power
/// of two with at least twice the slots the VIPs need.
pub const fn vip_index_buckets_for(max_vips: u32) -> u32 {
    let buckets = if max_vips < 2 { 2 } else { max_vips };
    buckets.next_power_of_two()
}

/// The tag of `key` in a slot: port (as stored, network order), protocol
/// and family; never 0 for a VIP (its family is `AF_INET` or `AF_INET6`).
#[inline(always)]
pub const fn slot_tag(key: &VipKey) -> u32 {
    (key.port as u32) | ((key.proto as u32) << 16) | ((key.family as u32) << 24)
}

/// The two buckets of `key` in an index of `mask + 1` buckets (indexes of
/// the map: the header is 0, so both are at least 1; they may be equal).
#[inline(always)]
pub const fn vip_buckets(key: &VipKey, mask: u32) -> (u32, u32) {
    let folded = key.addr[0]
        ^ key.addr[1].rotate_left(8)
        ^ key.addr[2].rotate_left(16)
        ^ key.addr[3].rotate_left(24);
    let word = ((folded as u64) << 32) | slot_tag(key) as u64;
    let first = word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    let second = (word ^ 0x5bd1_e995_5bd1_e995).wrapping_mul(0xc2b2_ae3d_27d4_eb4f) >> 32;
    (1 + (first as u32 & mask), 1 + (second as u32 & mask))
}

/// `meta` in one 64-bit word: table size (32 bits), id (16), active copy
/// (8), then mode (the low 4 bits of the last byte) and affinity (its
/// high 4 bits: zero in what older lbd versions packed). None if a field
/// does not fit (an id of 65,536 or more: far past the VIPs lbd serves).
pub const fn pack_meta(meta: &VipMeta) -> Option<u64> {
    if meta.id > 0xffff
        || meta.active_table > 0xff
        || meta.forwarding > 0xffff
        || meta.mode() > 0xf
        || meta.affinity() > 0xf
    {
        return None;
    }
    Some(
        meta.table_size as u64
            | (meta.id as u64) << 32
            | (meta.active_table as u64) << 48
            | (meta.mode() as u64) << 56
            | (meta.affinity() as u64) << 60,
    )
}

/// The meta `pack_meta` packed.
#[inline(always)]
pub const fn unpack_meta(word: u64) -> VipMeta {
    VipMeta {
        id: ((word >> 32) & 0xffff) as u32,
        table_size: word as u32,
        active_table: ((word >> 48) & 0xff) as u32,
        forwarding: ((word >> 56) & 0xf) as u32 | ((word >> 60) as u32) << 8,
    }
}

/// What a lookup in the index says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The VIP, with its meta.
    Vip(VipMeta),
    /// Not a VIP.
    NotAVip,
    /// The lookup overlapped a change of the index, or the index does not
    /// hold every VIP (overflow): ask `VIPS`.
    Unsure,
}

/// Looks `key` up: `bucket(i)` gives bucket `i` of the map (0, the
/// header, included), `mask` is the number of slot buckets minus one.
///
/// Written for the BPF verifier: the four slots are compared with
/// arithmetic, not branches, so the lookup is one path for it, whatever
/// path of the parser led here.
///
/// # Safety
/// The pointers `bucket` returns must be live buckets of the index.
#[inline(always)]
pub unsafe fn find(
    bucket: impl Fn(u32) -> Option<*const VipIndexBucket>,
    mask: u32,
    key: &VipKey,
) -> Found {
    let (first, second) = vip_buckets(key, mask);
    let (Some(header), Some(first), Some(second)) = (bucket(0), bucket(first), bucket(second))
    else {
        return Found::Unsure;
    };
    let header = header.cast::<VipIndexHeader>();
    // SAFETY: per the contract; volatile: read where written, in order.
    let before = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*header).generation)) };
    let tag = slot_tag(key);
    // SAFETY: per the contract.
    let (hit, meta) = unsafe {
        let (a, ma) = slot_match(first, 0, key, tag);
        let (b, mb) = slot_match(first, 1, key, tag);
        let (c, mc) = slot_match(second, 0, key, tag);
        let (d, md) = slot_match(second, 1, key, tag);
        (a | b | c | d, (ma & a) | (mb & b) | (mc & c) | (md & d))
    };
    // SAFETY: as above.
    let (after, overflow) = unsafe {
        (
            core::ptr::read_volatile(core::ptr::addr_of!((*header).generation)),
            core::ptr::read_volatile(core::ptr::addr_of!((*header).overflow)),
        )
    };
    // A key is in one slot at most while the generation is even and
    // unchanged.
    let unsure = (before & 1) | (after ^ before) | (overflow & !hit);
    if unsure != 0 {
        Found::Unsure
    } else if hit != 0 {
        Found::Vip(unpack_meta(meta))
    } else {
        Found::NotAVip
    }
}

/// Whether way `way` of `bucket` holds `key` (tag `tag`): all ones if
/// so, else 0; and the slot's packed meta.
///
/// # Safety
/// `bucket` must be a live bucket of the index.
#[inline(always)]
unsafe fn slot_match(
    bucket: *const VipIndexBucket,
    way: usize,
    key: &VipKey,
    tag: u32,
) -> (u64, u64) {
    // SAFETY: per the contract; the index is below VIP_INDEX_WAYS.
    let slot = unsafe { core::ptr::addr_of!((*bucket).slots[way & (VIP_INDEX_WAYS - 1)]) };
    let word = |p: *const u32| {
        // SAFETY: a word of the slot; volatile: each read once, in order.
        unsafe { core::ptr::read_volatile(p) }
    };
    // SAFETY: fields of the slot.
    let differ = unsafe {
        (word(core::ptr::addr_of!((*slot).tag)) ^ tag)
            | (word(core::ptr::addr_of!((*slot).addr[0])) ^ key.addr[0])
            | (word(core::ptr::addr_of!((*slot).addr[1])) ^ key.addr[1])
            | (word(core::ptr::addr_of!((*slot).addr[2])) ^ key.addr[2])
            | (word(core::ptr::addr_of!((*slot).addr[3])) ^ key.addr[3])
    };
    // SAFETY: as above.
    let meta = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*slot).meta)) };
    // All ones when `differ` is 0 (and the tag is a key's, never 0).
    let hit = (u64::from(differ) | u64::from(tag == 0)).wrapping_sub(1) >> 63;
    (0u64.wrapping_sub(hit), meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: u32, port: u16, family: u8) -> VipKey {
        VipKey {
            addr: [addr, 0, 0, 0],
            port: port.to_be(),
            proto: 6,
            family,
        }
    }

    #[test]
    fn meta_packs_and_unpacks_whole() {
        let meta = VipMeta::new(65_535, 655_373, 1, crate::Mode::Gue)
            .with_affinity(crate::Affinity::Source);
        assert_eq!((meta.mode(), meta.affinity()), (3, 1));
        assert_eq!(unpack_meta(pack_meta(&meta).expect("fits")), meta);
        assert_eq!(pack_meta(&VipMeta { id: 65_536, ..meta }), None);
        for forwarding in [0x10, 0x1003, 0x1_0003] {
            assert_eq!(pack_meta(&VipMeta { forwarding, ..meta }), None);
        }
        // What older lbd versions packed (the mode alone in the last
        // byte) unpacks with connection affinity.
        let older = pack_meta(&meta.with_affinity(crate::Affinity::Connection)).expect("fits");
        assert_eq!(older >> 56, 3);
        assert_eq!(unpack_meta(older).affinity(), 0);
        assert_eq!(unpack_meta(older).forwarding, 3);
    }

    #[test]
    fn buckets_are_slot_buckets_and_a_tag_is_never_empty() {
        for i in 0..1000u32 {
            let k = key(i.wrapping_mul(2_654_435_761), (i % 7) as u16, 2);
            let (a, b) = vip_buckets(&k, 15);
            assert!((1..=16).contains(&a) && (1..=16).contains(&b));
            assert_ne!(slot_tag(&k), 0);
        }
        assert_eq!(vip_index_buckets_for(0), 2);
        assert_eq!(vip_index_buckets_for(16), 16);
        assert_eq!(vip_index_buckets_for(17), 32);
    }

    fn lookup(table: &[VipIndexBucket], k: &VipKey) -> Found {
        let mask = table.len() as u32 - 2;
        // SAFETY: every pointer is an element of `table`.
        unsafe { find(|i| table.get(i as usize).map(|b| b as *const _), mask, k) }
    }

    fn header(table: &mut [VipIndexBucket]) -> &mut VipIndexHeader {
        // SAFETY: same size and alignment.
        unsafe { &mut *(&mut table[0] as *mut VipIndexBucket).cast::<VipIndexHeader>() }
    }

    #[test]
    fn a_lookup_finds_a_slot_in_either_bucket_and_is_unsure_during_a_write() {
        let mut table = [VipIndexBucket::default(); 9];
        let vip = key(0x0100_12c6, 80, 2);
        let meta = VipMeta::new(3, 65_537, 1, crate::Mode::Nat);
        assert_eq!(lookup(&table, &vip), Found::NotAVip);
        let (_, second) = vip_buckets(&vip, 7);
        table[second as usize].slots[1] = VipSlot {
            addr: vip.addr,
            tag: slot_tag(&vip),
            _pad: 0,
            meta: pack_meta(&meta).expect("fits"),
        };
        assert_eq!(lookup(&table, &vip), Found::Vip(meta));
        assert_eq!(lookup(&table, &key(0x0100_12c6, 81, 2)), Found::NotAVip);
        header(&mut table).generation = 1;
        assert_eq!(lookup(&table, &vip), Found::Unsure);
        header(&mut table).generation = 2;
        header(&mut table).overflow = 1;
        assert_eq!(lookup(&table, &vip), Found::Vip(meta));
        assert_eq!(lookup(&table, &key(7, 80, 2)), Found::Unsure);
    }
}
