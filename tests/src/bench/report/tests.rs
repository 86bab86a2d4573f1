use super::{
    e2e::{ksoftirqd_cell, loss_cell},
    markdown,
};
use crate::bench::{
    e2e::{Mode, System},
    Machine, Results, SectionRun,
};

fn results(measured: &[(&str, &str, &str)]) -> Results {
    Results {
        machine: Machine {
            cores: 2,
            kernel: "6.18".to_owned(),
            cpu: "cpu".to_owned(),
            memory_gib: 1.0,
            date: "2026-11-23T06:00:00Z".to_owned(),
            command: "cargo xtask bench".to_owned(),
        },
        xdp: None,
        xdp_profile: None,
        maglev: None,
        memory: None,
        e2e: None,
        failover: None,
        nat: None,
        e2e_nat: None,
        decap: None,
        e2e_tunnel: None,
        tunnel: None,
        bgp: None,
        sync_mesh: None,
        flood: None,
        measured: measured
            .iter()
            .map(|(name, date, commit)| {
                (
                    (*name).to_owned(),
                    SectionRun {
                        date: (*date).to_owned(),
                        commit: (*commit).to_owned(),
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn the_report_says_which_run_each_section_comes_from() {
    let text = markdown(
        &results(&[
            ("e2e", "2026-11-23T05:48:06Z", "9834dc8"),
            ("xdp", "2026-11-23T06:16:33Z", "90979a8"),
        ]),
        None,
    );
    assert!(
        text.contains("| e2e | 2026-11-23T05:48:06Z | `9834dc8` |"),
        "{text}"
    );
    assert!(
        text.contains("| xdp | 2026-11-23T06:16:33Z | `90979a8` |"),
        "{text}"
    );
    assert!(!text.contains("Every number below was measured in that run"));
    // A file from before sections were dated: one run, as it said.
    let old = markdown(&results(&[]), None);
    assert!(old.contains("Every number below was measured in that run"));
}

#[test]
fn the_loss_column_sums_the_rounds_and_marks_older_results() {
    let spread = crate::bench::Spread::of(&[1.0]);
    let mut case = crate::bench::e2e::E2eCase {
        system: System::LbdNat,
        mode: Mode::NewConnection,
        rps: spread,
        p50_ms: spread,
        p99_ms: spread,
        cpu_busy_pct: spread,
        softirq_pct: spread,
        proxy_cpu: spread,
        ksoftirqd_pct: None,
        rps_per_round: vec![1.0, 1.0],
        loss_per_round: Some(vec![
            crate::bench::e2e::Loss {
                lb_drops: 2,
                retransmits: 0,
            },
            crate::bench::e2e::Loss {
                lb_drops: 1,
                retransmits: 7,
            },
        ]),
    };
    assert_eq!(loss_cell(&case), "3 / 7");
    case.loss_per_round = None;
    assert_eq!(loss_cell(&case), "–");
    assert_eq!(ksoftirqd_cell(&case), "–");
    case.ksoftirqd_pct = Some(crate::bench::Spread::of(&[61.4, 70.0, 80.0]));
    assert_eq!(ksoftirqd_cell(&case), "70");
}
