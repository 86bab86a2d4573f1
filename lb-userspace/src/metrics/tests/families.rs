//! Every metric family renders with its values and a help text saying what
//! it counts, and the README names each one.
use super::*;

#[test]
fn every_family_renders_with_its_values() {
    let metrics = Metrics::new();
    metrics.observe_check(
        &"198.18.0.100:80/tcp".parse().unwrap(),
        "198.18.0.11".parse().unwrap(),
        Duration::from_millis(1),
        true,
    );
    metrics.observe_table_build(Duration::from_micros(700));
    let text = metrics.render(&full_status());
    for line in [
        "lbd_vip_packets_total{vip=\"198.18.0.100:80/tcp\"} 1000",
        "lbd_vip_bytes_total{vip=\"198.18.0.100:80/tcp\"} 64000",
        "lbd_backend_new_flows_total{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 40",
        "lbd_packets_total{verdict=\"tx\",reason=\"forwarded\"} 1000",
        "lbd_packets_total{verdict=\"drop\",reason=\"malformed\"} 1",
        "lbd_packets_total{verdict=\"tx\",reason=\"forwarded_icmp_error\"} 4",
        "lbd_packets_total{verdict=\"drop\",reason=\"tcp_flags\"} 6",
        "lbd_packets_total{verdict=\"pass\",reason=\"ipv6_ext\"} 2",
        "lbd_conntrack_events_total{event=\"hit\"} 960",
        "lbd_backend_state{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",state=\"draining\"} 1",
        "lbd_backend_health{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",health=\"up\"} 1",
        "lbd_health_check_failures_total{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\",reason=\"refused\"} 2",
        "lbd_health_check_duration_seconds_count{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 1",
        "lbd_maglev_build_duration_seconds_count 1",
        "lbd_backend_slow_start_ratios{vip=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 0.35",
        "lbd_vrrp_state{vrid=\"51\",family=\"ipv4\",state=\"master\"} 1",
        "lbd_vrrp_adverts_ignored_total{vrid=\"51\",family=\"ipv4\",reason=\"ttl\"} 3",
        "lbd_conntrack_entries 5",
        "lbd_bgp_sessions_established 1",
        "lbd_bgp_sessions_exporting{address=\"198.18.0.100\"} 1",
        "lbd_bgp_sessions_exporting{address=\"198.18.0.101\"} 0",
        "lbd_conntrack_memory_bytes 147456",
        "lbd_conntrack_handshakes 2",
        "lbd_conntrack_half_open_entries 3",
        "lbd_conntrack_half_open_capacity 32768",
        "lbd_syn_flood 1",
        "lbd_syn_flood_transitions_total 1",
        "lbd_config_reloads_total{result=\"success\"} 1",
        "lbd_build_info{version=\"0.1.0\"} 1",
        "lbd_vip_info{vip=\"198.18.0.100:80/tcp\",mode=\"nat\",affinity=\"connection\"} 1",
        "lbd_vip_nat_ports_in_use{vip=\"198.18.0.100:80/tcp\",nat_address=\"198.18.0.50\"} 12",
        "lbd_vip_nat_ports{vip=\"198.18.0.100:80/tcp\",nat_address=\"198.18.0.50\"} 64512",
        "lbd_nat_flows{state=\"established\"} 15",
        "lbd_nat_flows{state=\"syn-sent\"} 0",
        "lbd_nat_flow_capacity 262144",
        "lbd_nat_flow_memory_bytes 71303168",
        "lbd_nat_table_pressure 1",
        "lbd_nat_events_total{event=\"new\"} 3",
        "lbd_nat_reaped_total{reason=\"expired\"} 7",
        "lbd_nat_reaped_total{reason=\"backend_gone\"} 2",
        "lbd_nat_reaper_errors_total{kind=\"removal\"} 4",
        "lbd_nat_reaper_errors_total{kind=\"read\"} 5",
        "lbd_replication_peer_connected{peer=\"198.18.2.12:7946\"} 1",
        "lbd_replication_peer_records_sent_total{peer=\"198.18.2.12:7946\"} 7",
        "lbd_replication_peer_records_received_total{peer=\"198.18.2.12:7946\"} 11",
        "lbd_replication_peer_full_dumps_received_total{peer=\"198.18.2.12:7946\"} 2",
        "lbd_replication_peer_batches_dropped_total{peer=\"198.18.2.12:7946\"} 1",
        "lbd_replication_peer_config_compared{peer=\"198.18.2.12:7946\"} 1",
        "lbd_replication_peer_backend_states_shared{peer=\"198.18.2.12:7946\"} 1",
        "lbd_replication_peer_config_mismatch{peer=\"198.18.2.12:7946\",vip=\"198.18.0.100:80/tcp\",kind=\"differs\"} 1",
        "lbd_replication_flows_left_out_total{reason=\"kept_local\"} 0",
        "lbd_replication_peers_dumped 0",
        "lbd_acl_rule_packets_total{scope=\"global\",action=\"deny\",source=\"198.18.66.0/24\"} 42",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
    let typed: std::collections::BTreeSet<(String, String)> = to_prometheus_text(&text)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, k)| (n.to_owned(), k.to_owned()))
        .collect();
    let catalogue: std::collections::BTreeSet<(String, String)> = FAMILIES
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(
        typed, catalogue,
        "FAMILIES must list exactly what render exports"
    );
    assert!(!text.contains(".."), "help texts end in one period");
    // promtool (Debian's prometheus package), when present, lints it.
    if let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write as _;
        let classic = to_prometheus_text(&text);
        child
            .stdin
            .take()
            .unwrap()
            .write_all(classic.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The HELP line of `family` (its name as rendered, `_total` left off
/// a counter's) in `text`.
fn help<'t>(text: &'t str, family: &str) -> &'t str {
    let prefix = format!("# HELP {family} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_default()
}

/// HELP texts say what is counted: an auth failure closes a session
/// mid-way too, a NAT VIP's new flows are the NAT table's, and the tc
/// program counts packets as the XDP one does.
#[test]
fn help_texts_say_what_is_counted() {
    let text = Metrics::new().render(&full_status());
    let auth = help(&text, "lbd_replication_auth_failures");
    for word in ["connections closed", "replayed", "reflected", "mid-session"] {
        assert!(auth.contains(word), "{word:?} not in {auth:?}");
    }
    for family in ["lbd_vip_new_flows", "lbd_backend_new_flows"] {
        let said = help(&text, family);
        assert!(said.contains("NAT flow table"), "{family}: {said:?}");
    }
    let packets = help(&text, "lbd_packets");
    assert!(
        packets.contains("XDP or tc") && !packets.contains("seen by the XDP program"),
        "{packets:?}"
    );
}

/// Names a README code span gives: `{a,b}` alternatives expanded,
/// labels (`{vip}`) and a trailing `*` kept as written.
fn spelled(span: &str) -> Vec<String> {
    let Some((head, rest)) = span.split_once('{') else {
        return vec![span.to_owned()];
    };
    let Some((choices, tail)) = rest.split_once('}') else {
        return vec![span.to_owned()];
    };
    if !choices.contains(',') || tail.is_empty() {
        // A label set, not alternatives.
        return vec![head.to_owned()];
    }
    choices
        .split(',')
        .flat_map(|c| spelled(&format!("{head}{c}{tail}")))
        .collect()
}

#[test]
fn the_readme_names_every_metric_family() {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    let names: Vec<String> = readme
        .split('`')
        .skip(1)
        .step_by(2)
        .flat_map(spelled)
        .map(|n| n.trim_start_matches("lbd_").to_owned())
        .collect();
    let missing: Vec<&str> = FAMILIES
        .iter()
        .map(|(name, _)| name.trim_start_matches("lbd_"))
        .filter(|family| {
            !names.iter().any(|n| {
                n == family
                    || n.strip_suffix('*')
                        .is_some_and(|prefix| family.starts_with(prefix))
            })
        })
        .collect();
    assert!(missing.is_empty(), "README does not name {missing:?}");
}
