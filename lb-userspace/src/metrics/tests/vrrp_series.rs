//! VRRP instance series: one per family, link down, configured priority,
//! resumes, no source.
use super::*;

#[test]
fn one_vrid_per_family_gives_two_instances_series_that_do_not_merge() {
    let mut status = full_status();
    let v4 = status.vrrp[0].clone();
    let mut v6 = v4.clone();
    v6.state = State::Backup;
    v6.priority = 100;
    v6.addresses = vec!["2001:2::100".parse().unwrap()];
    v6.counters.adverts_received = 7;
    status.vrrp = vec![v4, v6];
    let text = Metrics::new().render(&status);
    for (labels, value) in [
        ("vrid=\"51\",family=\"ipv4\",state=\"master\"", 1.0),
        ("vrid=\"51\",family=\"ipv4\",state=\"backup\"", 0.0),
        ("vrid=\"51\",family=\"ipv6\",state=\"master\"", 0.0),
        ("vrid=\"51\",family=\"ipv6\",state=\"backup\"", 1.0),
    ] {
        assert_eq!(
            sample(&text, "lbd_vrrp_state", labels),
            Some(value),
            "{labels}:\n{text}"
        );
    }
    let priority = |family| {
        sample(
            &text,
            "lbd_vrrp_priority",
            &format!("vrid=\"51\",family=\"{family}\""),
        )
    };
    assert_eq!(
        (priority("ipv4"), priority("ipv6")),
        (Some(150.0), Some(100.0))
    );
    let received = |family| {
        sample(
            &text,
            "lbd_vrrp_adverts_received_total",
            &format!("vrid=\"51\",family=\"{family}\""),
        )
    };
    assert_eq!((received("ipv4"), received("ipv6")), (Some(0.0), Some(7.0)));
    // Every VRRP series names its family.
    for line in text.lines().filter(|l| l.starts_with("lbd_vrrp_")) {
        assert!(line.contains("family=\"ipv"), "{line}");
    }
}

/// A backup whose link is down will not take over (keepalived's
/// FAULT): a metric says so, beside the priority configured (the
/// advertised one is lowered by tracking), and a resumed mastership
/// is counted apart from the transitions to master.
#[test]
fn vrrp_link_down_configured_priority_and_resumes_are_exported() {
    let mut status = full_status();
    let mut backup = status.vrrp[0].clone();
    backup.state = State::Backup;
    backup.priority = 1;
    backup.configured_priority = 100;
    backup.link_down = true;
    backup.link_down_since = Some(1_700_000_000);
    backup.addresses = vec!["2001:2::100".parse().unwrap()];
    status.vrrp[0].counters.resumed = 1;
    status.vrrp.push(backup);
    let text = Metrics::new().render(&status);
    let v4 = "vrid=\"51\",family=\"ipv4\"";
    let v6 = "vrid=\"51\",family=\"ipv6\"";
    assert_eq!(sample(&text, "lbd_vrrp_link_down", v4), Some(0.0), "{text}");
    assert_eq!(sample(&text, "lbd_vrrp_link_down", v6), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "lbd_vrrp_configured_priority", v6),
        Some(100.0),
        "{text}"
    );
    assert_eq!(sample(&text, "lbd_vrrp_priority", v6), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "lbd_vrrp_resumed_total", v4),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lbd_vrrp_transitions_total",
            "vrid=\"51\",family=\"ipv4\",to=\"master\""
        ),
        Some(0.0),
        "{text}"
    );
}

/// An instance whose interface has no address to send adverts from
/// (keepalived's FAULT for want of one) says so apart from a link
/// down, so an operator sees why it takes nothing over.
#[test]
fn vrrp_no_source_is_exported_apart_from_link_down() {
    let mut status = full_status();
    let mut backup = status.vrrp[0].clone();
    backup.state = State::Backup;
    backup.no_source = true;
    backup.no_source_since = Some(1_700_000_000);
    backup.addresses = vec!["2001:2::100".parse().unwrap()];
    status.vrrp.push(backup);
    let text = Metrics::new().render(&status);
    let v4 = "vrid=\"51\",family=\"ipv4\"";
    let v6 = "vrid=\"51\",family=\"ipv6\"";
    assert_eq!(sample(&text, "lbd_vrrp_no_source", v4), Some(0.0), "{text}");
    assert_eq!(sample(&text, "lbd_vrrp_no_source", v6), Some(1.0), "{text}");
    assert_eq!(sample(&text, "lbd_vrrp_link_down", v6), Some(0.0), "{text}");
}
