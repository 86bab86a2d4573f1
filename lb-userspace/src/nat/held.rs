//! Whether this node holds the NAT addresses it translates to. Backends
//! answer a NAT'd flow at its NAT address, which reaches the balancer only
//! while the node holds it (the kernel answers ARP / neighbour
//! solicitations for it): one removed under lbd (an interface renumbered,
//! a network manager re-applying its own configuration without the
//! secondary address) stalls every NAT'd connection of its VIPs while the
//! health checks, which leave from the node's own address, still pass and
//! nothing is counted as dropped. lbd checks at each routed scan and says
//! so once when an address goes missing (missed by two scans in a row, so
//! that a VRRP master still adding its addresses is not reported) and
//! once when it is back.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

/// A NAT address that went missing or came back since the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeldChange {
    /// The node does not hold `address`, the NAT address of `vips`.
    Missing {
        /// The NAT address.
        address: IpAddr,
        /// The VIPs translating to it.
        vips: Vec<String>,
    },
    /// The node holds `address` again.
    Back {
        /// The NAT address.
        address: IpAddr,
    },
}

/// The NAT addresses found missing, to report each change once.
#[derive(Debug, Default)]
pub(crate) struct HeldSources {
    /// Missing at the last check only (not reported yet).
    suspect: BTreeSet<IpAddr>,
    /// Missing at two checks in a row or more (reported).
    missing: BTreeSet<IpAddr>,
}

impl HeldSources {
    /// Compares the NAT addresses this node must hold now (`wanted`:
    /// address -> the VIPs translating to it) with the addresses it
    /// holds (`held`); the changes since the last call. An address is
    /// reported missing the second call in a row it is; one no longer
    /// wanted is forgotten without a word (its VIPs went, or VRRP made
    /// this node a backup).
    pub(crate) fn update(
        &mut self,
        wanted: &BTreeMap<IpAddr, Vec<String>>,
        held: &BTreeSet<IpAddr>,
    ) -> Vec<HeldChange> {
        let mut changes = Vec::new();
        self.missing.retain(|address| wanted.contains_key(address));
        let suspect = std::mem::take(&mut self.suspect);
        for (address, vips) in wanted {
            if held.contains(address) {
                if self.missing.remove(address) {
                    changes.push(HeldChange::Back { address: *address });
                }
            } else if self.missing.contains(address) {
                // Reported already.
            } else if suspect.contains(address) {
                self.missing.insert(*address);
                changes.push(HeldChange::Missing {
                    address: *address,
                    vips: vips.clone(),
                });
            } else {
                self.suspect.insert(*address);
            }
        }
        changes
    }

    /// Forgets what was missing (no NAT VIP is served any more).
    pub(crate) fn forget(&mut self) {
        self.suspect.clear();
        self.missing.clear();
    }
}

/// The NAT addresses this node must hold, each with the VIPs translating
/// to it: those of `nat_vips` (VIP name, NAT address) that no VRRP
/// instance this node is a backup of moves (`backup_addresses`: the
/// master holds those, and this node gets them at a failover).
pub(crate) fn to_hold(
    nat_vips: &[(String, IpAddr)],
    backup_addresses: &BTreeSet<IpAddr>,
) -> BTreeMap<IpAddr, Vec<String>> {
    let mut out: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for (vip, address) in nat_vips {
        if !backup_addresses.contains(address) {
            out.entry(*address).or_default().push(vip.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A NAT address removed under lbd is reported once, with its VIPs,
    /// at the second check in a row that misses it (one miss may be a
    /// VRRP master still adding it), and once when it is back; one no
    /// longer wanted is forgotten silently, and reported afresh if it is
    /// wanted and missing again.
    #[test]
    fn a_missing_nat_address_is_reported_once_and_its_return_too() {
        let mut held_sources = HeldSources::default();
        let wanted: BTreeMap<IpAddr, Vec<String>> = [
            (a("198.18.0.50"), vec!["198.18.0.100:80/tcp".to_owned()]),
            (a("2001:2::50"), vec!["[2001:2::100]:80/tcp".to_owned()]),
        ]
        .into_iter()
        .collect();
        let all: BTreeSet<IpAddr> = [a("198.18.0.2"), a("198.18.0.50"), a("2001:2::50")].into();
        assert_eq!(held_sources.update(&wanted, &all), []);
        let without: BTreeSet<IpAddr> = [a("198.18.0.2"), a("2001:2::50")].into();
        // A single miss is not reported.
        assert_eq!(held_sources.update(&wanted, &without), []);
        assert_eq!(held_sources.update(&wanted, &all), []);
        assert_eq!(held_sources.update(&wanted, &without), []);
        assert_eq!(
            held_sources.update(&wanted, &without),
            [HeldChange::Missing {
                address: a("198.18.0.50"),
                vips: vec!["198.18.0.100:80/tcp".to_owned()]
            }]
        );
        assert_eq!(held_sources.update(&wanted, &without), []);
        assert_eq!(
            held_sources.update(&wanted, &all),
            [HeldChange::Back {
                address: a("198.18.0.50")
            }]
        );
        assert_eq!(held_sources.update(&wanted, &all), []);
        // Missing, then no longer wanted: nothing to say; wanted and
        // missing again: said again.
        held_sources.update(&wanted, &without);
        assert_eq!(held_sources.update(&wanted, &without).len(), 1);
        assert_eq!(held_sources.update(&BTreeMap::new(), &without), []);
        held_sources.update(&wanted, &without);
        assert_eq!(held_sources.update(&wanted, &without).len(), 1);
        held_sources.forget();
        held_sources.update(&wanted, &without);
        assert_eq!(held_sources.update(&wanted, &without).len(), 1);
    }

    /// A NAT address a VRRP instance moves is not this node's to hold
    /// while it is that instance's backup; VIPs sharing a NAT address are
    /// named together.
    #[test]
    fn a_backups_moved_nat_addresses_are_not_its_to_hold() {
        let vips = [
            ("198.18.0.100:80/tcp".to_owned(), a("198.18.0.50")),
            ("198.18.0.101:80/tcp".to_owned(), a("198.18.0.50")),
            ("198.18.0.102:80/tcp".to_owned(), a("198.18.0.51")),
        ];
        let wanted = to_hold(&vips, &BTreeSet::new());
        assert_eq!(
            wanted[&a("198.18.0.50")],
            ["198.18.0.100:80/tcp", "198.18.0.101:80/tcp"]
        );
        assert_eq!(wanted.len(), 2);
        let wanted = to_hold(&vips, &[a("198.18.0.50")].into());
        assert_eq!(wanted.keys().collect::<Vec<_>>(), [&a("198.18.0.51")]);
    }
}
