//! The listener's handshake slots: who may shake hands at all (the
//! configured peers' addresses), and which handshake gives way when the
//! slots are taken. Unauthenticated clients can hold a slot for the whole
//! handshake time; refusing newcomers then would let a few hosts lock a
//! real peer out for as long as they keep reconnecting, so a newcomer
//! takes the slot of the handshake that has come least far instead: the
//! one whose peer has sent the fewest bytes, the oldest of those. A
//! process looping connect() from a peer's own address (no key needed:
//! admission goes by address) thus cuts its own idle connections, never
//! the peer's handshake whose Hello is in and answered.
use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, ReadBuf};

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

/// How far a handshake has come: the bytes its peer has sent so far,
/// shared by the handshake's task (which counts them, see [`Counted`])
/// and the accept loop (which cuts the handshake that has come least far).
#[derive(Debug, Default)]
pub(super) struct Progress(AtomicU64);

impl Progress {
    /// Bytes the peer has sent.
    pub(super) fn received(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// `bytes` more came from the peer.
    pub(super) fn add(&self, bytes: usize) {
        self.0
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The peer has sent something already, seen before its task read
    /// it (its Hello waiting at accept): at least one byte.
    pub(super) fn note_pending(&self) {
        self.0.fetch_max(1, Ordering::Relaxed);
    }
}

/// A reader that counts what it reads into a handshake's [`Progress`].
#[derive(Debug)]
pub(super) struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R> Counted<R> {
    /// Counts what `inner` reads into `progress`.
    pub(super) fn new(inner: R, progress: Arc<Progress>) -> Self {
        Self { inner, progress }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.progress.add(read);
        }
        polled
    }
}

/// One handshake under way: what cuts it, its peer, and how far it came.
#[derive(Debug)]
struct Taken<T> {
    cut: T,
    peer: SocketAddr,
    progress: Arc<Progress>,
}

/// The handshakes under way, oldest first, each with its peer's address
/// and progress; `T` is what cuts one (a task's abort handle).
#[derive(Debug)]
pub(super) struct Slots<T> {
    taken: VecDeque<Taken<T>>,
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

    /// Frees a slot for a handshake from `peer` if it needs one: from its
    /// source group (as `sources` groups them, see [`Sources::group`])
    /// when that group holds [`MAX_HANDSHAKES_PER_SOURCE`] (a source only
    /// ever displaces its own), else from all when [`MAX_HANDSHAKES`] are
    /// under way; of those, the handshake whose peer has sent the fewest
    /// bytes, the oldest of them on a tie. Returns the handshake to cut
    /// and its peer.
    pub(super) fn make_room(
        &mut self,
        peer: SocketAddr,
        sources: &Sources,
    ) -> Option<(T, SocketAddr)> {
        let group = sources.group(peer.ip());
        let same = |s: &Taken<T>| sources.group(s.peer.ip()) == group;
        let from_group = self.taken.iter().filter(|s| same(s)).count() >= MAX_HANDSHAKES_PER_SOURCE;
        if !from_group && self.taken.len() < MAX_HANDSHAKES {
            return None;
        }
        // `min_by_key` keeps the first of equals: the oldest.
        let at = self
            .taken
            .iter()
            .enumerate()
            .filter(|(_, s)| !from_group || same(s))
            .min_by_key(|(_, s)| s.progress.received())
            .map(|(i, _)| i);
        at.and_then(|i| self.taken.remove(i))
            .map(|taken| (taken.cut, taken.peer))
    }

    /// A new handshake, the newest, its peer's bytes counted in `progress`.
    pub(super) fn push(&mut self, cut: T, peer: SocketAddr, progress: Arc<Progress>) {
        self.taken.push_back(Taken {
            cut,
            peer,
            progress,
        });
    }

    /// A handshake ended (a cut one is gone already).
    pub(super) fn remove(&mut self, is: impl Fn(&T) -> bool) {
        self.taken.retain(|taken| !is(&taken.cut));
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
                slots.push(n, peer, Arc::default());
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
        slots.push(100, real, Arc::default());
        assert_eq!(slots.len(), MAX_HANDSHAKES);
        slots.remove(|&t| t == 100);
        assert_eq!(slots.len(), MAX_HANDSHAKES - 1);
    }

    #[test]
    fn a_source_at_its_limit_displaces_only_its_own_handshakes() {
        let mut slots = Slots::default();
        let other = at("198.18.0.3", 7540);
        slots.push(0, other, Arc::default());
        // One IPv6 /64, addresses all different: one source.
        for i in 1..=4 {
            let peer = at(&format!("2001:db8:0:1::{i}"), 1000);
            assert!(slots.make_room(peer, &Sources::Any).is_none());
            slots.push(i, peer, Arc::default());
        }
        let fifth = at("2001:db8:0:1::ff", 1000);
        assert_eq!(
            slots.make_room(fifth, &Sources::Any),
            Some((1, at("2001:db8:0:1::1", 1000))),
            "the oldest of its own /64, not the other peer's"
        );
        slots.push(5, fifth, Arc::default());
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
            slots.push(task, from, Arc::default());
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
                any.push(i, peer(i), Arc::default());
                cut
            })
            .count();
        assert_eq!(evicted, 8 - MAX_HANDSHAKES_PER_SOURCE);
    }

    /// A progress that has come `bytes` far.
    fn sent(bytes: usize) -> Arc<Progress> {
        let progress = Arc::<Progress>::default();
        progress.add(bytes);
        progress
    }

    #[test]
    fn a_newcomer_cuts_the_handshake_that_has_sent_least_the_oldest_first() {
        let peer = "198.18.0.3".parse().unwrap();
        let sources = Sources::Peers(vec![peer]);
        let from = |port| SocketAddr::new(peer, port);
        let mut slots = Slots::default();
        // The real peer's handshake, oldest, its Hello in; then idle
        // connections from its address.
        let real = sent(60);
        slots.push(0, from(1000), real.clone());
        for i in 1..MAX_HANDSHAKES_PER_SOURCE {
            slots.push(i, from(1000 + u16::try_from(i).unwrap()), Arc::default());
        }
        let mut cut = Vec::new();
        for i in 10..20 {
            cut.extend(slots.make_room(from(2000 + i), &sources).map(|(t, _)| t));
            slots.push(usize::from(i), from(2000 + i), Arc::default());
        }
        assert!(!cut.contains(&0), "the real handshake was cut: {cut:?}");
        assert_eq!(&cut[..3], [1, 2, 3], "the oldest idle ones first");
        // Every one under way: the one that has sent least gives way.
        let mut busy = Slots::default();
        busy.push(0, from(1), sent(90));
        busy.push(1, from(2), sent(30));
        busy.push(2, from(3), sent(60));
        busy.push(3, from(4), sent(30));
        assert_eq!(busy.make_room(from(5), &sources), Some((1, from(2))));
        // Progress counted after the push still counts.
        real.add(1);
        assert_eq!(real.received(), 61);
    }

    #[test]
    fn a_full_pool_cuts_an_idle_handshake_before_one_under_way() {
        let mut slots = Slots::default();
        for n in 0..MAX_HANDSHAKES {
            let host = 2 + n / MAX_HANDSHAKES_PER_SOURCE;
            let progress = if n == 0 { sent(60) } else { Arc::default() };
            slots.push(n, at(&format!("203.0.113.{host}"), 1000), progress);
        }
        assert_eq!(
            slots.make_room(at("198.18.0.3", 7540), &Sources::Any),
            Some((1, at("203.0.113.2", 1000)))
        );
    }

    #[tokio::test]
    async fn a_counted_reader_counts_what_it_reads() {
        use tokio::io::AsyncReadExt as _;
        let progress = Arc::<Progress>::default();
        let mut reader = Counted::new(&b"hello"[..], progress.clone());
        let mut buf = [0; 3];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!(progress.received(), 3);
        progress.note_pending();
        assert_eq!(progress.received(), 3, "pending bytes are at least one");
    }
}
