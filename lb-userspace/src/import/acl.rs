//! Source rules of the proxies (nginx `allow`/`deny`, HAProxy `src` ACLs
//! with `tcp-request ... reject`) as lbd's `[[acl]]` rules, which only
//! hold what lbd's semantics (a deny wins; an allow list lets only its
//! sources in) can say exactly; anything else is refused with a note, so
//! a guarded service is never imported more open than it was without the
//! operator being told.

use std::net::IpAddr;

use super::model::{AclRule, Note, Origin};
use crate::guard::rules::{network, Cidr};

/// A source as the proxies write it: an address, `ADDRESS/LEN` or
/// `ADDRESS/MASK` (HAProxy's dotted IPv4 mask); host bits are cleared, as
/// both proxies do. None: not an address.
pub(crate) fn source(text: &str) -> Option<Cidr> {
    let (address, len) = match text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => match len.parse::<u8>() {
            Ok(len) if len <= max => len,
            Ok(_) => return None,
            Err(_) => {
                // 255.255.255.0: a contiguous IPv4 mask.
                let mask: std::net::Ipv4Addr = len.parse().ok().filter(|_| address.is_ipv4())?;
                let bits = u32::from(mask);
                let ones = bits.leading_ones();
                if bits.checked_shl(ones).unwrap_or(0) != 0 {
                    return None;
                }
                u8::try_from(ones).ok()?
            }
        },
    };
    Some(Cidr {
        address: network(address, len),
        len,
    })
}

/// Whether `outer` holds every address of `inner`.
pub(crate) fn contains(outer: &Cidr, inner: &Cidr) -> bool {
    outer.address.is_ipv4() == inner.address.is_ipv4()
        && outer.len <= inner.len
        && network(inner.address, outer.len) == outer.address
}

/// Every address of both families: what `all` is.
pub(crate) fn everything() -> [Cidr; 2] {
    [
        Cidr {
            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            len: 0,
        },
        Cidr {
            address: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            len: 0,
        },
    ]
}

/// One rule in the order the source checks them (first match wins,
/// every source allowed when none matches): None is `all`.
#[derive(Debug, Clone)]
pub(crate) struct Ordered {
    pub(crate) allow: bool,
    pub(crate) source: Option<Cidr>,
    pub(crate) origin: Origin,
    pub(crate) what: String,
}

/// First-match rules (nginx's `allow`/`deny`) as lbd's rules, or the note
/// saying why they cannot be (a deny that an earlier allow would partly
/// let through: lbd's deny wins).
pub(crate) fn first_match(rules: &[Ordered]) -> Result<Vec<AclRule>, Note> {
    let mut allows: Vec<&Ordered> = Vec::new();
    let mut denies: Vec<AclRule> = Vec::new();
    let rule = |r: &Ordered, allow: bool, source: Cidr| AclRule {
        allow,
        source,
        origin: r.origin.clone(),
        what: r.what.clone(),
    };
    for r in rules {
        let Some(source) = r.source else {
            if r.allow {
                // `allow all`: every later rule is unreachable, and the
                // earlier allows say nothing more than it.
                return Ok(denies);
            }
            // `deny all`: only the allows (minus earlier denies) get in.
            if allows.is_empty() {
                denies.extend(everything().into_iter().map(|c| rule(r, false, c)));
                return Ok(denies);
            }
            let mut out = denies;
            out.extend(
                allows
                    .iter()
                    .filter_map(|a| a.source.map(|s| rule(a, true, s))),
            );
            return Ok(out);
        };
        if r.allow {
            // An allow inside an earlier deny never matches: dropped.
            if !denies.iter().any(|d| contains(&d.source, &source)) {
                allows.push(r);
            }
            continue;
        }
        let earlier = allows.iter().filter_map(|a| a.source.map(|s| (a, s)));
        let mut shadowed = false;
        for (a, s) in earlier {
            if contains(&s, &source) {
                shadowed = true;
            } else if contains(&source, &s) {
                return Err(Note::new(
                    &r.origin,
                    format!(
                        "WARNING: {}: the earlier `{}` ({}) lets part of it through, which lbd's rules cannot say (a deny wins over any allow); the source rules of this block are not carried over: write them as [[acl]] yourself",
                        r.what, a.what, a.origin
                    ),
                ));
            }
        }
        if !shadowed {
            denies.push(rule(r, false, source));
        }
    }
    // No `all`: every other source was allowed.
    Ok(denies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(rules: &[(bool, &str)]) -> Vec<Ordered> {
        rules
            .iter()
            .enumerate()
            .map(|(i, (allow, s))| Ordered {
                allow: *allow,
                source: if *s == "all" {
                    None
                } else {
                    Some(source(s).expect("source"))
                },
                origin: Origin::new("n.conf", i + 1),
                what: format!("{} {s}", if *allow { "allow" } else { "deny" }),
            })
            .collect()
    }

    fn rules(r: &[(bool, &str)]) -> Vec<(bool, String)> {
        first_match(&ordered(r))
            .expect("translated")
            .into_iter()
            .map(|r| (r.allow, r.source.to_string()))
            .collect()
    }

    #[test]
    fn sources_are_read_with_lengths_masks_and_host_bits() {
        assert_eq!(
            source("198.18.10.5/24").map(|c| c.to_string()),
            Some("198.18.10.0/24".to_owned())
        );
        assert_eq!(
            source("198.18.10.0/255.255.255.0").map(|c| c.to_string()),
            Some("198.18.10.0/24".to_owned())
        );
        assert_eq!(
            source("2001:2::1").map(|c| c.to_string()),
            Some("2001:2::1/128".to_owned())
        );
        assert_eq!(source("198.18.10.0/255.0.255.0"), None);
        assert_eq!(source("198.18.10.0/33"), None);
        assert_eq!(source("all"), None);
    }

    #[test]
    fn first_match_rules_become_deny_wins_rules_or_are_refused() {
        // An allow list.
        assert_eq!(
            rules(&[(true, "198.18.10.0/24"), (false, "all")]),
            [(true, "198.18.10.0/24".to_owned())]
        );
        // A deny list; allows after `allow all` never matter.
        assert_eq!(
            rules(&[
                (false, "198.18.66.0/24"),
                (true, "all"),
                (false, "198.18.0.0/15")
            ]),
            [(false, "198.18.66.0/24".to_owned())]
        );
        // A deny inside a later allow list: exact with deny-wins.
        assert_eq!(
            rules(&[
                (false, "198.18.10.5"),
                (true, "198.18.10.0/24"),
                (false, "all")
            ]),
            [
                (false, "198.18.10.5/32".to_owned()),
                (true, "198.18.10.0/24".to_owned())
            ]
        );
        // `deny all` alone: every source of both families.
        assert_eq!(
            rules(&[(false, "all")]),
            [(false, "0.0.0.0/0".to_owned()), (false, "::/0".to_owned())]
        );
        // An allow carved out of a later deny cannot be said.
        let note = first_match(&ordered(&[
            (true, "198.18.10.5"),
            (false, "198.18.10.0/24"),
        ]))
        .expect_err("refused");
        assert!(note.text.contains("lets part of it through"), "{note}");
    }
}
