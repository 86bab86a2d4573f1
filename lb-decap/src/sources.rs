//! The `sources` key: prefixes the balancers' tunnel packets come from
//! (lbd's `[tunnel] source_ipv4` / `source_ipv6`, or its interface
//! address). With it set, a tunnel packet to this backend from anywhere
//! else is dropped (`drop_not_source`), so nobody can hand packets to the
//! VIPs past the balancers' ACLs, rate limits and SYN-flood protection, or
//! use the backend as a reflector with spoofed inner sources.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context as _};

/// One source prefix, validated: no host bits set, not IPv4-mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: at most 32 (IPv4) or 128 (IPv6).
    pub len: u8,
}

impl Prefix {
    /// The longest prefix of `addr`'s family.
    fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    /// Whether `address` is inside the prefix (the same test as the
    /// program's trie lookup; used by tests and diagnostics).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.addr, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                mask(&a.octets(), self.len) == mask(&net.octets(), self.len)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                mask(&a.octets(), self.len) == mask(&net.octets(), self.len)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for Prefix {
    type Err = anyhow::Error;

    /// `ADDR/LEN` (`198.18.200.0/24`, `2001:2:0:f0::/64`), or a bare address
    /// for a single host.
    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| anyhow!("{text:?}: {addr_text:?} is not an IPv4 or IPv6 address"))?;
        if let IpAddr::V6(v6) = addr {
            if v6.to_ipv4_mapped().is_some() {
                bail!(
                    "{text:?} is IPv4-mapped, which no outer header carries: write the IPv4 prefix"
                );
            }
        }
        let max = Self::max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| anyhow!("{text:?}: prefix length {l:?} is not 0 to {max}"))?,
        };
        let network = network_of(addr, len);
        if network != addr {
            bail!("{text:?} has host bits set (did you mean {network}/{len}?)");
        }
        Ok(Self { addr, len })
    }
}

/// `addr` with every bit past `len` cleared.
fn network_of(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let o = mask(&a.octets(), len);
            IpAddr::from([o[0], o[1], o[2], o[3]])
        }
        IpAddr::V6(a) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&mask(&a.octets(), len));
            IpAddr::from(o)
        }
    }
}

/// The first `len` bits of `bytes`, the rest zero.
fn mask(bytes: &[u8], len: u8) -> Vec<u8> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let keep = usize::from(len).saturating_sub(i * 8).min(8);
            if keep == 0 {
                0
            } else {
                b & (0xffu8 << (8 - keep))
            }
        })
        .collect()
}

/// Validates the `sources` key: sorted, unique prefixes, at most `max` per
/// family. `None` (the key omitted) is no check at all; an empty list is
/// refused (it would drop every tunnel packet).
pub fn parse(list: Option<&[String]>, max: u32) -> anyhow::Result<Vec<Prefix>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        bail!("sources: empty: every tunnel packet would be dropped (omit the key to accept any sender)");
    }
    let mut prefixes: Vec<Prefix> = list
        .iter()
        .map(|p| p.parse::<Prefix>())
        .collect::<anyhow::Result<_>>()
        .context("sources")?;
    prefixes.sort();
    prefixes.dedup();
    for (family, v4) in [("IPv4", true), ("IPv6", false)] {
        let count = prefixes.iter().filter(|p| p.addr.is_ipv4() == v4).count();
        if count > max as usize {
            bail!("sources: {count} {family} prefixes given, at most {max}");
        }
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_bare_addresses_are_hosts() {
        let p: Prefix = "198.18.200.0/24".parse().expect("v4");
        assert_eq!(p.to_string(), "198.18.200.0/24");
        assert!(p.contains("198.18.200.7".parse().expect("ip")));
        assert!(!p.contains("198.18.201.7".parse().expect("ip")));
        assert!(!p.contains("2001:2::1".parse().expect("ip")));
        let p: Prefix = "2001:2:0:f0::/64".parse().expect("v6");
        assert!(p.contains("2001:2:0:f0::9".parse().expect("ip")));
        assert!(!p.contains("2001:2:0:f1::9".parse().expect("ip")));
        assert_eq!(
            "198.19.200.7".parse::<Prefix>().expect("host").to_string(),
            "198.19.200.7/32"
        );
        assert_eq!("2001:2::7".parse::<Prefix>().expect("host").len, 128);
        assert_eq!("0.0.0.0/0".parse::<Prefix>().expect("all").len, 0);
        let p: Prefix = "198.18.200.128/25".parse().expect("v4 /25");
        assert!(p.contains("198.18.200.255".parse().expect("ip")));
        assert!(!p.contains("198.18.200.127".parse().expect("ip")));
    }

    #[test]
    fn bad_prefixes_name_what_is_wrong() {
        for (bad, word) in [
            (
                "198.18.200.1/24",
                "host bits set (did you mean 198.18.200.0/24?)",
            ),
            ("2001:2:0:f0::1/64", "did you mean 2001:2:0:f0::/64"),
            ("198.18.200.0/33", "prefix length \"33\" is not 0 to 32"),
            ("2001:2::/129", "not 0 to 128"),
            ("198.18.200.0/x", "prefix length \"x\""),
            ("198.18.200/24", "not an IPv4 or IPv6 address"),
            ("::ffff:198.18.200.0/120", "IPv4-mapped"),
        ] {
            let error = format!("{:#}", bad.parse::<Prefix>().expect_err(bad));
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
    }

    #[test]
    fn the_list_is_sorted_unique_bounded_and_never_empty() {
        assert!(parse(None, 2).expect("omitted").is_empty());
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let got = parse(
            Some(&list(&[
                "2001:2:0:f0::/64",
                "198.18.200.0/24",
                "198.18.200.0/24",
            ])),
            2,
        )
        .expect("valid");
        assert_eq!(got.len(), 2);
        assert!(got[0].addr.is_ipv4());
        let error = format!("{:#}", parse(Some(&[]), 2).expect_err("empty"));
        assert!(error.contains("sources: empty"), "{error}");
        let error = format!(
            "{:#}",
            parse(Some(&list(&["198.18.0.1", "198.18.0.2", "198.18.0.3"])), 2)
                .expect_err("too many")
        );
        assert!(
            error.contains("sources: 3 IPv4 prefixes given, at most 2"),
            "{error}"
        );
        // Two per family is within the bound of two.
        parse(
            Some(&list(&[
                "198.18.0.1",
                "198.18.0.2",
                "2001:2::1",
                "2001:2::2",
            ])),
            2,
        )
        .expect("per family");
        let error = format!(
            "{:#}",
            parse(Some(&list(&["198.18.0.0/16", "198.18.0.1/16"])), 2).expect_err("host bits")
        );
        assert!(error.starts_with("sources: \"198.18.0.1/16\""), "{error}");
    }
}
