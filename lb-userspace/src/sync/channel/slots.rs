//! The listener's handshake slots: who may shake hands at all (the
//! configured peers' addresses), and which handshake gives way when the
//! slots are taken. Unauthenticated clients can hold a slot for the whole
//! handshake time; refusing newcomers then would let a few hosts lock a
//! real peer out for as long as they keep reconnecting, so a newcomer
//! takes the slot of the oldest handshake instead.

use std::{
    collections::VecDeque,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use super::{MAX_HANDSHAKES, MAX_HANDSHAKES_PER_SOURCE};

/// Which source addresses a listener lets shake hands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sources {
    /// Any address (a listener whose peers are not known).
    Any,
    /// Only these, the configured peers' addresses: a connection from
    /// anywhere else is closed at accept, before any byte, and counted.
    Peers(Vec<IpAddr>),
}

impl Sources {
    /// Whether a connection from `ip` may shake hands (an IPv4 client of
    /// a dual-stack listener, seen as `::ffff:a.b.c.d`, is its IPv4
    /// address).
    pub(super) fn admits(&self, ip: IpAddr) -> bool {
        match self {
            Sources::Any => true,
            Sources::Peers(peers) => {
                let ip = ip.to_canonical();
                peers.iter().any(|p| p.to_canonical() == ip)
            }
        }
    }

    /// The group a source address counts in for
    /// [`MAX_HANDSHAKES_PER_SOURCE`]. From any address: an IPv4 address,
    /// or an IPv6 /64 (one host commonly holds a whole /64, so counting
    /// exact addresses would let it take every slot). From the configured
    /// peers only: the address itself, as [`Sources::admits`] reads it
    /// (peers commonly share one /64, and must not share one budget:
    /// each would evict the others' handshakes, and a process looping
    /// connect() on one peer's host would keep them all out).
    pub(super) fn group(&self, ip: IpAddr) -> IpAddr {
        match (self, ip.to_canonical()) {
            (Sources::Any, IpAddr::V6(v6)) => {
                IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX)))
            }
            (_, ip) => ip,
        }
    }
}

/// The handshakes under way, oldest first, each with its peer's address;
/// `T` is what cuts one (a task's abort handle).
#[derive(Debug)]
pub(super) struct Slots<T> {
    taken: VecDeque<(T, SocketAddr)>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            taken: VecDeque::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Handshakes under way.
    pub(super) fn len(&self) -> usize {
        self.taken.len()
    }

    /// Frees a slot for a handshake from `peer` if it needs one: the
    /// oldest handshake of its source group (as `sources` groups them,
    /// see [`Sources::group`]) when that group holds
    /// [`MAX_HANDSHAKES_PER_SOURCE`] (a source only ever displaces its
    /// own), else the oldest of all when [`MAX_HANDSHAKES`] are under
    /// way. Returns the handshake to cut and its peer.
    pub(super) fn make_room(
        &mut self,
        peer: SocketAddr,
        sources: &Sources,
    ) -> Option<(T, SocketAddr)> {
        let group = sources.group(peer.ip());
        let same = |(_, p): &(T, SocketAddr)| sources.group(p.ip()) == group;
        let at = if self.taken.iter().filter(|s| same(s)).count() >= MAX_HANDSHAKES_PER_SOURCE {
            self.taken.iter().position(same)
        } else if self.taken.len() >= MAX_HANDSHAKES {
            Some(0)
        } else {
            None
        };
        at.and_then(|i| self.taken.remove(i))
    }

    /// A new handshake, the newest.
    pub(super) fn push(&mut self, cut: T, peer: SocketAddr) {
        self.taken.push_back((cut, peer));
    }

    /// A handshake ended (a cut one is gone already).
    pub(super) fn remove(&mut self, is: impl Fn(&T) -> bool) {
        self.taken.retain(|(t, _)| !is(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let g = |s: &str| Sources::Any.group(s.parse().unwrap());
        assert_eq!(g("2001:db8:1:2::1"), g("2001:db8:1:2:ffff:ffff:ffff:fffe"));
        assert_eq!(
            g("2001:db8:1:2::1"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
        assert_eq!(g("::ffff:198.18.0.2"), g("198.18.0.2"));
        assert_ne!(g("198.18.0.2"), g("198.18.0.3"));
    }

    #[test]
    fn configured_peers_count_per_address() {
        let peers = Sources::Peers(vec!["2001:db8:1:2::1".parse().unwrap()]);
        let g = |s: &str| peers.group(s.parse().unwrap());
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:2::2"));
        assert_eq!(
            g("2001:db8:1:2::1"),
            "2001:db8:1:2::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(g("::ffff:198.18.0.2"), g("198.18.0.2"));
    }

    #[test]
    fn only_the_configured_peers_may_shake_hands() {
        let peers = Sources::Peers(vec![
            "198.18.0.3".parse().unwrap(),
            "2001:db8::3".parse().unwrap(),
        ]);
        assert!(peers.admits("198.18.0.3".parse().unwrap()));
        assert!(
            peers.admits("::ffff:198.18.0.3".parse().unwrap()),
            "dual-stack listener"
        );
        assert!(peers.admits("2001:db8::3".parse().unwrap()));
        assert!(!peers.admits("198.18.0.4".parse().unwrap()));
        assert!(
            !peers.admits("2001:db8::4".parse().unwrap()),
            "exact addresses, not /64s"
        );
        assert!(Sources::Any.admits("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn a_full_pool_cuts_its_oldest_handshake_for_a_newcomer() {
        let mut slots = Slots::default();
        // Four hosts, four handshakes each: every slot taken.
        let mut n = 0;
        for host in 2..6 {
            for _ in 0..MAX_HANDSHAKES_PER_SOURCE {
                let peer = at(&format!("203.0.113.{host}"), 1000 + n);
                assert!(slots.make_room(peer, &Sources::Any).is_none());
                slots.push(n, peer);
                n += 1;
            }
        }
        assert_eq!(slots.len(), MAX_HANDSHAKES);
        // The real peer is let in, in place of the oldest.
        let real = at("198.18.0.3", 7540);
        assert_eq!(
            slots.make_room(real, &Sources::Any),
            Some((0, at("203.0.113.2", 1000)))
        );
        slots.push(100, real);
        assert_eq!(slots.len(), MAX_HANDSHAKES);
        slots.remove(|&t| t == 100);
        assert_eq!(slots.len(), MAX_HANDSHAKES - 1);
    }

    #[test]
    fn a_source_at_its_limit_displaces_only_its_own_handshakes() {
        let mut slots = Slots::default();
        let other = at("198.18.0.3", 7540);
        slots.push(0, other);
        // One IPv6 /64, addresses all different: one source.
        for i in 1..=4 {
            let peer = at(&format!("2001:db8:0:1::{i}"), 1000);
            assert!(slots.make_room(peer, &Sources::Any).is_none());
            slots.push(i, peer);
        }
        let fifth = at("2001:db8:0:1::ff", 1000);
        assert_eq!(
            slots.make_room(fifth, &Sources::Any),
            Some((1, at("2001:db8:0:1::1", 1000))),
            "the oldest of its own /64, not the other peer's"
        );
        slots.push(5, fifth);
        assert_eq!(slots.len(), 5);
        // Another /64 is another source.
        assert!(slots
            .make_room(at("2001:db8:0:2::1", 1000), &Sources::Any)
            .is_none());
    }

    #[test]
    fn configured_peers_in_one_64_never_evict_each_other() {
        // A mesh whose nodes share one /64, one of them (::9) flooding:
        // a process on its host looping connect() from its address.
        let peer = |i: u16| at(&format!("2001:db8:0:1::{i}"), 7540);
        let sources = Sources::Peers((1..=9).map(|i| peer(i).ip()).collect());
        let mut slots = Slots::default();
        let mut cut = Vec::new();
        let mut push = |slots: &mut Slots<u16>, task: u16, from: SocketAddr| {
            if let Some((t, _)) = slots.make_room(from, &sources) {
                cut.push(t);
            }
            slots.push(task, from);
        };
        // Every peer restarts at once and shakes hands, the flood
        // going on between them.
        let mut task = 100;
        for i in 1..=8 {
            push(&mut slots, i, peer(i));
            for _ in 0..3 {
                push(&mut slots, task, peer(9));
                task += 1;
            }
        }
        assert!(
            cut.iter().all(|&t| t >= 100),
            "only the flooding address's own handshakes were cut: {cut:?}"
        );
        assert_eq!(slots.len(), 8 + MAX_HANDSHAKES_PER_SOURCE);
        // The same peers on a listener open to any address would share a
        // budget: the /64 holds 4 at most.
        let mut any = Slots::default();
        let evicted = (1..=8)
            .filter_map(|i| {
                let cut = any.make_room(peer(i), &Sources::Any);
                any.push(i, peer(i));
                cut
            })
            .count();
        assert_eq!(evicted, 8 - MAX_HANDSHAKES_PER_SOURCE);
    }
}
