use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use super::{
    merge::{later_from_peers, own_records, Taken, CLOCK_AHEAD_TOLERANCE_MS},
    stamped, taken_warnings, Stamp, Stamps,
};
use crate::{
    config::Config,
    model::{AdminState, Edit, Model},
    sync::wire::{BackendStateRecord, SharedState},
    vip_id::VipId,
};

fn model() -> Model {
    Model::from_config(&running())
}

fn running() -> Config {
    Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
         [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n",
        "test.toml",
    )
    .unwrap()
}

fn vip() -> VipId {
    "198.18.0.100:80/tcp".parse().unwrap()
}

fn b(last: u8) -> IpAddr {
    format!("198.18.0.{last}").parse().unwrap()
}

fn admin(model: &Model, backend: IpAddr) -> AdminState {
    model.vips[&vip()].backends[&backend].admin
}

fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// What one node holds: its model and stamps.
#[derive(Clone)]
struct Node {
    model: Model,
    stamps: Stamps,
}

impl Node {
    fn new() -> Self {
        Self {
            model: model(),
            stamps: Stamps::new(),
        }
    }

    /// An operator's edit here at wall clock `wall_ms`.
    fn edit(&mut self, edit: &Edit, now: Instant, wall_ms: u64) {
        let mut next = self.model.clone();
        next.apply(edit, now).unwrap();
        self.stamps = stamped(&self.stamps, edit, &next, at_ms(wall_ms));
        self.model = next;
    }

    fn records(&self, now: Instant, wall_ms: u64) -> Arc<[BackendStateRecord]> {
        own_records(&self.model, &self.stamps, now, at_ms(wall_ms)).into()
    }

    /// Takes what `peers` sent, as the engine does.
    fn take(
        &mut self,
        peers: &[(&str, Arc<[BackendStateRecord]>)],
        now: Instant,
        wall_ms: u64,
    ) -> Vec<Taken> {
        let peers: HashMap<String, Arc<[BackendStateRecord]>> = peers
            .iter()
            .map(|(name, records)| ((*name).to_owned(), Arc::clone(records)))
            .collect();
        let later = later_from_peers(&self.model, &self.stamps, &peers, now, at_ms(wall_ms));
        assert!(later.clocks_ahead.is_empty(), "{later:?}");
        let taken = later.taken;
        for t in &taken {
            self.model.set_admin(&t.key.0, t.key.1, t.admin).unwrap();
            self.model
                .vips
                .get_mut(&t.key.0)
                .unwrap()
                .backends
                .get_mut(&t.key.1)
                .unwrap()
                .drain_timed_out = t.drain_timed_out;
            self.stamps.insert(t.key, t.stamp.clone());
        }
        taken
    }
}

fn drain(backend: IpAddr, timeout_s: Option<u64>) -> Edit {
    Edit::Drain {
        vip: vip(),
        backend,
        timeout_s,
    }
}

/// An operator's drain, maintenance or enable stamps its backend with
/// the wall clock, a drain again too (the operator's latest word), and
/// other edits stamp nothing.
#[test]
fn an_operators_drain_maintenance_or_enable_is_stamped() {
    let now = Instant::now();
    let mut node = Node::new();
    node.edit(&drain(b(11), None), now, 1_000);
    assert_eq!(
        node.stamps.get(&(vip(), b(11))),
        Some(&Stamp {
            unix_ms: 1_000,
            from: None
        })
    );
    node.edit(&drain(b(11), None), now, 2_000);
    assert_eq!(node.stamps[&(vip(), b(11))].unix_ms, 2_000);
    node.edit(&Edit::SetWeight(vip(), b(12), 5), now, 4_000);
    assert!(!node.stamps.contains_key(&(vip(), b(12))));
    node.edit(&Edit::Enable(vip(), b(11)), now, 5_000);
    assert_eq!(
        node.stamps[&(vip(), b(11))].unix_ms,
        5_000,
        "an enable is kept as a time"
    );
}

/// A node sends every stamped backend (an enable included) and every
/// backend not enabled (time 0 without a stamp); a drain goes with its
/// start and deadline in wall-clock time.
#[test]
fn own_records_carry_stamped_and_not_enabled_backends() {
    let now = Instant::now();
    let mut node = Node::new();
    assert!(node.records(now, 10_000).is_empty());
    node.edit(&drain(b(11), Some(60)), now, 10_000);
    node.model
        .set_admin(&vip(), b(12), AdminState::Maintenance)
        .unwrap();
    let records = node.records(now + Duration::from_secs(5), 15_000);
    assert_eq!(records.len(), 2, "{records:?}");
    let drained = records.iter().find(|r| r.backend == b(11)).unwrap();
    assert_eq!(drained.state, SharedState::Draining);
    assert_eq!(drained.changed_unix_ms, 10_000);
    assert_eq!(drained.drain_started_unix_ms, 10_000);
    assert_eq!(drained.drain_deadline_unix_ms, Some(70_000));
    assert_eq!(
        (drained.vip, drained.port, drained.protocol),
        (vip().address, 80, 6)
    );
    let unstamped = records.iter().find(|r| r.backend == b(12)).unwrap();
    assert_eq!(unstamped.state, SharedState::Maintenance);
    assert_eq!(unstamped.changed_unix_ms, 0);
    assert_eq!(
        (
            unstamped.drain_started_unix_ms,
            unstamped.drain_deadline_unix_ms
        ),
        (0, None)
    );
}

/// A peer's later drain is taken with its start and deadline (as this
/// node's clock holds them) and the peer's name; an earlier one is not;
/// nor one of a backend this node does not serve.
#[test]
fn a_later_peer_state_is_taken_and_an_earlier_one_is_not() {
    let now = Instant::now();
    let mut a = Node::new();
    let mut b_node = Node::new();
    a.edit(&drain(b(11), Some(60)), now, 10_000);
    // B's clock reads 12,000 ms at `now` + 2 s: the same wall clock.
    let later = now + Duration::from_secs(2);
    let taken = b_node.take(&[("a", a.records(now, 10_000))], later, 12_000);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].stamp.from.as_deref(), Some("a"));
    let AdminState::Draining { since, deadline } = admin(&b_node.model, b(11)) else {
        panic!("not draining: {:?}", admin(&b_node.model, b(11)));
    };
    assert_eq!(since, now);
    assert_eq!(deadline, Some(now + Duration::from_secs(60)));
    // Sent again, the same state is not taken again.
    assert!(b_node
        .take(&[("a", a.records(now, 10_000))], later, 12_000)
        .is_empty());
    // B's own enable afterwards is later than A's drain: A takes it, and
    // B does not take A's drain back.
    b_node.edit(&Edit::Enable(vip(), b(11)), later, 12_500);
    assert!(b_node
        .take(&[("a", a.records(now, 10_000))], later, 12_600)
        .is_empty());
    let taken = a.take(&[("b", b_node.records(later, 12_600))], later, 12_600);
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(admin(&a.model, b(11)), AdminState::Enabled);
    // A backend A does not serve is left out.
    let mut other: Vec<BackendStateRecord> = a.records(later, 12_600).to_vec();
    other[0].backend = b(99);
    other[0].changed_unix_ms = 12_600;
    let mut c = Node::new();
    assert!(c.take(&[("a", other.into())], later, 12_600).is_empty());
}

/// Changes made on two nodes at the same millisecond: each node takes the
/// more cautious state, whichever it holds, so both settle on it.
#[test]
fn at_the_same_millisecond_both_nodes_settle_on_the_more_cautious_state() {
    let now = Instant::now();
    let mut a = Node::new();
    let mut c = Node::new();
    a.edit(&drain(b(11), None), now, 20_000);
    c.edit(&Edit::Maintenance(vip(), b(11)), now, 20_000);
    let from_a = a.records(now, 20_000);
    let from_c = c.records(now, 20_000);
    assert_eq!(a.take(&[("c", from_c)], now, 20_000).len(), 1);
    assert!(c.take(&[("a", from_a)], now, 20_000).is_empty());
    assert_eq!(admin(&a.model, b(11)), AdminState::Maintenance);
    assert_eq!(admin(&c.model, b(11)), AdminState::Maintenance);
}

/// Of several peers, the latest change wins; a state a node restored
/// without a time (an older file, time 0) is taken by a peer that knows
/// no change, and loses to any stamped one.
#[test]
fn the_latest_of_several_peers_wins_and_unstamped_states_lose_to_stamped_ones() {
    let now = Instant::now();
    let mut a = Node::new();
    let mut c = Node::new();
    let mut d = Node::new();
    a.edit(&drain(b(11), None), now, 30_000);
    c.edit(&Edit::Maintenance(vip(), b(11)), now, 31_000);
    // D holds b12 in maintenance from before states were shared.
    d.model
        .set_admin(&vip(), b(12), AdminState::Maintenance)
        .unwrap();
    let sent = [
        ("a", a.records(now, 32_000)),
        ("c", c.records(now, 32_000)),
        ("d", d.records(now, 32_000)),
    ];
    let mut e = Node::new();
    let taken = e.take(&sent, now, 32_000);
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert_eq!(admin(&e.model, b(11)), AdminState::Maintenance);
    assert_eq!(e.stamps[&(vip(), b(11))].from.as_deref(), Some("c"));
    assert_eq!(admin(&e.model, b(12)), AdminState::Maintenance);
    assert_eq!(e.stamps[&(vip(), b(12))].unix_ms, 0);
    // An operator's enable of b12 anywhere beats the unstamped state.
    a.edit(&Edit::Enable(vip(), b(12)), now, 33_000);
    let taken = d.take(&[("a", a.records(now, 33_000))], now, 33_000);
    assert!(taken.iter().any(|t| t.key.1 == b(12)), "{taken:?}");
    assert_eq!(admin(&d.model, b(12)), AdminState::Enabled);
}

/// Three nodes making changes in turn and exchanging what they hold in
/// every order end with the same states, each the latest change made.
#[test]
fn a_mesh_converges_on_the_latest_changes_whatever_the_order() {
    let now = Instant::now();
    let names = ["a", "b", "c"];
    let edits = [
        (0, drain(b(11), Some(600)), 1_000),
        (1, Edit::Maintenance(vip(), b(12)), 1_500),
        (2, Edit::Enable(vip(), b(11)), 2_000),
        (0, drain(b(12), None), 2_500),
        (1, Edit::Maintenance(vip(), b(11)), 3_000),
    ];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut nodes = [Node::new(), Node::new(), Node::new()];
        for (at, edit, wall) in &edits {
            nodes[*at].edit(edit, now, *wall);
            // One node hears the others after each change.
            let listener = order[*at];
            let sent: Vec<(&str, Arc<[BackendStateRecord]>)> = (0..3)
                .filter(|i| *i != listener)
                .map(|i| (names[i], nodes[i].records(now, *wall)))
                .collect();
            nodes[listener].take(&sent, now, *wall);
        }
        // Then everyone hears everyone, twice over.
        for _ in 0..2 {
            for listener in order {
                let sent: Vec<(&str, Arc<[BackendStateRecord]>)> = (0..3)
                    .filter(|i| *i != listener)
                    .map(|i| (names[i], nodes[i].records(now, 4_000)))
                    .collect();
                nodes[listener].take(&sent, now, 4_000);
            }
        }
        for node in &nodes {
            assert_eq!(
                admin(&node.model, b(11)),
                AdminState::Maintenance,
                "order {order:?}"
            );
            assert!(
                matches!(
                    admin(&node.model, b(12)),
                    AdminState::Draining { deadline: None, .. }
                ),
                "order {order:?}: {:?}",
                admin(&node.model, b(12))
            );
        }
    }
}

/// A peer whose changes are stamped more than the tolerance ahead of this
/// node's clock is left out whole (a change from its future would undo
/// every change made here until then) and named; within the tolerance
/// its states are taken.
#[test]
fn a_peer_whose_clock_runs_ahead_is_left_out_and_named() {
    let now = Instant::now();
    let mut ahead = Node::new();
    ahead.edit(
        &drain(b(11), None),
        now,
        100_000 + CLOCK_AHEAD_TOLERANCE_MS + 1,
    );
    let node = Node::new();
    let peers: HashMap<String, Arc<[BackendStateRecord]>> =
        HashMap::from([("ahead".to_owned(), ahead.records(now, 100_000))]);
    let later = later_from_peers(&node.model, &node.stamps, &peers, now, at_ms(100_000));
    assert!(later.taken.is_empty(), "{later:?}");
    assert_eq!(
        later.clocks_ahead,
        vec![("ahead".to_owned(), CLOCK_AHEAD_TOLERANCE_MS + 1)]
    );
    let mut near = Node::new();
    near.edit(&drain(b(11), None), now, 100_000 + CLOCK_AHEAD_TOLERANCE_MS);
    let peers: HashMap<String, Arc<[BackendStateRecord]>> =
        HashMap::from([("near".to_owned(), near.records(now, 100_000))]);
    let later = later_from_peers(&node.model, &node.stamps, &peers, now, at_ms(100_000));
    assert_eq!(later.taken.len(), 1, "{later:?}");
    assert!(later.clocks_ahead.is_empty());
}

/// Taking a peer's states warns as the same change made here would: a
/// VIP whose every backend is drained takes no new flow (once, however
/// many states did it); one drain of two warns of nothing.
#[test]
fn taken_states_warn_as_the_same_change_made_here() {
    let now = Instant::now();
    let mut a = Node::new();
    a.edit(&drain(b(11), None), now, 1_000);
    let mut one = Node::new();
    let before = one.model.clone();
    let taken = one.take(&[("a", a.records(now, 1_000))], now, 1_000);
    assert!(taken_warnings(&before, &one.model, &running(), &taken).is_empty());
    a.edit(&Edit::Maintenance(vip(), b(12)), now, 2_000);
    let mut both = Node::new();
    let before = both.model.clone();
    let taken = both.take(&[("a", a.records(now, 2_000))], now, 2_000);
    assert_eq!(taken.len(), 2);
    let warnings = taken_warnings(&before, &both.model, &running(), &taken);
    assert_eq!(
        warnings,
        ["no backend of VIP 198.18.0.100:80/tcp takes new flows after this change: every new flow is dropped"]
    );
}
