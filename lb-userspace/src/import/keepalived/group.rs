//! `virtual_server_group NAME { ... }`: the addresses and ports (and
//! last-octet ranges of addresses, `198.18.0.100-103 80`) one IPVS
//! service answers on, which a `virtual_server group NAME` block gives
//! its real_servers; each becomes a VIP with those backends. Its `fwmark`
//! entries name no address, so they are noted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::import::blocks::Statement;
use crate::import::model::Origin;
use crate::import::ImportError;

/// Most addresses one range of a group becomes (an IPv4 range cannot
/// pass a last octet's 256; an IPv6 one is held to as many).
const MAX_RANGE: usize = 256;

/// A `virtual_server_group`.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) name: String,
    pub(super) entries: Vec<Entry>,
}

/// One line of a group.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// An address (one of a range) and a port.
    Address {
        address: IpAddr,
        port: u16,
        origin: Origin,
        what: String,
    },
    /// `fwmark N`: packets the firewall marked, whatever their address.
    Fwmark { origin: Origin, what: String },
}

/// Reads a `virtual_server_group NAME { ADDRESS[-LAST] PORT | fwmark N }`.
pub(super) fn group(file: &str, statement: &Statement) -> Result<Group, ImportError> {
    let name = match statement.args() {
        [name] => name.clone(),
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                "virtual_server_group takes one name",
            ))
        }
    };
    let mut entries = Vec::new();
    for child in statement.children() {
        let file = child.file_in(file);
        let origin = Origin::new(file, child.line);
        let bad = |reason: String| ImportError::at(file, child.line, reason);
        match child.words.as_slice() {
            [fwmark, _] if fwmark == "fwmark" => entries.push(Entry::Fwmark {
                origin,
                what: child.text(),
            }),
            [range, port] if child.block.is_none() => {
                let port = crate::import::port_number(port).ok_or_else(|| {
                    bad(format!(
                        "{} (virtual_server_group {name}): {port:?} is not a port",
                        child.text()
                    ))
                })?;
                for address in addresses(range).map_err(|why| {
                    bad(format!(
                        "{} (virtual_server_group {name}): {why}",
                        child.text()
                    ))
                })? {
                    entries.push(Entry::Address {
                        address,
                        port,
                        origin: origin.clone(),
                        what: format!("{} in virtual_server_group {name}", child.text()),
                    });
                }
            }
            _ => {
                return Err(bad(format!(
                    "{} (virtual_server_group {name}): expected ADDRESS PORT, ADDRESS-LAST PORT or fwmark N",
                    child.text()
                )))
            }
        }
    }
    Ok(Group { name, entries })
}

/// An address, or a range of them as keepalived writes it: the last
/// octet of an IPv4 address (`198.18.0.100-103`), the last group of an
/// IPv6 one, in hex (`2001:2::10-1f`), both ends included.
fn addresses(text: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(vec![address]);
    }
    let not =
        || format!("{text:?} is not an address nor a range of its last part (198.18.0.100-103)");
    let (first, last) = text.rsplit_once('-').ok_or_else(not)?;
    let out: Vec<IpAddr> = match first.parse::<IpAddr>().map_err(|_| not())? {
        IpAddr::V4(first) => {
            let [a, b, c, low] = first.octets();
            let high: u8 = last.parse().map_err(|_| not())?;
            if high < low {
                return Err(not());
            }
            (low..=high)
                .map(|d| IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
                .collect()
        }
        IpAddr::V6(first) => {
            let segments = first.segments();
            let low = segments[7];
            let high = u16::from_str_radix(last, 16).map_err(|_| not())?;
            if high < low {
                return Err(not());
            }
            if usize::from(high - low) >= MAX_RANGE {
                return Err(format!(
                    "{} addresses; the import writes at most {MAX_RANGE} VIPs for one range: split it or write the [[vip]]s yourself",
                    u32::from(high - low) + 1
                ));
            }
            (low..=high)
                .map(|last| {
                    let mut s = segments;
                    s[7] = last;
                    IpAddr::V6(Ipv6Addr::from(s))
                })
                .collect()
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_of_the_last_octet_or_group() {
        let ip = |t: &str| t.parse::<IpAddr>().expect("address");
        assert_eq!(addresses("198.18.0.100"), Ok(vec![ip("198.18.0.100")]));
        assert_eq!(
            addresses("198.18.0.100-102"),
            Ok(vec![
                ip("198.18.0.100"),
                ip("198.18.0.101"),
                ip("198.18.0.102")
            ])
        );
        assert_eq!(
            addresses("2001:2::e-10"),
            Ok(vec![ip("2001:2::e"), ip("2001:2::f"), ip("2001:2::10")])
        );
        for bad in [
            "198.18.0.100-99",
            "198.18.0.100-300",
            "web-1",
            "2001:2::1-ffff",
        ] {
            assert!(addresses(bad).is_err(), "{bad}");
        }
    }
}
