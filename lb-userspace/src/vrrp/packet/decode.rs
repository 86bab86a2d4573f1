//! Decoding a received VRRP payload, and why one is not a well-formed
//! VRRPv3 advertisement (each reason a metrics label of its own).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    checksum::verify, Advertisement, ChecksumMode, Family, HEADER_LEN, MAX_ADVER_INT_CS,
    TYPE_ADVERTISEMENT, VRRP_VERSION,
};

/// Why a received payload is not a well-formed VRRPv3 advertisement. The
/// packet is dropped; [`DecodeError::label`] names the counter to bump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Source and destination given to the decoder are of different
    /// families (a bug in the caller, not in the packet).
    #[error("source and destination addresses are of different families")]
    MixedFamilies,
    /// Shorter than the 8-byte fixed header.
    #[error("packet shorter than the {HEADER_LEN}-byte VRRP header")]
    TooShort,
    /// Not VRRP version 3 (e.g. a VRRPv2 speaker on the link).
    #[error("VRRP version {0}, expected 3")]
    Version(u8),
    /// Not an advertisement, the only type defined.
    #[error("VRRP packet type {0}, expected 1 (advertisement)")]
    Type(u8),
    /// The address count does not match the bytes that follow the header.
    #[error("address count {count} does not match a {len}-byte packet")]
    Length {
        /// The count field.
        count: u8,
        /// The whole VRRP payload's length.
        len: usize,
    },
    /// VRID 0.
    #[error("VRID 0")]
    ZeroVrid,
    /// Max Adver Int 0, which would make the down timer fire at once.
    #[error("advertisement interval 0")]
    ZeroInterval,
    /// The checksum matches neither accepted form.
    #[error("bad checksum")]
    Checksum,
}

impl DecodeError {
    /// A stable snake_case name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::MixedFamilies => "mixed_families",
            DecodeError::TooShort => "too_short",
            DecodeError::Version(_) => "version",
            DecodeError::Type(_) => "type",
            DecodeError::Length { .. } => "length",
            DecodeError::ZeroVrid => "zero_vrid",
            DecodeError::ZeroInterval => "zero_interval",
            DecodeError::Checksum => "checksum",
        }
    }
}

impl Advertisement {
    /// Parses and checks a received VRRP payload that came from `src` to
    /// `dst`. For IPv4 either checksum form is accepted and the one that
    /// matched is returned, so the caller can log or answer in kind; for
    /// IPv6 only the pseudo-header form is. The reserved bits are ignored.
    pub fn decode(
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(Advertisement, ChecksumMode), DecodeError> {
        let family = Family::of(&src);
        if Family::of(&dst) != family {
            return Err(DecodeError::MixedFamilies);
        }
        let header: [u8; HEADER_LEN] = payload
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(DecodeError::TooShort)?;
        let [version_type, vrid, priority, count, int_hi, int_lo, _, _] = header;
        let version = version_type >> 4;
        if version != VRRP_VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind = version_type & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(DecodeError::Type(kind));
        }
        let body = payload.get(HEADER_LEN..).unwrap_or_default();
        if body.len() != usize::from(count).saturating_mul(family.address_len()) {
            return Err(DecodeError::Length {
                count,
                len: payload.len(),
            });
        }
        let mode = match family {
            Family::V6 => verify(payload, src, dst, ChecksumMode::PseudoHeader)
                .then_some(ChecksumMode::PseudoHeader),
            Family::V4 => [ChecksumMode::PseudoHeader, ChecksumMode::NoPseudoHeader]
                .into_iter()
                .find(|&mode| verify(payload, src, dst, mode)),
        }
        .ok_or(DecodeError::Checksum)?;
        if vrid == 0 {
            return Err(DecodeError::ZeroVrid);
        }
        let max_adver_int_cs = u16::from_be_bytes([int_hi, int_lo]) & MAX_ADVER_INT_CS;
        if max_adver_int_cs == 0 {
            return Err(DecodeError::ZeroInterval);
        }
        let addresses = match family {
            Family::V4 => body
                .chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok())
                .map(|o| IpAddr::V4(Ipv4Addr::from(o)))
                .collect(),
            Family::V6 => body
                .chunks_exact(16)
                .filter_map(|c| <[u8; 16]>::try_from(c).ok())
                .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
                .collect(),
        };
        let ad = Advertisement {
            vrid,
            priority,
            max_adver_int_cs,
            addresses,
        };
        Ok((ad, mode))
    }
}
