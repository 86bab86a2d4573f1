//! Tests of what this node announces: per service and node state, and
//! the start-up gate that waits for peer dumps and first checks.
use super::*;

const A: &str = "198.18.0.100";
const B: &str = "198.18.0.101";

fn node() -> NodeView<'static> {
    NodeView {
        state: NodeState::Active,
        gate: Gate::Open,
        attached: true,
        interface_up: true,
    }
}

fn service(address: &str, serving: Serving) -> Service {
    Service {
        address: address.parse().unwrap(),
        serving,
    }
}

fn ip(address: &str) -> IpAddr {
    address.parse().unwrap()
}

#[test]
fn an_address_is_announced_only_while_every_service_on_it_can_be_served() {
    let plan = plan(
        node(),
        &[
            service(A, Serving::Yes),
            service(A, Serving::No),
            service(B, Serving::Yes),
        ],
    );
    assert_eq!(plan[&ip(A)], Some(Withheld::NoHealthyBackend));
    assert_eq!(plan[&ip(B)], None);
}

/// A port added beside a served one (a reload, `lbctl vip add` before
/// `backend add`) has no backends yet, or only backends awaiting their
/// first check: every node sees the same, so withdrawing would take
/// the address off every node. It stays announced for the served
/// port; an address with nothing served yet is withheld, and a
/// service whose checked backends are down still withdraws.
#[test]
fn a_service_nothing_was_decided_for_does_not_withdraw_its_address() {
    let plan = plan(
        node(),
        &[
            service(A, Serving::Yes),
            service(A, Serving::NotYet),
            service(B, Serving::NotYet),
        ],
    );
    assert_eq!(plan[&ip(A)], None, "{plan:?}");
    assert_eq!(plan[&ip(B)], Some(Withheld::NoHealthyBackend), "{plan:?}");
    let plan = super::plan(
        node(),
        &[
            service(A, Serving::NotYet),
            service(A, Serving::No),
            service(A, Serving::Yes),
        ],
    );
    assert_eq!(plan[&ip(A)], Some(Withheld::NoHealthyBackend), "{plan:?}");
}

#[test]
fn the_node_state_withholds_everything_with_its_own_reason() {
    let services = [service(A, Serving::Yes), service(B, Serving::No)];
    for (view, reason) in [
        (
            NodeView {
                state: NodeState::Drained,
                ..node()
            },
            Withheld::Drained,
        ),
        (
            NodeView {
                gate: Gate::Closed,
                ..node()
            },
            Withheld::Starting,
        ),
        (
            NodeView {
                attached: false,
                ..node()
            },
            Withheld::DataplaneDetached,
        ),
        (
            NodeView {
                interface_up: false,
                ..node()
            },
            Withheld::InterfaceDown,
        ),
    ] {
        let plan = plan(view, &services);
        assert!(
            plan.values().all(|r| *r == Some(reason)),
            "{view:?}: {plan:?}"
        );
    }
}

fn none() -> BTreeSet<IpAddr> {
    BTreeSet::new()
}

const PEER: &str = "198.18.2.12:7946";

/// One peer whose dump stands as `progress`.
fn dumps(progress: DumpProgress) -> PeerDumps {
    PeerDumps(vec![(PEER.to_owned(), progress)])
}

/// The peer's dump is complete.
fn done() -> PeerDumps {
    dumps(DumpProgress::Done)
}

/// Nothing of the peer's dump came.
fn nothing() -> PeerDumps {
    dumps(DumpProgress::Nothing)
}

#[test]
fn the_gate_opens_on_the_peers_dumps_or_the_wait() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let mut gate = Startup::new(none(), true, wait, t0);
    assert!(!gate.is_open());
    assert_eq!(
        gate.update(&nothing(), &none(), t0 + Duration::from_secs(9)),
        None
    );
    assert_eq!(
        gate.update(&done(), &none(), t0 + Duration::from_secs(9)),
        Some(Opened::PeersSynced)
    );
    assert!(gate.is_open());
    assert_eq!(
        gate.update(&done(), &none(), t0 + Duration::from_secs(20)),
        None,
        "opens once"
    );

    let mut gate = Startup::new(none(), true, wait, t0);
    assert_eq!(
        gate.update(&nothing(), &none(), t0 + wait),
        Some(Opened::WaitElapsed)
    );
}

/// A dump still arriving when the wait passes holds the gate: it opens
/// as soon as the dump completes (`peers-synced`), not at the wait
/// with part of the peer's flows missing.
#[test]
fn a_dump_arriving_at_the_wait_keeps_the_gate_closed_until_it_completes() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let ms = Duration::from_millis;
    let mut gate = Startup::new(none(), true, wait, t0);
    let at = |t| dumps(DumpProgress::Arriving(t));
    assert_eq!(gate.update(&at(t0 + ms(9_900)), &none(), t0 + wait), None);
    assert_eq!(gate.gate(), Gate::Closed);
    assert!(gate.is_extended());
    assert_eq!(
        gate.update(&at(t0 + ms(14_500)), &none(), t0 + ms(15_000)),
        None,
        "still arriving"
    );
    assert_eq!(
        gate.update(&done(), &none(), t0 + ms(15_500)),
        Some(Opened::PeersSynced)
    );
    assert!(gate.is_open());
}

/// A dump that stops arriving once the gate waits on for it opens the
/// gate with its own reason, and does not wait for the cap.
#[test]
fn a_dump_that_stalls_past_the_wait_opens_the_gate_as_stalled() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let ms = Duration::from_millis;
    let mut gate = Startup::new(none(), true, wait, t0);
    let last = t0 + ms(10_500);
    let stalled = dumps(DumpProgress::Arriving(last));
    assert_eq!(gate.update(&stalled, &none(), t0 + ms(10_600)), None);
    assert_eq!(
        gate.update(&stalled, &none(), last + DUMP_PROGRESS_WINDOW - ms(1)),
        None,
        "within the window it still counts as arriving"
    );
    assert_eq!(
        gate.update(&stalled, &none(), last + DUMP_PROGRESS_WINDOW),
        Some(Opened::DumpStalled)
    );
    assert_eq!(Opened::DumpStalled.name(), "dump-stalled");
}

/// A dump that keeps arriving without end holds the gate no longer
/// than the cap.
#[test]
fn a_dump_arriving_forever_opens_the_gate_at_the_cap() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let cap = wait * DUMP_CAP_FACTOR;
    let ms = Duration::from_millis;
    let mut gate = Startup::new(none(), true, wait, t0);
    for t in [wait, 2 * wait, cap - ms(1)] {
        let fresh = dumps(DumpProgress::Arriving(t0 + t - ms(100)));
        assert_eq!(gate.update(&fresh, &none(), t0 + t), None, "{t:?}");
    }
    let fresh = dumps(DumpProgress::Arriving(t0 + cap - ms(100)));
    assert_eq!(
        gate.update(&fresh, &none(), t0 + cap),
        Some(Opened::CapElapsed)
    );
    assert_eq!(Opened::CapElapsed.name(), "cap-elapsed");
}

/// The wait passing with no dump arriving opens the gate as before:
/// a peer that sends nothing (not connected), or whose dump stopped
/// before the wait, or no peers at all with checks still undecided.
#[test]
fn without_a_dump_arriving_the_wait_opens_the_gate_as_before() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let ms = Duration::from_millis;
    for progress in [
        nothing(),
        dumps(DumpProgress::Arriving(t0 + ms(5_000))),
        PeerDumps(vec![
            ("a".to_owned(), DumpProgress::Done),
            ("b".to_owned(), DumpProgress::Nothing),
        ]),
    ] {
        let mut gate = Startup::new(none(), true, wait, t0);
        assert_eq!(gate.update(&progress, &none(), t0 + wait - ms(1)), None);
        assert_eq!(
            gate.update(&progress, &none(), t0 + wait),
            Some(Opened::WaitElapsed),
            "{progress:?}"
        );
        assert!(!gate.is_extended());
    }
    let mut gate = Startup::new(none(), false, wait, t0);
    let undecided: BTreeSet<IpAddr> = [ip(A)].into();
    let arriving = dumps(DumpProgress::Arriving(t0 + wait));
    assert_eq!(
        gate.update(&arriving, &undecided, t0 + wait),
        Some(Opened::WaitElapsed),
        "no peers configured: no dump is awaited"
    );
    // A dump arriving while only checks are undecided (the dumps are
    // in) holds nothing either.
    let mut gate = Startup::new(none(), true, wait, t0);
    assert_eq!(
        gate.update(&done(), &undecided, t0 + wait),
        Some(Opened::WaitElapsed)
    );
}

/// The gate waited on for a dump that completed, but a first check
/// still undecided: it opens once the dump is in (the wait passed
/// for the checks).
#[test]
fn an_extended_gate_opens_when_the_dump_is_in_even_with_checks_undecided() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let ms = Duration::from_millis;
    let undecided: BTreeSet<IpAddr> = [ip(A)].into();
    let mut gate = Startup::new(none(), true, wait, t0);
    let fresh = dumps(DumpProgress::Arriving(t0 + wait));
    assert_eq!(gate.update(&fresh, &undecided, t0 + wait), None);
    assert_eq!(
        gate.update(&done(), &undecided, t0 + wait + ms(500)),
        Some(Opened::WaitElapsed)
    );
}

/// Of two peers, one's dump arriving at the wait and the other silent
/// (not connected): the gate waits on for the first only, and opens
/// as soon as it is in, for the wait's reason (nothing stalled).
#[test]
fn a_silent_peer_holds_nothing_once_the_arriving_dump_is_in() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let ms = Duration::from_millis;
    let two = |a| {
        PeerDumps(vec![
            ("a".to_owned(), a),
            ("b".to_owned(), DumpProgress::Nothing),
        ])
    };
    let mut gate = Startup::new(none(), true, wait, t0);
    let arriving = two(DumpProgress::Arriving(t0 + wait));
    assert_eq!(gate.update(&arriving, &none(), t0 + wait), None);
    assert_eq!(
        gate.update(&two(DumpProgress::Done), &none(), t0 + wait + ms(300)),
        Some(Opened::WaitElapsed)
    );
}

#[test]
fn peer_dumps_name_the_unfinished_ones() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let dumps = PeerDumps(vec![
        ("a".to_owned(), DumpProgress::Done),
        ("b".to_owned(), DumpProgress::Arriving(t0)),
        ("c".to_owned(), DumpProgress::Nothing),
    ]);
    assert!(!dumps.all_done());
    assert!(dumps.any_partial());
    assert!(!PeerDumps(vec![("c".to_owned(), DumpProgress::Nothing)]).any_partial());
    assert!(dumps.arriving(t0 + ms(1_999)));
    assert!(!dumps.arriving(t0 + DUMP_PROGRESS_WINDOW));
    assert_eq!(
        dumps.unfinished(t0 + ms(250)),
        "b (incomplete, last frame 250 ms ago), c (nothing received)"
    );
    assert!(PeerDumps::default().all_done());
}

/// A fresh node whose backends are down everywhere must not announce
/// while their health is unknown (unknown counts as up): the gate
/// waits for the first checks, with or without peers, and the wait
/// bounds that too.
#[test]
fn a_fresh_gate_waits_for_the_first_checks() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let second = Duration::from_secs(1);
    let undecided: BTreeSet<IpAddr> = [ip(A)].into();
    let mut gate = Startup::new(none(), false, wait, t0);
    assert!(!gate.is_open(), "not open before anything was seen");
    assert_eq!(gate.update(&nothing(), &undecided, t0), None);
    assert_eq!(gate.update(&nothing(), &undecided, t0 + second), None);
    assert_eq!(
        gate.update(&nothing(), &none(), t0 + 2 * second),
        Some(Opened::NoPeers)
    );

    let mut gate = Startup::new(none(), true, wait, t0);
    assert_eq!(
        gate.update(&done(), &undecided, t0 + second),
        None,
        "dumps alone"
    );
    assert_eq!(
        gate.update(&done(), &none(), t0 + 2 * second),
        Some(Opened::PeersSynced)
    );

    let mut gate = Startup::new(none(), false, wait, t0);
    assert_eq!(
        gate.update(&nothing(), &undecided, t0 + wait - second),
        None
    );
    assert_eq!(
        gate.update(&nothing(), &undecided, t0 + wait),
        Some(Opened::WaitElapsed),
        "checks that never decide hold the gate no longer than the wait"
    );
}

/// A restart that kept its routes announces their addresses at once
/// (their flows are in the adopted table); an address added to the
/// file before the restart waits for its first checks, as after a
/// reload (its backends' health is unknown, which counts as up), and
/// the wait bounds that.
#[test]
fn a_kept_gate_lets_the_kept_addresses_through_and_the_others_wait_for_their_checks() {
    let t0 = Instant::now();
    let wait = Duration::from_secs(10);
    let kept: BTreeSet<IpAddr> = [ip(A)].into();
    let mut gate = Startup::new(kept.clone(), true, wait, t0);
    assert_eq!(gate.gate(), Gate::Only(&kept));
    let services = [service(A, Serving::Yes), service(B, Serving::Yes)];
    let view = NodeView {
        gate: gate.gate(),
        ..node()
    };
    let planned = plan(view, &services);
    assert_eq!(planned[&ip(A)], None, "{planned:?}");
    assert_eq!(planned[&ip(B)], Some(Withheld::Starting), "{planned:?}");
    // A's own checks do not hold it; B's do, peers or not.
    let both: BTreeSet<IpAddr> = [ip(A), ip(B)].into();
    assert_eq!(gate.update(&nothing(), &both, t0), None);
    assert_eq!(gate.update(&done(), &both, t0), None);
    assert_eq!(gate.update(&nothing(), &kept, t0), Some(Opened::Adopted));
    assert_eq!(gate.gate(), Gate::Open);

    let mut gate = Startup::new(kept.clone(), false, wait, t0);
    assert_eq!(
        gate.update(&nothing(), &both, t0 + wait),
        Some(Opened::WaitElapsed)
    );
}

#[test]
fn state_names_read_back() {
    for state in [NodeState::Active, NodeState::Drained] {
        assert_eq!(NodeState::from_name(state.name()), Some(state));
    }
    assert_eq!(NodeState::from_name("maintenance"), None);
    // The status's JSON spells a gate's reason as logs and lbctl do.
    for opened in [
        Opened::Adopted,
        Opened::PeersSynced,
        Opened::WaitElapsed,
        Opened::NoPeers,
        Opened::DumpStalled,
        Opened::CapElapsed,
    ] {
        let json = serde_json::to_value(opened).unwrap();
        assert_eq!(json, serde_json::json!(opened.name()));
        assert_eq!(serde_json::from_value::<Opened>(json).unwrap(), opened);
    }
}
