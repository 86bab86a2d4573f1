//! The node's own series: start time, adoption, a lost hook, a down link.
use super::*;

/// A restart shows in Prometheus although the scrape never failed:
/// the time lbd started, and whether it adopted the data plane a
/// previous lbd left running.
#[test]
fn the_start_time_and_adoption_are_exported() {
    assert!(FAMILIES.contains(&("lbd_start_time_seconds", "gauge")));
    assert!(FAMILIES.contains(&("lbd_dataplane_adopted", "gauge")));
    let mut status = full_status();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let metrics = Metrics::new();
    let text = metrics.render(&status);
    let start_time = |text: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix("lbd_start_time_seconds "))
            .and_then(|v| v.trim().parse().ok())
    };
    let started = start_time(&text).unwrap_or_default();
    assert!(
        started >= before.floor() && started <= before + 5.0,
        "{started} vs {before}:\n{text}"
    );
    assert!(text.contains("\nlbd_dataplane_adopted 0\n"), "{text}");
    status.adopted = true;
    let again = metrics.render(&status);
    assert!(again.contains("\nlbd_dataplane_adopted 1\n"), "{again}");
    assert_eq!(start_time(&again), Some(started), "the start time stays");
}

/// A node that lost its hook (or its link) says so in Prometheus: it
/// still answers scrapes, and balances nothing.
#[test]
fn a_lost_hook_and_a_down_link_are_exported() {
    let mut status = full_status();
    let text = Metrics::new().render(&status);
    assert!(text.contains("\nlbd_dataplane_attached 1\n"), "{text}");
    assert!(text.contains("\nlbd_interface_up 1\n"), "{text}");
    status.attached = false;
    status.interface_up = false;
    let text = Metrics::new().render(&status);
    assert!(text.contains("\nlbd_dataplane_attached 0\n"), "{text}");
    assert!(text.contains("\nlbd_interface_up 0\n"), "{text}");
}
