use super::{
    e2e::{ksoftirqd_cell, loss_cell},
    markdown,
};
use crate::bench::{
    e2e::{E2eCase, E2eResults, Loss, Mode, System},
    Machine, Results, SectionRun, Spread,
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
                        machine: None,
                        busy: false,
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

fn e2e_case(system: System, mode: Mode, rps: &[f64]) -> E2eCase {
    let spread = Spread::of(&[1.0]);
    E2eCase {
        system,
        mode,
        rps: Spread::of(rps),
        p50_ms: spread,
        p99_ms: spread,
        cpu_busy_pct: spread,
        softirq_pct: spread,
        proxy_cpu: spread,
        ksoftirqd_pct: None,
        rps_per_round: rps.to_vec(),
        loss_per_round: None,
    }
}

#[test]
fn the_loss_column_sums_the_rounds_and_marks_older_results() {
    let mut case = e2e_case(System::LbdNat, Mode::NewConnection, &[1.0, 1.0]);
    let old = |lb_drops, retransmits| Loss {
        lb_drops,
        retransmits,
        socket_errors: None,
        non_2xx: None,
    };
    case.loss_per_round = Some(vec![old(2, 0), old(1, 7)]);
    assert_eq!(loss_cell(&case), "3 / 7 / – / –");
    case.loss_per_round = Some(vec![
        Loss {
            socket_errors: Some(4),
            non_2xx: Some(0),
            ..old(2, 0)
        },
        Loss {
            socket_errors: Some(12),
            non_2xx: Some(5),
            ..old(1, 7)
        },
    ]);
    assert_eq!(loss_cell(&case), "3 / 7 / 16 / 5");
    case.loss_per_round = None;
    assert_eq!(loss_cell(&case), "–");
    assert_eq!(ksoftirqd_cell(&case), "–");
    case.ksoftirqd_pct = Some(Spread::of(&[61.4, 70.0, 80.0]));
    assert_eq!(ksoftirqd_cell(&case), "70");
    // A results file from before wrk's errors were counted still reads.
    let json = r#"{"lb_drops": 1, "retransmits": 2}"#;
    assert_eq!(
        serde_json::from_str::<Loss>(json).expect("old loss"),
        old(1, 2)
    );
}

fn e2e_results(lbd: &[f64], haproxy: &[f64], new_run: bool) -> E2eResults {
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case(System::Lbd, mode, lbd));
        cases.push(e2e_case(System::Haproxy, mode, haproxy));
        cases.push(e2e_case(System::XdpForward, mode, lbd));
    }
    E2eResults {
        seconds: 3,
        connections: 32,
        threads: 2,
        rounds: lbd.len() as u32,
        cases,
        order_rotated: new_run,
        retransmits_on_lb_nodes: new_run,
    }
}

#[test]
fn lbd_against_haproxy_is_judged_and_the_rounds_order_told() {
    // 2.1× with keep-alive: met (≥ 2×); new connections: met (≥ 1.7×).
    let mut out = String::new();
    super::e2e::l2_section(
        &mut out,
        &e2e_results(&[2100.0, 2100.0], &[1000.0, 1000.0], true),
        2,
    );
    assert!(
        out.contains("lbd vs HAProxy: **2.10×** (target ≥ 2×: met)"),
        "{out}"
    );
    assert!(
        out.contains("lbd vs HAProxy: **2.10×** (target ≥ 1.7×: met)"),
        "{out}"
    );
    assert!(
        out.contains("2 rounds, the order rotated each round"),
        "{out}"
    );
    assert!(
        out.contains("in the client's, the LB nodes' (where HAProxy"),
        "{out}"
    );
    // 1.8×: met for new connections only.
    let mut out = String::new();
    super::e2e::l2_section(&mut out, &e2e_results(&[1800.0], &[1000.0], false), 2);
    assert!(
        out.contains("lbd vs HAProxy: **1.80×** (target ≥ 2×: **not met**)"),
        "{out}"
    );
    assert!(
        out.contains("lbd vs HAProxy: **1.80×** (target ≥ 1.7×: met)"),
        "{out}"
    );
    assert!(
        out.contains("1 rounds interleaved system by system, in the listed order every round"),
        "{out}"
    );
    assert!(!out.contains("the order rotated"), "{out}");
    assert!(out.contains("namespaces only; not the LB nodes'"), "{out}");
    // Without HAProxy's rows there is nothing to judge.
    let mut partial = e2e_results(&[1800.0], &[1000.0], true);
    partial.cases.retain(|c| c.system != System::Haproxy);
    let mut out = String::new();
    super::e2e::l2_section(&mut out, &partial, 2);
    assert!(
        out.contains("lbd vs HAProxy: **–** (target ≥ 2×: not measured)"),
        "{out}"
    );
}

fn machine(cores: usize, date: &str, command: &str) -> Machine {
    Machine {
        cores,
        kernel: "6.18".to_owned(),
        cpu: "cpu".to_owned(),
        memory_gib: 1.0,
        date: date.to_owned(),
        command: command.to_owned(),
    }
}

#[test]
fn each_section_says_its_command_machine_and_a_busy_start() {
    let mut r = results(&[]);
    let run = |cores, date: &str, command: &str, busy| SectionRun {
        date: date.to_owned(),
        commit: "abc1234-dirty+untracked".to_owned(),
        machine: Some(machine(cores, date, command)),
        busy,
    };
    r.measured.insert(
        "xdp".to_owned(),
        run(
            2,
            "2026-11-23T06:00:00Z",
            "cargo xtask bench --only xdp",
            false,
        ),
    );
    r.measured.insert(
        "nat".to_owned(),
        run(
            2,
            "2026-11-23T06:00:00Z",
            "cargo xtask bench --only xdp,nat",
            true,
        ),
    );
    let text = markdown(&r, None);
    assert!(
        text.contains("Machine: 2 cores (cpu), 1.0 GiB, Linux 6.18."),
        "{text}"
    );
    assert!(
        text.contains("| xdp | 2026-11-23T06:00:00Z | `abc1234-dirty+untracked` | `cargo xtask bench --only xdp` | a quiet machine |"),
        "{text}"
    );
    assert!(text.contains("| nat | 2026-11-23T06:00:00Z | `abc1234-dirty+untracked` | `cargo xtask bench --only xdp,nat` | **a busy machine**"), "{text}");
    assert!(
        !text.contains("| machine |"),
        "one machine: no column\n{text}"
    );
    // Another machine: the header points to the table, which lists each.
    r.measured.insert(
        "e2e".to_owned(),
        run(
            4,
            "2026-11-24T06:00:00Z",
            "cargo xtask bench --only e2e",
            false,
        ),
    );
    let text = markdown(&r, None);
    assert!(
        text.contains("Machines: see each section in the table below (2 recorded)."),
        "{text}"
    );
    assert!(!text.contains("\nMachine: "), "{text}");
    assert!(text.contains("| `cargo xtask bench --only e2e` | 4 cores (cpu), 1.0 GiB, Linux 6.18 | a quiet machine |"), "{text}");
    // A section of an older run, which recorded none.
    r.measured.insert(
        "bgp".to_owned(),
        SectionRun {
            date: "2026-11-20T06:00:00Z".to_owned(),
            commit: "0ld".to_owned(),
            machine: None,
            busy: false,
        },
    );
    let text = markdown(&r, None);
    assert!(text.contains("| bgp | 2026-11-20T06:00:00Z | `0ld` | not recorded | not recorded | a quiet machine |"), "{text}");
    assert!(
        text.contains("some sections' runs did not record theirs"),
        "{text}"
    );
}

#[test]
fn the_committed_results_file_parses_and_renders() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/results.json");
    let results = crate::bench::read_previous(std::path::Path::new(path))
        .expect("bench/results.json parses")
        .expect("bench/results.json is there");
    let text = markdown(&results, Some("bench/xdp.svg"));
    assert!(text.starts_with("# Benchmarks"), "{text}");
    assert!(super::xdp_svg(&results).is_some() == results.xdp.is_some());
    // Its sections recorded no machine, wrk errors or rotation: the
    // report says so rather than implying them.
    if results.measured.values().all(|run| run.machine.is_none()) && !results.measured.is_empty() {
        assert!(text.contains("did not record their machines"), "{text}");
    }
    assert!(!text.contains("`minimal` meets the target"), "{text}");
}

#[test]
fn the_node_loss_table_takes_vrrp_gaps_of_its_own_run_only_unlabelled() {
    use crate::bench::{
        bgp::{BgpResults, NodeLoss},
        failover::{FailoverResults, VrrpGap},
    };
    let mut r = results(&[
        ("bgp", "2026-11-25T14:06:09Z", "2d2a0c5"),
        ("failover", "2026-11-25T14:06:09Z", "2d2a0c5"),
    ]);
    r.bgp = Some(BgpResults {
        seconds: 3,
        connections: 32,
        rounds: 3,
        cores: 2,
        active: Vec::new(),
        loss: vec![NodeLoss {
            event: "link cut (BFD)".to_owned(),
            gap_ms: Spread::of(&[900.0]),
        }],
        timers: "BFD".to_owned(),
    });
    r.failover = Some(FailoverResults {
        check_settings: "HTTP".to_owned(),
        backend_out_ms: Spread::of(&[200.0]),
        vrrp: vec![VrrpGap {
            system: "lbd".to_owned(),
            advert_interval_ms: 100,
            master_down_ms: 360.9,
            gap_ms: Spread::of(&[309.6]),
        }],
    });
    let same = markdown(&r, None);
    assert!(
        same.contains(
            "| VRRP (lbd pair, 100 ms adverts): master killed | 310 / **310** / 310 ms |"
        ),
        "{same}"
    );
    // `--only failover` later: the rows say whose they are.
    r.measured.insert(
        "failover".to_owned(),
        SectionRun {
            date: "2026-11-26T08:00:00Z".to_owned(),
            commit: "5eed123".to_owned(),
            machine: None,
            busy: false,
        },
    );
    let other = markdown(&r, None);
    assert!(
        other.contains("| VRRP (lbd pair, 100 ms adverts): master killed (the failover section's run, 2026-11-26T08:00:00Z at `5eed123`, not this section's) | 310"),
        "{other}"
    );
    // A file of one run (no sections dated): one run, unlabelled.
    r.measured.clear();
    let one = markdown(&r, None);
    assert!(one.contains("master killed | 310"), "{one}");
}

#[test]
fn the_xdp_and_table_size_sentences_take_their_numbers_from_the_results() {
    use crate::bench::{
        xdp::{XdpCase, XdpResults, FIRST_ACK_V4, NEW_V4, TRACKED_V4, WRAPPER_FLOOR},
        xdp_designs::{CapacityResult, DesignResult},
    };
    use lb_userspace::conntrack::kind::ConntrackKind;
    let (buckets, lru) = (ConntrackKind::Buckets.label(), ConntrackKind::Lru.label());
    let case = |name: &str, design: &str, prefill: u64, ns: &[f64]| XdpCase {
        name: name.to_owned(),
        path: "XDP_TX".to_owned(),
        ns_per_packet: Spread::of(ns),
        repeat: 1000,
        rounds: 3,
        conntrack_prefill: prefill,
        design: design.to_owned(),
        capacity: if prefill > 0 { 8000 } else { 1000 },
        lost_flows: 0,
        per_round: ns.to_vec(),
    };
    let design = |label: &str, memory_bytes: u64| DesignResult {
        design: label.to_owned(),
        capacity: 1000,
        repeat: 500,
        new_flow_v4: Spread::of(&[500.0]),
        new_flow_v6: Spread::of(&[550.0]),
        tracked_v4: Spread::of(&[130.0]),
        full_table_new_flow: Spread::of(&[600.0]),
        full_table_outcome: "inserted".to_owned(),
        full_table_flows: 1000,
        expiry_ns_per_flow: 150.0,
        occupancy: Vec::new(),
        memory_bytes,
    };
    let mut r = results(&[]);
    r.xdp = Some(XdpResults {
        cases: vec![
            case(WRAPPER_FLOOR, buckets, 0, &[60.0, 70.0]),
            case(NEW_V4, buckets, 0, &[500.0, 520.0, 540.0]),
            // The widest new-flow row: 3× from its fastest to its slowest.
            case(FIRST_ACK_V4, lru, 1_000_000, &[300.0, 600.0, 900.0]),
            // Wider, but not a new flow.
            case(TRACKED_V4, lru, 0, &[100.0, 1000.0]),
        ],
        conntrack_capacity: 1000,
        prefill_capacity: 8000,
        designs: vec![design(buckets, 144_000), design(lru, 211_000)],
        by_capacity: vec![CapacityResult {
            capacity: 1000,
            repeat: 500,
            new_flow_v4: Spread::of(&[500.0]),
            design: lru.to_owned(),
        }],
    });
    let text = markdown(&r, None);
    assert!(
        text.contains("The new-flow rows move a lot from one run to the next on this VM, and from round to round within one (this run's widest: `TCP first ACK v4, new flow`, shared LRU, 1000000 flows in the table, 300 to 900 ns): "),
        "{text}"
    );
    assert!(!text.contains("150 to over 400"), "{text}");
    // The LRU's memory per flow, as the designs table shows it.
    assert!(text.contains("| 211 |"), "{text}");
    assert!(
        text.contains("about 211 in the LRU hash (the 40-byte key"),
        "{text}"
    );
    assert!(!text.contains("about 128"), "{text}");

    // Not measured (older results): no number for the LRU, and without
    // new-flow rows the sentence stays qualitative.
    if let Some(xdp) = r.xdp.as_mut() {
        xdp.designs[1].memory_bytes = 0;
        xdp.cases.retain(|c| !c.name.contains("new flow"));
    }
    let text = markdown(&r, None);
    assert!(
        text.contains("in the LRU hash the 40-byte key, the 24-byte value and the kernel's element header, plus its hash bucket and LRU node lists (not measured in this run)."),
        "{text}"
    );
    assert!(!text.contains("about 211"), "{text}");
    assert!(
        text.contains("from one run to the next on this VM: a new flow's cost"),
        "{text}"
    );
}

#[test]
fn each_pass_takes_the_floor_of_its_own_objects_and_the_plot_says_per_connection() {
    use crate::bench::xdp::{
        XdpCase, XdpResults, CONNECTION_V4, FIRST_ACK_V4, FULL_TABLE_FLOOR, FULL_TABLE_V4,
        WRAPPER_FLOOR,
    };
    use lb_userspace::conntrack::kind::ConntrackKind;
    let (buckets, lru) = (ConntrackKind::Buckets.label(), ConntrackKind::Lru.label());
    let case = |name: &str, design: &str, prefill: u64, ns: f64| XdpCase {
        name: name.to_owned(),
        path: "XDP_TX".to_owned(),
        ns_per_packet: Spread::of(&[ns]),
        repeat: 1000,
        rounds: 1,
        conntrack_prefill: prefill,
        design: design.to_owned(),
        capacity: if prefill > 0 { 8000 } else { 1000 },
        lost_flows: 0,
        per_round: vec![ns],
    };
    let mut r = results(&[]);
    r.xdp = Some(XdpResults {
        cases: vec![
            case(WRAPPER_FLOOR, buckets, 0, 20.0),
            case(WRAPPER_FLOOR, lru, 0, 20.0),
            case(FIRST_ACK_V4, buckets, 0, 60.0),
            case(FIRST_ACK_V4, lru, 0, 100.0),
            // The prefilled pass's objects: a floor of 40 ns there.
            case(WRAPPER_FLOOR, buckets, 1_000_000, 40.0),
            case(WRAPPER_FLOOR, lru, 1_000_000, 40.0),
            case(FIRST_ACK_V4, buckets, 1_000_000, 70.0),
            case(FIRST_ACK_V4, lru, 1_000_000, 100.0),
            case(CONNECTION_V4, buckets, 0, 200.0),
            case(CONNECTION_V4, lru, 0, 240.0),
            // The full-table objects: their own floor of 30 ns.
            case(FULL_TABLE_V4, buckets, 0, 90.0),
            case(FULL_TABLE_V4, lru, 0, 150.0),
            case(FULL_TABLE_FLOOR, buckets, 0, 30.0),
            case(FULL_TABLE_FLOOR, lru, 0, 30.0),
        ],
        conntrack_capacity: 1000,
        prefill_capacity: 8000,
        designs: Vec::new(),
        by_capacity: Vec::new(),
    });
    let text = markdown(&r, None);
    // Empty pass: (60 − 20) / (100 − 20).
    assert!(
        text.contains(&format!(
            "| {FIRST_ACK_V4} (1000 entries, empty) | 60.0 | 100.0 | 40.0 | 80.0 | **0.50×**"
        )),
        "{text}"
    );
    // Prefilled: its own floor, (70 − 40) / (100 − 40), not (70 − 20) / (100 − 20).
    assert!(
        text.contains(&format!(
            "| {FIRST_ACK_V4} (8000 entries, 1000000 flows in it) | 70.0 | 100.0 | 30.0 | 60.0 | **0.50×**"
        )),
        "{text}"
    );
    // Full table: (90 − 30) / (150 − 30).
    assert!(
        text.contains("| 90.0 | 150.0 | 60.0 | 120.0 | **0.50×**"),
        "{text}"
    );
    assert!(!text.contains(" † |"), "{text}");
    let svg = crate::bench::report::xdp_svg(&r).expect("plot");
    assert!(
        svg.contains("median ns per packet (per connection for the connection rows)"),
        "{svg}"
    );
    assert!(
        svg.contains(&format!("{CONNECTION_V4} (buckets, ns per connection)")),
        "{svg}"
    );
    assert!(
        svg.contains(&format!("{FIRST_ACK_V4} (shared LRU, 1M flows)"))
            || svg.contains("1M flows)"),
        "{svg}"
    );

    // Older results without the passes' own floors: the empty pass's, marked.
    if let Some(xdp) = r.xdp.as_mut() {
        xdp.cases.retain(|c| {
            !(c.name == WRAPPER_FLOOR && c.conntrack_prefill > 0) && c.name != FULL_TABLE_FLOOR
        });
    }
    let text = markdown(&r, None);
    assert!(
        text.contains(&format!(
            "| {FIRST_ACK_V4} (8000 entries, 1000000 flows in it) † | 70.0 | 100.0 | 50.0 | 80.0 |"
        )),
        "{text}"
    );
    assert!(text.contains("eviction path) † |"), "{text}");
}

#[test]
fn a_busy_start_alone_does_not_make_the_failover_run_another() {
    let mut r = results(&[
        ("bgp", "2026-11-25T14:06:09Z", "2d2a0c5"),
        ("failover", "2026-11-25T14:06:09Z", "2d2a0c5"),
    ]);
    if let Some(failover) = r.measured.get_mut("failover") {
        failover.busy = true;
    }
    assert_eq!(super::failover_run_note(&r), None);
    // Another commit is another run.
    if let Some(failover) = r.measured.get_mut("failover") {
        failover.commit = "5eed123".to_owned();
    }
    assert!(super::failover_run_note(&r).is_some());
}

#[test]
fn a_value_beside_its_target_is_printed_on_its_own_side_of_it() {
    use super::beside_target;
    // 1.4959 rounds to the target: three decimals, below it.
    assert_eq!(beside_target(1.4959, 1.5, 2), "1.496");
    assert_eq!(beside_target(1.5041, 1.5, 2), "1.504");
    assert_eq!(beside_target(1.62, 1.5, 2), "1.62");
    assert_eq!(beside_target(1.5, 1.5, 2), "1.50");
    // Closer still: as many decimals as it takes.
    assert_eq!(beside_target(1.49996, 1.5, 2), "1.49996");
    // ns gaps, one decimal, signed.
    assert_eq!(super::beside_target_signed(3.04, 3.0, 1), "+3.04");
    assert_eq!(super::beside_target_signed(2.5, 3.0, 1), "+2.5");
    assert_eq!(super::beside_target_signed(-1.24, 3.0, 1), "-1.2");
    assert_eq!(beside_target(f64::NAN, 1.5, 2), "NaN");
}

#[test]
fn ratios_above_a_floor_are_judged_only_on_their_premise() {
    use super::above_floor_ratio;
    let judged = above_floor_ratio(
        &[(30.0, 60.0), (40.0, 80.0), (20.0, 10.0)],
        false,
        "new",
        "old",
    )
    .expect("judged");
    assert!((judged.median - 0.5).abs() < 1e-9, "{judged:?}");
    // A denominator within 1 ns of the floor: which round, which case.
    let why = above_floor_ratio(
        &[(30.0, 60.0), (288.0, 0.0)],
        false,
        "buckets",
        "shared LRU",
    )
    .expect_err("not judged");
    assert!(
        why.contains("round 2: shared LRU not more than 1 ns above the floor (+0.0 ns)"),
        "{why}"
    );
    // A numerator below the floor.
    let why = above_floor_ratio(&[(-3.0, 60.0)], false, "NAT tracked", "DSR tracked")
        .expect_err("not judged");
    assert!(
        why.contains("round 1") && why.contains("NAT tracked") && why.contains("below"),
        "{why}"
    );
    // No rounds: nothing measured.
    assert!(above_floor_ratio(&[], false, "a", "b").is_err());
    // Not a number.
    assert!(above_floor_ratio(&[(f64::NAN, 60.0)], false, "a", "b").is_err());
    // Older results: the medians are named.
    let why = above_floor_ratio(&[(30.0, 0.5)], true, "a", "b").expect_err("not judged");
    assert!(
        why.starts_with("the medians: b not more than 1 ns above"),
        "{why}"
    );
}

/// `e2e_case` with each round's wrk failures.
fn e2e_case_failing(
    system: System,
    mode: Mode,
    rps: &[f64],
    socket_errors: u64,
    non_2xx: u64,
) -> E2eCase {
    let mut case = e2e_case(system, mode, rps);
    case.loss_per_round = Some(
        rps.iter()
            .map(|_| Loss {
                lb_drops: 0,
                retransmits: 0,
                socket_errors: Some(socket_errors),
                non_2xx: Some(non_2xx),
            })
            .collect(),
    );
    case
}

/// An e2e section of `cases` over 3 s runs, `rounds` rounds.
fn e2e_of(cases: Vec<E2eCase>, rounds: u32) -> E2eResults {
    E2eResults {
        seconds: 3,
        connections: 32,
        threads: 2,
        rounds,
        cases,
        order_rotated: true,
        retransmits_on_lb_nodes: true,
    }
}

#[test]
fn the_tunnel_target_is_judged_against_haproxy() {
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case(System::Lbd, mode, &[1300.0, 1300.0]));
        cases.push(e2e_case(System::LbdIpip, mode, &[1200.0, 1200.0]));
        cases.push(e2e_case(System::Haproxy, mode, &[1000.0, 1000.0]));
    }
    let mut out = String::new();
    super::e2e::tunnel_section(&mut out, &e2e_of(cases, 2));
    assert!(
        out.contains("- keep-alive, lbd-ipip / HAProxy = **1.20×** (median of the rounds' ratios; target ≥ 1.5×: **not met**)"),
        "{out}"
    );
    assert!(
        out.contains("- new-connection, lbd-ipip / HAProxy = **1.20×**"),
        "{out}"
    );
    assert!(
        out.contains("- keep-alive, lbd-gue / HAProxy: not measured (target ≥ 1.5×)."),
        "{out}"
    );
}

#[test]
fn failed_requests_are_not_throughput() {
    // 1.6× HAProxy's requests/s, 1000 of lbd-nat's answers each 3 s
    // round non-2xx: 1600 − 333 good answers a second, 1.27×.
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case_failing(
            System::LbdNat,
            mode,
            &[1600.0, 1600.0],
            0,
            1000,
        ));
        cases.push(e2e_case(System::LbdNatTc, mode, &[1600.0, 1600.0]));
        cases.push(e2e_case_failing(
            System::Haproxy,
            mode,
            &[1000.0, 1000.0],
            0,
            0,
        ));
    }
    let mut out = String::new();
    super::e2e::nat_section(&mut out, &e2e_of(cases, 2));
    assert!(
        out.contains("- keep-alive, NAT at XDP / HAProxy = **1.27×**"),
        "{out}"
    );
    assert!(!out.contains("NAT at XDP / HAProxy = **1.60×**"), "{out}");
    assert!(out.contains("lbd-nat round 1: 1000 non-2xx"), "{out}");
    assert!(
        out.contains("- keep-alive, NAT at tc / HAProxy = **1.60×** (median of the rounds' ratios; target ≥ 1.5×: met)"),
        "{out}"
    );
    // HAProxy served nothing in one round: the round is dropped, said so.
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case(System::LbdNat, mode, &[1600.0, 1600.0, 1600.0]));
        cases.push(e2e_case(System::Haproxy, mode, &[1000.0, 0.0, 1000.0]));
    }
    let mut out = String::new();
    super::e2e::nat_section(&mut out, &e2e_of(cases, 3));
    assert!(
        out.contains("median of 2 of the 3 rounds; target ≥ 1.5×: met; round 2 left out: haproxy had no good answers"),
        "{out}"
    );
    // HAProxy served nothing at all: not judged, said so.
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case(System::LbdNat, mode, &[1600.0]));
        cases.push(e2e_case(System::Haproxy, mode, &[0.0]));
    }
    let mut out = String::new();
    super::e2e::nat_section(&mut out, &e2e_of(cases, 1));
    assert!(
        out.contains("- keep-alive, NAT at XDP / HAProxy: not judged (round 1 left out: haproxy had no good answers; target ≥ 1.5×)."),
        "{out}"
    );
    assert!(
        out.contains("- keep-alive, NAT at tc / HAProxy: not measured (target ≥ 1.5×)."),
        "{out}"
    );
}

#[test]
fn a_ratio_just_under_its_target_is_not_printed_as_the_target() {
    // 1.4959: BENCHMARKS.md once read "1.50× … not met".
    let mut cases = Vec::new();
    for mode in Mode::ALL {
        cases.push(e2e_case(System::LbdNat, mode, &[1495.9]));
        cases.push(e2e_case(System::Haproxy, mode, &[1000.0]));
    }
    let mut out = String::new();
    super::e2e::nat_section(&mut out, &e2e_of(cases, 1));
    assert!(!out.contains("1.50×"), "{out}");
    assert!(
        out.contains("NAT at XDP / HAProxy = **1.496×** (median of the rounds' ratios; target ≥ 1.5×: **not met**)"),
        "{out}"
    );
}

#[test]
fn a_forwarder_not_measured_is_not_a_target_missed() {
    let mut partial = e2e_results(&[1800.0], &[1000.0], true);
    partial.cases.retain(|c| c.system != System::XdpForward);
    let mut out = String::new();
    super::e2e::l2_section(&mut out, &partial, 2);
    assert!(
        out.contains("vs the bare XDP forwarder: **–** (target ≥ 1.0×: not measured)"),
        "{out}"
    );
    assert!(!out.contains("1.0×: **not met**"), "{out}");
}
