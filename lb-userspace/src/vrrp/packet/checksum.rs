//! The advert's internet checksum (RFC 1071), with or without the
//! pseudo-header: apart from the codec, as both encoding and decoding
//! use it and its IPv4 form is a setting of its own ([`ChecksumMode`]).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Family, IPPROTO_VRRP};

/// Whether the IPv4 checksum covers a pseudo-header. RFC 5798 §5.2.8 says
/// it does (and keepalived 2.2.7 sends and expects it); RFC 9568 dropped it
/// for IPv4. IPv6 always uses the pseudo-header, whatever this says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// RFC 5798: source, destination, protocol and length are summed in.
    /// The default, as keepalived checks only this form.
    #[default]
    PseudoHeader,
    /// RFC 9568 for IPv4: the VRRP payload alone.
    NoPseudoHeader,
}

impl ChecksumMode {
    /// A stable snake_case name, for metrics labels and logs.
    pub fn label(&self) -> &'static str {
        match self {
            ChecksumMode::PseudoHeader => "pseudo_header",
            ChecksumMode::NoPseudoHeader => "no_pseudo_header",
        }
    }
}

/// The checksum field's value for `payload` sent from `src` to `dst`: the
/// internet checksum (RFC 1071) over the pseudo-header, if `mode` asks for
/// it, and the payload with its checksum field zero. The pseudo-header is,
/// for IPv4: src, dst, a zero byte, protocol 112, the u16 length; for IPv6
/// (RFC 8200 §8.1): src, dst, the u32 length, three zero bytes, next header
/// 112. Addresses of mixed families are summed as given.
pub fn checksum(payload: &[u8], src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> u16 {
    !fold(sum_with(payload, src, dst, mode))
}

/// Whether `payload`, its checksum field included, sums to all ones.
pub(super) fn verify(payload: &[u8], src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> bool {
    fold(sum_with(payload, src, dst, mode)) == 0xffff
}

/// IPv6 has no checksum-free form.
pub(super) fn effective_mode(family: Family, mode: ChecksumMode) -> ChecksumMode {
    match family {
        Family::V4 => mode,
        Family::V6 => ChecksumMode::PseudoHeader,
    }
}

/// The unfolded one's-complement sum of the pseudo-header (if any) and the
/// payload.
fn sum_with(payload: &[u8], src: IpAddr, dst: IpAddr, mode: ChecksumMode) -> u64 {
    let mut acc = 0u64;
    if mode == ChecksumMode::PseudoHeader {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        acc = add_address(acc, src);
        acc = add_address(acc, dst);
        acc = match src {
            // zero byte + protocol, then the 16-bit length.
            IpAddr::V4(_) => acc + u64::from(IPPROTO_VRRP) + u64::from(len & 0xffff),
            // 32-bit length, then three zero bytes + next header.
            IpAddr::V6(_) => {
                acc + u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(IPPROTO_VRRP)
            }
        };
    }
    sum_words(acc, payload)
}

fn add_address(acc: u64, addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => sum_words(acc, &a.octets()),
        IpAddr::V6(a) => sum_words(acc, &a.octets()),
    }
}

/// Adds `data` as big-endian 16-bit words, an odd last byte padded with 0.
/// A u64 cannot overflow on any packet that fits in memory.
pub(crate) fn sum_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        if let [hi, lo] = word {
            acc += u64::from(u16::from_be_bytes([*hi, *lo]));
        }
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds the carries back in until the sum fits 16 bits.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(u16::MAX)
}
