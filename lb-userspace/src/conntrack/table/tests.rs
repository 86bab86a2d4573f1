use lb_common::{
    consts::{FLOW_F_HALF_OPEN, IPPROTO_UDP},
    flow_table::{
        self, evict_limit, rank_word, ticks, victim_order, FlowBucket, Placed, CLASS_CLOSED,
        CLASS_DATAGRAM, CLASS_ESTABLISHED, CLASS_HALF_OPEN, DEFAULT_IDLE_HORIZONS, FLOW_WAYS,
        TICK_SHIFT,
    },
    hash::{flow_hash, table_hash},
    FlowEntry, FlowKey,
};

use super::{
    install::put_in,
    rank::{install_class, rank_at, stamp_rank},
    re_place::in_place_wins,
    FlowTableError,
};

/// The order `victim_order` gives a valid way of rank word `rank`.
fn order(rank: u32, now_ticks: u32) -> u32 {
    victim_order((u64::from(rank) << 32) | 2, now_ticks)
}

/// The tier (`victim_order`'s top bits: 1 closed or expired, 2
/// half-open, 3 an open connection idle past the TCP horizon, 4 live)
/// of a way of rank word `rank`.
fn tier(rank: u32, now_ticks: u32) -> u32 {
    order(rank, now_ticks) >> 28
}

/// A flow installed as seen now (a replica stamped with the precise
/// clock) is ranked at the data plane's tick, not the next one: for
/// up to a kernel tick after each rank tick begins, the precise clock
/// is a rank tick ahead of the coarse one the data plane reads. 60 ms
/// of stamps cross three rank ticks.
#[test]
fn a_flow_seen_now_is_never_stamped_ahead_of_the_data_planes_clock() {
    let until = std::time::Instant::now() + std::time::Duration::from_millis(60);
    let mut stamps = 0u64;
    while std::time::Instant::now() < until {
        let rank = stamp_rank(crate::clock::monotonic_ns(), CLASS_ESTABLISHED);
        let data_plane_now = ticks(crate::clock::monotonic_coarse_ns());
        assert_eq!(
            tier(rank, data_plane_now),
            4,
            "a flow seen now is live to the data plane (rank tick {}, its clock's {data_plane_now})",
            rank >> 2
        );
        stamps += 1;
    }
    assert!(stamps > 0);
}

/// A UDP replica goes in the datagram class (judged by the UDP
/// horizon), a TCP one by its flags.
#[test]
fn installed_flows_are_classed_as_the_data_plane_classes_them() {
    use lb_common::consts::{FLOW_F_FIN, IPPROTO_TCP};
    let key = |proto| FlowKey {
        proto,
        ..FlowKey::default()
    };
    let udp = key(IPPROTO_UDP);
    let tcp = key(IPPROTO_TCP);
    assert_eq!(install_class(&udp, 0), CLASS_DATAGRAM);
    assert_eq!(install_class(&tcp, 0), CLASS_ESTABLISHED);
    assert_eq!(install_class(&tcp, FLOW_F_HALF_OPEN), CLASS_HALF_OPEN);
    assert_eq!(install_class(&tcp, FLOW_F_FIN), CLASS_CLOSED);
}

/// A one-bucket table (both of every flow's buckets) holding `key`
/// with `entry`, as the data plane inserted it; the bucket and its
/// `put_in` place.
fn table_with(
    key: &FlowKey,
    entry: &FlowEntry,
) -> (Box<FlowBucket>, (*mut FlowBucket, *mut FlowBucket, u32)) {
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let hash = table_hash(key);
    let rank = rank_word(entry.last_seen_ns, CLASS_ESTABLISHED);
    let placed = unsafe { flow_table::find_or_insert(b, b, key, entry, rank, hash) };
    assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
    (bucket, (b, b, hash))
}

/// A TCP flow, this node's entry of it (backend 1, seen at 20 s) and
/// a peer's older copy (backend 2, seen at 10 s).
fn local_and_older_peer() -> (FlowKey, FlowEntry, FlowEntry) {
    let key = FlowKey {
        src: [0x0a00_0001u32.to_be(), 0, 0, 0],
        dst: [0xc612_0064u32.to_be(), 0, 0, 0],
        sport: 40_000u16.to_be(),
        dport: 80u16.to_be(),
        proto: lb_common::consts::IPPROTO_TCP,
        family: lb_common::consts::AF_INET,
        _pad: 0,
    };
    let s = 1_000_000_000;
    let local = FlowEntry {
        backend_id: 1,
        backend_generation: 1,
        last_seen_ns: 20 * s,
        flags: 0,
        hash: flow_hash(&key),
    };
    let peer = FlowEntry {
        backend_id: 2,
        last_seen_ns: 10 * s,
        ..local
    };
    (key, local, peer)
}

/// Replication's test: the held entry seen after the peer's copy.
fn fresher(peer: FlowEntry) -> impl FnMut(&FlowEntry) -> bool {
    move |held: &FlowEntry| held.last_seen_ns > peer.last_seen_ns
}

/// The data plane is writing new flags into this node's flow (an ACL
/// mark: the way held) when a peer's older copy of it comes in: the
/// write's first lookup misses the flow, which is published again
/// before the write's insert looks (here, at its clock read). The
/// fresher local entry is kept: the write judges the entry it finds,
/// not the miss. (Replication judged a lookup before the write: it
/// missed, and the write then replaced the flow found published,
/// moving the connection to the peer's backend.)
#[test]
fn a_fresher_local_entry_is_kept_even_when_the_first_lookup_misses() {
    let (key, local, peer) = local_and_older_peer();
    let (_bucket, place) = table_with(&key, &local);
    let (b, _, hash) = place;
    let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the local flow");
    let marked = local.flags | lb_common::consts::FLOW_F_ACL_MARK;
    let rank = rank_word(local.last_seen_ns, CLASS_ESTABLISHED);
    let started =
        unsafe { flow_table::begin_refresh(b, &seen, (local.last_seen_ns, marked), rank) };
    let mut started = Some(started.expect("the data plane's claim"));
    assert!(
        unsafe { flow_table::find(b, &key, hash) }.is_none(),
        "held: a miss"
    );
    let clock = || {
        if let Some(refresh) = started.take() {
            unsafe { flow_table::finish_refresh(b, refresh) };
        }
        ticks(30 * 1_000_000_000)
    };
    let rank = rank_word(peer.last_seen_ns, CLASS_ESTABLISHED);
    let done = unsafe {
        put_in(
            place,
            &key,
            &peer,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            fresher(peer),
            "test",
        )
    };
    let kept = done.expect("no error").expect("the local entry kept");
    assert_eq!(kept.backend_id, local.backend_id);
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(
        (
            held.entry.backend_id,
            held.entry.last_seen_ns,
            held.entry.flags
        ),
        (local.backend_id, local.last_seen_ns, marked),
        "this node's entry, with the data plane's new flags"
    );
}

/// The data plane refreshes this node's flow right after the write
/// judged it older than the peer's copy: the write's CAS from the tag
/// it judged fails, and the entry is read and judged again, now
/// fresher, and kept.
#[test]
fn a_local_entry_refreshed_between_the_judgement_and_the_write_is_judged_again() {
    let s = 1_000_000_000;
    let (key, local, peer) = local_and_older_peer();
    let local = FlowEntry {
        last_seen_ns: 5 * s,
        ..local
    };
    let (_bucket, place) = table_with(&key, &local);
    let (b, _, hash) = place;
    let mut judged = Vec::new();
    let keep = |held: &FlowEntry| {
        judged.push(held.last_seen_ns);
        if judged.len() == 1 {
            // The data plane's touch of the flow (its age alone).
            let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
            let rank = rank_word(20 * s, CLASS_ESTABLISHED);
            let touched = (20 * s, seen.entry.flags);
            assert!(unsafe { flow_table::refresh(b, &seen, touched, rank) });
        }
        held.last_seen_ns > peer.last_seen_ns
    };
    let clock = || ticks(30 * s);
    let rank = rank_word(peer.last_seen_ns, CLASS_ESTABLISHED);
    let done = unsafe {
        put_in(
            place,
            &key,
            &peer,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            keep,
            "test",
        )
    };
    let kept = done.expect("no error").expect("the local entry kept");
    assert_eq!((kept.backend_id, kept.last_seen_ns), (1, 20 * s));
    assert_eq!(judged, [5 * s, 20 * s], "judged again after the lost CAS");
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(held.entry.backend_id, local.backend_id);
}

/// `re_place` copying a flow an older release put elsewhere (its copy
/// last seen at 10 s) while the running program refreshes the flow at
/// its place (seen at 20 s, the way held for its new flags): the
/// copy's first lookup misses the held way, which is published again
/// before the copy's insert looks. The program's fresher entry stays,
/// with its flags: the copy judges the entry it would replace, in the
/// write. (`re_place` looked first and then wrote unconditionally: the
/// older copy replaced the entry published between the two, losing
/// its flags, and its last-seen time went back.) A copy there seen
/// as recently stays too; an older one is replaced.
#[test]
fn moving_a_misplaced_flow_keeps_the_entry_refreshed_at_its_place_meanwhile() {
    let s = 1_000_000_000;
    let (key, local, misplaced) = local_and_older_peer();
    let (_bucket, place) = table_with(&key, &local);
    let (b, _, hash) = place;
    let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the flow at its place");
    let marked = local.flags | lb_common::consts::FLOW_F_FIN;
    let rank = rank_word(local.last_seen_ns, CLASS_ESTABLISHED);
    let started =
        unsafe { flow_table::begin_refresh(b, &seen, (local.last_seen_ns, marked), rank) };
    let mut started = Some(started.expect("the data plane's claim"));
    let clock = || {
        if let Some(refresh) = started.take() {
            unsafe { flow_table::finish_refresh(b, refresh) };
        }
        ticks(30 * s)
    };
    let rank = rank_word(misplaced.last_seen_ns, CLASS_ESTABLISHED);
    let keep = in_place_wins(&misplaced);
    let done = unsafe {
        put_in(
            place,
            &key,
            &misplaced,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            keep,
            "test",
        )
    };
    let kept = done
        .expect("no error")
        .expect("the entry at its place kept");
    assert_eq!(kept.last_seen_ns, local.last_seen_ns);
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(
        (
            held.entry.backend_id,
            held.entry.last_seen_ns,
            held.entry.flags
        ),
        (local.backend_id, local.last_seen_ns, marked),
        "the program's entry, with its new flags"
    );
    // Seen as recently: kept. Seen before the misplaced copy: replaced.
    let clock = || ticks(30 * s);
    let same = FlowEntry {
        backend_id: 3,
        ..held.entry
    };
    let done = unsafe {
        put_in(
            place,
            &key,
            &same,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            in_place_wins(&same),
            "test",
        )
    };
    assert!(matches!(done, Ok(Some(_))), "{done:?}");
    let later = FlowEntry {
        backend_id: 4,
        last_seen_ns: 25 * s,
        ..held.entry
    };
    let done = unsafe {
        put_in(
            place,
            &key,
            &later,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            in_place_wins(&later),
            "test",
        )
    };
    assert_eq!(done.expect("no error"), None, "replaced");
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(held.entry.backend_id, 4);
}

/// What `put` did stays: an older local entry is replaced, an absent
/// flow inserted.
#[test]
fn a_write_unless_fresher_replaces_an_older_entry_and_inserts_an_absent_one() {
    let (key, local, peer) = local_and_older_peer();
    let newer = FlowEntry {
        last_seen_ns: 30 * 1_000_000_000,
        ..peer
    };
    let (_bucket, place) = table_with(&key, &local);
    let (b, _, hash) = place;
    let clock = || ticks(40 * 1_000_000_000);
    let rank = rank_word(newer.last_seen_ns, CLASS_ESTABLISHED);
    let done = unsafe {
        put_in(
            place,
            &key,
            &newer,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            fresher(newer),
            "test",
        )
    };
    assert_eq!(done.expect("no error"), None, "replaced");
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(held.entry, newer);
    assert!(unsafe { flow_table::remove(b, &key, hash) });
    let done = unsafe {
        put_in(
            place,
            &key,
            &peer,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            fresher(peer),
            "test",
        )
    };
    assert_eq!(done.expect("no error"), None, "inserted");
    let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
    assert_eq!(held.entry, peer);
}

/// A one-bucket table whose eight ways hold TCP flows (`tcp`, to
/// `proto` per way) last seen `ago` seconds before `now` (s), each in
/// the class the data plane gives it; the bucket, its `put_in` place
/// and the keys.
fn full_bucket(
    now: u64,
    ways: [(u8, u64); FLOW_WAYS],
) -> (
    Box<FlowBucket>,
    (*mut FlowBucket, *mut FlowBucket, u32),
    Vec<FlowKey>,
) {
    let s = 1_000_000_000;
    let mut bucket = Box::<FlowBucket>::default();
    let b: *mut FlowBucket = &mut *bucket;
    let mut keys = Vec::new();
    for (n, (proto, ago)) in ways.into_iter().enumerate() {
        let key = FlowKey {
            src: [(0x0a00_0001u32 + n as u32).to_be(), 0, 0, 0],
            proto,
            ..local_and_older_peer().0
        };
        let entry = FlowEntry {
            last_seen_ns: (now - ago) * s,
            hash: flow_hash(&key),
            ..FlowEntry::default()
        };
        let rank = rank_word(entry.last_seen_ns, install_class(&key, 0));
        // One bucket: any hash places the flow there.
        let placed = unsafe { flow_table::find_or_insert(b, b, &key, &entry, rank, 0) };
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        keys.push(key);
    }
    (bucket, (b, b, 0), keys)
}

/// The horizons lbd writes for `tcp` and `udp` seconds, as the
/// connection table's inserts take them.
fn horizons(tcp: u64, udp: u64) -> u64 {
    let ticks = |secs: u64| flow_table::horizon_ticks(secs * 1_000_000_000);
    flow_table::idle_horizons_of(flow_table::idle_horizons_word(ticks(tcp), ticks(udp)))
}

/// With `tcp_idle_timeout_s` = 2 h a TCP flow idle 20 minutes is live
/// to the data plane: a replica of a closed flow (one that saw a FIN,
/// seen a second ago) finds the bucket full rather than evicting it.
/// By the default 15 minutes it is an open connection idle past the
/// horizon, which a closed flow never evicts either (it goes only
/// before live flows; before, it was taken for over).
#[test]
fn a_replica_keeps_a_tcp_flow_live_under_a_long_configured_horizon() {
    use lb_common::consts::{FLOW_F_FIN, IPPROTO_TCP};
    let s = 1_000_000_000;
    let now = 36_000;
    let (key, _, _) = local_and_older_peer();
    let key = FlowKey {
        sport: 50_000u16.to_be(),
        ..key
    };
    let closed = FlowEntry {
        backend_id: 2,
        last_seen_ns: (now - 1) * s,
        flags: FLOW_F_FIN,
        hash: flow_hash(&key),
        ..FlowEntry::default()
    };
    let rank = rank_word(closed.last_seen_ns, install_class(&key, closed.flags));
    let clock = || ticks(now * s);
    let (mut bucket, place, keys) = full_bucket(now, [(IPPROTO_TCP, 1_200); FLOW_WAYS]);
    let long = (rank, clock, horizons(7_200, 30));
    let done = unsafe { put_in(place, &key, &closed, long, |_| false, "test") };
    assert!(matches!(done, Err(FlowTableError::Full(_))), "{done:?}");
    let held: Vec<FlowKey> = bucket_keys(&mut bucket);
    assert_eq!(held, keys, "nothing evicted");
    // By the defaults too.
    let done = unsafe {
        put_in(
            place,
            &key,
            &closed,
            (rank, clock, DEFAULT_IDLE_HORIZONS),
            |_| false,
            "test",
        )
    };
    assert!(matches!(done, Err(FlowTableError::Full(_))), "{done:?}");
    assert_eq!(bucket_keys(&mut bucket), keys, "nothing evicted");
}

/// With `udp_idle_timeout_s` = 30 s a UDP flow idle 60 s is over: a
/// replica takes its way before the TCP flows', though they are older
/// (by the defaults, a live UDP flow, the oldest TCP flow would go).
#[test]
fn a_replica_takes_the_way_of_a_udp_flow_past_its_configured_horizon() {
    use lb_common::consts::{IPPROTO_TCP, IPPROTO_UDP};
    let s = 1_000_000_000;
    let now = 36_000;
    let mut ways = [(IPPROTO_TCP, 0); FLOW_WAYS];
    for (n, way) in ways.iter_mut().enumerate() {
        *way = (IPPROTO_TCP, 100 + 10 * n as u64);
    }
    ways[5] = (IPPROTO_UDP, 60);
    let (key, replica, _) = local_and_older_peer();
    let key = FlowKey {
        sport: 50_000u16.to_be(),
        ..key
    };
    let replica = FlowEntry {
        last_seen_ns: now * s,
        hash: flow_hash(&key),
        ..replica
    };
    let rank = rank_word(replica.last_seen_ns, install_class(&key, 0));
    let clock = || ticks(now * s);
    for (horizons, gone) in [(horizons(7_200, 30), 5), (DEFAULT_IDLE_HORIZONS, 7)] {
        let (mut bucket, place, keys) = full_bucket(now, ways);
        let done = unsafe {
            put_in(
                place,
                &key,
                &replica,
                (rank, clock, horizons),
                |_| false,
                "test",
            )
        };
        assert_eq!(done.expect("inserted"), None);
        let held = bucket_keys(&mut bucket);
        assert!(!held.contains(&keys[gone]), "way {gone} taken");
        assert!(held.contains(&key));
    }
}

/// The keys `bucket`'s ways hold, way by way.
fn bucket_keys(bucket: &mut FlowBucket) -> Vec<FlowKey> {
    (0..FLOW_WAYS)
        .filter_map(|way| unsafe { flow_table::read_way(bucket, way) }.map(|(k, _)| k))
        .collect()
}

#[test]
fn lbd_ranks_a_flow_by_its_64_bit_age_clamped_to_the_clock() {
    let s = 1_000_000_000u64;
    let day = 86_400 * s;
    // Past the tick wrap (208.5 days) itself.
    let now = 300 * day;
    let at = ticks(now);
    // Seen within 52 days: the data plane's own rank word.
    for ago in [0, s, 30 * s, 3_600 * s, 50 * day] {
        for class in [CLASS_CLOSED, CLASS_HALF_OPEN, CLASS_ESTABLISHED] {
            assert_eq!(
                rank_at(now - ago, class, now),
                rank_word(now - ago, class),
                "{ago} ns ago, class {class}"
            );
        }
    }
    // Ahead of the clock (5 s, past `RANK_AHEAD_TICKS`): seen now, a
    // live flow, not one aged nearly the whole wrap.
    let ahead = rank_at(now + 5 * s, CLASS_ESTABLISHED, now);
    assert_eq!(ahead, rank_word(now, CLASS_ESTABLISHED));
    assert_eq!(tier(ahead, at), 4);
    // Idle 150 days, and 208.5 days plus 10 s (the 30-bit tick has
    // wrapped: the data plane's rank would read 10 s old): expired,
    // and an insert of it evicts no live way (one seen 1 s ago).
    // (An open connection idle that long is idle-open, tier 3: below
    // every live flow, above handshakes.)
    let live = order(rank_word(now - s, CLASS_ESTABLISHED), at);
    for ago in [150 * day, (1u64 << (30 + TICK_SHIFT)) + 10 * s] {
        for (class, expired) in [(CLASS_HALF_OPEN, 1), (CLASS_ESTABLISHED, 3)] {
            let rank = rank_at(now - ago, class, now);
            assert_eq!(tier(rank, at), expired, "{ago} ns ago, class {class}");
            assert!(evict_limit(rank, at) < live, "{ago} ns ago, class {class}");
            // And stays expired for 150 days more.
            assert_eq!(tier(rank, ticks(now + 150 * day)), expired);
        }
    }
}
