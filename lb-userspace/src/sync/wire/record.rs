//! A flow record's bytes and the reader every decoder shares: addresses
//! as a family byte and 16 address bytes, every length checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{WireError, FAMILY_V4, FAMILY_V6};
use crate::sync::FlowRecord;

/// Appends an address: family byte and 16 bytes (IPv4 zero-padded).
pub(in crate::sync) fn encode_addr(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(a) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Reads an address written by [`encode_addr`], checking family and
/// padding.
pub(in crate::sync) fn decode_addr(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<IpAddr, WireError> {
    let family = r.u8(what)?;
    let bytes = r.array::<16>(what)?;
    match family {
        FAMILY_V4 => {
            let [a, b, c, d, padding @ ..] = bytes;
            if padding.iter().any(|&byte| byte != 0) {
                return Err(WireError::AddressPadding { what });
            }
            Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        FAMILY_V6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        family => Err(WireError::UnknownFamily { what, family }),
    }
}

pub(super) fn encode_record(out: &mut Vec<u8>, record: &FlowRecord) {
    encode_addr(out, record.vip);
    out.extend_from_slice(&record.vip_port.to_be_bytes());
    out.push(record.protocol);
    encode_addr(out, record.client);
    out.extend_from_slice(&record.client_port.to_be_bytes());
    encode_addr(out, record.backend);
    out.extend_from_slice(&record.age_ms.to_be_bytes());
    out.push(record.flags);
}

pub(super) fn decode_record(r: &mut Reader<'_>) -> Result<FlowRecord, WireError> {
    Ok(FlowRecord {
        vip: decode_addr(r, "record vip")?,
        vip_port: r.u16("record vip port")?,
        protocol: r.u8("record protocol")?,
        client: decode_addr(r, "record client")?,
        client_port: r.u16("record client port")?,
        backend: decode_addr(r, "record backend")?,
        age_ms: r.u32("record age")?,
        flags: r.u8("record flags")?,
    })
}

/// A cursor over untrusted bytes whose every read is length-checked.
pub(in crate::sync) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The bytes not read yet.
    pub(in crate::sync) fn rest(self) -> &'a [u8] {
        self.buf
    }

    pub(in crate::sync) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(in crate::sync) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(in crate::sync) fn take(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> Result<&'a [u8], WireError> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(WireError::Truncated {
            what,
            needed: n,
            available: self.buf.len(),
        })?;
        self.buf = rest;
        Ok(head)
    }

    pub(in crate::sync) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], WireError> {
        let available = self.buf.len();
        <[u8; N]>::try_from(self.take(N, what)?).map_err(|_| WireError::Truncated {
            what,
            needed: N,
            available,
        })
    }

    pub(in crate::sync) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        self.array::<1>(what).map(u8::from_be_bytes)
    }

    pub(in crate::sync) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        self.array::<2>(what).map(u16::from_be_bytes)
    }

    pub(in crate::sync) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        self.array::<4>(what).map(u32::from_be_bytes)
    }

    pub(in crate::sync) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        self.array::<8>(what).map(u64::from_be_bytes)
    }

    pub(in crate::sync) fn finish(self, what: &'static str) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { what, extra }),
        }
    }
}
