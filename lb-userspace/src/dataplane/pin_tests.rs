//! The pinned data plane across starts, through the real object on a BPF
//! filesystem of the test's own (`TestBpffs`): a start that stops before
//! its swap leaves the previous lbd's pins as they were; a stop that
//! cannot keep its tc filter keeps the maps; a smaller table judges the
//! flows it carries over by the configured idle horizons. Need root.

use std::time::Duration;

use aya::maps::{Array, IterableMap as _, Map, MapData, MapInfo};
use lb_common::{
    consts::{
        maglev_index, names, HALF_OPEN_SIZE_DEFAULT, IPPROTO_UDP, MAX_BACKENDS,
        NAT_FLOWS_SIZE_DEFAULT,
    },
    Backend, FlowEntry, FlowKey,
};

use super::{Dataplane, IdleHorizons, LoadOptions, MapSizes, MapWriter as _, Released};
use crate::map_batch;
use crate::pinning::{test_support::TestBpffs, PinDir, PINNED_MAPS};
use crate::test_scratch::ScratchDir;

/// Maps for `max_vips` VIPs and `conntrack` flows.
fn sizes(max_vips: u32, conntrack: u32) -> MapSizes {
    MapSizes {
        max_vips,
        conntrack,
        nat_flows: NAT_FLOWS_SIZE_DEFAULT,
        half_open: HALF_OPEN_SIZE_DEFAULT,
    }
}

/// Loading with the pins in `pins`.
fn pinned(pins: &PinDir) -> LoadOptions {
    LoadOptions {
        pins: Some(pins.clone()),
        ..LoadOptions::default()
    }
}

/// The id of each map pinned under its name in `pins` (None: no pin).
fn pinned_ids(pins: &PinDir) -> Vec<(&'static str, Option<u32>)> {
    PINNED_MAPS
        .iter()
        .map(|name| {
            let id = MapInfo::from_pin(pins.map_path(name))
                .ok()
                .map(|info| info.id());
            (*name, id)
        })
        .collect()
}

/// The file's VIPs outgrew the pinned maps (or an upgrade changed a map's
/// size): the next lbd loads maps of its own and does not adopt, then
/// stops before its swap (the verifier, the commit or the attach failed).
/// The previous lbd's program still forwards on its maps, and its pins
/// still name them, every one: the operator reverts the file, and the lbd
/// after adopts them as they are. A pinned VIPS of the failed start's
/// (empty) would have been kept instead, every flow re-picked.
#[test]
fn a_start_stopped_before_its_swap_leaves_the_previous_pins_as_they_were() {
    let Some(bpffs) = TestBpffs::new("before-swap") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = pinned_ids(&pins);
    assert!(before.iter().all(|(_, id)| id.is_some()), "{before:?}");
    {
        let grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
        assert!(!grown.adopted(), "VIPS does not fit: nothing adopted");
        assert_eq!(pinned_ids(&pins), before, "while it loads");
        // Dropped: it stopped before its swap.
    }
    assert_eq!(pinned_ids(&pins), before, "after it stopped");
    assert!(!pins.staged_dir().exists(), "its own maps went with it");
    let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("reverted");
    assert!(next.adopted(), "the previous lbd's maps are adopted");
    assert_eq!(pinned_ids(&pins), before);
}

/// A start that adopts nothing (here a state map's pin is missing; an
/// upgrade that changed one's layout is the same) numbers its VIPs afresh:
/// it makes guard maps of its own (staged) instead of writing its
/// numbering into the ones the previous lbd's program still reads.
#[test]
fn a_start_that_adopts_nothing_leaves_the_previous_guards_alone() {
    let Some(bpffs) = TestBpffs::new("guards") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    std::fs::remove_file(pins.map_path(names::MAP_MAGLEV)).expect("a state map's pin gone");
    let before = pinned_ids(&pins);
    let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(!next.adopted());
    // (MAGLEV, pinned by no one, is pinned at once: it displaces nothing.)
    let others = |ids: Vec<(&'static str, Option<u32>)>| {
        ids.into_iter()
            .filter(|(name, _)| *name != names::MAP_MAGLEV)
            .collect::<Vec<_>>()
    };
    assert_eq!(others(pinned_ids(&pins)), others(before), "while it loads");
    let staged: Vec<String> = staged_ids(&pins).into_iter().map(|(n, _)| n).collect();
    for name in [
        names::MAP_VIP_GUARDS,
        names::MAP_ACL_V4,
        names::MAP_ACL_V6,
        names::MAP_ACL_HITS,
        names::MAP_LIMIT_BUCKETS,
    ] {
        assert!(
            staged.iter().any(|n| n == name),
            "{name} staged: {staged:?}"
        );
    }
}

/// The traffic counters are indexed by VIP and backend id, the numbering
/// of the state maps: a start that does not adopt the state (a state
/// map's pin gone, so `VIP_STATS` still fits; or the file's VIPs outgrew
/// the pinned capacity, where `BACKEND_STATS`, of a fixed size, always
/// fits) counts its traffic in maps of its own (staged), which its first
/// commit clears for its ids, while the previous lbd's program, until
/// the swap, goes on counting its own backends' traffic in the pinned
/// ones: shared, a new backend N started with another backend's packets.
/// A start that adopts the state keeps them (the counters go on across
/// a hitless restart).
#[test]
fn a_start_that_adopts_nothing_counts_traffic_in_maps_of_its_own() {
    // (In the order `staged_ids` lists them: by name.)
    let counters = [names::MAP_BACKEND_STATS, names::MAP_VIP_STATS];
    let ids = |pins: &PinDir| {
        pinned_ids(pins)
            .into_iter()
            .filter(|(name, _)| counters.contains(name))
            .collect::<Vec<_>>()
    };
    let staged_counters = |pins: &PinDir| {
        staged_ids(pins)
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| counters.contains(&name.as_str()))
            .collect::<Vec<_>>()
    };
    let Some(bpffs) = TestBpffs::new("stats") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = ids(&pins);
    {
        let adopting = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("a restart");
        assert!(adopting.adopted());
        assert_eq!(ids(&pins), before, "a restart keeps the counters");
        assert!(staged_counters(&pins).is_empty());
    }
    std::fs::remove_file(pins.map_path(names::MAP_MAGLEV)).expect("a state map's pin gone");
    {
        let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("adopts nothing");
        assert!(!next.adopted());
        assert_eq!(
            ids(&pins),
            before,
            "the previous lbd's counters stay pinned"
        );
        assert_eq!(staged_counters(&pins), counters, "its own are staged");
    }
    let grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    assert!(!grown.adopted());
    assert_eq!(
        ids(&pins),
        before,
        "the previous lbd's counters stay pinned"
    );
    assert_eq!(staged_counters(&pins), counters, "its own are staged");
}

/// The ids of the maps staged in `pins`, by name.
fn staged_ids(pins: &PinDir) -> Vec<(String, u32)> {
    pins.staged_pins()
        .expect("staged")
        .into_iter()
        .map(|(name, path)| {
            let id = MapInfo::from_pin(&path).expect("a staged map").id();
            (name, id)
        })
        .collect()
}

/// The ids of the maps named `names` pinned under their names in `pins`.
fn ids_of(pins: &PinDir, names: &[String]) -> Vec<(String, u32)> {
    names
        .iter()
        .map(|name| {
            let id = MapInfo::from_pin(pins.map_path(name)).expect("pinned").id();
            (name.clone(), id)
        })
        .collect()
}

/// The grown start that gets to run its program (here by a test run,
/// `finish_adoption`; lbd right after its swap): the maps it made take
/// their names then, the maps it shares with the previous lbd stay, and
/// the next start of its size adopts them.
#[test]
fn a_start_whose_program_runs_pins_its_maps_under_their_names() {
    let Some(bpffs) = TestBpffs::new("swapped") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = pinned_ids(&pins);
    let mut grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    let staged = staged_ids(&pins);
    let names: Vec<String> = staged.iter().map(|(name, _)| name.clone()).collect();
    for name in [
        names::MAP_VIPS,
        names::MAP_FLOW_BUCKETS,
        names::MAP_NAT_BUCKETS,
    ] {
        assert!(names.iter().any(|n| n == name), "{name} staged: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == names::MAP_CONFIG),
        "a map that fits is shared"
    );
    grown.finish_adoption();
    assert!(!pins.staged_dir().exists());
    assert_eq!(ids_of(&pins, &names), staged, "in place");
    let config = |ids: &[(&str, Option<u32>)]| {
        ids.iter()
            .find(|(name, _)| *name == names::MAP_CONFIG)
            .map(|(_, id)| *id)
    };
    assert_eq!(config(&pinned_ids(&pins)), config(&before));
    drop(grown);
    let next = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(next.adopted());
    assert_eq!(ids_of(&pins, &names), staged);
}

/// A start that stopped between its swap and pinning its maps under their
/// names (killed in between; here its program still loaded stands for
/// the one on the link): the next start finds a program using the staged
/// maps, pins them under their names and adopts them. Staged maps no
/// program uses (a start killed before its swap) are removed, the pins
/// as they were.
#[test]
fn the_next_start_finishes_or_undoes_what_a_stopped_start_staged() {
    let Some(bpffs) = TestBpffs::new("recover") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = pinned_ids(&pins);
    // Staged by a start killed before its swap: no program uses it.
    std::fs::create_dir_all(pins.staged_dir()).expect("staged");
    let orphan =
        crate::pinning::test_support::pin_map(&pins.staged_path(names::MAP_VIPS), 2, (4, 8), 4, 0);
    drop(orphan);
    super::recover_staged(&pins).expect("recovered");
    assert!(!pins.staged_dir().exists(), "removed");
    assert_eq!(pinned_ids(&pins), before, "the pins as they were");

    let grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    let staged = staged_ids(&pins);
    let names: Vec<String> = staged.iter().map(|(name, _)| name.clone()).collect();
    super::recover_staged(&pins).expect("recovered");
    assert!(!pins.staged_dir().exists());
    assert_eq!(ids_of(&pins, &names), staged, "in place");
    drop(grown);
    assert_eq!(ids_of(&pins, &names), staged, "kept when it goes");
    let next = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(next.adopted());
    assert_eq!(ids_of(&pins, &names), staged);
}

/// A start (8 VIPs) killed between its swap and pinning its maps under
/// their names, after a previous lbd's of 4 VIPs: its program runs on
/// the staged maps. The next start, with 2 VIPs in its file, reads the
/// VIP capacity it sizes its maps by (and decides the VRRP resume by)
/// only once those maps are in place (`recovered_vip_capacity`): 8,
/// which holds its VIPs, so its load adopts the state that program
/// serves. Read from the pins as they were (4), the load found a `VIPS`
/// of 8 put in place under it, adopted nothing, and the connection and
/// NAT tables were lost.
#[test]
fn the_vip_capacity_is_read_once_a_stopped_starts_maps_are_in_place() {
    let Some(bpffs) = TestBpffs::new("capacity") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let killed = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    assert!(!killed.adopted(), "VIPS does not fit: nothing adopted");
    let staged = staged_ids(&pins);
    let names: Vec<String> = staged.iter().map(|(name, _)| name.clone()).collect();
    let file_vips = 2;
    let capacity = super::recovered_vip_capacity(&pins)
        .expect("recovered")
        .expect("VIPS pinned");
    assert!(capacity >= file_vips, "the pinned capacity is kept");
    let next = Dataplane::load_with(sizes(capacity, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(
        next.adopted(),
        "the state the killed start's program serves is adopted (capacity read: {capacity})"
    );
    assert_eq!(capacity, 8);
    assert_eq!(ids_of(&pins, &names), staged, "its maps in place");
    drop(next);
    drop(killed);
}

/// A stop for a restart (SIGTERM) at tc through cls_bpf that cannot
/// keep its filter (it goes with lbd) keeps the maps pinned, as the same
/// failure on drop does: the next lbd adopts them and attaches anew. In
/// a network namespace of the test thread's own, on its `lo`.
#[test]
fn a_release_that_cannot_keep_its_tc_filter_keeps_the_maps_pinned() {
    use aya::programs::{links::Link as _, tc::NlOptions, TcAttachType};

    use super::attach::{tc_program, Attachment};
    let Some(bpffs) = TestBpffs::new("release") else {
        return;
    };
    let pins = bpffs.pins();
    crate::test_netns::in_own_netns(move || {
        let mut dataplane =
            Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the data plane");
        let program = tc_program(&mut dataplane.ebpf).expect("tc_lb");
        let id = crate::ownership::cls_bpf::attach_filter(
            program,
            "lo",
            TcAttachType::Ingress,
            NlOptions::default(),
        )
        .expect("a cls_bpf filter on lo");
        // Its link taken from the program: keeping the filter fails.
        let taken = tc_program(&mut dataplane.ebpf)
            .expect("tc_lb")
            .take_link(id)
            .expect("the filter's link");
        dataplane.attached = Some(("lo".to_owned(), Attachment::OwnedTc(taken.id())));
        let vips = pins.map_path(names::MAP_VIPS);
        let id_before = MapInfo::from_pin(&vips).expect("VIPS pinned").id();
        let released = dataplane.release().expect("released");
        assert_eq!(released, Released::NothingAttached);
        let id_after = MapInfo::from_pin(&vips).map(|info| info.id()).ok();
        assert_eq!(id_after, Some(id_before), "the maps stay pinned");
        drop(taken);
        drop(dataplane);
        let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the next lbd");
        assert!(next.adopted(), "the next lbd adopts them");
    });
}

/// A flow of `proto` from client `n`.
fn key(n: u8, proto: u8) -> FlowKey {
    FlowKey {
        src: [u32::from_be_bytes([198, 18, 1, n]), 0, 0, 0],
        dst: [u32::from_be_bytes([198, 18, 0, 100]), 0, 0, 0],
        sport: 10_000 + u16::from(n),
        dport: 53,
        proto,
        family: libc::AF_INET as u8,
        _pad: 0,
    }
}

/// `conntrack_size` lowered to one bucket (8 ways) under a table holding
/// a TCP flow last seen 120 s ago, live under its 15-minute horizon, and
/// eight UDP flows seen since, 60 s ago, expired under the configured 30 s
/// horizon. The carry-over judges them by the configured horizons (not
/// the defaults, 15 minutes for both, which the unpinned IDLE_HORIZONS
/// holds until lbd writes its own): the live TCP flow first, and the
/// expired UDP flows, which the table's own order (the defaults) would
/// take for live and more recent, are left out rather than take its way
/// (their next packets take Maglev's pick anyway). Judged by the
/// defaults, the UDP flows were live and more recent, and the TCP flow
/// found no way.
#[test]
fn a_smaller_table_keeps_a_live_tcp_flow_over_expired_udp_flows() {
    let Some(bpffs) = TestBpffs::new("horizons") else {
        return;
    };
    let pins = bpffs.pins();
    let s = 1_000_000_000u64;
    // A flow "seen 120 s ago" needs a clock that has run that long: on a
    // machine booted a moment ago, wait for it rather than fail.
    while crate::clock::monotonic_ns() <= 121 * s {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let now = crate::clock::monotonic_ns();
    let tcp = key(0, libc::IPPROTO_TCP as u8);
    let seen = |ago: u64| FlowEntry {
        backend_id: 1,
        backend_generation: 1,
        last_seen_ns: now - ago * s,
        ..FlowEntry::default()
    };
    {
        let mut old = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("old");
        old.install_flow(&tcp, &seen(120)).expect("the TCP flow");
        for n in 1..=8 {
            old.install_flow(&key(n, IPPROTO_UDP), &seen(60))
                .expect("a UDP flow");
        }
    }
    let horizons = IdleHorizons {
        tcp: Duration::from_secs(900),
        udp: Duration::from_secs(30),
    };
    // Four flows: one bucket.
    let mut new = Dataplane::load_with_horizons(sizes(4, 4), &pinned(&pins), horizons)
        .expect("the smaller table");
    assert!(new.adopted());
    // Slots: twice the configured flows.
    assert_eq!(2 * new.flow_capacity(), 8, "one bucket of eight ways");
    let held = |dataplane: &Dataplane| dataplane.flows().any(|(k, _)| k == tcp);
    assert!(held(&new), "after the load: the live TCP flow");
    let carried = new.finish_adoption().expect("flows carried over");
    assert!(held(&new), "after the swap: the live TCP flow");
    assert_eq!(carried.live_left_out, 0, "{carried:?}");
    assert_eq!(carried.flows, 9, "{carried:?}");
    assert_eq!(carried.dead_left_out, 8, "{carried:?}");
}

/// A load on a node without pins pins every map under its name (no staging:
/// nothing of a previous lbd is displaced); if it fails before it returns
/// (the verifier refused a program, a map would not open), it removes them
/// all again, so the next start still finds a fresh node instead of
/// adopting them. A map pinned before is not its to remove, and a load
/// that returns keeps what it pinned. (Plain files stand for the pins: the
/// guard only removes them; no BPF filesystem needed.)
#[test]
fn a_load_that_fails_removes_the_pins_it_made_under_their_names() {
    let scratch = ScratchDir::new("made-pins");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    std::fs::create_dir_all(pins.maps_dir()).unwrap();
    let previous = PINNED_MAPS[0];
    std::fs::write(pins.map_path(previous), b"").unwrap();
    let plan = super::adopt::PinPlan::default();
    let pin_all = |made: &[&'static str]| {
        for name in made {
            std::fs::write(pins.map_path(name), b"").unwrap();
        }
    };
    for loaded in [false, true] {
        let mut loader = aya::EbpfLoader::new();
        let placed = super::adopt::place_pins(&mut loader, &pins, &plan, &[]).unwrap();
        assert_eq!(placed.made, PINNED_MAPS[1..].to_vec(), "loaded: {loaded}");
        assert_eq!(placed.staged, vec![previous], "loaded: {loaded}");
        let made = placed.made.clone();
        let mut guard = super::UnstageOnError {
            staged: Some(&pins),
            made: Some((&pins, placed.made)),
        };
        pin_all(&made);
        if loaded {
            guard.made = None;
        }
        drop(guard);
        let left: Vec<_> = made
            .iter()
            .filter(|name| pins.map_path(name).exists())
            .collect();
        if loaded {
            assert_eq!(
                left.len(),
                made.len(),
                "a load that returned keeps its pins"
            );
        } else {
            assert!(left.is_empty(), "pins left: {left:?}");
        }
        assert!(pins.map_path(previous).exists(), "the previous pin stays");
        assert!(!pins.staged_dir().exists(), "nothing staged is left");
        if loaded {
            // The next round is a fresh node again but for `previous`.
            for name in &made {
                std::fs::remove_file(pins.map_path(name)).unwrap();
            }
        }
    }
}

/// A first start that does not adopt the pinned state (the file's VIPs
/// outgrew it) and fails is undone (`detach_made_here`): the maps it
/// made go, the previous lbd's pins stay exactly as they were, and the
/// next start adopts them. A stop for good (`detach`) took them all.
#[test]
fn undoing_a_failed_start_leaves_the_previous_pins_as_they_were() {
    let Some(bpffs) = TestBpffs::new("undo-fresh") else {
        return;
    };
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = pinned_ids(&pins);
    let mut grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    assert!(!grown.adopted(), "VIPS does not fit: nothing adopted");
    // Its maps took their names (as once its program ran).
    grown.promote_staged().expect("promoted");
    let made = pinned_ids(&pins);
    assert_ne!(made, before, "the grown start's maps are pinned now");
    std::os::unix::fs::symlink("pid=1", pins.root().join("lbd-owner")).expect("an owner record");
    grown.detach_made_here().expect("undone");
    drop(grown);
    // What it made (a new id under the name) went; what it adopted
    // (the same id) stays.
    for ((name, was), ((_, now), (_, after))) in
        before.iter().zip(made.iter().zip(pinned_ids(&pins).iter()))
    {
        let expected = if now == was { *was } else { None };
        assert_eq!(*after, expected, "{name}");
    }
    assert!(
        !pins.root().join("lbd-owner").exists(),
        "the owner record goes"
    );

    // The same undo before its maps took their names: the previous
    // lbd's stay, every one.
    let bpffs = TestBpffs::new("undo-fresh-staged").expect("root");
    let pins = bpffs.pins();
    drop(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the previous lbd"));
    let before = pinned_ids(&pins);
    let mut grown = Dataplane::load_with(sizes(8, 4096), &pinned(&pins)).expect("grown");
    grown.detach_made_here().expect("undone");
    drop(grown);
    assert_eq!(pinned_ids(&pins), before, "the previous lbd's pins stay");
    let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("reverted");
    assert!(next.adopted(), "the next start adopts them");
}

/// lb-decap pins its links under lbd's names (`xdp-link-<if>`) and may
/// share the pin directory: a link that runs another program is not
/// lbd's, and neither a stop for good (`remove_all`, `--cleanup`) nor a
/// start on another interface (`remove_other_interfaces`) removes it;
/// lbd's own link goes. Here `xdp_pass` stands for lb-decap's program,
/// on `lo` of a network namespace of the test thread's own, and lbd's
/// `xdp_lb` on a veth pair there.
#[test]
fn links_of_other_programs_under_lbd_names_are_left_alone() {
    use aya::programs::{links::FdLink, XdpMode};

    use super::attach::xdp_program;
    use crate::pinning::{link_owner, LinkOwner};
    let Some(bpffs) = TestBpffs::new("foreign-link") else {
        return;
    };
    let pins = bpffs.pins();
    crate::test_netns::in_own_netns(move || {
        crate::test_netns::ip(&[
            "link", "add", "h3dum0", "type", "veth", "peer", "name", "h3dum1",
        ]);
        let mut dataplane =
            Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the data plane");
        let pin = |dataplane: &mut Dataplane,
                   program: &'static str,
                   interface: &str,
                   at: &std::path::Path| {
            let xdp = xdp_program(&mut dataplane.ebpf, program).expect("the program");
            let id = xdp.attach(interface, XdpMode::Skb).expect("attached");
            let link = FdLink::try_from(xdp.take_link(id).expect("its link")).expect("a link");
            link.pin(at).expect("pinned");
        };
        let foreign = pins.link_path("h3decap");
        let ours = pins.link_path("h3old");
        pin(&mut dataplane, names::PROG_PASS, "lo", &foreign);
        pin(&mut dataplane, names::PROG_LB, "h3dum0", &ours);
        assert_eq!(
            link_owner(&foreign),
            LinkOwner::Other(names::PROG_PASS.to_owned())
        );
        assert_eq!(link_owner(&ours), LinkOwner::Lbd);

        let removed = dataplane.remove_other_interfaces("h3new").expect("removed");
        assert_eq!(removed, ["h3old"], "lbd's link on another interface goes");
        assert!(foreign.exists(), "another program's link stays");

        // On the peer: the kernel detaches a link whose pin went
        // asynchronously, so h3dum0 may still be busy.
        pin(&mut dataplane, names::PROG_LB, "h3dum1", &ours);
        let removed = pins.remove_all().expect("removed");
        assert!(removed.contains(&ours), "{removed:?}");
        assert!(!removed.contains(&foreign), "{removed:?}");
        assert!(foreign.exists(), "another program's link stays");
        assert_eq!(
            link_owner(&foreign),
            LinkOwner::Other(names::PROG_PASS.to_owned()),
            "still attached"
        );
    });
}

/// A downgrade: the pins were last run on by a newer build, whose format
/// stamp (`FORMAT`) says an epoch newer than this build knows (here
/// written by hand for it). This build would misread its tables (a
/// second bucket it does not look in, another hash): it adopts nothing,
/// says so at warn level with both epochs and what is lost, and leaves
/// the newer build's pins, stamp included, as they were until its own
/// program runs; then its maps and its stamp take their place. Pins
/// stamped with this build's epoch, or with none (a build before stamps,
/// whose flows are re-placed), are adopted.
#[test]
fn pins_of_a_newer_format_are_not_adopted_nor_replaced_before_the_swap() {
    use crate::pinning::{FormatStamp, FORMAT_EPOCH};
    let Some(bpffs) = TestBpffs::new("newer-format") else {
        return;
    };
    let pins = bpffs.pins();
    let mut previous = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("previous");
    assert_eq!(pins.format_stamp(), FormatStamp::Missing, "before its swap");
    previous.promote_staged().expect("its program runs");
    drop(previous);
    assert_eq!(pins.format_stamp(), FormatStamp::Epoch(FORMAT_EPOCH));
    let same = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the same build");
    assert!(same.adopted(), "this build's stamp is adopted");
    drop(same);

    pins.write_format_epoch(FORMAT_EPOCH + 1)
        .expect("a newer build's stamp");
    let before = pinned_ids(&pins);
    let stamp_id = MapInfo::from_pin(pins.format_path()).expect("stamp").id();
    let mut older = None;
    let logs = crate::test_logs::logs_of(|| {
        older = Some(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("older"));
    });
    let mut older = older.expect("loaded");
    assert!(!older.adopted(), "a newer format is not adopted");
    let warning = logs
        .lines()
        .find(|line| line.contains("WARN") && line.contains("newer build"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    for said in [
        format!("format {}", FORMAT_EPOCH + 1),
        format!("knows up to {FORMAT_EPOCH}"),
        "placed by Maglev".to_owned(),
        "NAT'd connections are lost".to_owned(),
        "VRRP will not resume".to_owned(),
    ] {
        assert!(warning.contains(&said), "{said}: {warning}");
    }
    assert!(!logs.contains("adopting the pinned data plane"), "{logs}");
    assert_eq!(
        pinned_ids(&pins),
        before,
        "nothing replaced before the swap"
    );
    assert_eq!(
        MapInfo::from_pin(pins.format_path()).expect("stamp").id(),
        stamp_id,
        "the newer stamp stays until the swap"
    );
    older.promote_staged().expect("its program runs");
    assert_eq!(pins.format_stamp(), FormatStamp::Epoch(FORMAT_EPOCH));
    let state = |ids: Vec<(&'static str, Option<u32>)>| {
        ids.into_iter()
            .find(|(name, _)| *name == names::MAP_FLOW_BUCKETS)
            .and_then(|(_, id)| id)
    };
    assert_ne!(
        state(pinned_ids(&pins)),
        state(before),
        "its own connection table took the newer one's place"
    );
    drop(older);

    // No stamp: an older build's pins, adopted.
    std::fs::remove_file(pins.format_path()).expect("no stamp");
    let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("next");
    assert!(next.adopted(), "pins without a stamp are adopted");
}

/// An upgrade or a downgrade across a `LAYOUT_VERSION` change: this
/// build's layout directory holds nothing, another version's holds the
/// previous build's maps. The load adopts nothing and says so at warn
/// level, naming the directory found, newer or older, and the cost; once
/// its program runs those maps go, with a log that tells newer from older.
#[test]
fn another_layouts_pins_are_named_in_a_warning() {
    use crate::pinning::LAYOUT_VERSION;
    let Some(bpffs) = TestBpffs::new("other-layout") else {
        return;
    };
    let pins = bpffs.pins();
    let newer = pins.root().join(format!("maps-v{}", LAYOUT_VERSION + 1));
    std::fs::create_dir_all(&newer).expect("a newer layout");
    let _vips =
        crate::pinning::test_support::pin_map(&newer.join(names::MAP_VIPS), 1, (16, 16), 4, 0);
    let mut loaded = None;
    let logs = crate::test_logs::logs_of(|| {
        loaded = Some(Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("loaded"));
    });
    let mut loaded = loaded.expect("loaded");
    assert!(!loaded.adopted());
    let warning = logs
        .lines()
        .find(|line| line.contains("WARN") && line.contains("another layout"))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    for said in [
        newer.display().to_string(),
        "newer".to_owned(),
        format!("not this build's {LAYOUT_VERSION}"),
        "placed by Maglev".to_owned(),
        "NAT'd connections are lost".to_owned(),
        "VRRP will not resume".to_owned(),
    ] {
        assert!(warning.contains(&said), "{said}: {warning}");
    }
    let logs = crate::test_logs::logs_of(|| {
        loaded.finish_adoption();
    });
    assert!(
        !newer.exists(),
        "the other layout goes once the program runs"
    );
    let removed = logs
        .lines()
        .find(|line| line.contains("pinned in another layout are removed"))
        .unwrap_or_else(|| panic!("no removal logged: {logs}"));
    assert!(removed.contains("a newer release"), "{removed}");
    assert!(!removed.contains("older"), "{removed}");
}

/// An older release pinned `MAGLEV` without `BPF_F_MMAPABLE` (the flag
/// came when lbd began writing the tables in place): the next lbd still
/// adopts the state maps with it (the connection table points into them)
/// and reads and writes its tables in batches. A map this release makes
/// is written in place, and what lbd writes there is what a lookup (the
/// program's read) finds.
#[test]
fn an_older_releases_maglev_map_is_adopted_and_written_in_batches() {
    let Some(bpffs) = TestBpffs::new("maglev-old") else {
        return;
    };
    let pins = bpffs.pins();
    let table: Vec<u32> = (0..65_537).map(|slot| slot % 5 + 1).collect();
    let slots = || table.iter().enumerate().map(|(slot, b)| (slot as u32, *b));
    let mut first = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the first lbd");
    assert!(
        first.maglev.mapped(),
        "this release's map is written in place"
    );
    first
        .write_table(2, 1, &mut slots())
        .expect("written in place");
    assert_eq!(
        first.read_table(2, 1, 65_537).expect("read in place"),
        table
    );
    let path = pins.map_path(names::MAP_MAGLEV);
    let pinned_map = MapData::from_pin(&path).expect("the pinned MAGLEV");
    let lookup = Array::<_, u32>::try_from(Map::Array(pinned_map)).expect("an array");
    for slot in [0, 1, 4_099, 65_536] {
        let got = lookup.get(&maglev_index(2, 1, slot), 0).expect("a lookup");
        assert_eq!(
            got, table[slot as usize],
            "slot {slot} as the program reads it"
        );
    }
    assert_eq!(
        lookup.get(&maglev_index(2, 0, 7), 0).expect("a lookup"),
        0,
        "the other copy"
    );
    drop(first);

    // The older release's map: the same shape without the flag, holding
    // the same slots, pinned in its place.
    let entries = MapInfo::from_pin(&path).expect("info").max_entries();
    let held: Vec<u32> = map_batch::lookup_array(lookup.map(), 0, entries as usize)
        .expect("read")
        .expect("batches");
    let params = aya_obj::Map::new_from_params(2, 4, 4, entries, 0);
    let old = MapData::create(params, names::MAP_MAGLEV, None).expect("an array without the flag");
    let held: Vec<(u32, u32)> = (0..entries).zip(held).collect();
    map_batch::update_array(&old, &held).expect("copied");
    drop(lookup);
    std::fs::remove_file(&path).expect("unpinned");
    old.pin(&path).expect("pinned in its place");

    let mut next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(
        next.adopted(),
        "the state maps adopted with the older MAGLEV"
    );
    assert!(
        !next.maglev.mapped(),
        "an older release's map is written in batches"
    );
    assert_eq!(
        next.read_table(2, 1, 65_537).expect("read in batches"),
        table
    );
    next.write_table(2, 1, &mut [(0, 9), (65_536, 8)].into_iter())
        .expect("written in batches");
    let mut expected = table.clone();
    (expected[0], expected[65_536]) = (9, 8);
    assert_eq!(next.read_table(2, 1, 65_537).expect("read"), expected);
    let old = Array::<_, u32>::try_from(Map::Array(old)).expect("an array");
    assert_eq!(
        old.get(&maglev_index(2, 1, 65_536), 0).expect("a lookup"),
        8,
        "in the adopted map"
    );
}

/// The backends a previous lbd wrote come back at adoption with their ids
/// and generations (read in batches), the first slot and the last
/// included; empty slots are left out.
#[test]
fn the_adopted_backends_come_back_with_their_ids() {
    let Some(bpffs) = TestBpffs::new("backends-adopted") else {
        return;
    };
    let pins = bpffs.pins();
    let backend = |last: u8, generation: u32| Backend {
        addr: [u32::from_ne_bytes([198, 18, 0, last]), 0, 0, 0],
        generation,
        vip_id: 2,
        mac: [2, 0, 0, 0, 0, last],
        family: 2,
        ..Backend::default()
    };
    let written = [
        (1, backend(11, 1)),
        (77, backend(12, 3)),
        (MAX_BACKENDS - 1, backend(13, 9)),
    ];
    let mut first = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the first lbd");
    assert!(first.adopted_state().expect("read").backends.is_empty());
    for (id, b) in &written {
        first.set_backend(*id, b).expect("written");
    }
    drop(first);
    let next = Dataplane::load_with(sizes(4, 4096), &pinned(&pins)).expect("the next lbd");
    assert!(next.adopted());
    assert_eq!(next.adopted_state().expect("read").backends, written);
}
