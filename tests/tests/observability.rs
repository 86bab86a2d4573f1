//! Observability: the metrics endpoint lints clean, a real Prometheus
//! server scraping lbd in the lab sees per-backend counts that agree with
//! what the client sent, the alert rules pass promtool's checks and unit
//! tests, and every metric the dashboard and the rules use is one lbd
//! exports. Needs root (the lab) and promtool (`cargo xtask setup`).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write as _,
    net::IpAddr,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use lb_tests::{
    client, floodrun,
    lab::{http_get, in_netns, Lab, VIP4},
    support::{self, grown, wait_until},
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo().join("observability/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `cargo xtask setup` installs it)");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Metric names used in PromQL `expr` strings (lbd_ only).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("lbd_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Series names lbd exports, from the classic text format's TYPE lines
/// (histograms also as _bucket, _sum, _count).
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "lbd-alerts.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "lbd-alerts.test.yml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    // Each alert has at least one test case.
    let rules = std::fs::read_to_string(repo().join("observability/prometheus/lbd-alerts.yml"))
        .expect("rules");
    let tests =
        std::fs::read_to_string(repo().join("observability/prometheus/lbd-alerts.test.yml"))
            .expect("tests");
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {line}")),
            "alert {line} has no test case"
        );
    }
}

/// The `description` annotation of alert `name` in the shipped rules.
fn alert_description(name: &str) -> String {
    let rules = std::fs::read_to_string(repo().join("observability/prometheus/lbd-alerts.yml"))
        .expect("rules");
    let start = rules
        .find(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("no alert {name}"));
    rules[start..]
        .lines()
        .find_map(|l| l.trim().strip_prefix("description: "))
        .unwrap_or_else(|| panic!("alert {name} has no description"))
        .to_owned()
}

/// New NAT flows find no free source port well before the range runs
/// out (17 ports tried: about u^17 of them refused at a share u in use,
/// README and docs/design/nat.md): the alert fires before refusals
/// grow, and its text says when they start.
#[test]
fn the_nat_ports_alert_says_refusals_start_before_the_range_runs_out() {
    let said = alert_description("LbdNatPortsNearlyExhausted");
    assert!(!said.contains("once the range runs out"), "{said}");
    for figure in ["70 %", "2 % of them at 80 %", "17 % at 90 %"] {
        assert!(said.contains(figure), "{figure:?} not in {said}");
    }
    let rules = std::fs::read_to_string(repo().join("observability/prometheus/lbd-alerts.yml"))
        .expect("rules");
    assert!(
        rules.contains("expr: lbd_vip_nat_ports_in_use / lbd_vip_nat_ports > 0.7\n"),
        "the NAT ports alert fires past 70 %"
    );
}

/// A node's connection table holds its peers' flows too when replication
/// is on, so a flow count summed over nodes counts a flow once per node
/// that holds it: the dashboard keeps such counts per node.
#[test]
fn the_dashboard_never_sums_a_nodes_flow_counts_across_nodes() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("observability/grafana/lbd-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is valid JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let per_node_counts = [
                "lbd_backend_flows",
                "lbd_conntrack_entries",
                "lbd_nat_flows",
            ];
            if !per_node_counts
                .iter()
                .any(|m| metric_names(expr).contains(*m))
            {
                continue;
            }
            checked += 1;
            for (at, _) in expr.match_indices("by (") {
                let grouping = &expr[at..expr[at..].find(')').map_or(expr.len(), |e| at + e)];
                assert!(
                    grouping.contains("instance"),
                    "{expr:?} sums a per-node flow count over nodes"
                );
            }
            assert!(
                !expr.trim_start().starts_with("sum(") && !expr.contains("sum without"),
                "{expr:?} sums a per-node flow count over nodes"
            );
        }
    }
    assert!(checked > 0, "no dashboard query reads a flow count");
}

#[test]
fn prometheus_scraping_lbd_agrees_with_the_client() {
    let mut lab = Lab::start(3).expect("lab");
    lab.wait_for_backends().expect("nginx up");
    let config = lab.lbd_config();
    lab.start_lbd(&config).expect("lbd");
    let lb = lab.lb.clone();

    // The endpoint: classic text lints clean with promtool; OpenMetrics on request.
    let (status, text) = http_get(&lb.netns, "http://127.0.0.1:9641/metrics").expect("scrape");
    assert_eq!(status, 200);
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics:\n{out}\n{text}");
    for (path, expected) in [("/healthz", 200), ("/readyz", 200), ("/nope", 404)] {
        let (status, _) =
            http_get(&lb.netns, &format!("http://127.0.0.1:9641{path}")).expect("GET");
        assert_eq!(status, expected, "{path}");
    }

    // What lbd exports is in its catalogue, and every metric the dashboard
    // and the alert rules query is in the catalogue.
    let catalogue: BTreeSet<String> = lb_userspace::metrics::series_names().into_iter().collect();
    let exported = exported(&text);
    assert!(
        exported.is_subset(&catalogue),
        "exported but not catalogued: {:?}",
        exported.difference(&catalogue).collect::<Vec<_>>()
    );
    assert!(
        exported.contains("lbd_backend_new_flows_total") && exported.contains("lbd_packets_total")
    );
    let names = catalogue;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("observability/grafana/lbd-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is valid JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(queries.len() >= 10, "only {} queries", queries.len());
    let rules = std::fs::read_to_string(repo().join("observability/prometheus/lbd-alerts.yml"))
        .expect("rules");
    queries.extend(
        rules
            .lines()
            .filter(|l| l.contains("lbd_"))
            .map(str::to_owned),
    );
    for query in &queries {
        for name in metric_names(query) {
            assert!(
                names.contains(&name),
                "{name} (in {query:?}) is not a metric lbd exports; it exports {names:?}"
            );
        }
    }

    // A real Prometheus sees what the client saw.
    lab.start_prometheus(&lb).expect("prometheus");
    let tally = client::burst(&lab.client.netns, IpAddr::V4(VIP4), 600).expect("burst");
    assert_eq!(tally.failed, 0, "{:?}", tally.errors);
    let by_address: BTreeMap<String, String> = lab
        .backends
        .iter()
        .map(|b| (b.ipv4.to_string(), b.name.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let (_, body) = http_get(
            &lb.netns,
            "http://127.0.0.1:9090/api/v1/query?query=lbd_backend_new_flows_total%7Bvip%3D%22198.18.0.100%3A80%2Ftcp%22%7D",
        )
        .expect("query");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("API JSON");
        let mut seen = BTreeMap::new();
        for series in answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let address = series["metric"]["backend"].as_str().unwrap_or_default();
            let value: u64 = series["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if let Some(name) = by_address.get(address) {
                seen.insert(name.clone(), value);
            }
        }
        if seen == tally.by_backend {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus says {seen:?}, the client saw {:?}",
            tally.by_backend
        );
        thread::sleep(Duration::from_millis(500));
    };
    println!("Prometheus per-backend new flows {seen:?} = client's per-backend responses");

    // `lbctl status --watch` shows rates while traffic flows.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (netns, stop) = (lab.client.netns.clone(), stop.clone());
        thread::spawn(move || {
            client::run_until(&netns, IpAddr::V4(VIP4), stop, Duration::from_secs(10))
        })
    };
    let out = lab
        .lbctl(&["status", "--watch", "--interval", "1", "--count", "2"])
        .expect("lbctl");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("load").expect("load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first refresh has no interval to measure a rate over yet: "-".
    let rates: Vec<Option<f64>> = text
        .lines()
        .filter(|l| l.starts_with("VIP 198.18.0.100:80/tcp"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|r| (r != "-").then(|| r.parse().expect("a packet rate")))
        .collect();
    assert_eq!(rates.len(), 2, "two refreshes:\n{text}");
    assert!(
        rates[1].is_some_and(|r| r > 0.0),
        "no packet rate shown under load:\n{text}"
    );

    // A VIP whose backends are all out drops, and the data plane says so in
    // lbd's log (rate-limited), not only in the counters.
    for backend in &lab.backends {
        let out = lab
            .lbctl(&[
                "backend",
                "maintenance",
                "198.18.0.100:80/tcp",
                &backend.ipv4.to_string(),
            ])
            .expect("lbctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tally = client::run_until(
        &lab.client.netns,
        IpAddr::V4(VIP4),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Duration::from_millis(500),
    )
    .expect("requests");
    assert!(
        tally.iter().all(|r| r.result.is_err()),
        "requests succeeded with every backend out"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lab.log("lbd").contains(NO_BACKEND_LOG) {
        assert!(
            Instant::now() < deadline,
            "no data-plane event in lbd's log:\n{}",
            lab.log("lbd")
        );
        thread::sleep(Duration::from_millis(100));
    }
    // Rate-limited: hundreds of dropped packets in about a second (SYNs
    // of as many sources, from a raw socket in the client's namespace,
    // straight to the LB's interface). The program sends at most one
    // event a second per CPU, and lbd logs at most one a minute per VIP
    // and kind (the first event above was logged moments ago), while the
    // counter counts every one.
    thread::sleep(Duration::from_millis(1_500));
    let before = support::status(&lab);
    let logged_before = lab.log("lbd").matches(NO_BACKEND_LOG).count();
    let flood = floodrun::flood_of(&lab, DROPPED, Duration::from_secs(5), Some(DROPPED))
        .expect("a SYN flood");
    let sent = in_netns(&lab.client.netns, move || flood.run())
        .expect("in the client's namespace")
        .expect("the SYNs");
    assert_eq!(sent.sent, u64::from(DROPPED), "{sent:?}");
    wait_until("the drops counted", Duration::from_secs(5), || {
        grown(&before, &support::status(&lab), "drop_no_backend") >= sent.sent
    });
    // The events reach lbd's log through a ring buffer it reads at once.
    thread::sleep(Duration::from_millis(500));
    let dropped = grown(&before, &support::status(&lab), "drop_no_backend");
    let logged = lab.log("lbd").matches(NO_BACKEND_LOG).count() - logged_before;
    println!(
        "{} SYNs to a VIP without a backend in {:?}: {dropped} dropped, {logged} logged (on {} CPUs)",
        sent.sent,
        sent.elapsed,
        possible_cpus()
    );
    assert!(
        dropped >= sent.sent && dropped <= sent.sent + 16,
        "{dropped} dropped for want of a backend, {} sent",
        sent.sent
    );
    assert_eq!(
        logged, 0,
        "the event is not rate-limited per VIP (once a minute): {logged} more lines for {dropped} drops in {:?}",
        sent.elapsed
    );
}

/// The line lbd logs for a packet dropped for want of a backend.
const NO_BACKEND_LOG: &str = "packet for a VIP with no live backend dropped";

/// Packets sent, in a second, at a VIP whose backends are all out.
const DROPPED: u32 = 600;

/// CPUs the kernel may run XDP on (the rate limit is per CPU).
fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").expect("possible CPUs");
    text.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().expect("CPU") - a.parse::<usize>().expect("CPU") + 1,
            None => 1,
        })
        .sum()
}
