//! Client affinity: what of a new flow Maglev hashes to pick its backend.
//! A closed set stored in `VipMeta::forwarding` (see `VipMeta::affinity`); lbd's config, API and
//! status name the values with `Affinity::name`. Zero, what lbd wrote
//! before affinity existed, is `Connection`.

/// What of a new flow picks its backend. A flow keeps the backend it got
/// for its whole life either way (the connection table); affinity decides
/// where a client's *next* connections go.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Affinity {
    /// Each connection on its own: Maglev hashes the whole 5-tuple, so one
    /// client's connections spread over the backends by weight.
    #[default]
    Connection = 0,
    /// Client affinity (HAProxy's `balance source`, nginx's `ip_hash`,
    /// IPVS's `sh`): Maglev hashes the client's address alone, so every
    /// connection of one client goes to the same backend while the
    /// VIP's backends stay as they are, on every node (the hash and the
    /// tables are the same everywhere), and to every VIP with the same
    /// backends and table. A backend change moves only the clients whose
    /// slots changed, as it moves connections.
    Source = 1,
}

impl Affinity {
    /// Every affinity, in value order.
    pub const ALL: [Affinity; 2] = [Affinity::Connection, Affinity::Source];

    /// The affinity stored as `value` in a map, if it is one.
    pub const fn from_u32(value: u32) -> Option<Affinity> {
        match value {
            0 => Some(Affinity::Connection),
            1 => Some(Affinity::Source),
            _ => None,
        }
    }

    /// Stable name, as the config (`affinity = "..."`), the API and
    /// `lbctl status` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Affinity::Connection => "connection",
            Affinity::Source => "source",
        }
    }

    /// The affinity named `name` (see `name`).
    pub fn from_name(name: &str) -> Option<Affinity> {
        Affinity::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_round_trip() {
        for affinity in Affinity::ALL {
            assert_eq!(Affinity::from_u32(affinity as u32), Some(affinity));
            assert_eq!(Affinity::from_name(affinity.name()), Some(affinity));
        }
        assert_eq!(Affinity::from_u32(2), None);
        assert_eq!(Affinity::from_name("Source"), None);
        assert_eq!(Affinity::default() as u32, 0);
    }
}
