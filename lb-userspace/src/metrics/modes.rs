//! Forwarding modes and the NAT flow table.

use super::{labels, to_i64, Exporter};
use crate::api::schema::Status;

/// Whether the NAT reaper has finished a sweep, so its counts (flows by
/// state, ports in use, a NAT backend's flows) are measured: before that
/// they read 0, which is "not measured yet", not "empty", and their series
/// are left out as other numbers not read are.
pub(super) fn nat_swept(s: &Status) -> bool {
    s.nat.as_ref().is_some_and(|nat| nat.swept)
}

impl Exporter<'_> {
    /// Forwarding modes and the NAT flow table: the mode and the client
    /// affinity join per-VIP series as an info metric
    /// (`lbd_vip_info{vip,mode,affinity} 1`, used as `* on(vip)
    /// group_left(mode) lbd_vip_info`), so no existing series changes its
    /// labels.
    pub(super) fn export_modes(&mut self, s: &Status) {
        let mut info = Vec::new();
        let mut in_use = Vec::new();
        let mut ranges = Vec::new();
        let swept = nat_swept(s);
        for v in &s.vips {
            let l = labels(&[
                ("vip", &v.vip),
                ("mode", v.mode.name()),
                ("affinity", v.affinity.name()),
            ]);
            info.push((l, 1));
            if let Some(nat) = &v.nat {
                let source = nat.source.to_string();
                let l = labels(&[("vip", &v.vip), ("nat_address", &source)]);
                if swept {
                    in_use.push((l.clone(), to_i64(nat.ports_in_use)));
                }
                let size = u32::from(nat.port_max)
                    .saturating_sub(u32::from(nat.port_min))
                    .saturating_add(1);
                ranges.push((l, i64::from(size)));
            }
        }
        self.gauge(
            "vip_info",
            "The VIP's forwarding mode and client affinity (always 1)",
            info,
        );
        self.gauge(
            "vip_nat_ports_in_use",
            "NAT source ports in use towards the VIP's busiest backend (they run out per NAT address, backend and backend port), as of the reaper's last complete sweep (none before its first)",
            in_use,
        );
        self.gauge(
            "vip_nat_ports",
            "NAT source ports the VIP's NAT address hands out per backend",
            ranges,
        );
        let pressure = s
            .nat
            .as_ref()
            .map(|nat| vec![(Vec::new(), i64::from(nat.pressure))]);
        let memory = s
            .nat
            .as_ref()
            .map(|nat| vec![(Vec::new(), to_i64(nat.memory_bytes))]);
        let errors = s.nat.as_ref().map_or_else(Vec::new, |nat| {
            vec![
                (labels(&[("kind", "removal")]), nat.reap_failed),
                (labels(&[("kind", "read")]), nat.read_errors),
            ]
        });
        let (flows, capacity, reaped) = match &s.nat {
            Some(nat) => (
                lb_common::nat::NatFlowState::ALL
                    .iter()
                    .filter(|_| nat.swept)
                    .map(|state| {
                        let n = nat.flows.get(state.name()).copied().unwrap_or(0);
                        (labels(&[("state", state.name())]), to_i64(n))
                    })
                    .collect(),
                vec![(Vec::new(), to_i64(nat.capacity))],
                vec![
                    (labels(&[("reason", "expired")]), nat.expired),
                    (labels(&[("reason", "orphan")]), nat.orphans),
                    (labels(&[("reason", "backend_gone")]), nat.backend_gone),
                ],
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        self.gauge(
            "nat_flows",
            "Translated flows, by state, as of the reaper's last complete sweep (none before its first)",
            flows,
        );
        self.gauge(
            "nat_flow_capacity",
            "Entries the NAT flow table holds at most (two per flow)",
            capacity,
        );
        self.gauge(
            "nat_flow_memory_bytes",
            "Bytes of kernel memory the NAT flow table takes",
            memory.unwrap_or_default(),
        );
        self.gauge(
            "nat_table_pressure",
            "1 while the NAT flow table (or a backend's source ports) is nearly full and closed flows are freed after a second",
            pressure.unwrap_or_default(),
        );
        self.counter(
            "nat_reaped",
            "NAT flows freed by the reaper, by reason",
            None,
            reaped,
        );
        self.counter(
            "nat_reaper_errors",
            "NAT flow table operations of the reaper that failed: removals the table refused (retried next sweep), reads that started the sweep over",
            None,
            errors,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    /// Before the NAT reaper's first sweep its counts read 0: their series
    /// are left out (a 0 would read as an empty table), the configured
    /// numbers and other VIPs' backends stay.
    #[test]
    fn nat_counts_are_left_out_until_the_first_sweep() {
        let mut status = crate::metrics::tests::full_status();
        let mut direct = status.vips[0].clone();
        direct.vip = "198.18.0.101:80/tcp".into();
        direct.mode = lb_common::Mode::DsrL2;
        direct.nat = None;
        status.vips.push(direct);
        let nat_vip = "vip=\"198.18.0.100:80/tcp\"";
        let starts = |text: &str, prefix: &str| text.lines().any(|l| l.starts_with(prefix));
        let measured = |text: &str| {
            [
                "lbd_nat_flows{".to_owned(),
                format!("lbd_vip_nat_ports_in_use{{{nat_vip}"),
                format!("lbd_backend_flows{{{nat_vip}"),
            ]
            .into_iter()
            .filter(|p| starts(text, p))
            .count()
        };
        let text = Metrics::new().render(&status);
        assert_eq!(measured(&text), 3, "{text}");

        if let Some(nat) = status.nat.as_mut() {
            nat.swept = false;
            nat.flows.clear();
        }
        status.vips[0].backends[0].flows = Default::default();
        status.vips[0].nat.as_mut().expect("a NAT VIP").ports_in_use = 0;
        let text = Metrics::new().render(&status);
        assert_eq!(measured(&text), 0, "{text}");
        for kept in [
            format!("lbd_vip_nat_ports{{{nat_vip}"),
            "lbd_nat_flow_capacity ".to_owned(),
            "lbd_backend_flows{vip=\"198.18.0.101:80/tcp\"".to_owned(),
        ] {
            assert!(starts(&text, &kept), "no {kept:?} in\n{text}");
        }
    }
}
