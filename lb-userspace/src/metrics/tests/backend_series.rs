//! Backend series: removed and re-added backends, backends that serve
//! nothing, and a dashboard that never merges a backend of two VIPs.
use super::*;

#[test]
fn a_removed_backend_leaves_no_series_and_a_re_added_one_starts_clean() {
    let metrics = Metrics::new();
    let vip: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let address: IpAddr = "198.18.0.11".parse().unwrap();
    let mut status = full_status();
    for first in [true, false, false] {
        metrics.observe_check(&vip, address, Duration::from_millis(1), first);
    }
    let text = metrics.render(&status);
    assert!(text.contains("backend=\"198.18.0.11\""), "{text}");

    // Removed: from the model (so from the status) and from the checks.
    let removed = status.vips[0].backends.remove(0);
    metrics.retain_checks(|_, backend| backend != address);
    let text = metrics.render(&status);
    assert!(
        !text.contains("198.18.0.11"),
        "series of the removed backend left:\n{text}"
    );

    // Added again: its check starts from zero, the histogram with it.
    let mut again = removed;
    if let Some(check) = &mut again.check {
        check.checks = 2;
    }
    status.vips[0].backends.push(again);
    metrics.observe_check(&vip, address, Duration::from_millis(1), true);
    metrics.observe_check(&vip, address, Duration::from_millis(1), false);
    let text = metrics.render(&status);
    let labels = "vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"";
    assert_eq!(
        sample(&text, "lbd_health_check_duration_seconds_count", labels),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "lbd_health_checks_total", labels),
        sample(&text, "lbd_health_check_duration_seconds_count", labels),
        "{text}"
    );
}

#[test]
fn a_backend_the_data_plane_sends_nothing_does_not_count_as_serving() {
    let mut status = full_status();
    status.vips[0].backends[0].state = BackendState::Enabled;
    let vip = status.vips[0].vip.clone();
    let labels = format!("vip=\"{vip}\"");
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_vip_serving_backends", &labels),
        Some(1.0)
    );
    // Checked up, but not alive: a dsr-l2 backend whose MAC is not
    // known, or one awaiting its first checks.
    status.vips[0].backends[0].alive = false;
    let text = Metrics::new().render(&status);
    assert_eq!(
        sample(&text, "lbd_vip_serving_backends", &labels),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "lbd_vip_healthy_backends", &labels),
        Some(1.0)
    );
}

/// Every dashboard query that keeps a backend apart keeps its VIP
/// apart too: a backend serving two VIPs has a series for each, and
/// grouping by backend alone would add them up. And what each LB node
/// sees for itself is never merged across nodes (`$instance` is All by
/// default): health checks run on every node, so a backend one node
/// finds down and another up would otherwise read as one flapping
/// line, and a path broken from one node only (its NIC, its ARP) would
/// be summed away. So a query on a node's own checks that groups by
/// backend groups by `instance` too, a raw series (no `by (...)`)
/// whose legend names `{{vip}}` or `{{backend}}` names `{{instance}}`,
/// and a query grouped by `instance` names it in its legend. (Traffic
/// counters add up across nodes: those may be summed by VIP and
/// backend.)
#[test]
fn the_dashboard_never_merges_a_backend_of_two_vips() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../observability/grafana/lbd-dashboard.json"
    )))
    .expect("the dashboard is valid JSON");
    let targets: Vec<(&str, &str)> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| Some((t["expr"].as_str()?, t["legendFormat"].as_str()?)))
        .collect();
    let mut checked = 0;
    let mut checked_per_node = 0;
    for (expr, legend) in &targets {
        let groupings: Vec<Vec<&str>> = expr
            .match_indices("by (")
            .map(|(at, _)| {
                let rest = &expr[at + 4..];
                rest[..rest.find(')').unwrap_or(rest.len())]
                    .split(',')
                    .map(str::trim)
                    .collect()
            })
            .collect();
        for grouping in &groupings {
            if grouping.contains(&"backend") {
                checked += 1;
                assert!(grouping.contains(&"vip"), "{expr:?} merges VIPs");
                if expr.contains("lbd_health_check_") {
                    checked_per_node += 1;
                    assert!(
                        grouping.contains(&"instance"),
                        "{expr:?} adds up the health checks of different LB nodes"
                    );
                }
            }
            if grouping.contains(&"instance") {
                assert!(
                    legend.contains("{{instance}}"),
                    "{expr:?} keeps nodes apart, but its legend {legend:?} does not say which"
                );
            }
        }
        if groupings.is_empty() && (legend.contains("{{vip}}") || legend.contains("{{backend}}")) {
            checked_per_node += 1;
            assert!(
                legend.contains("{{instance}}"),
                "{expr:?}: its legend {legend:?} gives two LB nodes' series the same name"
            );
        }
    }
    assert!(checked > 0, "no dashboard query groups by backend");
    assert!(
        checked_per_node > 0,
        "no dashboard query shows what a node sees"
    );
}

#[test]
fn a_standing_by_backup_does_not_serve_until_its_vip_is_on_backups() {
    let mut status = full_status();
    let backend = &mut status.vips[0].backends[0];
    backend.state = BackendState::Enabled;
    backend.backup = true;
    let vip = status.vips[0].vip.clone();
    let vip_labels = format!("vip=\"{vip}\"");
    let labels = format!("vip=\"{vip}\",backend=\"198.18.0.11\"");
    let text = Metrics::new().render(&status);
    assert_eq!(sample(&text, "lbd_backend_backup", &labels), Some(1.0));
    assert_eq!(sample(&text, "lbd_vip_on_backups", &vip_labels), Some(0.0));
    // Up, enabled and weighted, but standing by: new flows go elsewhere.
    assert_eq!(
        sample(&text, "lbd_vip_serving_backends", &vip_labels),
        Some(0.0),
        "{text}"
    );
    status.vips[0].on_backups = true;
    let text = Metrics::new().render(&status);
    assert_eq!(sample(&text, "lbd_vip_on_backups", &vip_labels), Some(1.0));
    assert_eq!(
        sample(&text, "lbd_vip_serving_backends", &vip_labels),
        Some(1.0)
    );
    status.vips[0].backends[0].backup = false;
    let text = Metrics::new().render(&status);
    assert_eq!(sample(&text, "lbd_backend_backup", &labels), Some(0.0));
}
