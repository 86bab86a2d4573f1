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
