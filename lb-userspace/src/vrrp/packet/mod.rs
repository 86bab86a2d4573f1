//! The VRRPv3 advertisement on the wire (RFC 5798 §5.1): encoding and
//! decoding the VRRP payload (the bytes after the IP header), its internet
//! checksum with or without the pseudo-header, and the receive-side checks
//! of RFC 5798 §7.1 that need the IP header ([`validate`]). Pure: the caller
//! owns the sockets and hands in the addresses and TTL it read.
//!
//! ```text
//!  0                   1                   2                   3
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```

mod advertisement;
mod checksum;
mod decode;
mod family;
mod receive_checks;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use self::{
    advertisement::{Advertisement, EncodeError},
    checksum::{checksum, ChecksumMode},
    decode::DecodeError,
    family::Family,
    receive_checks::{validate, validate_from, Invalid},
};

/// IP protocol number of VRRP, for the raw socket and the pseudo-header.
pub const IPPROTO_VRRP: u8 = 112;

/// The IPv4 multicast group adverts are sent to (RFC 5798 §5.1.1.2).
pub const VRRP_MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The IPv6 multicast group adverts are sent to (RFC 5798 §5.1.2.2).
pub const VRRP_MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The IPv4 TTL / IPv6 hop limit adverts are sent with and must arrive with,
/// so that an advert cannot come from beyond the local link (but from a
/// unicast peer allowed some router hops, see [`validate_from`]).
pub const VRRP_TTL: u8 = 255;

/// The protocol version this module speaks; VRRPv2 packets are refused.
pub(crate) const VRRP_VERSION: u8 = 3;

/// The only packet type RFC 5798 defines.
pub(crate) const TYPE_ADVERTISEMENT: u8 = 1;

/// Length of the fixed part of an advert, before the addresses.
pub(crate) const HEADER_LEN: usize = 8;

/// The largest Max Adver Int that fits its 12 bits, in centiseconds.
pub(crate) const MAX_ADVER_INT_CS: u16 = 0x0fff;

/// The most addresses one advert can carry (the count is one byte).
pub(crate) const MAX_ADDRESSES: usize = 255;
