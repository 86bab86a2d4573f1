//! `lb-decap run`'s watch on its interfaces between signals. A link outlives
//! the interface it was made on (deleted and recreated by a bond or veth
//! rebuild, the link goes defunct), and with `addresses` omitted the outer
//! destinations are the interface's addresses at the last apply: either
//! change would silently stop decapsulation while the unit looks active,
//! and so would its link pin removed under it. Every `INTERVAL` `run`
//! compares what it applied against with each interface now (an ifindex,
//! a link query and, when followed, one getifaddrs) and re-applies on a
//! change.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{config::Settings, interface, link};

/// How often `run` looks at its interface: a rebuilt interface is served
/// again within about this long.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// What an apply was made against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    interfaces: Vec<Watched>,
    /// The addresses applied, when taken from the interfaces (`None`: the
    /// file names them, nothing to follow).
    addresses: Option<BTreeSet<IpAddr>>,
}

/// One interface of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Its name.
    pub name: String,
    /// Its index at the apply.
    pub ifindex: u32,
    /// The link serving it.
    pub link_path: PathBuf,
}

/// A pinned link as a look finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSeen {
    /// Pinned and attached (or unreadable: not ours to judge).
    Live,
    /// Pinned, attached to no interface any more.
    Defunct,
    /// Not pinned: removed under this lb-decap (`lb-decap cleanup`, or
    /// another lb-decap on the same pin directory), so nothing unwraps.
    Missing,
}

/// One interface as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInterface {
    /// Its index; `None` if there is no such interface.
    pub ifindex: Option<u32>,
    /// Its link.
    pub link: LinkSeen,
}

/// The interfaces as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// One per interface of the snapshot, in its order.
    pub interfaces: Vec<ObservedInterface>,
    /// Their addresses together (read only when followed).
    pub addresses: Option<BTreeSet<IpAddr>>,
}

/// What a look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing changed.
    Same,
    /// Something changed (said in words): apply again.
    Changed(String),
    /// An interface cannot be applied to right now (gone, or no
    /// addresses to follow): wait for it rather than fail.
    NotReady(String),
}

impl Snapshot {
    /// The snapshot of an apply of `settings` to `interfaces` (index read
    /// before the apply, so a change during it is seen at the next look,
    /// and the link serving each).
    pub fn new(settings: &Settings, interfaces: Vec<Watched>) -> Self {
        Self {
            interfaces,
            addresses: settings
                .addresses_from_interface
                .then(|| settings.addresses.iter().copied().collect()),
        }
    }

    /// Reads the interfaces now and compares.
    pub fn look(&self) -> Seen {
        let interfaces: Vec<ObservedInterface> = self
            .interfaces
            .iter()
            .map(|watched| ObservedInterface {
                ifindex: interface::index(&watched.name).ok(),
                link: link_seen(&watched.link_path),
            })
            .collect();
        let all_there = interfaces.iter().all(|i| i.ifindex.is_some());
        let addresses = match &self.addresses {
            Some(_) if all_there => {
                let names: Vec<String> = self.interfaces.iter().map(|w| w.name.clone()).collect();
                Some(crate::config::addresses_of(&names).unwrap_or_default())
            }
            _ => None,
        };
        self.compare(&Observed {
            interfaces,
            addresses,
        })
    }

    /// Compares `now` with the snapshot (`look` without the reads).
    pub fn compare(&self, now: &Observed) -> Seen {
        let pairs = || self.interfaces.iter().zip(&now.interfaces);
        for (watched, seen) in pairs() {
            if seen.ifindex.is_none() {
                return Seen::NotReady(format!("interface {} is gone", watched.name));
            }
        }
        if let (Some(_), Some(found)) = (&self.addresses, &now.addresses) {
            if found.is_empty() {
                return Seen::NotReady(format!(
                    "{} no addresses (the config takes them from {})",
                    match self.interfaces.as_slice() {
                        [one] => format!("interface {} has", one.name),
                        _ => format!("interfaces {} have", self.names()),
                    },
                    if self.interfaces.len() == 1 {
                        "it"
                    } else {
                        "them"
                    }
                ));
            }
        }
        for (watched, seen) in pairs() {
            let name = &watched.name;
            if let Some(ifindex) = seen.ifindex.filter(|i| *i != watched.ifindex) {
                return Seen::Changed(format!(
                    "interface {name} was recreated (ifindex {} -> {ifindex}): the old link is defunct",
                    watched.ifindex
                ));
            }
            match seen.link {
                LinkSeen::Live => {}
                LinkSeen::Defunct => {
                    return Seen::Changed(format!(
                        "the link on {name} is defunct (the interface was recreated)"
                    ))
                }
                LinkSeen::Missing => {
                    return Seen::Changed(format!(
                        "the link on {name} ({}) is gone: removed under this lb-decap (`lb-decap cleanup`, or another lb-decap on the same pin directory), so nothing unwrapped there",
                        watched.link_path.display()
                    ))
                }
            }
        }
        if let (Some(applied), Some(found)) = (&self.addresses, &now.addresses) {
            if applied != found {
                let added: Vec<String> =
                    found.difference(applied).map(ToString::to_string).collect();
                let removed: Vec<String> =
                    applied.difference(found).map(ToString::to_string).collect();
                return Seen::Changed(format!(
                    "addresses of {} changed (added [{}], removed [{}])",
                    self.names(),
                    added.join(", "),
                    removed.join(", ")
                ));
            }
        }
        Seen::Same
    }

    /// The interfaces' names, for messages.
    fn names(&self) -> String {
        self.interfaces
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The link pinned at `path` as a look finds it. Only a pin that is not
/// there is missing (before, it was taken for "cleanup ran" and ignored,
/// so a link another lb-decap removed went unnoticed); one that cannot be
/// read is left alone.
fn link_seen(path: &Path) -> LinkSeen {
    match path.try_exists() {
        Ok(false) => LinkSeen::Missing,
        _ => match link::pinned_target(path) {
            Ok(target) if target.ifindex == 0 => LinkSeen::Defunct,
            _ => LinkSeen::Live,
        },
    }
}

#[cfg(test)]
mod tests {
    use lb_common::decap::DecapConfig;

    use super::*;
    use crate::config::{Attach, XdpMode};

    fn settings(follow: bool) -> Settings {
        Settings {
            interfaces: vec!["eth0".to_owned()],
            attach: Attach::Xdp,
            xdp_mode: XdpMode::Auto,
            addresses: vec!["198.19.2.11".parse().expect("ip")],
            addresses_from_interface: follow,
            sources: Vec::new(),
            vips: Vec::new(),
            config: DecapConfig::default(),
        }
    }

    fn set(list: &[&str]) -> Option<BTreeSet<IpAddr>> {
        Some(list.iter().map(|a| a.parse().expect("ip")).collect())
    }

    fn watched(name: &str, ifindex: u32) -> Watched {
        Watched {
            name: name.to_owned(),
            ifindex,
            link_path: PathBuf::from(format!("/nonexistent/xdp-link-{name}")),
        }
    }

    fn snapshot(follow: bool) -> Snapshot {
        Snapshot::new(&settings(follow), vec![watched("eth0", 7)])
    }

    fn seen(ifindex: Option<u32>, link: LinkSeen) -> ObservedInterface {
        ObservedInterface { ifindex, link }
    }

    fn observed(ifindex: Option<u32>, addresses: Option<BTreeSet<IpAddr>>) -> Observed {
        Observed {
            interfaces: vec![seen(ifindex, LinkSeen::Live)],
            addresses,
        }
    }

    #[test]
    fn a_recreated_interface_or_defunct_link_is_a_change() {
        let snap = snapshot(false);
        assert_eq!(snap.compare(&observed(Some(7), None)), Seen::Same);
        let Seen::Changed(what) = snap.compare(&observed(Some(9), None)) else {
            panic!("a new ifindex must be a change");
        };
        assert!(what.contains("ifindex 7 -> 9"), "{what}");
        let defunct = Observed {
            interfaces: vec![seen(Some(7), LinkSeen::Defunct)],
            addresses: None,
        };
        assert!(matches!(snap.compare(&defunct), Seen::Changed(w) if w.contains("defunct")));
        assert!(
            matches!(snap.compare(&observed(None, None)), Seen::NotReady(w) if w.contains("gone"))
        );
    }

    /// This lb-decap's own link pin removed under it (by another lb-decap
    /// on the same pin directory, or a cleanup) is a change, applied
    /// again. Before, a missing pin was taken for "cleanup ran" and
    /// reported as nothing changed, so unwrapping had silently stopped.
    #[test]
    fn a_missing_own_link_pin_is_a_change() {
        let snap = Snapshot::new(
            &settings(false),
            vec![watched("eth0", 7), watched("eth1", 8)],
        );
        let both_live = Observed {
            interfaces: vec![seen(Some(7), LinkSeen::Live), seen(Some(8), LinkSeen::Live)],
            addresses: None,
        };
        assert_eq!(snap.compare(&both_live), Seen::Same);
        let missing = Observed {
            interfaces: vec![
                seen(Some(7), LinkSeen::Missing),
                seen(Some(8), LinkSeen::Live),
            ],
            addresses: None,
        };
        let Seen::Changed(what) = snap.compare(&missing) else {
            panic!("a missing link pin must be a change");
        };
        assert!(
            what.contains("the link on eth0 (/nonexistent/xdp-link-eth0) is gone"),
            "{what}"
        );
        // And as read from the file system: the path does not exist.
        assert_eq!(
            link_seen(Path::new("/nonexistent/xdp-link-eth0")),
            LinkSeen::Missing
        );
        assert!(matches!(snap.look(), Seen::NotReady(_) | Seen::Changed(_)));
        // The second interface gone: waited for, as with one.
        let gone = Observed {
            interfaces: vec![seen(Some(7), LinkSeen::Live), seen(None, LinkSeen::Live)],
            addresses: None,
        };
        assert!(matches!(snap.compare(&gone), Seen::NotReady(w) if w.contains("eth1 is gone")));
    }

    #[test]
    fn followed_addresses_are_compared_and_named_fixed_ones_are_not() {
        let fixed = snapshot(false);
        assert_eq!(
            fixed.compare(&observed(Some(7), set(&["198.19.2.99"]))),
            Seen::Same
        );
        let follow = snapshot(true);
        assert_eq!(
            follow.compare(&observed(Some(7), set(&["198.19.2.11"]))),
            Seen::Same
        );
        let Seen::Changed(what) = follow.compare(&observed(Some(7), set(&["198.19.2.12"]))) else {
            panic!("a new address must be a change");
        };
        assert!(
            what.contains("added [198.19.2.12], removed [198.19.2.11]"),
            "{what}"
        );
        assert!(matches!(
            follow.compare(&observed(Some(7), set(&[]))),
            Seen::NotReady(w) if w.contains("no addresses")
        ));
    }
}
