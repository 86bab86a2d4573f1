use super::edit::{drain_timeout, MAX_DRAIN_TIMEOUT};
use super::*;
use crate::config::Protocol;

fn config() -> Config {
    Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
         [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
         [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
        "test.toml",
    )
    .unwrap()
}

pub(super) fn vip_id() -> VipId {
    VipId {
        address: "198.18.0.100".parse().unwrap(),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

pub(super) fn addr(last: u8) -> IpAddr {
    IpAddr::from([198, 18, 0, last])
}

fn desired_backend(model: &Model, last: u8) -> DesiredBackend {
    model.desired(&|_| None)[0]
        .backends
        .iter()
        .find(|b| b.address == addr(last))
        .unwrap()
        .clone()
}

#[test]
fn a_drain_deadline_comes_from_the_request_else_the_vip_else_never() {
    let week = MAX_DRAIN_TIMEOUT.as_secs();
    let five = Some(Duration::from_secs(300));
    let t = |requested, default| drain_timeout(requested, default).map(|t| (t.after, t.source));
    assert_eq!(t(None, None), Ok((None, DrainTimeoutSource::None)));
    assert_eq!(t(None, five), Ok((five, DrainTimeoutSource::VipDefault)));
    assert_eq!(
        t(Some(30), five),
        Ok((Some(Duration::from_secs(30)), DrainTimeoutSource::Request))
    );
    assert_eq!(t(Some(0), five), Ok((None, DrainTimeoutSource::Request)));
    assert_eq!(
        t(Some(week), None).map(|(a, _)| a),
        Ok(Some(MAX_DRAIN_TIMEOUT))
    );
    assert!(t(Some(week + 1), None).is_err());
}

#[test]
fn a_drain_keeps_its_start_and_ends_in_maintenance_only_at_its_deadline() {
    let mut model = Model::from_config(&config());
    let start = Instant::now();
    let drain = |timeout_s| Edit::Drain {
        vip: vip_id(),
        backend: addr(11),
        timeout_s,
    };
    let got = model.apply(&drain(None), start).unwrap();
    assert_eq!(got.map(|t| t.after), Some(None));
    let later = start + Duration::from_secs(10);
    model.apply(&drain(Some(5)), later).unwrap();
    let backend = model.backend(&vip_id(), addr(11)).unwrap();
    assert_eq!(
        backend.admin,
        AdminState::Draining {
            since: start,
            deadline: Some(later + Duration::from_secs(5))
        }
    );
    assert!(model.expire_drains(later).is_empty());
    let cut = model.expire_drains(later + Duration::from_secs(5));
    assert_eq!(cut, vec![(vip_id(), addr(11))]);
    let backend = model.backend(&vip_id(), addr(11)).unwrap();
    assert_eq!(backend.admin, AdminState::Maintenance);
    assert!(backend.drain_timed_out);
    // Any admin change afterwards forgets the timeout.
    model
        .apply(&Edit::Enable(vip_id(), addr(11)), later)
        .unwrap();
    assert!(!model.backend(&vip_id(), addr(11)).unwrap().drain_timed_out);
    // Refusals change nothing.
    let before = model.clone();
    assert!(model.apply(&drain(Some(8 * 86_400)), later).is_err());
    assert!(model
        .apply(&Edit::Enable(vip_id(), addr(99)), later)
        .is_err());
    assert_eq!(model, before);
}

#[test]
fn the_maps_refuse_growth_past_their_size_but_not_shrinking() {
    assert!(fits_the_maps(16, 15, 16).is_ok());
    assert!(matches!(
        fits_the_maps(17, 16, 16),
        Err(ModelError::Limit(_))
    ));
    assert!(fits_the_maps(17, 18, 16).is_ok());
}

#[test]
fn admin_states_and_health_map_to_weight_and_alive() {
    let mut model = Model::from_config(&config());
    let id = vip_id();
    let b = desired_backend(&model, 11);
    assert_eq!(
        (b.weight, b.alive),
        (100, true),
        "unknown health counts as up"
    );

    model
        .set_admin(
            &id,
            addr(11),
            AdminState::Draining {
                since: Instant::now(),
                deadline: None,
            },
        )
        .unwrap();
    let b = desired_backend(&model, 11);
    assert_eq!((b.weight, b.alive), (0, true), "draining keeps its flows");

    model
        .set_admin(&id, addr(11), AdminState::Maintenance)
        .unwrap();
    let b = desired_backend(&model, 11);
    assert_eq!(
        (b.weight, b.alive),
        (0, false),
        "maintenance is out at once"
    );

    model.set_admin(&id, addr(11), AdminState::Enabled).unwrap();
    assert!(model.set_health(&id, addr(11), Health::Down));
    let b = desired_backend(&model, 11);
    assert_eq!(
        (b.weight, b.alive),
        (0, false),
        "down: flows hashed elsewhere"
    );
}

/// A backend full for capacity (a `pgsql` check answered "too many
/// clients") keeps its established flows (alive) and takes no new ones,
/// as a drain does: in DSR, down would move or black-hole every session
/// it serves. The VIP stays announced for them, and a VIP whose only
/// backend is full finds no backend for new flows yet is not all down.
#[test]
fn a_full_backend_keeps_its_flows_and_takes_no_new_ones() {
    let config = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 5432\n\
         forwarding = \"dsr-l2\"\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
        "test.toml",
    )
    .unwrap();
    let mut model = Model::from_config(&config);
    let id = *model.vips.keys().next().unwrap();
    assert!(model.set_health(&id, addr(11), Health::Full));
    let b = model.desired(&|_| None)[0].backends[0].clone();
    assert_eq!((b.weight, b.alive), (0, true), "full keeps its flows");
    let vip = model.vip(&id).unwrap();
    assert!(!vip.can_serve(), "no new flow goes to it");
    assert!(!vip.all_down(), "full is not down");
    assert!(vip.should_announce(&|_| None), "its sessions still flow");
    model
        .set_admin(&id, addr(11), AdminState::Maintenance)
        .unwrap();
    assert!(!model.desired(&|_| None)[0].backends[0].alive);
}

#[test]
fn all_down_drops_or_fails_open_as_configured() {
    let mut model = Model::from_config(&config());
    let id = vip_id();
    for last in [11, 12, 13] {
        model.set_health(&id, addr(last), Health::Down);
    }
    assert!(model.vip(&id).unwrap().all_down());
    assert!(model.desired(&|_| None)[0]
        .backends
        .iter()
        .all(|b| !b.alive && b.weight == 0));

    model.vips.get_mut(&id).unwrap().config.on_all_down = AllDown::KeepLast;
    assert!(model.desired(&|_| None)[0]
        .backends
        .iter()
        .all(|b| b.alive && b.weight == 100));

    model.set_health(&id, addr(12), Health::Up);
    let desired = model.desired(&|_| None);
    let taking: Vec<IpAddr> = desired[0]
        .backends
        .iter()
        .filter(|b| b.alive && b.weight > 0)
        .map(|b| b.address)
        .collect();
    assert_eq!(taking, vec![addr(12)], "one healthy backend: only it");
}

/// Each backend as (address, weight, alive).
pub(super) fn served(model: &Model) -> Vec<(IpAddr, u32, bool)> {
    model.desired(&|_| None)[0]
        .backends
        .iter()
        .map(|b| (b.address, b.weight, b.alive))
        .collect()
}

/// A "keep" VIP with every backend down fails open; once one comes up
/// the others, which took flows only for that, keep their established
/// flows (alive, no weight: a drain) rather than have them cut for
/// another backend's recovery, until their grace (five minutes without
/// `drain_timeout_s`) ends, counted from the housekeeping tick after.
#[test]
fn a_keep_vip_that_stops_failing_open_keeps_the_flows_of_its_down_backends() {
    let mut config = config();
    config.vips[0] = keep_vip();
    let mut model = Model::from_config(&config);
    let id = vip_id();
    for last in [11, 12, 13] {
        model.set_health(&id, addr(last), Health::Down);
    }
    model.set_health(&id, addr(12), Health::Up);
    let held = vec![
        (addr(11), 0, true),
        (addr(12), 100, true),
        (addr(13), 0, true),
    ];
    assert_eq!(served(&model), held);

    let left = |model: &Model, last: u8, now: Instant| {
        let vip = &model.vips[&id];
        vip.backends[&addr(last)].hold_left(&vip.config, now)
    };
    let start = Instant::now();
    // Before its grace starts, a hold has all of it; a healthy backend
    // is not held.
    assert_eq!(left(&model, 11, start), Some(FAIL_OPEN_GRACE));
    assert_eq!(left(&model, 12, start), None);
    assert!(model.time_fail_open_holds(start).is_empty(), "grace starts");
    let almost = start + FAIL_OPEN_GRACE - Duration::from_secs(1);
    assert_eq!(left(&model, 13, almost), Some(Duration::from_secs(1)));
    assert!(model.time_fail_open_holds(almost).is_empty());
    assert_eq!(served(&model), held);
    let ended = model.time_fail_open_holds(start + FAIL_OPEN_GRACE);
    assert_eq!(ended, vec![(id, addr(11)), (id, addr(13))]);
    assert_eq!(left(&model, 11, start + FAIL_OPEN_GRACE), None);
    assert_eq!(
        served(&model),
        vec![
            (addr(11), 0, false),
            (addr(12), 100, true),
            (addr(13), 0, false)
        ]
    );
}

/// A held backend that passes its checks takes new flows again, and is
/// held no more: failing later, it is an ordinary down backend. One the
/// operator puts in maintenance is out at once, and enabled again it is
/// not held. The VIP failing open again needs no hold; stopping again,
/// it holds its down backends anew.
#[test]
fn a_fail_open_hold_ends_when_the_backend_rises_the_operator_acts_or_the_vip_fails_open_again() {
    let mut config = config();
    config.vips[0] = keep_vip();
    let mut model = Model::from_config(&config);
    let id = vip_id();
    for last in [11, 12, 13] {
        model.set_health(&id, addr(last), Health::Down);
    }
    model.set_health(&id, addr(12), Health::Up);
    let now = Instant::now();
    model.time_fail_open_holds(now);

    model.set_health(&id, addr(11), Health::Up);
    assert_eq!(served(&model)[0], (addr(11), 100, true), "it rose");
    model.set_health(&id, addr(11), Health::Down);
    assert_eq!(served(&model)[0], (addr(11), 0, false), "an ordinary fall");

    // A drain keeps the hold; maintenance ends it.
    let drain = Edit::Drain {
        vip: id,
        backend: addr(13),
        timeout_s: None,
    };
    model.apply(&drain, now).unwrap();
    assert_eq!(served(&model)[2], (addr(13), 0, true), "still held");
    model.apply(&Edit::Maintenance(id, addr(13)), now).unwrap();
    assert_eq!(served(&model)[2], (addr(13), 0, false));
    model.apply(&Edit::Enable(id, addr(13)), now).unwrap();
    assert_eq!(served(&model)[2], (addr(13), 0, false), "not held again");

    // 12 falls: all down, failing open to all, no hold left.
    model.set_health(&id, addr(12), Health::Down);
    assert!(served(&model).iter().all(|b| b.1 == 100 && b.2));
    assert!(model.vips[&id]
        .backends
        .values()
        .all(|b| b.fail_open_hold.is_none()));
    // 12 rises again: the others are held anew, with a fresh grace.
    model.set_health(&id, addr(12), Health::Up);
    let later = now + FAIL_OPEN_GRACE;
    assert!(model.time_fail_open_holds(later).is_empty());
    assert_eq!(
        served(&model),
        vec![
            (addr(11), 0, true),
            (addr(12), 100, true),
            (addr(13), 0, true)
        ]
    );
}

/// The grace of a VIP with `drain_timeout_s` is that timeout; a reload
/// keeps the holds of the backends that stay; a backend added at run
/// time whose first checks pass ends the failing open as a recovery
/// does, and the others keep their flows.
#[test]
fn a_fail_open_hold_lasts_the_vips_drain_timeout_and_survives_a_reload() {
    let mut config = config();
    config.vips[0] = keep_vip();
    config.vips[0].drain_timeout = Some(Duration::from_secs(30));
    let mut model = Model::from_config(&config);
    let id = vip_id();
    for last in [11, 12, 13] {
        model.set_health(&id, addr(last), Health::Down);
    }
    model
        .add_backend(&id, BackendConfig::new(addr(14)))
        .unwrap();
    model.set_health(&id, addr(14), Health::Up);
    let held: Vec<_> = [11, 12, 13].map(|l| (addr(l), 0, true)).into();
    assert_eq!(served(&model)[..3], held[..]);
    assert_eq!(served(&model)[3], (addr(14), 100, true));

    // A reload that keeps 14 (now in the file) keeps the holds; one
    // that removes it leaves the VIP failing open again.
    let mut file = config.clone();
    file.vips[0].backends.push(BackendConfig::new(addr(14)));
    assert_eq!(served(&model.reloaded(&file)), served(&model));
    let without = served(&model.reloaded(&config));
    assert!(without.iter().all(|b| b.1 == 100 && b.2), "{without:?}");
    let start = Instant::now();
    model.time_fail_open_holds(start);
    assert!(model
        .time_fail_open_holds(start + Duration::from_secs(29))
        .is_empty());
    assert_eq!(
        model.time_fail_open_holds(start + Duration::from_secs(30)),
        vec![(id, addr(11)), (id, addr(12)), (id, addr(13))]
    );
}

/// The VIP of `config()` failing open, as the file would give it.
fn keep_vip() -> VipConfig {
    let mut vip = config().vips[0].clone();
    vip.on_all_down = AllDown::KeepLast;
    vip
}

fn weights(model: &Model) -> Vec<(IpAddr, u32)> {
    model.desired(&|_| None)[0]
        .backends
        .iter()
        .map(|b| (b.address, if b.alive { b.weight } else { 0 }))
        .collect()
}

/// A "keep" VIP added at run time, all its backends waiting for their
/// first checks: nothing takes its flows yet, so it is not serviceable
/// (not announced) until a check passes, rather than announced with an
/// empty table. The dry run, which assumes the checks pass, plans what
/// the VIP becomes once they do.
#[test]
fn a_keep_vip_added_at_run_time_is_not_serviceable_until_a_check_passes() {
    let before = Model::default();
    let mut model = before.clone();
    model.add_vip(&keep_vip()).unwrap();
    let id = vip_id();
    assert!(weights(&model).iter().all(|(_, w)| *w == 0));
    let vip = model.vip(&id).unwrap();
    assert!(!vip.all_down(), "nothing checked yet, nothing down");
    assert!(!vip.can_serve(), "no backend it would forward to");
    assert!(!vip.should_announce(&|_| None));

    let mut passed = model.clone();
    for last in [11, 12, 13] {
        passed.set_health(&id, addr(last), Health::Up);
    }
    assert_eq!(
        plan(&before, &model.assuming_checks_pass()),
        plan(&before, &passed)
    );
    model.set_health(&id, addr(12), Health::Up);
    let vip = model.vip(&id).unwrap();
    assert!(vip.can_serve());
    assert!(vip.should_announce(&|_| None));
    assert_eq!(
        weights(&model),
        vec![(addr(11), 0), (addr(12), 100), (addr(13), 0)]
    );
}

/// A "keep" VIP failing open (every backend down) goes on failing open
/// while a checked backend added at run time waits for its first check,
/// instead of dropping every new flow until then; once that check
/// passes, the new backend alone takes new flows, as the dry run of the
/// addition planned.
#[test]
fn a_keep_vip_failing_open_keeps_failing_open_while_a_new_backend_awaits_its_checks() {
    let mut config = config();
    config.vips[0] = keep_vip();
    let mut model = Model::from_config(&config);
    let id = vip_id();
    for last in [11, 12, 13] {
        model.set_health(&id, addr(last), Health::Down);
    }
    assert!(model.vip(&id).unwrap().all_down());
    let before = model.clone();
    model
        .add_backend(&id, BackendConfig::new(addr(14)))
        .unwrap();
    let vip = model.vip(&id).unwrap();
    assert!(
        vip.all_down(),
        "the one awaiting its checks decides nothing"
    );
    assert!(vip.can_serve());
    assert!(
        weights(&model).iter().all(|(_, w)| *w == 100),
        "{:?}",
        weights(&model)
    );

    let mut passed = model.clone();
    passed.set_health(&id, addr(14), Health::Up);
    assert_eq!(
        weights(&passed),
        vec![(addr(11), 0), (addr(12), 0), (addr(13), 0), (addr(14), 100)]
    );
    assert_eq!(
        plan(&before, &model.assuming_checks_pass()),
        plan(&before, &passed)
    );
    // The others took flows while it failed open: they keep them.
    assert!(passed.desired(&|_| None)[0]
        .backends
        .iter()
        .all(|b| b.alive));
    // Its first check fails: all down, failing open to all four.
    model.set_health(&id, addr(14), Health::Down);
    assert!(weights(&model).iter().all(|(_, w)| *w == 100));
}

#[test]
fn bad_operations_change_nothing() {
    let mut model = Model::from_config(&config());
    let before = model.clone();
    let id = vip_id();
    let mut other = id;
    other.port = 81;
    assert_eq!(model.remove_vip(&other), Err(ModelError::NoVip(other)));
    assert!(matches!(
        model.add_backend(&id, BackendConfig::new(addr(11))),
        Err(ModelError::BackendExists { .. })
    ));
    assert!(matches!(
        model.add_backend(&id, BackendConfig::new("2001:2::11".parse().unwrap())),
        Err(ModelError::Invalid(_))
    ));
    assert!(matches!(
        model.set_weight(&id, addr(11), 10_001),
        Err(ModelError::Invalid(_))
    ));
    assert!(matches!(
        model.set_weight(&id, addr(99), 1),
        Err(ModelError::NoBackend { .. })
    ));
    assert_eq!(model, before);
}

#[test]
fn limits_refuse_and_change_nothing() {
    use crate::config::{MAX_BACKENDS_PER_VIP, MAX_BACKENDS_TOTAL, MAX_VIPS};
    let backend = |vip: usize, i: usize| {
        BackendConfig::new(IpAddr::from([
            10,
            1 + vip as u8,
            (i / 256) as u8,
            (i % 256) as u8,
        ]))
    };
    let vip = |v: usize, backends: usize| {
        let mut config = VipConfig::new(IpAddr::from([198, 18, 1, v as u8]), 80, Protocol::Tcp);
        config.backends = (0..backends).map(|i| backend(v, i)).collect();
        config
    };
    // Backends per VIP, when a VIP is added with them and one by one.
    let mut model = Model::default();
    let err = model
        .add_vip(&vip(0, MAX_BACKENDS_PER_VIP + 1))
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::Limit("too many backends: at most 1000 per VIP are allowed".into())
    );
    model.add_vip(&vip(0, MAX_BACKENDS_PER_VIP)).unwrap();
    let id = VipId::of(&vip(0, 0));
    let before = model.clone();
    let err = model
        .add_backend(&id, backend(0, MAX_BACKENDS_PER_VIP))
        .unwrap_err();
    assert!(matches!(err, ModelError::Limit(_)), "{err}");
    assert_eq!(model, before);

    // In all: four full VIPs and 95 more fill the map.
    for v in 1..4 {
        model.add_vip(&vip(v, MAX_BACKENDS_PER_VIP)).unwrap();
    }
    let rest = MAX_BACKENDS_TOTAL - 4 * MAX_BACKENDS_PER_VIP;
    let err = model.add_vip(&vip(4, rest + 1)).unwrap_err();
    assert_eq!(
        err,
        ModelError::Limit(
            "too many backends: 4096 in all, at most 4095 are allowed across all VIPs".into()
        )
    );
    model.add_vip(&vip(4, rest)).unwrap();
    assert_eq!(model.backend_count(), MAX_BACKENDS_TOTAL);
    let before = model.clone();
    let last = VipId::of(&vip(4, 0));
    let err = model.add_backend(&last, backend(4, rest)).unwrap_err();
    assert!(matches!(err, ModelError::Limit(_)), "{err}");
    // Other errors still come first.
    let mut nowhere = last;
    nowhere.port = 81;
    assert_eq!(
        model.add_backend(&nowhere, backend(4, rest)),
        Err(ModelError::NoVip(nowhere))
    );
    assert_eq!(model, before);

    // VIPs.
    let mut model = Model::default();
    for v in 0..MAX_VIPS {
        let mut config = vip(0, 0);
        config.port = 1 + v as u16;
        model.add_vip(&config).unwrap();
    }
    let mut config = vip(0, 0);
    config.port = 1 + MAX_VIPS as u16;
    assert_eq!(
        model.add_vip(&config),
        Err(ModelError::Limit(
            "too many VIPs: at most 256 are allowed".into()
        ))
    );
    assert_eq!(model.vips.len(), MAX_VIPS);
}

#[test]
fn a_plan_shows_shares_before_and_after_and_what_moves() {
    let before = Model::from_config(&config());
    let mut after = before.clone();
    after
        .add_backend(&vip_id(), BackendConfig::new(addr(14)))
        .unwrap();
    // Until its checks pass it takes nothing.
    assert_eq!(plan(&before, &after)[0].after[&addr(14)], 0.0);
    let plan = plan(&before, &after.assuming_checks_pass());
    assert_eq!(plan.len(), 1);
    let vip = &plan[0];
    assert_eq!(vip.change, PlanChange::Changed);
    assert!((vip.before[&addr(11)] - 1.0 / 3.0).abs() < 0.01);
    assert!((vip.after[&addr(14)] - 0.25).abs() < 0.01);
    // Ideally a quarter of the slots move (to the new backend); a small
    // table (1,009 slots) churns a little more.
    let moved = vip.moved_fraction.unwrap();
    assert!(moved > 0.24 && moved < 0.35, "{moved}");
    assert!(plan_is_empty(&before, &before));
}

/// A new table size moves the flows whose slot names another backend,
/// as the data plane picks (`hash % size`): none with one backend, about
/// two thirds with three (each table places them afresh), not all.
#[test]
fn a_new_table_size_moves_the_flows_that_change_backend() {
    let resized = |text: String| {
        let before = Model::from_config(&Config::from_toml_str(&text, "test.toml").unwrap());
        let after = Model::from_config(
            &Config::from_toml_str(
                &text.replace("table_size = 1009", "table_size = 2003"),
                "test.toml",
            )
            .unwrap(),
        );
        let plan = plan(&before, &after);
        assert_eq!(plan.len(), 1, "{plan:?}");
        plan[0].moved_fraction.unwrap()
    };
    let three =
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
         [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
         [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n";
    let one = three
        .split("[[vip.backend]]\naddress = \"198.18.0.12\"")
        .next()
        .unwrap();
    assert_eq!(resized(one.to_owned()), 0.0);
    let moved = resized(three.to_owned());
    assert!(moved > 0.6 && moved < 0.73, "{moved}");
}

#[test]
fn a_new_or_removed_vip_moves_no_flow_between_backends() {
    let empty = Model::default();
    let one = Model::from_config(&config());
    let added = plan(&empty, &one);
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].change, PlanChange::Added);
    assert_eq!(added[0].moved_fraction, None);
    assert!(added[0].before.is_empty());
    assert_eq!(added[0].after.len(), 3);
    let removed = plan(&one, &empty);
    assert_eq!(removed[0].change, PlanChange::Removed);
    assert_eq!(removed[0].moved_fraction, None);
    // On the wire: the field is absent, the change a lower-case name.
    let json = serde_json::to_value(&added[0]).unwrap();
    assert_eq!(json["change"], "added");
    assert!(json.get("moved_fraction").is_none(), "{json}");
    let json = serde_json::to_value(
        &plan(&one, &{
            let mut m = one.clone();
            m.set_weight(&vip_id(), addr(11), 5).unwrap();
            m
        })[0],
    )
    .unwrap();
    assert_eq!(json["change"], "changed");
    assert!(json["moved_fraction"].as_f64().is_some(), "{json}");
}

#[test]
fn admin_states_have_wire_names() {
    let draining = AdminState::Draining {
        since: Instant::now(),
        deadline: None,
    };
    assert_eq!(draining.state(), BackendState::Draining);
    for state in BackendState::ALL {
        let json = serde_json::to_value(state).unwrap();
        assert_eq!(json, state.as_str());
        assert_eq!(state.to_string(), state.as_str());
        assert_eq!(serde_json::from_value::<BackendState>(json).unwrap(), state);
    }
    let error = serde_json::from_str::<BackendState>("\"drained\"").unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected one of `enabled`, `draining`, `maintenance`"),
        "{error}"
    );
}

fn plan_is_empty(a: &Model, b: &Model) -> bool {
    plan(a, b).is_empty()
}

#[test]
fn a_reload_keeps_admin_state_and_health_and_drops_runtime_additions() {
    let mut model = Model::from_config(&config());
    let id = vip_id();
    model
        .set_admin(&id, addr(12), AdminState::Maintenance)
        .unwrap();
    model.set_health(&id, addr(13), Health::Down);
    model
        .add_backend(&id, BackendConfig::new(addr(14)))
        .unwrap();
    model.set_weight(&id, addr(11), 5).unwrap();
    let reloaded = model.reloaded(&config());
    let vip = reloaded.vip(&id).unwrap();
    assert_eq!(vip.backends[&addr(12)].admin, AdminState::Maintenance);
    assert_eq!(vip.backends[&addr(13)].health, Health::Down);
    assert!(
        !vip.backends.contains_key(&addr(14)),
        "runtime backend undone"
    );
    assert_eq!(
        vip.backends[&addr(11)].config.weight,
        100,
        "runtime weight undone"
    );
    let dumped = model.to_config(&config());
    assert_eq!(dumped.vips[0].backends.len(), 4);
}

/// A `[[vrrp]]` without `addresses` moves the VIP addresses of the
/// first VIP's family: the running configuration keeps the file's order
/// (VIPs added at run time after it), so its dump, loaded, moves the
/// same addresses, the IPv6 ones here, and not the IPv4 VIPs' that sort
/// first.
#[test]
fn a_dump_keeps_the_files_vip_order_and_so_what_vrrp_moves() {
    let file = Config::from_toml_str(
        "interface = \"eth0\"\n\
         [[vip]]\naddress = \"2001:2::100\"\nport = 80\n[[vip.backend]]\naddress = \"2001:2::11\"\n\
         [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
         [[vip]]\naddress = \"2001:2::101\"\nport = 80\n[[vip.backend]]\naddress = \"2001:2::12\"\n\
         [[vrrp]]\nvrid = 51\n",
        "test.toml",
    )
    .unwrap();
    let moved: Vec<IpAddr> = vec![
        "2001:2::100".parse().unwrap(),
        "2001:2::101".parse().unwrap(),
    ];
    assert_eq!(file.vrrp[0].addresses, moved);
    let reloaded_moves = |model: &Model| {
        let text = crate::config::to_toml(&model.to_config(&file));
        let loaded = Config::from_toml_str(&text, "dump.toml").unwrap();
        (loaded.vrrp[0].addresses.clone(), loaded)
    };
    let model = Model::from_config(&file);
    let (addresses, loaded) = reloaded_moves(&model);
    assert_eq!(addresses, moved);
    let order: Vec<IpAddr> = loaded.vips.iter().map(|v| v.address).collect();
    let file_order: Vec<IpAddr> = file.vips.iter().map(|v| v.address).collect();
    assert_eq!(order, file_order);
    // An IPv4 VIP added at run time goes after the file's.
    let mut added = model.clone();
    let mut vip = VipConfig::new("198.18.0.99".parse().unwrap(), 80, Protocol::Tcp);
    vip.backends = vec![BackendConfig::new(addr(12))];
    added.add_vip(&vip).unwrap();
    let (addresses, loaded) = reloaded_moves(&added);
    assert_eq!(addresses, moved);
    assert_eq!(loaded.vips.last().unwrap().address, vip.address);
}

#[test]
fn a_backend_whose_checks_a_reload_turns_off_is_taken_as_up() {
    let mut model = Model::from_config(&config());
    let id = vip_id();
    model.set_health(&id, addr(13), Health::Down);
    assert_eq!(desired_backend(&model, 13).weight, 0);
    let unchecked = Config::from_toml_str(
        &format!(
            "{}[vip.health]\ncheck = \"none\"\n",
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\n"
        ),
        "test.toml",
    )
    .unwrap();
    let reloaded = model.reloaded(&unchecked);
    assert_ne!(
        reloaded.vip(&id).unwrap().backends[&addr(13)].health,
        Health::Down
    );
    assert!(
        desired_backend(&reloaded, 13).weight > 0,
        "no check is left to bring it back"
    );
    // Still checked: the health stays.
    let still = model.reloaded(&config());
    assert_eq!(
        still.vip(&id).unwrap().backends[&addr(13)].health,
        Health::Down
    );
}

#[test]
fn nat_addresses_and_vip_addresses_stay_apart_at_run_time() {
    let mut model = Model::from_config(&config());
    let nat = crate::config::NatConfig {
        source_ipv4: Some(addr(100)),
        ..Default::default()
    };
    // A NAT VIP whose (node) NAT address is an existing VIP's address.
    let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    vip.forwarding = lb_common::Mode::Nat;
    vip.nat = nat.vip_nat(vip.address, None);
    let error = model.add_vip(&vip).unwrap_err().to_string();
    assert!(
        error.contains("NAT address 198.18.0.100 is the address of VIP"),
        "{error}"
    );
    // Its own NAT address is fine; then no VIP may take that address.
    vip.nat = nat.vip_nat(vip.address, Some(addr(50)));
    model.add_vip(&vip).unwrap();
    let taken = VipConfig::new(addr(50), 443, Protocol::Tcp);
    let error = model.add_vip(&taken).unwrap_err().to_string();
    assert!(
        error.contains("198.18.0.50 is the NAT address of VIP"),
        "{error}"
    );
}

#[test]
fn a_nat_vip_is_refused_its_own_address_as_nat_address_as_in_the_file() {
    let mut model = Model::from_config(&config());
    let before = model.clone();
    let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    vip.forwarding = lb_common::Mode::Nat;
    // Its own nat_source.
    vip.nat = crate::config::NatConfig::default().vip_nat(vip.address, Some(addr(101)));
    let error = model.add_vip(&vip).unwrap_err();
    assert!(matches!(error, ModelError::Invalid(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("nat_source 198.18.0.101 is the VIP's own address"),
        "{error}"
    );
    // The node's [nat] source, the VIP naming none.
    let node = crate::config::NatConfig {
        source_ipv4: Some(addr(101)),
        ..Default::default()
    };
    vip.nat = node.vip_nat(vip.address, None);
    let error = model.add_vip(&vip).unwrap_err().to_string();
    assert!(
        error.starts_with("the node's [nat] source_ipv4 198.18.0.101 is the VIP's own address"),
        "{error}"
    );
    assert_eq!(model, before);
}

#[test]
fn backends_take_a_mac_or_a_port_as_their_vip_forwards() {
    let mut model = Model::from_config(&config());
    let mut with_port = BackendConfig::new(addr(14));
    with_port.port = Some(8080);
    assert!(matches!(
        model.add_backend(&vip_id(), with_port.clone()),
        Err(ModelError::Invalid(_))
    ));
    let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    vip.forwarding = lb_common::Mode::Nat;
    vip.nat = Some(crate::config::VipNat {
        source: addr(50),
        own_source: true,
        port_min: 1024,
        port_max: 65_535,
    });
    model.add_vip(&vip).unwrap();
    let nat_id = VipId::of(&vip);
    model.add_backend(&nat_id, with_port).unwrap();
    let mut with_mac = BackendConfig::new(addr(15));
    with_mac.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 0x15]));
    assert!(matches!(
        model.add_backend(&nat_id, with_mac),
        Err(ModelError::Invalid(_))
    ));
}

#[test]
fn a_tunnelled_ipv4_vip_takes_ipv6_backends_at_run_time_as_in_the_file() {
    let mut model = Model::from_config(&config());
    let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    vip.forwarding = lb_common::Mode::Ipip;
    model.add_vip(&vip).unwrap();
    let id = VipId::of(&vip);
    let v6: IpAddr = "2001:2::11".parse().unwrap();
    model.add_backend(&id, BackendConfig::new(v6)).unwrap();
    assert!(model.backend(&id, v6).is_ok());
    // Never the reverse, and not at L2.
    let mut vip6 = VipConfig::new("2001:2::101".parse().unwrap(), 80, Protocol::Tcp);
    vip6.forwarding = lb_common::Mode::Ipip;
    model.add_vip(&vip6).unwrap();
    let before = model.clone();
    let error = model
        .add_backend(&VipId::of(&vip6), BackendConfig::new(addr(11)))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot be carried to an IPv4 backend"),
        "{error}"
    );
    let error = model
        .add_backend(&vip_id(), BackendConfig::new(v6))
        .unwrap_err()
        .to_string();
    assert!(error.contains("is IPv6 but the VIP"), "{error}");
    assert_eq!(model, before);
}

#[test]
fn a_backend_is_no_address_of_this_load_balancer_at_run_time() {
    let mut model = Model::from_config(&config());
    let mut nat_vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    nat_vip.forwarding = lb_common::Mode::Nat;
    nat_vip.nat = Some(crate::config::VipNat {
        source: addr(50),
        own_source: true,
        port_min: 1024,
        port_max: 65_535,
    });
    model.add_vip(&nat_vip).unwrap();
    let before = model.clone();
    let refused = |model: &mut Model, id: &VipId, address: IpAddr| {
        model
            .add_backend(id, BackendConfig::new(address))
            .unwrap_err()
            .to_string()
    };
    // Another VIP's address, or a NAT address.
    let error = refused(&mut model, &vip_id(), addr(101));
    assert!(
        error.contains("198.18.0.101 is the address of VIP 198.18.0.101:80/tcp"),
        "{error}"
    );
    let error = refused(&mut model, &VipId::of(&nat_vip), addr(50));
    assert!(
        error.contains("198.18.0.50 is the NAT address of VIP"),
        "{error}"
    );
    // A new VIP whose backend is one, or whose own address or NAT address
    // is a backend already.
    let mut with_backend = VipConfig::new(addr(102), 80, Protocol::Tcp);
    with_backend.backends = vec![BackendConfig::new(addr(100))];
    let error = model.add_vip(&with_backend).unwrap_err().to_string();
    assert!(error.contains("is the address of VIP"), "{error}");
    let mut own_nat = nat_vip.clone();
    own_nat.address = addr(103);
    own_nat.nat = Some(crate::config::VipNat {
        source: addr(51),
        ..nat_vip.nat.unwrap()
    });
    own_nat.backends = vec![BackendConfig::new(addr(51))];
    let error = model.add_vip(&own_nat).unwrap_err().to_string();
    assert!(error.contains("is the VIP's NAT address"), "{error}");
    let on_a_backend = VipConfig::new(addr(11), 443, Protocol::Tcp);
    let error = model.add_vip(&on_a_backend).unwrap_err().to_string();
    assert!(
        error.contains("198.18.0.11 is a backend of VIP 198.18.0.100:80/tcp"),
        "{error}"
    );
    own_nat.backends.clear();
    own_nat.nat = Some(crate::config::VipNat {
        source: addr(12),
        ..nat_vip.nat.unwrap()
    });
    let error = model.add_vip(&own_nat).unwrap_err().to_string();
    assert!(error.contains("198.18.0.12 is a backend of VIP"), "{error}");
    assert_eq!(model, before);
}

#[test]
fn every_weighted_backend_keeps_a_slot_at_run_time_as_in_the_file() {
    // A table of 3 slots: three backends with a weight, a fourth without.
    let mut vip = VipConfig::new(addr(101), 80, Protocol::Tcp);
    vip.table_size = 3;
    vip.backends = (11..=13)
        .map(|last| {
            let mut b = BackendConfig::new(addr(last));
            b.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, last]));
            b
        })
        .collect();
    let mut spare = BackendConfig::new(addr(14));
    spare.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 14]));
    spare.weight = 0;
    vip.backends.push(spare.clone());
    let mut model = Model::default();
    model.add_vip(&vip).unwrap();
    let id = VipId::of(&vip);
    let before = model.clone();
    let error = model.set_weight(&id, addr(14), 5).unwrap_err().to_string();
    assert!(
        error.contains("4 backends with a weight do not fit a Maglev table of 3 slots"),
        "{error}"
    );
    let mut fifth = spare.clone();
    fifth.address = addr(15);
    fifth.weight = 1;
    assert!(model.add_backend(&id, fifth.clone()).is_err());
    assert_eq!(model, before);
    // Without a weight it takes no slot; a weighted one may change its weight.
    fifth.weight = 0;
    model.add_backend(&id, fifth).unwrap();
    model.set_weight(&id, addr(11), 7).unwrap();
    // Once one gives up its weight, another may take one.
    model.set_weight(&id, addr(12), 0).unwrap();
    model.set_weight(&id, addr(14), 5).unwrap();
}

#[test]
fn a_checked_backend_joining_at_run_time_takes_new_flows_only_once_its_checks_pass() {
    let mut model = Model::from_config(&config());
    let id = vip_id();
    // There at start: unknown counts as up.
    assert!(desired_backend(&model, 11).weight > 0);
    model
        .add_backend(&id, BackendConfig::new(addr(14)))
        .unwrap();
    assert_eq!(desired_backend(&model, 14).weight, 0);
    assert!(!desired_backend(&model, 14).alive);
    model.set_health(&id, addr(14), Health::Up);
    assert!(desired_backend(&model, 14).weight > 0);

    // The same for a backend a reload brings, and for a new VIP's.
    let mut text =
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n"
            .to_owned();
    for last in [11, 12, 13, 15] {
        text.push_str(&format!(
            "[[vip.backend]]\naddress = \"198.18.0.{last}\"\nmac = \"02:00:00:00:00:{last}\"\n"
        ));
    }
    let file = Config::from_toml_str(&text, "test.toml").unwrap();
    let mut reloaded = model.reloaded(&file);
    assert!(desired_backend(&reloaded, 11).weight > 0, "one that stays");
    assert_eq!(desired_backend(&reloaded, 15).weight, 0);
    reloaded.set_health(&id, addr(15), Health::Up);
    assert!(desired_backend(&reloaded, 15).weight > 0);
    // A reload keeps the wait of a backend still waiting.
    let mut waiting = model.clone();
    waiting
        .add_backend(&id, BackendConfig::new(addr(15)))
        .unwrap();
    let again = waiting.reloaded(&file);
    assert_eq!(desired_backend(&again, 15).weight, 0);
}

#[test]
fn an_unchecked_backend_joining_at_run_time_takes_new_flows_at_once() {
    let unchecked = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n\
         [vip.health]\ncheck = \"none\"\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\n",
        "test.toml",
    )
    .unwrap();
    let mut model = Model::from_config(&unchecked);
    model
        .add_backend(&vip_id(), BackendConfig::new(addr(14)))
        .unwrap();
    assert!(desired_backend(&model, 14).weight > 0);
    assert!(model.vip(&vip_id()).unwrap().can_serve());
}

#[test]
fn a_reload_keeps_a_timed_out_drains_outcome() {
    let mut model = Model::from_config(&config());
    let start = Instant::now();
    let drain = Edit::Drain {
        vip: vip_id(),
        backend: addr(11),
        timeout_s: Some(5),
    };
    model.apply(&drain, start).unwrap();
    model.expire_drains(start + Duration::from_secs(5));
    let reloaded = model.reloaded(&config());
    let backend = reloaded.backend(&vip_id(), addr(11)).unwrap();
    assert_eq!(backend.admin, AdminState::Maintenance);
    assert!(backend.drain_timed_out, "drain --wait would exit 7, not 6");
}
