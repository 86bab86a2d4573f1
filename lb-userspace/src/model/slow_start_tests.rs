//! Slow start (`slow_start_s`): a backend coming back into rotation
//! ramps to its full weight in steps; not at start, not for a VIP's first
//! backends, carried over by a reload, restarted by a new failure.

use std::time::{Duration, Instant};

use super::tests::{addr, served, vip_id};
use super::*;

/// A VIP with two checked backends (`.11`, `.12`) of weight 100 and a
/// third (`.13`) of weight 0, `extra` added to the VIP's table.
fn config(extra: &str) -> Config {
    Config::from_toml_str(
        &format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n{extra}\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
             [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\nweight = 0\n"
        ),
        "test.toml",
    )
    .unwrap()
}

/// The model after `change`, with the ramps it begins at `now`, as the
/// engine commits every change.
fn after(model: &Model, now: Instant, change: impl FnOnce(&mut Model)) -> Model {
    let mut next = model.clone();
    change(&mut next);
    next.start_slow_starts(model, now);
    next
}

/// Each backend's weight as the data plane gets it.
fn weights(model: &Model) -> Vec<u32> {
    served(model).into_iter().map(|(_, w, _)| w).collect()
}

/// A running model (both backends up) whose `.12` went down and came back
/// up at `t0`.
fn back_up_at(extra: &str, t0: Instant) -> Model {
    let up = after(&Model::from_config(&config(extra)), t0, |m| {
        m.set_health(&vip_id(), addr(11), Health::Up);
        m.set_health(&vip_id(), addr(12), Health::Up);
    });
    let down = after(&up, t0, |m| {
        m.set_health(&vip_id(), addr(12), Health::Down);
    });
    after(&down, t0, |m| {
        m.set_health(&vip_id(), addr(12), Health::Up);
    })
}

#[test]
fn a_backend_back_up_ramps_in_steps_to_its_full_weight() {
    let t0 = Instant::now();
    let mut model = back_up_at("slow_start_s = 20\n", t0);
    // 20 steps of 5 %: the others' weights scale by 20, its by its step.
    assert_eq!(weights(&model), [2000, 100, 0]);
    let share = |m: &Model| m.vips[&vip_id()].shares()[&addr(12)];
    assert!(share(&model) < 0.06, "{}", share(&model));
    assert_eq!(
        model.advance_slow_starts(t0 + Duration::from_millis(999)),
        []
    );
    assert_eq!(weights(&model), [2000, 100, 0], "the first second: step 1");
    model.advance_slow_starts(t0 + Duration::from_millis(1_999));
    assert_eq!(
        weights(&model),
        [2000, 100, 0],
        "not ahead of the time passed"
    );
    model.advance_slow_starts(t0 + Duration::from_secs(5));
    assert_eq!(weights(&model), [2000, 500, 0]);
    let half = share(&model);
    model.advance_slow_starts(t0 + Duration::from_secs(10));
    assert_eq!(weights(&model), [2000, 1000, 0]);
    assert!(share(&model) > half, "{} then {}", half, share(&model));
    // Its weight is whole only when the whole duration has passed.
    model.advance_slow_starts(t0 + Duration::from_millis(19_999));
    assert_eq!(weights(&model), [2000, 1900, 0]);
    let ended = model.advance_slow_starts(t0 + Duration::from_secs(20));
    assert_eq!(ended, [(vip_id(), addr(12))]);
    assert_eq!(model.vips[&vip_id()].backends[&addr(12)].slow_start, None);
    assert_eq!(weights(&model), [100, 100, 0]);
    // Nothing left to do: a tick changes nothing.
    let still = model.clone();
    assert_eq!(model.advance_slow_starts(t0 + Duration::from_secs(30)), []);
    assert_eq!(model, still);
}

#[test]
fn without_slow_start_a_backend_back_up_takes_its_full_weight_at_once() {
    let model = back_up_at("", Instant::now());
    assert_eq!(weights(&model), [100, 100, 0]);
    assert!(model.vips[&vip_id()]
        .backends
        .values()
        .all(|b| b.slow_start.is_none()));
}

#[test]
fn nothing_ramps_at_start_nor_for_the_backends_of_a_vip_just_added() {
    let t0 = Instant::now();
    let config = config("slow_start_s = 20\n");
    // lbd's first commit: from nothing.
    let started = after(&Model::default(), t0, |m| *m = Model::from_config(&config));
    assert_eq!(weights(&started), [100, 100, 0]);
    // A VIP added at run time: its backends start together.
    let added = after(&Model::default(), t0, |m| {
        m.apply(&Edit::AddVip(config.vips[0].clone()), t0).unwrap();
        m.set_health(&vip_id(), addr(11), Health::Up);
        m.set_health(&vip_id(), addr(12), Health::Up);
    });
    assert_eq!(weights(&added), [100, 100, 0]);
    // Health first decided Up for a backend in service at start: no ramp.
    let checked = after(&started, t0, |m| {
        m.set_health(&vip_id(), addr(11), Health::Up);
    });
    assert_eq!(weights(&checked), [100, 100, 0]);
}

#[test]
fn every_return_to_rotation_ramps_and_a_full_backend_does_not() {
    let t0 = Instant::now();
    let config = config("slow_start_s = 10\n");
    let running = Model::from_config(&config);
    let ramps = |m: &Model, last: u8| {
        m.vips[&vip_id()].backends[&addr(last)]
            .slow_start
            .map(|r| (r.since, r.step))
    };
    let id = vip_id();
    for (out, back) in [
        (Edit::Maintenance(id, addr(12)), Edit::Enable(id, addr(12))),
        (
            Edit::Drain {
                vip: id,
                backend: addr(12),
                timeout_s: None,
            },
            Edit::Enable(id, addr(12)),
        ),
        (
            Edit::SetWeight(id, addr(12), 0),
            Edit::SetWeight(id, addr(12), 100),
        ),
    ] {
        let gone = after(&running, t0, |m| {
            m.apply(&out, t0).unwrap();
        });
        assert_eq!(ramps(&gone, 12), None, "{out:?}");
        let back = after(&gone, t0, |m| {
            m.apply(&back, t0).unwrap();
        });
        assert_eq!(ramps(&back, 12), Some((t0, 1)), "{out:?}");
        assert_eq!(weights(&back), [1000, 100, 0], "{out:?}");
    }
    // Weight 0 to a weight: the third backend ramps too.
    let weighted = after(&running, t0, |m| {
        m.apply(&Edit::SetWeight(id, addr(13), 50), t0).unwrap();
    });
    assert_eq!(weights(&weighted), [1000, 1000, 50]);
    // A weight changed while in rotation starts nothing.
    let heavier = after(&running, t0, |m| {
        m.apply(&Edit::SetWeight(id, addr(12), 300), t0).unwrap();
    });
    assert_eq!(weights(&heavier), [100, 300, 0]);
    // Full (refusing new sessions for capacity) and back: still warm.
    let full = after(&running, t0, |m| {
        m.set_health(&id, addr(12), Health::Full);
    });
    let unfull = after(&full, t0, |m| {
        m.set_health(&id, addr(12), Health::Up);
    });
    assert_eq!(ramps(&unfull, 12), None);
}

#[test]
fn a_backend_added_at_run_time_ramps_once_its_checks_pass() {
    let t0 = Instant::now();
    let running = Model::from_config(&config("slow_start_s = 10\n"));
    let backend = crate::config::BackendConfig::new("198.18.0.14".parse().unwrap());
    let added = after(&running, t0, |m| {
        m.apply(&Edit::AddBackend(vip_id(), backend.clone()), t0)
            .unwrap();
    });
    let ramp = |m: &Model| m.vips[&vip_id()].backends[&addr(14)].slow_start;
    assert_eq!(ramp(&added), None, "awaiting its first check: no flows yet");
    let t1 = t0 + Duration::from_secs(3);
    let passed = after(&added, t1, |m| {
        m.set_health(&vip_id(), addr(14), Health::Up);
    });
    assert_eq!(ramp(&passed).map(|r| r.since), Some(t1));
    // An unchecked backend takes flows from its addition: it ramps then.
    let unchecked = Model::from_config(&config(
        "slow_start_s = 10\n[vip.health]\ncheck = \"none\"\n",
    ));
    let added = after(&unchecked, t0, |m| {
        m.apply(&Edit::AddBackend(vip_id(), backend), t0).unwrap();
    });
    assert_eq!(ramp(&added).map(|r| r.since), Some(t0));
}

#[test]
fn a_failure_mid_ramp_ends_it_and_the_next_return_starts_over() {
    let t0 = Instant::now();
    let mut model = back_up_at("slow_start_s = 10\n", t0);
    model.advance_slow_starts(t0 + Duration::from_secs(6));
    assert_eq!(weights(&model), [1000, 600, 0]);
    let t1 = t0 + Duration::from_secs(7);
    let down = after(&model, t1, |m| {
        m.set_health(&vip_id(), addr(12), Health::Down);
    });
    assert_eq!(down.vips[&vip_id()].backends[&addr(12)].slow_start, None);
    assert_eq!(weights(&down), [100, 0, 0]);
    let t2 = t0 + Duration::from_secs(9);
    let up = after(&down, t2, |m| {
        m.set_health(&vip_id(), addr(12), Health::Up);
    });
    assert_eq!(weights(&up), [1000, 100, 0], "from its first step again");
}

#[test]
fn a_reload_keeps_a_ramp_and_one_turning_slow_start_off_ends_it() {
    let t0 = Instant::now();
    let mut model = back_up_at("slow_start_s = 10\n", t0);
    model.advance_slow_starts(t0 + Duration::from_secs(4));
    let t1 = t0 + Duration::from_secs(4);
    let same = after(&model, t1, |m| {
        *m = m.reloaded(&config("slow_start_s = 10\n"));
    });
    assert_eq!(weights(&same), [1000, 400, 0]);
    // A longer ramp: the step is worked out again at the next tick.
    let mut longer = after(&model, t1, |m| {
        *m = m.reloaded(&config("slow_start_s = 40\n"));
    });
    longer.advance_slow_starts(t1);
    assert_eq!(weights(&longer), [2000, 200, 0], "4 s of 40: step 2 of 20");
    let off = after(&model, t1, |m| *m = m.reloaded(&config("")));
    assert_eq!(weights(&off), [100, 100, 0]);
    assert_eq!(off.vips[&vip_id()].backends[&addr(12)].slow_start, None);
}

#[test]
fn the_status_shows_the_ramps_share_and_the_seconds_left() {
    let t0 = Instant::now();
    let mut model = back_up_at("slow_start_s = 30\n", t0);
    let now = t0 + Duration::from_millis(7_500);
    model.advance_slow_starts(now);
    let vip = &model.vips[&vip_id()];
    let status = vip.backends[&addr(12)].ramp_left(&vip.config, now);
    // 7.5 s of 30 in 20 steps: step 5 (25 %), 22.5 s left (23 rounded up).
    assert_eq!(
        status,
        Some(crate::api::schema::SlowStartStatus {
            percent: 25,
            left_s: 23
        })
    );
    assert_eq!(vip.backends[&addr(11)].ramp_left(&vip.config, now), None);
    // Its last step, then nothing to show once the duration has passed.
    let last = t0 + Duration::from_millis(29_000);
    model.advance_slow_starts(last);
    let vip = &model.vips[&vip_id()];
    assert_eq!(
        vip.backends[&addr(12)].ramp_left(&vip.config, last),
        Some(crate::api::schema::SlowStartStatus {
            percent: 95,
            left_s: 1
        })
    );
    model.advance_slow_starts(t0 + Duration::from_secs(30));
    let vip = &model.vips[&vip_id()];
    assert_eq!(vip.backends[&addr(12)].ramp_left(&vip.config, last), None);
}

#[test]
fn a_ramp_takes_a_step_a_second_and_at_most_twenty() {
    use super::slow_start::steps;
    for (seconds, n) in [(1, 2), (2, 2), (10, 10), (20, 20), (30, 20), (3600, 20)] {
        assert_eq!(steps(Duration::from_secs(seconds)), n, "{seconds} s");
    }
    // A one-second ramp: half its weight for that second, then all of it.
    let t0 = Instant::now();
    let mut model = back_up_at("slow_start_s = 1\n", t0);
    assert_eq!(weights(&model), [200, 100, 0]);
    model.advance_slow_starts(t0 + Duration::from_millis(500));
    assert_eq!(weights(&model), [200, 100, 0]);
    model.advance_slow_starts(t0 + Duration::from_secs(1));
    assert_eq!(weights(&model), [100, 100, 0]);
}

#[test]
fn a_changes_plan_names_the_ramps_it_begins_and_not_those_under_way() {
    let t0 = Instant::now();
    let ramping = back_up_at("slow_start_s = 10\n", t0);
    let before = {
        let mut m = ramping.clone();
        m.set_health(&vip_id(), addr(12), Health::Down);
        m.start_slow_starts(&ramping, t0);
        m
    };
    assert_eq!(
        ramping.ramps_begun(&before),
        BTreeMap::from([(vip_id(), (Duration::from_secs(10), vec![addr(12)]))])
    );
    // A later change (another backend's weight) begins none.
    let later = after(&ramping, t0 + Duration::from_secs(2), |m| {
        m.apply(&Edit::SetWeight(vip_id(), addr(11), 200), t0)
            .unwrap();
    });
    assert_eq!(later.ramps_begun(&ramping), BTreeMap::new());
    // The plan of the VIP says so; a VIP without a plan gets none.
    let mut plans = vec![VipPlan {
        vip: vip_id().to_string(),
        change: PlanChange::Changed,
        before: BTreeMap::new(),
        after: BTreeMap::new(),
        moved_fraction: Some(0.05),
        affinity: None,
        slow_start: None,
    }];
    crate::plan::note_slow_starts(&mut plans, &ramping.ramps_begun(&before));
    assert_eq!(
        plans[0].slow_start,
        Some(SlowStartPlan {
            seconds: 10,
            backends: vec![addr(12)]
        })
    );
}
