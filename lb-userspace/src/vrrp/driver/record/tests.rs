//! Records written and read back, and the resume window measured
//! against the peer's master-down interval.

use super::*;
use crate::vrrp::driver::tests::{vrrp_config, StateFile, SECOND};

/// What the state file at `path` means for a start at `now`.
fn decide(path: &Path, config: &VrrpConfig, now: u64) -> Resumption {
    resume_decision(read_record(path), config, now)
}

/// Only a recent restart record resumes; the per-advert master record
/// a crash leaves (a panic, then systemd's restart 2 s later) does
/// not, nor does anything else.
#[test]
fn only_a_recent_restart_record_resumes() {
    // 1 s adverts: a window of 3 s + 1/256 s, less 1 s.
    let config = vrrp_config(100, "198.18.0.10");
    let at = 100 * SECOND;
    let restarting = StateFile::new("restarting", &format!("restarting {at} 100\n"));
    assert_eq!(decide(&restarting.0, &config, at), Resumption::Resume);
    assert_eq!(
        decide(&restarting.0, &config, at + 2 * SECOND),
        Resumption::Resume
    );
    assert_eq!(
        decide(&restarting.0, &config, at + 3 * SECOND),
        Resumption::No
    );
    // A record from the future (another boot's clock) is not trusted.
    assert_eq!(decide(&restarting.0, &config, at - 1), Resumption::No);
    // A crash 0.5 s after the last advert, restarted 1 s later.
    let crashed = StateFile::new("crashed", &format!("master {at} 100\n"));
    assert_eq!(
        decide(&crashed.0, &config, at + 1_500_000_000),
        Resumption::NotAfterCrash
    );
    assert_eq!(decide(&crashed.0, &config, at + 4 * SECOND), Resumption::No);
    for (name, text) in [
        ("backup", format!("backup {at} 100\n")),
        ("stopped", format!("stopped {at} 100\n")),
        ("no-time", "restarting\n".to_owned()),
        ("bad-time", "restarting soon\n".to_owned()),
        ("unknown", format!("restart {at} 100\n")),
        ("empty", String::new()),
    ] {
        let file = StateFile::new(name, &text);
        assert_eq!(decide(&file.0, &config, at), Resumption::No, "{text:?}");
    }
    let missing = Path::new("/nonexistent/lbd.vrrp-51-v4.state");
    assert_eq!(decide(missing, &config, at), Resumption::No);
}

/// A restart turns a master record into a restart record with the
/// last advert's time and interval (the backup's timer runs from that
/// advert, not from the restart); a backup's or a stopped instance's
/// record, or none, stays as it is.
#[test]
fn a_restart_keeps_the_last_advert_in_its_record() {
    let at = 100 * SECOND;
    let master = Record::parse(&format!("master {at} 10\n"));
    let restarting = restart_record(master).expect("a restart record");
    assert_eq!(restarting.line(), format!("restarting {at} 10\n"));
    assert_eq!(Record::parse(&restarting.line()), Some(restarting));
    // An older lbd's record, without the interval, keeps none.
    let older = restart_record(Record::parse(&format!("master {at}\n")));
    assert_eq!(
        older.map(|record| record.line()),
        Some(format!("restarting {at}\n"))
    );
    for text in [format!("backup {at} 100"), format!("stopped {at} 100")] {
        assert_eq!(restart_record(Record::parse(&text)), None, "{text}");
    }
    assert_eq!(restart_record(None), None);
    // The record a restart writes resumes within the window; the one
    // before it (what a crash leaves) does not.
    let config = vrrp_config(100, "198.18.0.10");
    assert_eq!(
        resume_decision(master, &config, at + SECOND / 20),
        Resumption::NotAfterCrash
    );
    assert_eq!(
        resume_decision(Some(restarting), &config, at + SECOND / 20),
        Resumption::Resume
    );
}

/// The resume window follows the advert interval the previous lbd
/// recorded (what the backup learned from its adverts), not the one
/// the config names now; an older lbd's record, without it, falls back
/// to the config's.
#[test]
fn the_resume_window_follows_the_recorded_advert_interval() {
    // 1 s adverts: 3 × 1 s + (256 - 255) × 1 s / 256, less 0.1 s.
    let config = vrrp_config(100, "198.18.0.10");
    assert_eq!(
        resume_window(&config, None),
        Duration::from_micros(2_903_906)
    );
    // The previous lbd advertised every 100 ms: the backup takes over
    // 0.3 s after its last advert, whatever the config says now; less
    // half an interval, 50 ms.
    assert_eq!(
        resume_window(&config, Some(10)),
        Duration::from_micros(250_390)
    );
    // Every 3 s: the backup waits 9 s; less 0.1 s.
    assert_eq!(
        resume_window(&config, Some(300)),
        Duration::from_micros(8_911_718)
    );
    let at = 100 * SECOND;
    let fast = StateFile::new("fast", &format!("restarting {at} 10\n"));
    assert_eq!(
        decide(&fast.0, &config, at + SECOND / 10),
        Resumption::Resume
    );
    assert_eq!(decide(&fast.0, &config, at + SECOND), Resumption::No);
    let slow = StateFile::new("slow", &format!("restarting {at} 300\n"));
    assert_eq!(
        decide(&slow.0, &config, at + 8 * SECOND),
        Resumption::Resume
    );
    let older = StateFile::new("older", &format!("restarting {at}\n"));
    assert_eq!(decide(&older.0, &config, at + SECOND), Resumption::Resume);
    assert_eq!(
        decide(&older.0, &config, at + 2_500_000_000),
        Resumption::Resume
    );
    assert_eq!(decide(&older.0, &config, at + 3 * SECOND), Resumption::No);
}

/// The window ends a margin before the backup's timer runs out: 0.1 s,
/// at most half the advert interval (what follows the decision takes
/// milliseconds; the rest of the restart is what the window is for).
/// Up to its last nanosecond a record resumes, from its end on it does
/// not: a restart record 2.9 s after a 1 s advert (the backup waits
/// 3.004 s) resumes, one 2.95 s after does not. No interval leaves the
/// window empty.
#[test]
fn the_resume_window_keeps_a_margin_before_the_backup_takes_over() {
    let config = vrrp_config(100, "198.18.0.10");
    let at = 100 * SECOND;
    for (cs, master_down_ns, margin_ns) in [
        (100_u16, 3_003_906_000_u64, SECOND / 10),
        (300, 9_011_718_000, SECOND / 10),
        (20, 600_781_000, SECOND / 10),
        // 10 cs and less: half the interval.
        (10, 300_390_000, SECOND / 20),
        (5, 150_195_000, SECOND / 40),
        (1, 30_039_000, SECOND / 200),
    ] {
        let window = master_down_ns - margin_ns;
        assert_eq!(
            resume_window(&config, Some(cs)),
            Duration::from_nanos(window),
            "{cs} cs"
        );
        let record = Record::parse(&format!("restarting {at} {cs}"));
        assert_eq!(
            resume_decision(record, &config, at + window - 1),
            Resumption::Resume,
            "{cs} cs"
        );
        assert_eq!(
            resume_decision(record, &config, at + window),
            Resumption::No,
            "{cs} cs"
        );
    }
    let record = Record::parse(&format!("restarting {at} 100"));
    assert_eq!(
        resume_decision(record, &config, at + 2_900_000_000),
        Resumption::Resume
    );
    assert_eq!(
        resume_decision(record, &config, at + 2_950_000_000),
        Resumption::No
    );
}
