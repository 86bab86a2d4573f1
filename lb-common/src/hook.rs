//! Where a program of this project runs and how an XDP program attaches:
//! lbd and lb-decap take the same words for both in their config files
//! (`attach`, `xdp_mode`), show them the same way, and keep pins under
//! the hook's name.

use core::fmt;

/// The hook a program runs at: one packet path, two entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Attach {
    /// XDP, in an `XdpMode`: the earliest and cheapest, where the driver
    /// has it.
    #[default]
    Xdp,
    /// A tc ingress program (a tcx link; lbd uses clsact + cls_bpf on
    /// kernels before 6.6): any interface, at the cost of an skb per
    /// packet.
    Tc,
}

impl Attach {
    /// Every hook.
    pub const ALL: [Attach; 2] = [Attach::Xdp, Attach::Tc];

    /// The hook as config files, pins and status spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Attach::Xdp => "xdp",
            Attach::Tc => "tc",
        }
    }
}

impl fmt::Display for Attach {
    /// Writes the hook's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an XDP program is attached, because not every driver supports
/// native XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode with a warning,
    /// or to the tc hook where NAT or tunnelled VIPs are configured (generic
    /// XDP cannot translate their packets) and always for lb-decap (whose
    /// unwrap generic XDP would leave with a stale hardware checksum; it
    /// refuses `Generic` too).
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails if the driver lacks XDP
    /// support.
    Native,
    /// Generic (skb) mode: works everywhere, slower; DSR-L2 VIPs only
    /// (lbd refuses it with NAT or tunnelled VIPs).
    Generic,
}

impl XdpMode {
    /// Every mode.
    pub const ALL: [XdpMode; 3] = [XdpMode::Auto, XdpMode::Native, XdpMode::Generic];

    /// The mode as config files and status spell it.
    pub const fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl fmt::Display for XdpMode {
    /// Writes the mode's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Config files read both by name (lb-decap's through serde; lbd's
/// checker has its own, with positions): serde's own words for an unknown
/// one, as a derived enum would give.
#[cfg(feature = "user")]
mod de {
    use core::fmt;

    use serde::de::{Deserialize, Deserializer, Error, Visitor};

    use super::{Attach, XdpMode};

    /// The hooks' names, for serde's error.
    const ATTACH_NAMES: [&str; 2] = [Attach::ALL[0].name(), Attach::ALL[1].name()];
    /// The XDP modes' names, for serde's error.
    const XDP_MODE_NAMES: [&str; 3] = [
        XdpMode::ALL[0].name(),
        XdpMode::ALL[1].name(),
        XdpMode::ALL[2].name(),
    ];

    /// Reads one of `all` by the name `name_of` gives it.
    struct Named<T: 'static> {
        all: &'static [T],
        names: &'static [&'static str],
        name_of: fn(T) -> &'static str,
    }

    impl<T: Copy> Visitor<'_> for Named<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "one of {:?}", self.names)
        }

        fn visit_str<E: Error>(self, name: &str) -> Result<T, E> {
            self.all
                .iter()
                .copied()
                .find(|v| (self.name_of)(*v) == name)
                .ok_or_else(|| E::unknown_variant(name, self.names))
        }
    }

    impl<'de> Deserialize<'de> for Attach {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Named {
                all: &Attach::ALL,
                names: &ATTACH_NAMES,
                name_of: Attach::name,
            })
        }
    }

    impl<'de> Deserialize<'de> for XdpMode {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Named {
                all: &XdpMode::ALL,
                names: &XDP_MODE_NAMES,
                name_of: XdpMode::name,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{string::ToString, vec::Vec};

    use super::*;

    #[test]
    fn every_hook_and_mode_has_its_own_name_and_shows_it() {
        let hooks: Vec<&str> = Attach::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(hooks, ["xdp", "tc"]);
        let modes: Vec<&str> = XdpMode::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(modes, ["auto", "native", "generic"]);
        for a in Attach::ALL {
            assert_eq!(a.to_string(), a.name());
        }
        for m in XdpMode::ALL {
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(Attach::default(), Attach::Xdp);
        assert_eq!(XdpMode::default(), XdpMode::Auto);
    }
}
