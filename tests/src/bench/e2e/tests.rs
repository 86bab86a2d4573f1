use std::{fs, net::Ipv4Addr};

use super::{
    machine::ksoftirqd_pids_in,
    order,
    systems::{nat_slot, nat_source, NAT4},
    System,
};

#[test]
fn only_the_softirq_threads_count() {
    let proc = std::env::temp_dir().join(format!("lb-proc-{}", std::process::id()));
    for (pid, comm) in [
        ("14", "ksoftirqd/0\n"),
        ("22", "ksoftirqd/1\n"),
        ("30", "kworker/0:1\n"),
        ("31", "wrk\n"),
    ] {
        fs::create_dir_all(proc.join(pid)).unwrap();
        fs::write(proc.join(pid).join("comm"), comm).unwrap();
    }
    fs::create_dir_all(proc.join("net")).unwrap();
    assert_eq!(ksoftirqd_pids_in(&proc), vec![14, 22]);
    fs::remove_dir_all(&proc).unwrap();
    assert!(ksoftirqd_pids_in(&proc).is_empty());
}

#[test]
fn every_nat_start_of_a_five_round_pass_has_its_own_address() {
    let mut seen: Vec<Ipv4Addr> = (0..5)
        .flat_map(|round| {
            [System::LbdNat, System::LbdNatTc].map(|system| nat_source(nat_slot(system, round)))
        })
        .collect();
    assert!(seen
        .iter()
        .all(|a| (NAT4..=Ipv4Addr::new(198, 18, 0, 59)).contains(a)));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10);
}

#[test]
fn systems_and_modes_are_named_in_the_results_file_as_in_the_report() {
    use super::Mode;
    for system in [
        System::Direct,
        System::Lbd,
        System::LbdNat,
        System::LbdNatTc,
        System::LbdIpip,
        System::LbdGue,
        System::XdpForward,
        System::Haproxy,
        System::NginxStream,
    ] {
        let json = serde_json::to_string(&system).expect("serialises");
        assert_eq!(json, format!("\"{system}\""));
        assert_eq!(serde_json::from_str::<System>(&json).ok(), Some(system));
    }
    for mode in Mode::ALL {
        let json = serde_json::to_string(&mode).expect("serialises");
        assert_eq!(json, format!("\"{mode}\""));
    }
    assert!(serde_json::from_str::<System>("\"lbd-nta\"").is_err());
}

#[test]
fn each_system_takes_each_place_once_and_follows_no_one_every_round() {
    assert_eq!(order(0, 5), [0, 1, 4, 2, 3]);
    assert_eq!(order(1, 5), [1, 2, 0, 3, 4]);
    assert_eq!(order(0, 4), [0, 1, 3, 2]);
    assert_eq!(order(7, 1), [0]);
    assert!(order(3, 0).is_empty());
    for n in 1..=7 {
        let rounds: Vec<Vec<usize>> = (0..n as u32).map(|round| order(round, n)).collect();
        let all: Vec<usize> = (0..n).collect();
        for round in &rounds {
            let mut seen = round.clone();
            seen.sort_unstable();
            assert_eq!(seen, all, "n {n}: every system once a round");
        }
        for place in 0..n {
            let mut at: Vec<usize> = rounds.iter().map(|r| r[place]).collect();
            at.sort_unstable();
            assert_eq!(at, all, "n {n}: each system once in place {place}");
        }
        // How often each system runs right after each other one.
        let mut after = vec![vec![0; n]; n];
        for round in &rounds {
            for pair in round.windows(2) {
                after[pair[0]][pair[1]] += 1;
            }
        }
        let most = after.iter().flatten().copied().max().unwrap_or(0);
        assert!(most <= if n % 2 == 0 { 1 } else { 2 }, "n {n}: {after:?}");
    }
    // The L2 lab's five systems over its five rounds: xdp-forward (2)
    // runs right after lbd (1) in two of them, not in every one.
    let follows = (0..5)
        .filter(|&round| order(round, 5).windows(2).any(|p| p == [1, 2]))
        .count();
    assert_eq!(follows, 2);
}
