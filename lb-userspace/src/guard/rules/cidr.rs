//! Source prefixes as rules name them: parsed strictly (host bits zero),
//! written back as `ADDRESS/LENGTH`.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::GuardError;

/// A source prefix: an address with its host bits zero, and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address.
    pub address: IpAddr,
    /// Prefix length (0..=32 or 0..=128).
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

impl FromStr for Cidr {
    type Err = GuardError;

    /// `ADDRESS/LENGTH`, or a bare address (one address: /32 or /128);
    /// host bits must be zero.
    fn from_str(text: &str) -> Result<Self, GuardError> {
        let invalid = || {
            GuardError::Invalid(format!(
                "{text:?} is not a CIDR prefix (e.g. \"198.18.66.0/24\", \"2001:2:66::/48\" or one address)"
            ))
        };
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => {
                let len: u8 = len.parse().map_err(|_| invalid())?;
                if len > max {
                    return Err(GuardError::Invalid(format!(
                        "{text:?}: prefix length {len} is longer than the address ({max} bits)"
                    )));
                }
                len
            }
        };
        let network = network(address, len);
        if network != address {
            return Err(GuardError::Invalid(format!(
                "{text:?} has host bits set: the prefix is {network}/{len}"
            )));
        }
        Ok(Self { address, len })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `address` with all but its first `len` bits cleared.
pub fn network(address: IpAddr, len: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests;
