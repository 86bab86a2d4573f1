//! The shipped systemd unit passes `systemd-analyze verify` (with its
//! `/usr/local/sbin/lbd` and `lbctl` pointed at the ones just built, which
//! verify wants to exist): no unknown key, no value systemd cannot parse. Skipped where
//! systemd-analyze is not installed. Its capability list is checked against
//! `privilege::service_capabilities` in the unit tests.

use std::process::Command;

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("systemd-analyze is not installed: skipped");
        return;
    };
    assert!(version.status.success());
    let unit = include_str!("../../deploy/systemd/lbd.service")
        .replace("/usr/local/sbin/lbctl", env!("CARGO_BIN_EXE_lbctl"))
        .replace("/usr/local/sbin/lbd", env!("CARGO_BIN_EXE_lbd"));
    let dir = std::env::temp_dir().join(format!("lbd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lbd.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // verify exits 0 on unknown keys and bad values, but says so.
    let about_the_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("lbd.service"))
        .collect();
    assert!(about_the_unit.is_empty(), "{stderr}");
}

/// The values of the `key=` lines of the unit, split on whitespace.
fn unit_values(key: &str) -> Vec<&'static str> {
    include_str!("../../deploy/systemd/lbd.service")
        .lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .flat_map(str::split_whitespace)
        .collect()
}

/// A start that would fail again (the config refused, the kernel refusing
/// this build's object, e.g. after an upgrade) is not repeated every
/// `RestartSec=`, running the verifier each time: lbd exits with a status
/// of its own for each, which the unit lists in
/// `RestartPreventExitStatus=`. The backoff settings (`RestartSteps=`,
/// `RestartMaxDelaySec=`) need systemd 254, which Debian bookworm (252)
/// lacks: the unit does not use them.
#[test]
fn the_unit_does_not_repeat_a_start_that_would_fail_again() {
    use lb_userspace::daemon::{
        EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED, EXIT_STOPPED_FOR_RESTART,
    };
    let prevented = unit_values("RestartPreventExitStatus");
    for status in [EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED] {
        assert!(
            prevented.contains(&status.to_string().as_str()),
            "RestartPreventExitStatus={prevented:?} lacks {status}"
        );
        // Its own: not a failure (1), a usage error (2), a stop for
        // good or for a restart, systemd's own (200 and up) nor a signal's.
        assert!((12..126).contains(&status), "{status}");
        assert_ne!(status, EXIT_STOPPED_FOR_RESTART);
    }
    assert_ne!(EXIT_CONFIG_REFUSED, EXIT_OBJECT_REFUSED);
    for restarted in ["1", "2"] {
        assert!(!prevented.contains(&restarted), "{prevented:?}");
    }
    assert_eq!(unit_values("Restart"), ["on-failure"]);
    for newer in ["RestartSteps", "RestartMaxDelaySec"] {
        assert!(unit_values(newer).is_empty(), "{newer} needs systemd 254");
    }
}
