//! The rate limit of the data plane's event logs.

use std::time::Duration;

use super::*;

/// 200 "no live backend" events for one VIP within a minute (every
/// CPU's one a second) log one warning; the next minute's logs one
/// more, counting those left out; another VIP and another kind have
/// limits of their own.
#[test]
fn data_plane_events_are_logged_once_a_minute_per_vip_and_kind() {
    let event = |kind, vip_id| lb_common::DataplaneEvent {
        kind,
        vip_id,
        flow: lb_common::FlowKey::default(),
    };
    let mut limits = NatEvents::default();
    let no_backend = event(lb_common::consts::EVENT_NO_BACKEND, 1);
    let logs = crate::test_logs::logs_of(|| {
        for n in 0..200u64 {
            log_dataplane_event(
                &mut limits,
                &no_backend,
                "198.18.0.100:80/tcp",
                Duration::from_millis(n * 250),
            );
        }
    });
    assert_eq!(logs.matches("WARN").count(), 1, "{logs}");
    assert!(logs.contains("198.18.0.100:80/tcp"), "{logs}");
    let logs = crate::test_logs::logs_of(|| {
        log_dataplane_event(&mut limits, &no_backend, "v", Duration::from_secs(61));
        log_dataplane_event(
            &mut limits,
            &event(lb_common::consts::EVENT_NO_BACKEND, 2),
            "w",
            Duration::from_secs(61),
        );
        log_dataplane_event(
            &mut limits,
            &event(lb_common::consts::EVENT_CONNTRACK_INSERT_FAILED, 1),
            "v",
            Duration::from_secs(61),
        );
    });
    assert_eq!(logs.matches("WARN").count(), 3, "{logs}");
    // 200 events over 50 s, one logged: 199 left out, told the next time.
    assert!(logs.contains("suppressed=199"), "{logs}");
    assert_eq!(logs.matches("suppressed=0").count(), 2, "{logs}");
}
