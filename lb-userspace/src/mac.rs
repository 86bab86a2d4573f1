//! MAC addresses: one type with one way to write them (`02:00:00:00:00:11`)
//! and one way to read them, so the config file, the admin API, the status
//! and the logs all agree.

use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet (EUI-48) address, as frames carry it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The six octets, in wire order (what the data plane's maps hold).
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether it is a group (multicast or broadcast) address: the low bit
    /// of the first octet. A backend never has one.
    pub(crate) fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether every octet is zero (no address at all).
    pub(crate) fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Self {
        Mac(octets)
    }
}

impl From<Mac> for [u8; 6] {
    fn from(mac: Mac) -> Self {
        mac.0
    }
}

impl fmt::Display for Mac {
    /// Lower-case hex, colon-separated: `02:00:00:00:00:11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    /// The same as `Display`, so `?mac` in a log reads like an address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a MAC address; its `Display` is the message a user
/// sees (the caller adds the field's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address of the form aa:bb:cc:dd:ee:ff")]
pub struct ParseMacError(String);

impl FromStr for Mac {
    type Err = ParseMacError;

    /// Reads `aa:bb:cc:dd:ee:ff`: six octets of exactly two hex digits
    /// (any case), separated by colons.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseMacError(s.to_owned());
        let mut octets = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(error)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        match parts.next() {
            Some(_) => Err(error()),
            None => Ok(Mac(octets)),
        }
    }
}

impl Serialize for Mac {
    /// As its text (`"02:00:00:00:00:11"`), like the config file writes it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    /// From its text, by [`Mac::from_str`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_the_same() {
        let mac = Mac([0x02, 0, 0, 0xab, 0xcd, 0x11]);
        assert_eq!(mac.to_string(), "02:00:00:ab:cd:11");
        assert_eq!(format!("{mac:?}"), "02:00:00:ab:cd:11");
        assert_eq!("02:00:00:AB:cd:11".parse::<Mac>(), Ok(mac));
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:00:00:ab:cd:11\""
        );
        assert_eq!(
            serde_json::from_str::<Mac>("\"02:00:00:ab:cd:11\"").unwrap(),
            mac
        );
        assert_eq!(<[u8; 6]>::from(mac), mac.octets());
    }

    #[test]
    fn refuses_anything_but_six_colon_separated_hex_pairs() {
        for bad in [
            "02:00:00:00:00:1",
            "02:00:00:00:00:111",
            "02-00-00-00-00-11",
            "02:00:00:00:00",
            "02:00:00:00:00:11:22",
            "02:00:00:00:00:1g",
            "02:00:00:00:00:+1",
            "",
        ] {
            let error = bad.parse::<Mac>().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{bad:?} is not a MAC address of the form aa:bb:cc:dd:ee:ff")
            );
        }
        assert!(serde_json::from_str::<Mac>("\"x\"").is_err());
    }

    #[test]
    fn kinds() {
        assert!("01:00:5e:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!(!"02:00:00:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!(Mac::default().is_zero());
    }
}
