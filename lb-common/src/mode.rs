//! Forwarding modes: how a VIP's packets reach its backends. A closed set,
//! stored as `VipMeta::mode`; the data plane has one place per mode and
//! lbd's config, model and metrics name them with `Mode::name`. Later modes
//! (tunnels) are added at the end so stored values never change meaning.

/// How a VIP's packets reach its backends.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Mode {
    /// Direct server return at L2: the frame is re-addressed to the
    /// backend's MAC on the LB's own segment, the IP packet is untouched
    /// (backends hold the VIP on `lo`), replies go straight to the client.
    #[default]
    DsrL2 = 0,
    /// Full NAT: destination rewritten to the backend, source to a NAT
    /// address of the LB; replies come back through the LB and are
    /// translated back. Backends are unmodified and may be routed.
    Nat = 1,
    /// Tunnelled direct server return, IP in IP: the client's packet is
    /// wrapped whole in an outer IPv4 or IPv6 header to the backend (IPIP,
    /// IP6IP6, or 4in6 for a v4 VIP served by v6-addressed backends); the
    /// backend (`lb-decap`) unwraps it, holds the VIP on `lo` and replies
    /// straight to the client. Backends may be routed.
    Ipip = 2,
    /// Tunnelled direct server return over UDP: GUE variant 1 (the inner
    /// IP packet right after the UDP header, as Linux fou and Katran speak
    /// it) to `TunnelConfig::gue_port`; the UDP source port carries the
    /// flow's hash so backends' NICs spread flows over their queues.
    Gue = 3,
}

impl Mode {
    /// Every mode, in value order.
    pub const ALL: [Mode; 4] = [Mode::DsrL2, Mode::Nat, Mode::Ipip, Mode::Gue];

    /// The mode stored as `value` in a map, if it is one.
    pub const fn from_u32(value: u32) -> Option<Mode> {
        match value {
            0 => Some(Mode::DsrL2),
            1 => Some(Mode::Nat),
            2 => Some(Mode::Ipip),
            3 => Some(Mode::Gue),
            _ => None,
        }
    }

    /// Stable name, as the config (`forwarding = "..."`), metrics labels
    /// and `lbctl status` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::DsrL2 => "dsr-l2",
            Mode::Nat => "nat",
            Mode::Ipip => "ipip",
            Mode::Gue => "gue",
        }
    }

    /// True for the tunnelled modes: the packet is encapsulated to a
    /// routed backend that runs `lb-decap` (or a kernel tunnel).
    pub const fn is_tunnel(self) -> bool {
        matches!(self, Mode::Ipip | Mode::Gue)
    }

    /// True for modes whose packets leave by a FIB next hop (routed
    /// backends) rather than to an on-link backend's MAC.
    pub const fn is_routed(self) -> bool {
        !matches!(self, Mode::DsrL2)
    }

    /// The mode named `name` (see `name`).
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(Mode::from_u32(mode as u32), Some(mode));
            assert_eq!(Mode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(Mode::from_u32(4), None);
        assert_eq!(Mode::from_name("DSR"), None);
    }
}
