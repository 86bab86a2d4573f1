//! The guards of the compiled packet path under BPF_PROG_TEST_RUN: deny
//! and allow lists (IPv4 and IPv6, global and per VIP, deny winning, a
//! VIP's allow list replacing the global one, per-rule counters) and
//! limits of new flows per source and per prefix (a new flow over the
//! limit dropped, a tracked flow never, tokens back after time, a SYN
//! reopening a closed tuple charged, but not while it has no backend, a
//! flow the prefix refuses keeping its source token, bare ACKs of fresh
//! tuples charged in flood mode too), a
//! tracked flow's ACL mark (its packets skip the lists until the rules
//! change), on both
//! entry points and, for limits, both connection-table designs. Rules go
//! in through lbd's own installer (`lb_userspace::guard`). Needs root.

use lb_common::{
    consts::{names, FLOW_F_ACL_MARK, FLOW_F_RST},
    guard::{take_token, LimitKey, TokenBucket, LIMIT_KIND_SOURCE},
    stats::Counter,
};
use lb_tests::{
    packet::{self, Flow, Tcp, ACK, SYN},
    testbed::{action, flow_key, vip4_tcp, vip4_udp, vip6_tcp, Hook, TestBed},
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    conntrack::kind::ConntrackKind,
    dataplane::LoadOptions,
    guard::{AclRule, Action, Guard, GuardConfig, Limits, RateLimit, Scope},
    vip_id::VipId,
};

fn bed(hook: Hook, kind: ConntrackKind) -> TestBed {
    let options = LoadOptions {
        conntrack_kind: kind,
        ..LoadOptions::default()
    };
    TestBed::with_options(&[vip4_tcp(), vip4_udp(), vip6_tcp()], hook, 4096, &options)
        .expect("test bed")
}

fn flow(src: &str, sport: u16, vip: &VipConfig) -> Flow {
    Flow {
        src: src.parse().expect("addr"),
        dst: vip.address,
        sport,
        dport: vip.port,
    }
}

fn id(vip: &VipConfig) -> VipId {
    VipId::of(vip)
}

fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
    AclRule {
        scope,
        action,
        source: source.parse().expect("cidr"),
    }
}

fn acl(rules: &[AclRule]) -> GuardConfig {
    GuardConfig {
        acl: rules.iter().copied().collect(),
        ..GuardConfig::default()
    }
}

/// Sends `frame` of `flow`; asserts it is forwarded to Maglev's backend
/// with only the MACs rewritten.
fn forwarded(bed: &mut TestBed, vip: &VipConfig, flow: &Flow, frame: &[u8]) {
    let (_, mac) = bed.maglev_backend(vip, flow).expect("a backend");
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::TX, "{flow:?} is forwarded");
    assert_eq!(out, packet::forwarded(frame, mac), "{flow:?}'s frame");
}

/// Sends `frame`; asserts it is dropped, untouched.
fn dropped(bed: &mut TestBed, frame: &[u8], what: &str) {
    let (verdict, out) = bed.run(frame).expect("test run");
    assert_eq!(verdict, action::DROP, "{what} is dropped");
    assert_eq!(out, frame, "{what}: a dropped frame is not rewritten");
}

fn syn(flow: &Flow) -> Vec<u8> {
    packet::tcp(flow, SYN, None, b"")
}

/// The packets each rule of `guard` matched.
fn hits(bed: &TestBed, guard: &Option<Guard>, rule: &AclRule) -> u64 {
    let counts = guard
        .as_ref()
        .expect("guard")
        .counts(bed.dataplane.guard())
        .expect("counts");
    let count = counts
        .iter()
        .find(|c| c.rule == *rule)
        .expect("the rule is listed");
    assert!(count.id.is_some(), "{rule} is in force");
    count.packets
}

fn counter(bed: &TestBed, counter: Counter) -> u64 {
    bed.counter(counter).expect("counter")
}

fn deny_rules_drop_their_sources_v4_and_v6_and_count_per_rule(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let deny4 = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
    let deny6 = rule(Scope::Global, Action::Deny, "2001:2:66::/48");
    bed.set_guard(&mut guard, acl(&[deny4, deny6]))
        .expect("guard");
    let (v4, v6) = (vip4_tcp(), vip6_tcp());
    for sport in [40000, 40001] {
        dropped(
            &mut bed,
            &syn(&flow("198.18.66.7", sport, &v4)),
            "a denied v4 SYN",
        );
    }
    dropped(
        &mut bed,
        &packet::tcp(&flow("198.18.66.7", 40000, &v4), ACK, None, b"x"),
        "a denied v4 ACK",
    );
    dropped(
        &mut bed,
        &syn(&flow("2001:2:66::9", 40000, &v6)),
        "a denied v6 SYN",
    );
    let udp = vip4_udp();
    dropped(
        &mut bed,
        &packet::udp(&flow("198.18.66.200", 5353, &udp), None, b"q"),
        "a denied UDP query (global rules guard every VIP)",
    );
    // Neighbours of the denied prefixes go through.
    let ok4 = flow("198.18.67.7", 40000, &v4);
    forwarded(&mut bed, &v4, &ok4, &syn(&ok4));
    let ok6 = flow("2001:2:67::9", 40000, &v6);
    forwarded(&mut bed, &v6, &ok6, &syn(&ok6));
    assert_eq!(counter(&bed, Counter::DropAclDenied), 5);
    assert_eq!(
        counter(&bed, Counter::ConntrackHalfOpenNew),
        2,
        "denied packets never reach the tables (the two SYNs are held half-open)"
    );
    assert_eq!(counter(&bed, Counter::ConntrackNew), 0);
    assert_eq!(hits(&bed, &guard, &deny4), 4);
    assert_eq!(hits(&bed, &guard, &deny6), 1);
    // Removed, the rule stops dropping.
    bed.set_guard(&mut guard, acl(&[deny6])).expect("guard");
    let back = flow("198.18.66.7", 40002, &v4);
    forwarded(&mut bed, &v4, &back, &syn(&back));
    dropped(
        &mut bed,
        &syn(&flow("2001:2:66::9", 40001, &v6)),
        "still denied v6",
    );
}

fn an_allow_list_lets_only_its_sources_through_and_only_for_its_vip(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let (v4, udp, v6) = (vip4_tcp(), vip4_udp(), vip6_tcp());
    let allow4 = rule(Scope::Vip(id(&v4)), Action::Allow, "198.18.1.0/24");
    let allow6 = rule(Scope::Vip(id(&v6)), Action::Allow, "2001:2:1::/64");
    bed.set_guard(&mut guard, acl(&[allow4, allow6]))
        .expect("guard");
    dropped(
        &mut bed,
        &syn(&flow("198.18.2.10", 40000, &v4)),
        "a v4 allow-list miss",
    );
    dropped(
        &mut bed,
        &syn(&flow("2001:2:2::10", 40000, &v6)),
        "a v6 allow-list miss",
    );
    assert_eq!(counter(&bed, Counter::DropAclNotAllowed), 2);
    let hit4 = flow("198.18.1.10", 40000, &v4);
    forwarded(&mut bed, &v4, &hit4, &syn(&hit4));
    forwarded(
        &mut bed,
        &v4,
        &hit4,
        &packet::tcp(&hit4, ACK, None, b"GET /"),
    );
    let hit6 = flow("2001:2:1::10", 40000, &v6);
    forwarded(&mut bed, &v6, &hit6, &syn(&hit6));
    // The SYN only: the handshake's entry carries the rules' mark, so
    // its ACK skips the lists.
    assert_eq!(hits(&bed, &guard, &allow4), 1);
    assert_eq!(hits(&bed, &guard, &allow6), 1);
    // The UDP VIP has no list: every source.
    let other = flow("198.18.2.10", 5353, &udp);
    forwarded(&mut bed, &udp, &other, &packet::udp(&other, None, b"q"));
    assert_eq!(counter(&bed, Counter::DropAclNotAllowed), 2);
}

fn a_vips_allow_list_replaces_the_global_one_and_deny_wins(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let (v4, udp) = (vip4_tcp(), vip4_udp());
    let global = rule(Scope::Global, Action::Allow, "198.18.2.0/24");
    let own = rule(Scope::Vip(id(&v4)), Action::Allow, "198.18.0.0/16");
    let deny = rule(Scope::Global, Action::Deny, "198.18.0.66");
    let vip_deny = rule(Scope::Vip(id(&udp)), Action::Deny, "198.18.2.77");
    bed.set_guard(&mut guard, acl(&[global, own, deny, vip_deny]))
        .expect("guard");
    // The TCP VIP: its own list (wider than the global one) decides.
    let a = flow("198.18.1.10", 40000, &v4);
    forwarded(&mut bed, &v4, &a, &syn(&a));
    dropped(
        &mut bed,
        &syn(&flow("198.19.1.10", 40000, &v4)),
        "outside the VIP's list",
    );
    // A deny rule wins over the allow rule that also matches.
    dropped(
        &mut bed,
        &syn(&flow("198.18.0.66", 40000, &v4)),
        "denied and allowed",
    );
    // The UDP VIP: the global list.
    let b = flow("198.18.2.10", 5353, &udp);
    forwarded(&mut bed, &udp, &b, &packet::udp(&b, None, b"q"));
    dropped(
        &mut bed,
        &packet::udp(&flow("198.18.1.10", 5353, &udp), None, b"q"),
        "outside the global list",
    );
    dropped(
        &mut bed,
        &packet::udp(&flow("198.18.2.77", 5353, &udp), None, b"q"),
        "denied for this VIP only",
    );
    // ... which the TCP VIP does not deny.
    let c = flow("198.18.2.77", 40000, &v4);
    forwarded(&mut bed, &v4, &c, &syn(&c));
    assert_eq!(counter(&bed, Counter::DropAclDenied), 2);
    assert_eq!(counter(&bed, Counter::DropAclNotAllowed), 2);
    assert_eq!(hits(&bed, &guard, &deny), 1);
    assert_eq!(hits(&bed, &guard, &vip_deny), 1);
    assert_eq!(hits(&bed, &guard, &own), 2);
    assert_eq!(hits(&bed, &guard, &global), 1);
}

/// The data plane caches verdicts per source: a change of the rules
/// reaches sources whose verdict it cached (a tracked flow cut by a new
/// deny rule, let through again when it goes; a refused source let in by
/// a new allow rule).
fn a_rule_change_reaches_sources_with_a_cached_verdict(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let v4 = vip4_tcp();
    let other = rule(Scope::Global, Action::Deny, "198.18.99.0/24");
    bed.set_guard(&mut guard, acl(&[other])).expect("guard");
    let f = flow("198.18.0.10", 40000, &v4);
    forwarded(&mut bed, &v4, &f, &syn(&f));
    let ack = packet::tcp(&f, ACK, None, b"data");
    for _ in 0..3 {
        forwarded(&mut bed, &v4, &f, &ack);
    }
    let deny = rule(Scope::Vip(id(&v4)), Action::Deny, "198.18.0.0/24");
    bed.set_guard(&mut guard, acl(&[other, deny]))
        .expect("guard");
    for _ in 0..3 {
        dropped(&mut bed, &ack, "a tracked flow of a newly denied source");
    }
    assert_eq!(hits(&bed, &guard, &deny), 3);
    bed.set_guard(&mut guard, acl(&[other])).expect("guard");
    forwarded(&mut bed, &v4, &f, &ack);
    let allow = rule(Scope::Vip(id(&v4)), Action::Allow, "198.18.1.0/24");
    bed.set_guard(&mut guard, acl(&[other, allow]))
        .expect("guard");
    dropped(&mut bed, &ack, "outside the new allow list");
    let wider = rule(Scope::Vip(id(&v4)), Action::Allow, "198.18.0.0/23");
    bed.set_guard(&mut guard, acl(&[other, allow, wider]))
        .expect("guard");
    forwarded(&mut bed, &v4, &f, &ack);
    assert_eq!(hits(&bed, &guard, &wider), 1);
}

fn limits(source: Option<(u32, u32)>, prefix: Option<(u32, u32)>) -> Limits {
    let rate = |r: Option<(u32, u32)>| {
        r.map(|(per_s, burst)| RateLimit::new(per_s, Some(burst), "test").expect("rate"))
    };
    Limits {
        source: rate(source),
        prefix: rate(prefix),
        ..Limits::default()
    }
}

fn limited(scope: Scope, limits: Limits) -> GuardConfig {
    GuardConfig {
        limits: [(scope, limits)].into_iter().collect(),
        ..GuardConfig::default()
    }
}

/// One source over its limit: its new flows past the burst are dropped,
/// its tracked flows (and a retransmitted SYN of one) are not, others are
/// not limited, and a token comes back after a second.
fn new_flows_over_the_source_limit_are_dropped_tracked_ones_never(hook: Hook, kind: ConntrackKind) {
    let mut bed = bed(hook, kind);
    let mut guard = None;
    let v4 = vip4_tcp();
    bed.set_guard(
        &mut guard,
        limited(Scope::Vip(id(&v4)), limits(Some((1, 2)), None)),
    )
    .expect("guard");
    let first = flow("198.18.0.10", 40000, &v4);
    let second = flow("198.18.0.10", 40001, &v4);
    forwarded(&mut bed, &v4, &first, &syn(&first));
    forwarded(&mut bed, &v4, &second, &syn(&second));
    dropped(
        &mut bed,
        &syn(&flow("198.18.0.10", 40002, &v4)),
        "a third new flow",
    );
    dropped(
        &mut bed,
        &packet::tcp(&flow("198.18.0.10", 40003, &v4), ACK, None, b"x"),
        "a mid-stream packet of an untracked flow (it would create an entry)",
    );
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
    // Tracked flows of the same source: never limited.
    for _ in 0..5 {
        forwarded(
            &mut bed,
            &v4,
            &first,
            &packet::tcp(&first, ACK, None, b"data"),
        );
    }
    forwarded(&mut bed, &v4, &second, &syn(&second));
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
    // Other sources have buckets of their own; other VIPs have no limit.
    let other = flow("198.18.0.11", 40000, &v4);
    forwarded(&mut bed, &v4, &other, &syn(&other));
    let udp = vip4_udp();
    for sport in 5000..5005 {
        let query = flow("198.18.0.10", sport, &udp);
        forwarded(&mut bed, &udp, &query, &packet::udp(&query, None, b"q"));
    }
    // One token a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let later = flow("198.18.0.10", 40004, &v4);
    forwarded(&mut bed, &v4, &later, &syn(&later));
    dropped(
        &mut bed,
        &syn(&flow("198.18.0.10", 40005, &v4)),
        "the refilled token is spent",
    );
    assert_eq!(counter(&bed, Counter::DropRateLimited), 3);
}

fn limits_on_buckets(hook: Hook) {
    new_flows_over_the_source_limit_are_dropped_tracked_ones_never(hook, ConntrackKind::Buckets);
}

fn limits_on_the_lru(hook: Hook) {
    new_flows_over_the_source_limit_are_dropped_tracked_ones_never(hook, ConntrackKind::Lru);
}

/// A SYN reusing the tuple of a closed flow opens a new connection (the
/// entry is re-pinned in place): charged to its source's limit like a
/// flow neither table holds. Before, SYN, RST, SYN, RST... on one tuple
/// opened new connections past any limit.
fn a_syn_reopening_a_closed_tuple_is_charged(hook: Hook, kind: ConntrackKind) {
    let mut bed = bed(hook, kind);
    let mut guard = None;
    let v4 = vip4_tcp();
    bed.set_guard(
        &mut guard,
        limited(Scope::Vip(id(&v4)), limits(Some((1, 1)), None)),
    )
    .expect("guard");
    let f = flow("198.18.0.10", 40000, &v4);
    forwarded(&mut bed, &v4, &f, &syn(&f));
    let rst = Tcp { rst: true, ..ACK };
    forwarded(&mut bed, &v4, &f, &packet::tcp(&f, rst, None, b""));
    let key = flow_key(&f, Protocol::Tcp);
    let closed = bed.dataplane.flow(&key).expect("read").expect("tracked");
    assert_ne!(closed.flags & FLOW_F_RST, 0, "the RST closed the flow");
    dropped(
        &mut bed,
        &syn(&f),
        "a SYN reopening the tuple past the limit",
    );
    assert_eq!(counter(&bed, Counter::DropRateLimited), 1);
    let after = bed.dataplane.flow(&key).expect("read").expect("tracked");
    assert_eq!(after, closed, "a refused reopening leaves the entry closed");
}

fn reopening_on_buckets(hook: Hook) {
    a_syn_reopening_a_closed_tuple_is_charged(hook, ConntrackKind::Buckets);
}

fn reopening_on_the_lru(hook: Hook) {
    a_syn_reopening_a_closed_tuple_is_charged(hook, ConntrackKind::Lru);
}

/// A flow the prefix's bucket refuses takes nothing from its source's:
/// a client behind a busy prefix keeps its own tokens for when the prefix
/// refills. Before, each refused SYN spent one of the client's tokens.
fn a_flow_the_prefix_refuses_keeps_its_source_token(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let v4 = vip4_tcp();
    // The prefix refills a token every 100 ms; the source one a second.
    bed.set_guard(
        &mut guard,
        limited(Scope::Vip(id(&v4)), limits(Some((1, 2)), Some((10, 1)))),
    )
    .expect("guard");
    let neighbour = flow("198.18.0.9", 40000, &v4);
    forwarded(&mut bed, &v4, &neighbour, &syn(&neighbour));
    for sport in [40000, 40001] {
        dropped(
            &mut bed,
            &syn(&flow("198.18.0.10", sport, &v4)),
            "a SYN of an emptied prefix",
        );
    }
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
    // The prefix's token back (the source's bucket gains a tenth of one:
    // without its two tokens it would refuse).
    std::thread::sleep(std::time::Duration::from_millis(150));
    let later = flow("198.18.0.10", 40002, &v4);
    forwarded(&mut bed, &v4, &later, &syn(&later));
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
}

/// In SYN-flood mode too, a TCP packet other than a SYN whose flow
/// neither table holds pays for the entry it creates: a source at its
/// limit cannot open established-class entries with bare ACKs of fresh
/// tuples (before, flood mode let them all through uncharged, so a
/// spoofed SYN flood turned the limits off for every real host). Flood
/// mode on and off alike.
fn in_flood_mode_bare_acks_of_fresh_tuples_are_charged(hook: Hook, kind: ConntrackKind) {
    let mut bed = bed(hook, kind);
    let mut guard = None;
    let v4 = vip4_tcp();
    bed.set_guard(
        &mut guard,
        limited(Scope::Vip(id(&v4)), limits(Some((1, 1)), None)),
    )
    .expect("guard");
    bed.set_syn_flood(true).expect("flood mode");
    let spent = flow("198.18.0.10", 40000, &v4);
    forwarded(&mut bed, &v4, &spent, &syn(&spent));
    let mut refused = 0;
    for sport in 40001..40005 {
        let fresh = flow("198.18.0.10", sport, &v4);
        dropped(
            &mut bed,
            &packet::tcp(&fresh, ACK, None, b"GET /"),
            "a bare ACK of a fresh tuple past the limit in flood mode",
        );
        refused += 1;
        let key = flow_key(&fresh, Protocol::Tcp);
        assert_eq!(
            bed.dataplane.flow(&key).expect("read"),
            None,
            "a refused ACK creates no entry"
        );
    }
    assert_eq!(counter(&bed, Counter::DropRateLimited), refused);
    // Another source still has its own token, ACK or SYN.
    let other = flow("198.18.0.11", 40000, &v4);
    forwarded(
        &mut bed,
        &v4,
        &other,
        &packet::tcp(&other, ACK, None, b"GET /"),
    );
    bed.set_syn_flood(false).expect("flood mode off");
    dropped(
        &mut bed,
        &packet::tcp(&flow("198.18.0.10", 40009, &v4), ACK, None, b"x"),
        "an untracked ACK past the limit outside flood mode",
    );
    assert_eq!(counter(&bed, Counter::DropRateLimited), refused + 1);
}

fn flood_acks_on_buckets(hook: Hook) {
    in_flood_mode_bare_acks_of_fresh_tuples_are_charged(hook, ConntrackKind::Buckets);
}

fn flood_acks_on_the_lru(hook: Hook) {
    in_flood_mode_bare_acks_of_fresh_tuples_are_charged(hook, ConntrackKind::Lru);
}

/// A SYN reopening a closed tuple while every backend is down is dropped
/// for want of a backend and takes no token: a client retrying its SYNs
/// through an outage does not drain its bucket (before, each took one
/// before the pick failed). With a backend back, the next reopening SYN
/// is admitted on the token that was kept.
fn a_reopening_syn_without_a_backend_takes_no_token(hook: Hook, kind: ConntrackKind) {
    let mut bed = bed(hook, kind);
    let mut guard = None;
    let v4 = vip4_tcp();
    let config = limited(Scope::Vip(id(&v4)), limits(Some((1, 2)), None));
    let rate = lb_userspace::guard::maps::vip_guard(&config, &id(&v4)).source;
    bed.set_guard(&mut guard, config).expect("guard");
    let f = flow("198.18.0.10", 40000, &v4);
    forwarded(&mut bed, &v4, &f, &syn(&f));
    let paid = source_bucket(&mut bed);
    let rst = Tcp { rst: true, ..ACK };
    forwarded(&mut bed, &v4, &f, &packet::tcp(&f, rst, None, b""));
    let key = flow_key(&f, Protocol::Tcp);
    let closed = bed.dataplane.flow(&key).expect("read").expect("tracked");
    assert_ne!(closed.flags & FLOW_F_RST, 0, "the RST closed the flow");
    let mut down = v4.clone();
    down.backends.iter_mut().for_each(|b| b.weight = 0);
    bed.apply(&[down, vip4_udp(), vip6_tcp()])
        .expect("every backend out");
    for _ in 0..3 {
        dropped(&mut bed, &syn(&f), "a reopening SYN with no backend");
    }
    assert_eq!(counter(&bed, Counter::DropNoBackend), 3);
    assert_eq!(counter(&bed, Counter::DropRateLimited), 0, "no token taken");
    // Read, not timed: the bucket is exactly as the first SYN left it,
    // however long the steps took (a token comes back every second).
    assert_eq!(source_bucket(&mut bed), paid, "the bucket untouched");
    let after = bed.dataplane.flow(&key).expect("read").expect("tracked");
    assert_eq!(after, closed, "the entry left as it was");
    bed.apply(&[v4.clone(), vip4_udp(), vip6_tcp()])
        .expect("backends back");
    // The reopening pays: the bucket is the first SYN's, refilled to the
    // moment of the reopening and one token taken.
    forwarded(&mut bed, &v4, &f, &syn(&f));
    assert_eq!(counter(&bed, Counter::DropRateLimited), 0);
    let reopened = source_bucket(&mut bed);
    let mut expected = paid;
    assert!(
        take_token(&mut expected, &rate, reopened.last_ns),
        "a token to take"
    );
    assert_eq!(reopened, expected, "the reopening took one token");
}

/// The one source bucket in the limit table (a test that limits one
/// source), read from the map the data plane keeps it in.
fn source_bucket(bed: &mut TestBed) -> TokenBucket {
    let map = bed
        .dataplane
        .ebpf_mut()
        .map(names::MAP_LIMIT_BUCKETS)
        .expect("the limit table");
    let buckets = aya::maps::HashMap::<_, LimitKey, TokenBucket>::try_from(map).expect("a hash");
    let sources: Vec<TokenBucket> = buckets
        .iter()
        .map(|entry| entry.expect("read"))
        .filter(|(key, _)| key.kind == LIMIT_KIND_SOURCE)
        .map(|(_, bucket)| bucket)
        .collect();
    assert_eq!(sources.len(), 1, "one source bucket: {sources:?}");
    sources[0]
}

fn no_backend_reopening_on_buckets(hook: Hook) {
    a_reopening_syn_without_a_backend_takes_no_token(hook, ConntrackKind::Buckets);
}

fn no_backend_reopening_on_the_lru(hook: Hook) {
    a_reopening_syn_without_a_backend_takes_no_token(hook, ConntrackKind::Lru);
}

fn a_prefix_shares_one_bucket_v4_and_v6(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let (v4, v6) = (vip4_tcp(), vip6_tcp());
    // The global default: every VIP, each with buckets of its own.
    let mut config = limited(Scope::Global, limits(None, Some((1, 2))));
    config
        .limits
        .get_mut(&Scope::Global)
        .expect("set")
        .prefix_v6 = 48;
    bed.set_guard(&mut guard, config).expect("guard");
    for (i, src) in ["198.18.5.1", "198.18.5.2"].into_iter().enumerate() {
        let f = flow(src, 40000 + i as u16, &v4);
        forwarded(&mut bed, &v4, &f, &syn(&f));
    }
    dropped(
        &mut bed,
        &syn(&flow("198.18.5.3", 40000, &v4)),
        "a third source of the /24",
    );
    let next = flow("198.18.6.3", 40000, &v4);
    forwarded(&mut bed, &v4, &next, &syn(&next));
    for (i, src) in ["2001:2:5:1::1", "2001:2:5:2::1"].into_iter().enumerate() {
        let f = flow(src, 40000 + i as u16, &v6);
        forwarded(&mut bed, &v6, &f, &syn(&f));
    }
    dropped(
        &mut bed,
        &syn(&flow("2001:2:5:3::1", 40000, &v6)),
        "a third source of the /48",
    );
    let next6 = flow("2001:2:6::1", 40000, &v6);
    forwarded(&mut bed, &v6, &next6, &syn(&next6));
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
    // Cleared, nothing is limited.
    bed.set_guard(&mut guard, GuardConfig::default())
        .expect("guard");
    for sport in 41000..41010 {
        let f = flow("198.18.5.9", sport, &v4);
        forwarded(&mut bed, &v4, &f, &syn(&f));
    }
    assert_eq!(counter(&bed, Counter::DropRateLimited), 2);
}

fn the_acl_is_checked_before_the_limit(hook: Hook) {
    let mut bed = bed(hook, ConntrackKind::default());
    let mut guard = None;
    let v4 = vip4_tcp();
    let mut config = limited(Scope::Global, limits(Some((1, 1)), None));
    config
        .acl
        .insert(rule(Scope::Global, Action::Deny, "198.18.66.0/24"));
    bed.set_guard(&mut guard, config).expect("guard");
    for sport in 40000..40005 {
        dropped(&mut bed, &syn(&flow("198.18.66.1", sport, &v4)), "denied");
    }
    assert_eq!(counter(&bed, Counter::DropAclDenied), 5);
    assert_eq!(counter(&bed, Counter::DropRateLimited), 0);
}

/// A tracked flow's entry carries the mark of the rules' generation its
/// packets last passed the lists under: its later packets skip the lists
/// (the allow rule counts only the packets it was asked about), until the
/// rules change; then each flow meets them again once, a denied one on
/// every packet. Flows tracked before any list existed meet them too.
fn tracked_flows_skip_the_lists_until_the_rules_change(hook: Hook, kind: ConntrackKind) {
    let mut bed = bed(hook, kind);
    let mut guard = None;
    let (v4, v6) = (vip4_tcp(), vip6_tcp());
    let ack = |f: &Flow| packet::tcp(f, ACK, None, b"data");
    let early = flow("198.18.0.20", 40000, &v4);
    forwarded(&mut bed, &v4, &early, &syn(&early));
    forwarded(&mut bed, &v4, &early, &ack(&early));
    let allow4 = rule(Scope::Global, Action::Allow, "198.18.0.0/24");
    let allow6 = rule(Scope::Global, Action::Allow, "2001:2::/32");
    bed.set_guard(&mut guard, acl(&[allow4, allow6]))
        .expect("guard");
    let f4 = flow("198.18.0.10", 40001, &v4);
    let f6 = flow("2001:2::10", 40001, &v6);
    for (vip, f) in [(&v4, &f4), (&v6, &f6)] {
        forwarded(&mut bed, vip, f, &syn(f));
        for _ in 0..5 {
            forwarded(&mut bed, vip, f, &ack(f));
        }
    }
    // The SYN, and with a kernel map the ACK that moved the flow from
    // the half-open table into the connection table (the bucket table
    // took the SYN with its mark: its ACK skips the lists).
    let per_new_flow = if kind.is_kernel_map() { 2 } else { 1 };
    assert_eq!(hits(&bed, &guard, &allow6), per_new_flow);
    for _ in 0..3 {
        forwarded(&mut bed, &v4, &early, &ack(&early));
    }
    assert_eq!(
        hits(&bed, &guard, &allow4),
        per_new_flow + 1,
        "the new flow's, 1 of the early one"
    );
    for f in [&f4, &f6, &early] {
        let key = flow_key(f, Protocol::Tcp);
        let entry = bed.dataplane.flow(&key).expect("read").expect("tracked");
        assert_ne!(entry.flags & FLOW_F_ACL_MARK, 0, "{f:?} is marked");
    }
    let deny = rule(Scope::Global, Action::Deny, "198.18.0.10/32");
    bed.set_guard(&mut guard, acl(&[allow4, allow6, deny]))
        .expect("guard");
    for _ in 0..2 {
        dropped(
            &mut bed,
            &ack(&f4),
            "a tracked flow of a newly denied source",
        );
        forwarded(&mut bed, &v4, &early, &ack(&early));
    }
    assert_eq!(
        hits(&bed, &guard, &deny),
        2,
        "a denied flow is never marked"
    );
    assert_eq!(
        hits(&bed, &guard, &allow4),
        per_new_flow + 2,
        "the early flow met the new rules once"
    );
    let untracked = flow("198.18.0.10", 40099, &v4);
    dropped(
        &mut bed,
        &ack(&untracked),
        "an untracked flow's ACK from a denied source",
    );
    assert_eq!(hits(&bed, &guard, &deny), 3);
    assert_eq!(counter(&bed, Counter::DropAclDenied), 3);
}

fn marks_on_buckets(hook: Hook) {
    tracked_flows_skip_the_lists_until_the_rules_change(hook, ConntrackKind::Buckets);
}

fn marks_on_the_lru(hook: Hook) {
    tracked_flows_skip_the_lists_until_the_rules_change(hook, ConntrackKind::Lru);
}

lb_tests::on_both_hooks!(
    marks_on_buckets,
    marks_on_the_lru,
    deny_rules_drop_their_sources_v4_and_v6_and_count_per_rule,
    an_allow_list_lets_only_its_sources_through_and_only_for_its_vip,
    a_vips_allow_list_replaces_the_global_one_and_deny_wins,
    a_rule_change_reaches_sources_with_a_cached_verdict,
    limits_on_buckets,
    limits_on_the_lru,
    a_prefix_shares_one_bucket_v4_and_v6,
    the_acl_is_checked_before_the_limit,
    reopening_on_buckets,
    reopening_on_the_lru,
    a_flow_the_prefix_refuses_keeps_its_source_token,
    flood_acks_on_buckets,
    flood_acks_on_the_lru,
    no_backend_reopening_on_buckets,
    no_backend_reopening_on_the_lru,
);

/// The benchmark's guard cases (a denied packet from one source and from
/// a new source each run, a tracked and a new flow with the ACL and
/// limits on, the tracked flow with them toggled off round by round) each
/// take the path they name on every run,
/// on both connection-table designs (small rounds: a check, not a
/// measurement).
#[test]
fn the_benchmarks_guard_cases_take_their_paths() {
    let cases = lb_tests::bench::xdp::run_guarded_only(2_000, 2).expect("guard cases");
    assert_eq!(
        cases.len(),
        14,
        "two baselines, four cases and the tracked flow with its guards toggled off, on two designs"
    );
    for case in &cases {
        assert!(case.ns_per_packet.median > 0.0, "{case:?}");
    }
    // The guarded tracked flow and its guards-off twin ran in the same
    // rounds, so the report can pair them round by round.
    for name in [
        lb_tests::bench::xdp::TRACKED_V4_GUARDED,
        lb_tests::bench::xdp::TRACKED_V4_UNGUARDED,
    ] {
        let rows: Vec<_> = cases.iter().filter(|c| c.name == name).collect();
        assert_eq!(rows.len(), 2, "{name}: one row per design");
        assert!(rows.iter().all(|c| c.per_round.len() == 2), "{rows:?}");
    }
}

/// A change whose old and new rules together pass the maps' capacity
/// (each alone fits): the old rules go first, and exactly the new set is
/// in force; before, the first new rule past the last id failed the
/// change, at every try.
#[test]
fn a_large_rule_set_is_replaced_by_another_large_one() {
    let mut bed = bed(Hook::Xdp, ConntrackKind::default());
    let mut guard = None;
    let deny_set = |third: u8| -> Vec<AclRule> {
        (0..3000u32)
            .map(|n| {
                let net = format!("198.{}.{}.{}/32", 18 + u32::from(third), n / 256, n % 256);
                rule(Scope::Global, Action::Deny, &net)
            })
            .collect()
    };
    let (old, new) = (deny_set(0), deny_set(1));
    bed.set_guard(&mut guard, acl(&old)).expect("the first set");
    bed.set_guard(&mut guard, acl(&new))
        .expect("the second set replaces the first");
    let counts = guard
        .as_ref()
        .expect("guard")
        .counts(bed.dataplane.guard())
        .expect("counts");
    assert_eq!(counts.len(), 3000);
    assert!(
        counts.iter().all(|c| c.id.is_some()),
        "every new rule in force"
    );
    // An old source passes, a new one is dropped.
    let v4 = vip4_tcp();
    let f = flow("198.18.0.10", 40000, &v4);
    forwarded(&mut bed, &v4, &f, &syn(&f));
    let denied = flow("198.19.0.10", 40000, &v4);
    dropped(&mut bed, &syn(&denied), "a source of the new set");

    // The same with allow lists (the allow list is off while the old
    // rules go out; the order is unit-tested with the installer): exactly
    // the new list allows.
    let allow_set = |third: u8| -> Vec<AclRule> {
        (0..3000u32)
            .map(|n| {
                let net = format!("198.{}.{}.{}/32", 18 + u32::from(third), n / 256, n % 256);
                rule(Scope::Global, Action::Allow, &net)
            })
            .collect()
    };
    bed.set_guard(&mut guard, acl(&allow_set(0)))
        .expect("the first allow list");
    bed.set_guard(&mut guard, acl(&allow_set(1)))
        .expect("the second allow list replaces the first");
    let allowed = flow("198.19.0.11", 40001, &v4);
    forwarded(&mut bed, &v4, &allowed, &syn(&allowed));
    let not_allowed = flow("198.18.0.11", 40001, &v4);
    dropped(
        &mut bed,
        &syn(&not_allowed),
        "a source of the old allow list only",
    );
}
