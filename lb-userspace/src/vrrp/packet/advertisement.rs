//! The advertisement's fields and its encoding for the wire, with the
//! errors that keep a bad advert from being sent.

use std::net::IpAddr;

use super::{
    checksum::{checksum, effective_mode},
    ChecksumMode, Family, HEADER_LEN, MAX_ADDRESSES, MAX_ADVER_INT_CS, TYPE_ADVERTISEMENT,
    VRRP_VERSION,
};

/// One VRRPv3 advertisement, decoded: what a master announces about its
/// virtual router, and what a backup needs to decide whether to take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Virtual router ID, 1..=255.
    pub vrid: u8,
    /// The sender's priority: 255 for the address owner, 0 when it stops
    /// being master (so a backup takes over after Skew_Time).
    pub priority: u8,
    /// The sender's advertisement interval in centiseconds, 1..=4095.
    pub max_adver_int_cs: u16,
    /// The virtual addresses, all of one family.
    pub addresses: Vec<IpAddr>,
}

/// Why an advert cannot be encoded; each is a bug or a bad config upstream,
/// as a peer would refuse the packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// VRID 0 is not a valid virtual router.
    #[error("VRID must be 1..=255, got 0")]
    ZeroVrid,
    /// The interval does not fit 1..=4095 centiseconds.
    #[error("advertisement interval must be 1..=4095 cs, got {0}")]
    Interval(u16),
    /// Source, destination and addresses are not all of one family.
    #[error("source, destination and virtual addresses must be of one address family")]
    MixedFamilies,
    /// RFC 5798 §5.2.5: an advert carries at least one address.
    #[error("an advertisement needs at least one virtual address")]
    NoAddresses,
    /// More addresses than the one-byte count can say.
    #[error("at most {MAX_ADDRESSES} virtual addresses fit an advertisement, got {0}")]
    TooManyAddresses(usize),
}

impl Advertisement {
    /// The VRRP payload (no IP header) to send from `src` to `dst`, with its
    /// checksum. For IPv6 the pseudo-header is always used and `mode` is
    /// ignored. The priority is sent as is (0 announces a stop).
    pub fn encode(
        &self,
        src: IpAddr,
        dst: IpAddr,
        mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        if self.vrid == 0 {
            return Err(EncodeError::ZeroVrid);
        }
        if self.max_adver_int_cs == 0 || self.max_adver_int_cs > MAX_ADVER_INT_CS {
            return Err(EncodeError::Interval(self.max_adver_int_cs));
        }
        let family = Family::of(&src);
        if Family::of(&dst) != family {
            return Err(EncodeError::MixedFamilies);
        }
        if self.addresses.is_empty() {
            return Err(EncodeError::NoAddresses);
        }
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| EncodeError::TooManyAddresses(self.addresses.len()))?;

        let mut buf = Vec::with_capacity(
            HEADER_LEN.saturating_add(self.addresses.len().saturating_mul(family.address_len())),
        );
        buf.push((VRRP_VERSION << 4) | TYPE_ADVERTISEMENT);
        buf.push(self.vrid);
        buf.push(self.priority);
        buf.push(count);
        // The interval is at most 0x0fff, so the reserved bits go out as 0.
        buf.extend_from_slice(&self.max_adver_int_cs.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        for addr in &self.addresses {
            match (family, addr) {
                (Family::V4, IpAddr::V4(a)) => buf.extend_from_slice(&a.octets()),
                (Family::V6, IpAddr::V6(a)) => buf.extend_from_slice(&a.octets()),
                _ => return Err(EncodeError::MixedFamilies),
            }
        }
        let sum = checksum(&buf, src, dst, effective_mode(family, mode));
        if let Some(field) = buf.get_mut(6..8) {
            field.copy_from_slice(&sum.to_be_bytes());
        }
        Ok(buf)
    }
}
