//! How new connections spread over a lab's backends, seen three ways: by
//! nginx (bursts of one-connection requests from several client
//! addresses at once, each answer naming its backend), by lbd's status
//! (each backend's share of the Maglev table) and by lbd's metrics (a
//! series of the Prometheus text endpoint). For tests of what changes
//! the spread over time (slow start's ramp).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    thread,
};

use lb_userspace::api::schema::{BackendStatus, Status};

use crate::{
    http::{burst_from, Burst},
    lab::{http_get, Lab, VIP4},
    support::{ip_on, vip_status},
};

/// Adds `count` more addresses to the lab's client (198.18.0.200 and up,
/// beside its own on its segment; the backends reach them directly) and
/// returns them, for bursts from several client addresses.
pub fn add_client_addresses(lab: &Lab, count: u8) -> Vec<Ipv4Addr> {
    assert!(count <= 50, "at most 50 client addresses, not {count}");
    (0..count)
        .map(|n| {
            let address = Ipv4Addr::new(198, 18, 0, 200 + n);
            ip_on(
                &lab.client,
                &["addr", "add", &format!("{address}/24"), "dev", "eth0"],
            );
            address
        })
        .collect()
}

/// `per_address` one-connection requests to the lab's IPv4 VIP from each
/// of `from`, the addresses' bursts running at once (one thread each):
/// their answers together.
pub fn burst_over(lab: &Lab, from: &[Ipv4Addr], per_address: u32) -> Burst {
    let netns = lab.client.netns.clone();
    let threads: Vec<_> = from
        .iter()
        .map(|address| {
            let (netns, address) = (netns.clone(), IpAddr::V4(*address));
            thread::spawn(move || burst_from(&netns, Some(address), IpAddr::V4(VIP4), per_address))
        })
        .collect();
    let mut all = Burst::default();
    for handle in threads {
        let burst = handle.join().expect("a burst thread");
        for (backend, n) in burst.by_backend {
            *all.by_backend.entry(backend).or_default() += n;
        }
        all.peers.extend(burst.peers);
        all.ports = match (all.ports, burst.ports) {
            (Some((lo, hi)), Some((l, h))) => Some((lo.min(l), hi.max(h))),
            (a, b) => a.or(b),
        };
        all.failed += burst.failed;
        all.errors.extend(burst.errors);
    }
    all
}

/// The part of `burst`'s answers backend `name` gave (0 to 1).
pub fn fraction(burst: &Burst, name: &str) -> f64 {
    let total = burst.succeeded();
    assert!(total > 0, "no answer in the burst: {:?}", burst.errors);
    burst.by_backend.get(name).copied().unwrap_or(0) as f64 / total as f64
}

/// The status of lab backend `name` (b1, ...) in the lab's IPv4 VIP of
/// `status`; panics when it is not there.
pub fn backend_named<'a>(lab: &Lab, status: &'a Status, name: &str) -> &'a BackendStatus {
    let host = lab
        .backends
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no backend named {name:?}"));
    vip_status(status, IpAddr::V4(VIP4))
        .backends
        .iter()
        .find(|b| b.address == IpAddr::V4(host.ipv4))
        .unwrap_or_else(|| panic!("{name} ({}) not in the status", host.ipv4))
}

/// lbd's metrics (the Prometheus text endpoint, 127.0.0.1:9641 in the LB
/// node's namespace, lbd's default).
pub fn scrape(lab: &Lab) -> String {
    let (code, text) =
        http_get(&lab.lb.netns, "http://127.0.0.1:9641/metrics").expect("scraping lbd's metrics");
    assert_eq!(code, 200, "lbd's metrics: {text}");
    text
}

/// The value of series `name` whose labels include every one of `labels`
/// (name, value) in the metrics `text`; panics when there is no such
/// series, or more than one (a renamed series or label must not read as
/// a value).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let found: BTreeMap<&str, f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let inner = rest.strip_prefix('{')?.strip_suffix('}')?;
            let pairs: Vec<&str> = inner.split(',').collect();
            wanted
                .iter()
                .all(|w| pairs.contains(&w.as_str()))
                .then(|| (series, value.parse().expect("a metric's value")))
        })
        .collect();
    match found.len() {
        1 => found.into_values().next().expect("one"),
        n => panic!("{n} series {name} with {wanted:?} in lbd's metrics:\n{found:?}"),
    }
}
