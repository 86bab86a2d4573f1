//! Copies that stay inline. LLVM merges a load and a store of a struct or
//! array between two pointers it cannot prove apart (a map value, the
//! frame) into a `memmove`, which the BPF target runs as a byte-by-byte
//! loop in a subprogram of its own: 32 bytes of backend record once cost
//! a tracked tunnel packet about ten nanoseconds that way. Reading the
//! source with volatile loads keeps each copy a few plain loads and
//! stores.

use core::ptr::{read_volatile, write_volatile};

/// A MAC address as the three 16-bit words it is stored as, for writing
/// into a frame's Ethernet header (`write_macs`).
///
/// # Safety
/// `mac` must lie at an even address: a MAC field of a map value at an
/// even offset (map values are 8-byte aligned; the fields used are
/// asserted below).
#[inline(always)]
pub unsafe fn mac_words(mac: &[u8; 6]) -> [u16; 3] {
    let w = mac.as_ptr().cast::<u16>();
    // SAFETY: inside `mac`, aligned by the caller's promise.
    unsafe {
        [
            read_volatile(w),
            read_volatile(w.add(1)),
            read_volatile(w.add(2)),
        ]
    }
}

// The MAC fields `mac_words` reads lie at even offsets.
const _: () = assert!(
    core::mem::offset_of!(lb_common::Backend, mac) % 2 == 0
        && core::mem::offset_of!(lb_common::LbConfig, iface_mac) % 2 == 0
        && core::mem::offset_of!(lb_common::TunnelHop, dmac) % 2 == 0
        && core::mem::offset_of!(lb_common::TunnelHop, smac) % 2 == 0
        && core::mem::offset_of!(lb_common::NatEntry, dmac) % 2 == 0
        && core::mem::offset_of!(lb_common::NatEntry, smac) % 2 == 0
);

/// Writes destination and source MACs over the first six 16-bit words of
/// a frame (its Ethernet header's addresses). The frame starts at an even
/// address on both hooks, so the words are aligned.
#[inline(always)]
pub fn write_macs(frame: &mut [u16], dst: [u16; 3], src: [u16; 3]) {
    if frame.len() < 6 {
        return;
    }
    frame[0] = dst[0];
    frame[1] = dst[1];
    frame[2] = dst[2];
    frame[3] = src[0];
    frame[4] = src[1];
    frame[5] = src[2];
}

/// `write_macs(frame, mac_words(dst), mac_words(src))` one word at a
/// time: each word is read right before it is stored (both volatile, so
/// the compiler keeps that order), so one register holds them all, where
/// reading both MACs first takes six (spilled to the stack where
/// registers are short, as right after a helper call).
///
/// # Safety
/// As for `mac_words`, for both MACs.
#[inline(always)]
pub unsafe fn copy_macs(frame: &mut [u16], dst: &[u8; 6], src: &[u8; 6]) {
    if frame.len() < 6 {
        return;
    }
    let out = frame.as_mut_ptr();
    let (d, s) = (dst.as_ptr().cast::<u16>(), src.as_ptr().cast::<u16>());
    let mut i = 0;
    while i < 3 {
        // SAFETY: inside both MACs (aligned by the caller's promise) and
        // inside `frame` (six words at least).
        unsafe {
            write_volatile(out.add(i), read_volatile(d.add(i)));
            write_volatile(out.add(3 + i), read_volatile(s.add(i)));
        }
        i += 1;
    }
}

/// A MAC address copied byte by byte (for a MAC kept in a map value).
#[inline(always)]
pub fn mac(mac: &[u8; 6]) -> [u8; 6] {
    // SAFETY: reads of bytes inside `mac`.
    let b = |i: usize| unsafe { read_volatile(mac.as_ptr().add(i)) };
    [b(0), b(1), b(2), b(3), b(4), b(5)]
}

/// Zeroes `dst`, a plain struct of integers whose size is a multiple of
/// four bytes, as 32-bit word stores (`= zeroed()` becomes a byte-by-byte
/// `memset` subprogram).
#[inline(always)]
pub fn zero<T>(dst: &mut T) {
    const {
        assert!(core::mem::size_of::<T>().is_multiple_of(4) && core::mem::align_of::<T>() >= 4);
    }
    let d = (dst as *mut T).cast::<u32>();
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 4 {
        // SAFETY: inside `dst`, aligned (asserted above).
        unsafe { write_volatile(d.add(i), 0) };
        i += 1;
    }
}

/// An IPv6 address (four 32-bit words) copied word by word.
#[inline(always)]
pub fn addr(addr: &[u32; 4]) -> [u32; 4] {
    // SAFETY: reads of words inside `addr`.
    let w = |i: usize| unsafe { read_volatile(addr.as_ptr().add(i)) };
    [w(0), w(1), w(2), w(3)]
}
