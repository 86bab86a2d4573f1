//! Copies that stay inline. LLVM merges a load and a store of a struct or
//! array between two pointers it cannot prove apart (a map value, the
//! frame) into a `memmove`, which the BPF target runs as a byte-by-byte
//! loop in a subprogram of its own: 32 bytes of backend record cost a
//! tracked tunnel packet about ten nanoseconds that way. Reading the
//! source with volatile loads keeps each copy a few plain loads and
//! stores.

use core::ptr::{read_volatile, write_volatile};

use lb_common::Backend;

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

/// The words of a backend record (`Backend` is `repr(C)`, 32 bytes,
/// 4-byte aligned).
const BACKEND_WORDS: usize = core::mem::size_of::<Backend>() / 4;
const _: () = assert!(
    core::mem::size_of::<Backend>().is_multiple_of(4) && core::mem::align_of::<Backend>() >= 4
);

/// `*dst = *src` for a backend record, as 32-bit word loads and stores.
#[inline(always)]
pub fn backend(dst: &mut Backend, src: &Backend) {
    let d = (dst as *mut Backend).cast::<u32>();
    let s = (src as *const Backend).cast::<u32>();
    let mut i = 0;
    while i < BACKEND_WORDS {
        // SAFETY: both records are `BACKEND_WORDS` aligned words long.
        unsafe { d.add(i).write(read_volatile(s.add(i))) };
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
