//! Traffic and ACL counters: left out when not read, and every counter in
//! its family with a reason of its own.
use super::*;

#[test]
fn acl_counts_not_read_are_left_out_rather_than_shown_as_zero() {
    let mut status = full_status();
    let labels = "scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\"";
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_acl_rule_packets_total", labels),
        Some(42.0)
    );
    if let Some(guard) = status.guard.as_mut() {
        guard.counts_unread = true;
        guard.rules[0].packets = 0;
        guard.rules[0].id = None;
    }
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_acl_rule_packets_total", labels),
        None,
        "{text}"
    );
}

/// A rule kept for a VIP that is not served (removed at run time) is
/// not in force: no id, and a count of 0 that is no reset of what it
/// counted while it was. It has no series until it is in force again.
#[test]
fn a_rule_not_in_force_has_no_series() {
    let mut status = full_status();
    let vip = status.vips[0].vip.clone();
    let labels = format!("scope=\"{vip}\",action=\"deny\",source=\"198.18.67.0/24\"");
    let rule = |id, packets| crate::api::schema::AclRuleStatus {
        scope: crate::guard::Scope::Vip(vip.parse().unwrap()),
        action: crate::guard::Action::Deny,
        source: "198.18.67.0/24".parse().unwrap(),
        id,
        packets,
    };
    if let Some(guard) = status.guard.as_mut() {
        guard.rules.push(rule(Some(2), 17));
    }
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_acl_rule_packets_total", &labels),
        Some(17.0),
        "{text}"
    );
    // Its VIP removed: the rule is kept, out of force.
    if let Some(guard) = status.guard.as_mut() {
        guard.rules[1] = rule(None, 0);
    }
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_acl_rule_packets_total", &labels),
        None,
        "{text}"
    );
    // The rules in force keep theirs.
    assert_eq!(
        sample(
            &text,
            "lbd_acl_rule_packets_total",
            "scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\""
        ),
        Some(42.0)
    );
}

#[test]
fn traffic_not_read_is_left_out_rather_than_shown_as_zero() {
    let mut status = full_status();
    let mut other = status.vips[0].clone();
    other.vip = "198.18.0.101:80/tcp".into();
    status.vips.push(other);
    let vip = status.vips[0].vip.clone();
    let address = status.vips[0].backends[0].address;
    // The first VIP's counters and its backend's were not read.
    status.vips[0].packets = 0;
    status.vips[0].backends[0].packets = 0;
    status.traffic_unread = crate::api::schema::UnreadTraffic {
        vips: vec![vip.clone()],
        backends: vec![(vip.clone(), address)],
    };
    let text = Metrics::new().render(&status);
    for family in [
        "lbd_vip_packets_total",
        "lbd_vip_bytes_total",
        "lbd_vip_new_flows_total",
    ] {
        assert_eq!(
            sample(&text, family, &format!("vip=\"{vip}\"")),
            None,
            "{family}:\n{text}"
        );
        assert!(
            sample(&text, family, "vip=\"198.18.0.101:80/tcp\"").is_some(),
            "{family} of the VIP read:\n{text}"
        );
    }
    let labels = format!("vip=\"{vip}\",backend=\"{address}\"");
    for family in [
        "lbd_backend_packets_total",
        "lbd_backend_bytes_total",
        "lbd_backend_new_flows_total",
    ] {
        assert_eq!(sample(&text, family, &labels), None, "{family}:\n{text}");
        assert!(
            sample(
                &text,
                family,
                &format!("vip=\"198.18.0.101:80/tcp\",backend=\"{address}\"")
            )
            .is_some(),
            "{family} of the backend read:\n{text}"
        );
    }
    // The rest of the VIP's series are there.
    assert!(
        text.contains(&format!("lbd_vip_info{{vip=\"{vip}\"")),
        "{text}"
    );
}

#[test]
fn every_counter_lands_in_its_family_verdicts_among_packets() {
    use lb_common::stats::Counter;
    let mut status = full_status();
    status.counters = Counter::ALL
        .iter()
        .map(|c| (c.name().to_owned(), 1))
        .collect();
    let text = Metrics::new().render(&status);
    let packets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("lbd_packets_total{"))
        .collect();
    let verdicts = Counter::ALL.iter().filter(|c| c.is_verdict()).count();
    assert_eq!(packets.len(), verdicts, "{packets:#?}");
    for counter in Counter::ALL.iter().filter(|c| !c.is_verdict()) {
        let (family, event) = counter.name().split_once('_').unwrap();
        let line = format!("lbd_{family}_events_total{{event=\"{event}\"}} 1");
        assert!(text.contains(&line), "{counter:?}: no {line:?} in\n{text}");
    }
}

/// The data plane's own failures, a routed packet with no redirect
/// slot and a VIP packet to another host's MAC have reasons of their
/// own, under the verdict they get (so the drop-rate alert counts the
/// first two as drops and leaves the third out with the passes).
#[test]
fn internal_no_tx_port_and_foreign_mac_have_reasons_of_their_own() {
    let mut status = full_status();
    status.counters = [
        ("drop_no_tx_port", 3),
        ("drop_internal", 4),
        ("pass_foreign_mac", 5),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let text = Metrics::new().render(&status);
    for line in [
        "lbd_packets_total{verdict=\"drop\",reason=\"no_tx_port\"} 3",
        "lbd_packets_total{verdict=\"drop\",reason=\"internal\"} 4",
        "lbd_packets_total{verdict=\"pass\",reason=\"foreign_mac\"} 5",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
}
