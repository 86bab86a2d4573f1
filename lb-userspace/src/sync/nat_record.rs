//! The NAT-mode record of the sync protocol (version 2 and later): one
//! translated flow, both of its NAT flow table entries, named by addresses and
//! ports only, and its bytes. Kept apart from the DSR [`FlowRecord`](super::FlowRecord)
//! (crate::sync::FlowRecord), which older peers also speak.
//!
//! A record is [`NAT_RECORD_LEN`] bytes: `vip addr | vip_port u16 |
//! protocol u8 | backend addr | backend_port u16 | forward half | reply
//! half`, a half being `key tuple | translated tuple | flags u8 | age_ms
//! u32` and a tuple `src addr | dst addr | sport u16 | dport u16` (an addr
//! as in [`wire`](super::wire): family byte and 16 bytes). Both addresses
//! of a tuple have one family, as a `FlowKey` does.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::wire::{decode_addr, encode_addr, Reader, WireError, ADDR_LEN};

/// Bytes of one encoded [`NatTuple`].
const TUPLE_LEN: usize = 2 * ADDR_LEN + 2 + 2;
/// Bytes of one encoded [`NatHalf`].
const HALF_LEN: usize = 2 * TUPLE_LEN + 1 + 4;
/// Bytes of one encoded [`NatFlowRecord`].
pub(super) const NAT_RECORD_LEN: usize = 2 * ADDR_LEN + 2 + 1 + 2 + 2 * HALF_LEN;

/// A packet's addresses and ports (host order), as a NAT entry's key or
/// translation holds them; the protocol is the record's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NatTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// One direction of a NAT'd flow: the key its packets arrive with, what
/// they become, the TCP flags seen and how long ago the last one was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NatHalf {
    /// The entry's key (the arriving packet's tuple).
    pub key: NatTuple,
    /// The packet after translation.
    pub translated: NatTuple,
    /// `NAT_F_*` bits of this direction, passed through.
    pub flags: u8,
    /// Time since this direction's last packet on the sender, so the
    /// receiver ages its copy as the original ages.
    pub age_ms: u32,
}

/// One NAT'd flow as the master knows it: enough for the backup to rebuild
/// both entries with its own VIP and backend ids (which differ per node).
/// The next hop (interface, MACs) does not travel: the backup's FIB finds
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NatFlowRecord {
    /// The service's address.
    pub vip: IpAddr,
    /// The service's port.
    pub vip_port: u16,
    /// The service's IP protocol (`IPPROTO_TCP`, `IPPROTO_UDP`).
    pub protocol: u8,
    /// The backend the flow was translated to.
    pub backend: IpAddr,
    /// The port the backend listens on (after translation).
    pub backend_port: u16,
    /// Client -> VIP (`NAT_DIR_FORWARD`).
    pub forward: NatHalf,
    /// Backend -> NAT address (`NAT_DIR_REPLY`).
    pub reply: NatHalf,
}

impl NatFlowRecord {
    /// The record `waited` later: both halves' ages grown by that
    /// (saturating), as [`FlowRecord::aged`](super::FlowRecord::aged).
    pub(crate) fn aged(self, waited: std::time::Duration) -> Self {
        let by = super::age_ms(waited);
        let grown = |half: NatHalf| NatHalf {
            age_ms: half.age_ms.saturating_add(by),
            ..half
        };
        Self {
            forward: grown(self.forward),
            reply: grown(self.reply),
            ..self
        }
    }
}

fn encode_tuple(out: &mut Vec<u8>, tuple: &NatTuple) {
    encode_addr(out, tuple.src);
    encode_addr(out, tuple.dst);
    out.extend_from_slice(&tuple.sport.to_be_bytes());
    out.extend_from_slice(&tuple.dport.to_be_bytes());
}

fn decode_tuple(r: &mut Reader<'_>, what: &'static str) -> Result<NatTuple, WireError> {
    let src = decode_addr(r, what)?;
    let dst = decode_addr(r, what)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(WireError::MixedFamilies { what });
    }
    Ok(NatTuple {
        src,
        dst,
        sport: r.u16(what)?,
        dport: r.u16(what)?,
    })
}

fn encode_half(out: &mut Vec<u8>, half: &NatHalf) {
    encode_tuple(out, &half.key);
    encode_tuple(out, &half.translated);
    out.push(half.flags);
    out.extend_from_slice(&half.age_ms.to_be_bytes());
}

fn decode_half(
    r: &mut Reader<'_>,
    key: &'static str,
    translated: &'static str,
    rest: &'static str,
) -> Result<NatHalf, WireError> {
    Ok(NatHalf {
        key: decode_tuple(r, key)?,
        translated: decode_tuple(r, translated)?,
        flags: r.u8(rest)?,
        age_ms: r.u32(rest)?,
    })
}

/// Appends one record's [`NAT_RECORD_LEN`] bytes.
pub(super) fn encode_nat_record(out: &mut Vec<u8>, record: &NatFlowRecord) {
    encode_addr(out, record.vip);
    out.extend_from_slice(&record.vip_port.to_be_bytes());
    out.push(record.protocol);
    encode_addr(out, record.backend);
    out.extend_from_slice(&record.backend_port.to_be_bytes());
    encode_half(out, &record.forward);
    encode_half(out, &record.reply);
}

/// Reads one record, checking every address.
pub(super) fn decode_nat_record(r: &mut Reader<'_>) -> Result<NatFlowRecord, WireError> {
    Ok(NatFlowRecord {
        vip: decode_addr(r, "nat record vip")?,
        vip_port: r.u16("nat record vip port")?,
        protocol: r.u8("nat record protocol")?,
        backend: decode_addr(r, "nat record backend")?,
        backend_port: r.u16("nat record backend port")?,
        forward: decode_half(
            r,
            "nat record forward key",
            "nat record forward translation",
            "nat record forward state",
        )?,
        reply: decode_half(
            r,
            "nat record reply key",
            "nat record reply translation",
            "nat record reply state",
        )?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// A v4 (even `i`) or v6 (odd `i`) flow whose fields all differ.
    pub(crate) fn nat_record(i: u32) -> NatFlowRecord {
        let (client, vip, nat, backend): (IpAddr, IpAddr, IpAddr, IpAddr) = if i.is_multiple_of(2) {
            (
                Ipv4Addr::from(0xc612_0100 | (i & 0xff)).into(),
                Ipv4Addr::new(198, 18, 0, 100).into(),
                Ipv4Addr::new(198, 18, 0, 50).into(),
                Ipv4Addr::new(198, 19, 2, 11).into(),
            )
        } else {
            (
                Ipv6Addr::from(0x2001_0002_0001u128 << 80 | u128::from(i)).into(),
                "2001:2::100".parse().unwrap(),
                "2001:2::50".parse().unwrap(),
                "2001:2:2::11".parse().unwrap(),
            )
        };
        let client_port = u16::try_from(1024 + i % 60_000).unwrap();
        let nat_port = u16::try_from(20_000 + i % 40_000).unwrap();
        NatFlowRecord {
            vip,
            vip_port: 80,
            protocol: if i.is_multiple_of(3) { 17 } else { 6 },
            backend,
            backend_port: 8080,
            forward: NatHalf {
                key: NatTuple {
                    src: client,
                    dst: vip,
                    sport: client_port,
                    dport: 80,
                },
                translated: NatTuple {
                    src: nat,
                    dst: backend,
                    sport: nat_port,
                    dport: 8080,
                },
                flags: 0x01,
                age_ms: i,
            },
            reply: NatHalf {
                key: NatTuple {
                    src: backend,
                    dst: nat,
                    sport: 8080,
                    dport: nat_port,
                },
                translated: NatTuple {
                    src: vip,
                    dst: client,
                    sport: 80,
                    dport: client_port,
                },
                flags: 0x09,
                age_ms: u32::MAX - i,
            },
        }
    }

    #[test]
    fn nat_record_round_trips_v4_and_v6() {
        for i in [0, 1, 2, 3, 4097] {
            let record = nat_record(i);
            let mut out = Vec::new();
            encode_nat_record(&mut out, &record);
            assert_eq!(out.len(), NAT_RECORD_LEN);
            let mut r = Reader::new(&out);
            assert_eq!(decode_nat_record(&mut r).unwrap(), record);
            r.finish("nat record").unwrap();
        }
    }

    #[test]
    fn nat_record_layout_is_fixed_and_big_endian() {
        let mut out = Vec::new();
        encode_nat_record(&mut out, &nat_record(2));
        assert_eq!(out.first(), Some(&4));
        assert_eq!(out.get(1..5), Some(&[198, 18, 0, 100][..]));
        assert_eq!(out.get(17..19), Some(&80u16.to_be_bytes()[..]));
        assert_eq!(out.get(19), Some(&6));
        assert_eq!(out.get(20..25), Some(&[4, 198, 19, 2, 11][..]));
        assert_eq!(out.get(37..39), Some(&8080u16.to_be_bytes()[..]));
        // The reply half's age ends the record.
        assert_eq!(
            out.get(NAT_RECORD_LEN - 4..),
            Some(&(u32::MAX - 2).to_be_bytes()[..])
        );
    }

    #[test]
    fn a_tuple_of_two_families_is_refused() {
        let mut record = nat_record(2);
        record.reply.translated.dst = "2001:2::1".parse().unwrap();
        let mut out = Vec::new();
        encode_nat_record(&mut out, &record);
        assert_eq!(
            decode_nat_record(&mut Reader::new(&out)),
            Err(WireError::MixedFamilies {
                what: "nat record reply translation"
            })
        );
    }
}
