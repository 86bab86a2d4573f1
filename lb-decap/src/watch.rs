//! `lb-decap run`'s watch on its interface between signals. A link outlives
//! the interface it was made on (deleted and recreated by a bond or veth
//! rebuild, the link goes defunct), and with `addresses` omitted the outer
//! destinations are the interface's addresses at the last apply: either
//! change would silently stop decapsulation while the unit looks active.
//! Every `INTERVAL` `run` compares what it applied against with the
//! interface now (an ifindex, a link query and, when followed, one
//! getifaddrs) and re-applies on a change.

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
    interface: String,
    ifindex: u32,
    /// The addresses applied, when taken from the interface (`None`: the
    /// file names them, nothing to follow).
    addresses: Option<BTreeSet<IpAddr>>,
    link_path: PathBuf,
}

/// The interface as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Its index; `None` if there is no such interface.
    pub ifindex: Option<u32>,
    /// Its addresses (read only when followed).
    pub addresses: Option<BTreeSet<IpAddr>>,
    /// Whether the pinned link is attached to no interface any more.
    pub link_defunct: bool,
}

/// What a look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing changed.
    Same,
    /// Something changed (said in words): apply again.
    Changed(String),
    /// The interface cannot be applied to right now (gone, or no
    /// addresses to follow): wait for it rather than fail.
    NotReady(String),
}

impl Snapshot {
    /// The snapshot of an apply of `settings` to interface `ifindex` (read
    /// before the apply, so a change during it is seen at the next look),
    /// its link pinned at `link_path`.
    pub fn new(settings: &Settings, ifindex: u32, link_path: &Path) -> Self {
        Self {
            interface: settings.interface.clone(),
            ifindex,
            addresses: settings
                .addresses_from_interface
                .then(|| settings.addresses.iter().copied().collect()),
            link_path: link_path.to_owned(),
        }
    }

    /// Reads the interface now and compares.
    pub fn look(&self) -> Seen {
        let ifindex = interface::index(&self.interface).ok();
        let addresses = match (&self.addresses, ifindex) {
            (Some(_), Some(_)) => Some(
                interface::addresses(&self.interface)
                    .map(|list| list.into_iter().collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        };
        // A missing pin (`lb-decap cleanup` ran) is not ours to undo.
        let link_defunct = link::pinned_target(&self.link_path).is_ok_and(|t| t.ifindex == 0);
        self.compare(&Observed {
            ifindex,
            addresses,
            link_defunct,
        })
    }

    /// Compares `now` with the snapshot (`look` without the reads).
    pub fn compare(&self, now: &Observed) -> Seen {
        let name = &self.interface;
        let Some(ifindex) = now.ifindex else {
            return Seen::NotReady(format!("interface {name} is gone"));
        };
        if let (Some(_), Some(found)) = (&self.addresses, &now.addresses) {
            if found.is_empty() {
                return Seen::NotReady(format!(
                    "interface {name} has no addresses (the config takes them from it)"
                ));
            }
        }
        if ifindex != self.ifindex {
            return Seen::Changed(format!(
                "interface {name} was recreated (ifindex {} -> {ifindex}): the old link is defunct",
                self.ifindex
            ));
        }
        if now.link_defunct {
            return Seen::Changed(format!(
                "the link on {name} is defunct (the interface was recreated)"
            ));
        }
        if let (Some(applied), Some(found)) = (&self.addresses, &now.addresses) {
            if applied != found {
                let added: Vec<String> =
                    found.difference(applied).map(ToString::to_string).collect();
                let removed: Vec<String> =
                    applied.difference(found).map(ToString::to_string).collect();
                return Seen::Changed(format!(
                    "addresses of {name} changed (added [{}], removed [{}])",
                    added.join(", "),
                    removed.join(", ")
                ));
            }
        }
        Seen::Same
    }
}

#[cfg(test)]
mod tests {
    use lb_common::decap::DecapConfig;

    use super::*;
    use crate::config::{Attach, XdpMode};

    fn settings(follow: bool) -> Settings {
        Settings {
            interface: "eth0".to_owned(),
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

    fn observed(ifindex: Option<u32>, addresses: Option<BTreeSet<IpAddr>>) -> Observed {
        Observed {
            ifindex,
            addresses,
            link_defunct: false,
        }
    }

    #[test]
    fn a_recreated_interface_or_defunct_link_is_a_change() {
        let snap = Snapshot::new(&settings(false), 7, Path::new("/nonexistent"));
        assert_eq!(snap.compare(&observed(Some(7), None)), Seen::Same);
        let Seen::Changed(what) = snap.compare(&observed(Some(9), None)) else {
            panic!("a new ifindex must be a change");
        };
        assert!(what.contains("ifindex 7 -> 9"), "{what}");
        let defunct = Observed {
            link_defunct: true,
            ..observed(Some(7), None)
        };
        assert!(matches!(snap.compare(&defunct), Seen::Changed(w) if w.contains("defunct")));
        assert!(
            matches!(snap.compare(&observed(None, None)), Seen::NotReady(w) if w.contains("gone"))
        );
    }

    #[test]
    fn followed_addresses_are_compared_and_named_fixed_ones_are_not() {
        let fixed = Snapshot::new(&settings(false), 7, Path::new("/nonexistent"));
        assert_eq!(
            fixed.compare(&observed(Some(7), set(&["198.19.2.99"]))),
            Seen::Same
        );
        let follow = Snapshot::new(&settings(true), 7, Path::new("/nonexistent"));
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
