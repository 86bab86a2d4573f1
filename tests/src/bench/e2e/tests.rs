use std::{fs, net::Ipv4Addr};

use super::{
    machine::ksoftirqd_pids_in,
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
