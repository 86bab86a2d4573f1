//! The data plane's traffic and tables: packets, bytes and new flows per
//! VIP and backend, the program's verdicts and events, the connection and
//! half-open tables, SYN-flood mode, and the deny/allow rules' packets.

use std::net::IpAddr;

use prometheus_client::registry::Unit;

use super::{labels, to_i64, Exporter, Labels};
use crate::api::schema::Status;

impl Exporter<'_> {
    /// Traffic per VIP and backend, verdicts and events, the tables.
    pub(super) fn export_traffic(&mut self, s: &Status) {
        // Data plane, per VIP and per backend.
        let vip = |v: &str| labels(&[("vip", v)]);
        let backend = |v: &str, b: &IpAddr| labels(&[("vip", v), ("backend", &b.to_string())]);
        // Counters not read for this status are left out (a zero would
        // read as a counter reset), as the node counters are.
        let unread = &s.traffic_unread;
        let per_vip = |f: fn(&crate::api::schema::VipStatus) -> u64| -> Vec<(Labels, u64)> {
            s.vips
                .iter()
                .filter(|v| !unread.vips.contains(&v.vip))
                .map(|v| (vip(&v.vip), f(v)))
                .collect()
        };
        let per_backend = |f: fn(&crate::api::schema::BackendStatus) -> u64| -> Vec<(Labels, u64)> {
            s.vips
                .iter()
                .flat_map(|v| {
                    v.backends
                        .iter()
                        .filter(|b| {
                            !unread
                                .backends
                                .iter()
                                .any(|(vip, address)| *vip == v.vip && *address == b.address)
                        })
                        .map(move |b| (backend(&v.vip, &b.address), f(b)))
                })
                .collect()
        };
        self.counter(
            "vip_packets",
            "Packets forwarded to the VIP's backends",
            None,
            per_vip(|v| v.packets),
        );
        self.counter(
            "vip",
            "Bytes forwarded to the VIP's backends (whole frames)",
            Some(Unit::Bytes),
            per_vip(|v| v.bytes),
        );
        self.counter(
            "vip_new_flows",
            "New flows of the VIP: new to the connection table, or for a NAT VIP to the NAT flow table",
            None,
            per_vip(|v| v.new_flows),
        );
        self.counter(
            "backend_packets",
            "Packets forwarded to the backend",
            None,
            per_backend(|b| b.packets),
        );
        self.counter(
            "backend",
            "Bytes forwarded to the backend (whole frames)",
            Some(Unit::Bytes),
            per_backend(|b| b.bytes),
        );
        self.counter(
            "backend_new_flows",
            "New flows of the backend: new to the connection table, or for a NAT VIP's backend to the NAT flow table",
            None,
            per_backend(|b| b.new_flows),
        );

        // Verdicts and events of the data plane (XDP or tc).
        let mut verdicts = Vec::new();
        let mut events: Vec<Vec<_>> = vec![Vec::new(); EVENT_FAMILIES.len()];
        for (name, value) in &s.counters {
            let (kind, reason) = match name.split_once('_') {
                Some(("pass", reason)) => ("pass", reason),
                Some(("drop", reason)) => ("drop", reason),
                Some((family, event)) if EVENT_FAMILIES.iter().any(|f| f.0 == family) => {
                    (family, event)
                }
                _ => ("tx", name.as_str()),
            };
            match EVENT_FAMILIES.iter().position(|f| f.0 == kind) {
                Some(i) => events[i].push((labels(&[("event", reason)]), *value)),
                None => verdicts.push((labels(&[("verdict", kind), ("reason", reason)]), *value)),
            }
        }
        self.counter(
            "packets",
            "Packets seen by the data plane (its XDP or tc program), by verdict and reason",
            None,
            verdicts,
        );
        for ((family, help), samples) in EVENT_FAMILIES.iter().zip(events) {
            self.counter(&format!("{family}_events"), help, None, samples);
        }
        self.gauge(
            "conntrack_entries",
            "Live flows in the connection table (no FIN/RST, within their idle timeout)",
            vec![(Vec::new(), to_i64(s.conntrack.entries))],
        );
        self.gauge(
            "conntrack_capacity",
            "Flows the connection table holds at most",
            vec![(Vec::new(), to_i64(s.conntrack.capacity))],
        );
        self.gauge(
            "conntrack_memory_bytes",
            "Bytes of kernel memory the connection table takes",
            vec![(Vec::new(), to_i64(s.conntrack.memory_bytes))],
        );
        self.gauge(
            "conntrack_handshakes",
            "Connection-table entries that are TCP handshakes (SYN seen, ACK not yet)",
            vec![(Vec::new(), to_i64(s.conntrack.handshakes))],
        );
        self.gauge(
            "conntrack_half_open_entries",
            "Half-open TCP flows (SYN seen, ACK not yet), held apart from the connection table",
            vec![(Vec::new(), to_i64(s.conntrack.half_open))],
        );
        self.gauge(
            "conntrack_half_open_capacity",
            "Half-open flows the half-open table has room for",
            vec![(Vec::new(), to_i64(s.conntrack.half_open_capacity))],
        );
        self.gauge(
            "syn_flood",
            "1 while lbd sees a SYN flood (unanswered SYNs or half-open evictions over their thresholds), else 0",
            vec![(Vec::new(), i64::from(s.conntrack.syn_flood))],
        );
        self.counter(
            "syn_flood_transitions",
            "Times flood mode was entered or left",
            None,
            vec![(Vec::new(), s.conntrack.syn_flood_transitions)],
        );
        // Per deny/allow rule (bounded by the rules configured).
        // Rules whose counts were not read are left out for this scrape:
        // a 0 would read as a counter reset. So are rules not in force (no
        // id: kept for a VIP not served): they count nothing, and their 0
        // would read as a reset of what they counted while in force.
        let read = s.guard.iter().filter(|g| !g.counts_unread);
        let installed = read.flat_map(|g| &g.rules).filter(|r| r.id.is_some());
        let rules = installed.map(|r| {
            let (scope, action, source) = (
                r.scope.to_string(),
                r.action.to_string(),
                r.source.to_string(),
            );
            (
                labels(&[("scope", &scope), ("action", &action), ("source", &source)]),
                r.packets,
            )
        });
        self.counter(
            "acl_rule_packets",
            "Packets a deny rule dropped or an allow rule let through, per rule",
            None,
            rules.collect(),
        );
    }
}

/// Families of data-plane event counters (a counter named
/// `<family>_<event>`), each rendered as `lbd_<family>_events_total`.
const EVENT_FAMILIES: [(&str, &str); 4] = [
    (
        "conntrack",
        "Connection-table events (hit, new, rehash, insert_failed; evicted_idle, evicted_live: an open connection, idle past tcp_idle_timeout_s or live, taken out of a full bucket; half_open_new, half_open_promoted, half_open_evicted, half_open_expired of the handshake table)",
    ),
    (
        "nat",
        "NAT flow table events (new: a flow got its source port; hit: a packet found its translation)",
    ),
    (
        "tunnel",
        "Tunnelled-mode events (encap: a packet was encapsulated to its backend)",
    ),
    (
        "hc",
        "Data-path health checks (encap: a check packet was encapsulated to its backend; drop: it could not be)",
    ),
];
