//! The ConfigDigest message (version 3): per VIP, a digest of what the
//! sender builds its Maglev table from, so peers of a full mesh can tell
//! when their tables differ (see `daemon::replication::drift`).
//!
//! `6` ConfigDigest: `seq u64 | count u16 | count × (vip addr | port u16 |
//! protocol u8 | digest [16])`, count ≤ [`MAX_DIGEST_VIPS`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{decode_addr, encode_addr, Reader, WireError, ADDR_LEN};

/// The first protocol version with ConfigDigest: a session at an older
/// one carries none (a peer of an earlier release is not compared).
pub const CONFIG_DIGEST_VERSION: u16 = 3;
/// Bytes of one VIP's digest.
pub const DIGEST_LEN: usize = 16;
/// Most VIPs in one ConfigDigest (a node has at most 256).
pub(crate) const MAX_DIGEST_VIPS: usize = 4096;
/// Bytes of one encoded [`VipDigest`].
pub(crate) const VIP_DIGEST_LEN: usize = ADDR_LEN + 2 + 1 + DIGEST_LEN;

/// One VIP's Maglev inputs, digested: two nodes whose digests of a VIP
/// are equal build the same table for it (given the same health).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VipDigest {
    /// The VIP's address.
    pub vip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its IP protocol number.
    pub protocol: u8,
    /// The digest of its table's inputs.
    pub digest: [u8; DIGEST_LEN],
}

/// Appends a ConfigDigest's body after its type byte.
pub(super) fn encode_digests(
    out: &mut Vec<u8>,
    seq: u64,
    vips: &[VipDigest],
) -> Result<(), WireError> {
    let count = u16::try_from(vips.len())
        .ok()
        .filter(|&n| usize::from(n) <= MAX_DIGEST_VIPS)
        .ok_or(WireError::TooManyRecords {
            count: vips.len(),
            max: MAX_DIGEST_VIPS,
        })?;
    out.reserve(8 + 2 + vips.len() * VIP_DIGEST_LEN);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    for vip in vips {
        encode_addr(out, vip.vip);
        out.extend_from_slice(&vip.port.to_be_bytes());
        out.push(vip.protocol);
        out.extend_from_slice(&vip.digest);
    }
    Ok(())
}

/// Reads a ConfigDigest's body after its type byte, checking the count
/// and the whole length before allocating for it.
pub(super) fn decode_digests(r: &mut Reader<'_>) -> Result<(u64, Vec<VipDigest>), WireError> {
    let seq = r.u64("config digest sequence number")?;
    let count = usize::from(r.u16("config digest count")?);
    if count > MAX_DIGEST_VIPS {
        return Err(WireError::TooManyRecords {
            count,
            max: MAX_DIGEST_VIPS,
        });
    }
    let needed = count.saturating_mul(VIP_DIGEST_LEN);
    if r.remaining() < needed {
        return Err(WireError::Truncated {
            what: "config digests",
            needed,
            available: r.remaining(),
        });
    }
    let mut vips = Vec::with_capacity(count);
    for _ in 0..count {
        vips.push(VipDigest {
            vip: decode_addr(r, "config digest vip")?,
            port: r.u16("config digest port")?,
            protocol: r.u8("config digest protocol")?,
            digest: r.array::<DIGEST_LEN>("config digest")?,
        });
    }
    Ok((seq, vips))
}
