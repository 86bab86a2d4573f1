//! Settings, their ranges and the timer formulas; the state names.

use serde::Deserialize;

use super::*;

#[test]
fn state_displays_and_serializes_lowercase() {
    assert_eq!(State::Initialize.to_string(), "initialize");
    assert_eq!(State::Backup.to_string(), "backup");
    assert_eq!(State::Master.to_string(), "master");
    // serde uses the same names (rename_all applies both ways).
    use serde::de::{
        value::{Error, StrDeserializer},
        IntoDeserializer,
    };
    let parse = |name: &str| {
        let de: StrDeserializer<'_, Error> = name.into_deserializer();
        State::deserialize(de)
    };
    for state in [State::Initialize, State::Backup, State::Master] {
        assert_eq!(parse(&state.to_string()), Ok(state));
    }
    assert!(parse("Master").is_err());
}

#[test]
fn settings_validate() {
    assert_eq!(settings(100).validate(), Ok(()));
    assert_eq!(settings(255).validate(), Ok(()));
    let bad = |f: fn(&mut Settings)| {
        let mut s = settings(100);
        f(&mut s);
        s.validate().unwrap_err()
    };
    assert_eq!(bad(|s| s.vrid = 0), SettingsError::ZeroVrid);
    assert_eq!(bad(|s| s.priority = 0), SettingsError::ZeroPriority);
    assert_eq!(bad(|s| s.adver_interval_cs = 0), SettingsError::Interval(0));
    assert_eq!(
        bad(|s| s.adver_interval_cs = 4096),
        SettingsError::Interval(4096)
    );
    assert_eq!(
        bad(|s| s.preempt_delay = Duration::from_secs(1001)),
        SettingsError::PreemptDelay(Duration::from_secs(1001))
    );
}

#[test]
fn bad_settings_are_normalized() {
    let s = Settings {
        priority: 0,
        adver_interval_cs: 0,
        preempt_delay: Duration::MAX,
        ..settings(100)
    };
    let m = Machine::new(s, ME);
    assert_eq!(m.priority(), 1);
    assert_eq!(m.settings().adver_interval_cs, 1);
    assert_eq!(m.settings().preempt_delay, MAX_PREEMPT_DELAY);
}

#[test]
fn master_down_interval_for_priority_100_at_1s() {
    let m = Machine::new(settings(100), ME);
    // (256 - 100) * 1 s / 256 = 0.609375 s exactly.
    assert_eq!(m.skew_time(), us(609_375));
    assert_eq!(m.master_down_interval(), us(3_609_375));
    let owner = Machine::new(settings(255), ME);
    assert_eq!(owner.skew_time(), us(3_906)); // 1 s / 256, truncated
    let lowest = Machine::new(settings(1), ME);
    assert_eq!(lowest.skew_time(), us(996_093));
    // What a restarted lbd measures its state file against, before it
    // has a machine: the quickest peer's (priority 255) interval,
    // whatever our own priority.
    for priority in [1, 100, 254, 255] {
        assert_eq!(
            settings(priority).shortest_master_down_interval(),
            us(3_003_906),
            "{priority}"
        );
    }
    let unchecked = Settings {
        adver_interval_cs: 0,
        ..settings(100)
    };
    // Normalized as the machine runs it: 1 cs, 3 × 10 ms + 39 µs.
    assert_eq!(unchecked.shortest_master_down_interval(), us(30_039));
}
