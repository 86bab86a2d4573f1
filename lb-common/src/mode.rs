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
}

impl Mode {
    /// Every mode, in value order.
    pub const ALL: [Mode; 2] = [Mode::DsrL2, Mode::Nat];

    /// The mode stored as `value` in a map, if it is one.
    pub const fn from_u32(value: u32) -> Option<Mode> {
        match value {
            0 => Some(Mode::DsrL2),
            1 => Some(Mode::Nat),
            _ => None,
        }
    }

    /// Stable name, as the config (`forwarding = "..."`), metrics labels
    /// and `lbctl status` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::DsrL2 => "dsr-l2",
            Mode::Nat => "nat",
        }
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
        assert_eq!(Mode::from_u32(2), None);
        assert_eq!(Mode::from_name("DSR"), None);
    }
}
