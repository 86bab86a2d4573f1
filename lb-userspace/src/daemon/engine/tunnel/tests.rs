//! Unit tests of the tunnelled modes' engine duties (own addresses, check
//! path, `accept_local`).

use super::*;
use super::{accept_local::*, hc_path::*};
use crate::ownership::cls_bpf::{self, TcPath};
use crate::{
    config::{HealthConfig, Protocol},
    health::TunnelPath,
};
use lb_common::consts::names;
use std::path::PathBuf;

#[test]
fn a_check_through_the_tunnel_goes_to_the_vip_with_the_backends_mark() {
    let health = HealthConfig::default_for(Protocol::Tcp);
    let backend: IpAddr = "198.19.2.11".parse().unwrap();
    let vip: IpAddr = "198.18.0.100".parse().unwrap();
    let (direct, _) = super::super::check_of(backend, 80, &health, None).unwrap();
    assert_eq!(direct.address, "198.19.2.11:80".parse().unwrap());
    assert_eq!(direct.through, None);
    let path = TunnelPath {
        mark: lb_common::tunnel::HC_MARK_BASE | 5,
        backend,
        source: None,
    };
    let (through, settings) =
        super::super::check_of(backend, 80, &health, Some((vip, path))).unwrap();
    assert_eq!(through.address, "198.18.0.100:80".parse().unwrap());
    assert_eq!(through.through, Some(path));
    assert_eq!(settings.interval, health.interval);
    let unchecked = HealthConfig {
        check: crate::config::CheckType::None,
        ..health
    };
    assert!(super::super::check_of(backend, 80, &unchecked, Some((vip, path))).is_none());
}

/// A VIP of `mode` at `address` with backends at `backends`, each
/// with a MAC (a DSR-L2 one needs it).
fn vip(mode: lb_common::Mode, address: &str, backends: &[&str]) -> crate::config::VipConfig {
    let mut vip = crate::config::VipConfig::new(address.parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = mode;
    for backend in backends {
        let mut backend = crate::config::BackendConfig::new(backend.parse().unwrap());
        backend.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
        vip.backends.push(backend);
    }
    vip
}

/// `vips` as the balancer is asked to serve them.
fn desired(vips: &[&crate::config::VipConfig]) -> Vec<crate::reconcile::DesiredVip> {
    vips.iter()
        .map(|v| crate::reconcile::DesiredVip::from_config(v, &|_| None))
        .collect()
}

/// A change that brings the first tunnelled VIP reads the interface's
/// addresses again and moves the balancer's settings before staging
/// (`follow_addresses_for_first_tunnel`). A dry run of it, or one
/// refused at staging (a 4in6 backend with no IPv6 outer source), puts
/// both back as `change` does: the next unrelated commit writes no
/// `TUNNEL_CONFIG`. Before, they stayed moved, and that commit wrote
/// them, since one had been written for a tunnelled VIP served before.
#[test]
fn a_dry_run_or_a_refused_first_tunnelled_vip_leaves_the_tunnel_state() {
    use lb_common::Mode;

    use crate::{config::TunnelSettings, dataplane::FakeMaps};

    let settings = TunnelSettings::default();
    let at_start = OwnAddresses {
        ipv4: Some("198.18.0.2".parse().unwrap()),
        ipv6: None,
    };
    let now = OwnAddresses {
        ipv4: Some("198.18.0.3".parse().unwrap()),
        ipv6: None,
    };
    let served_before = vip(Mode::Ipip, "198.18.0.110", &["198.19.2.11"]);
    let dry_run = vip(Mode::Ipip, "198.18.0.120", &["198.19.2.12"]);
    let refused = vip(Mode::Ipip, "198.18.0.120", &["2001:2:2::12"]);
    let unrelated = vip(Mode::DsrL2, "198.18.0.130", &["198.19.2.13"]);
    // (the change, whether staging refuses it, whether it is put back)
    for (change, refusal, put_back) in [
        (&dry_run, false, true),
        (&refused, true, true),
        (&dry_run, false, false),
    ] {
        let mut balancer = Balancer::new(4);
        let mut maps = FakeMaps::default();
        let mut own = at_start;
        balancer.set_tunnel(resolve(&settings, 3, &own));
        // A tunnelled VIP served, then removed: `TUNNEL_CONFIG` was
        // written and is kept current from then on.
        balancer
            .apply(&mut maps, &desired(&[&served_before]))
            .unwrap();
        balancer.apply(&mut maps, &[]).unwrap();
        let before = TunnelState::of(&own, &balancer);

        // What following the addresses for a first tunnelled VIP does.
        own = now;
        balancer.set_tunnel(resolve(&settings, 3, &own));
        let staged = balancer.stage(&desired(&[change]));
        if refusal {
            assert!(
                matches!(
                    staged,
                    Err(crate::reconcile::ReconcileError::NoTunnelSource { .. })
                ),
                "{staged:?}"
            );
        } else {
            assert!(!balancer.plan(&staged.unwrap()).is_empty());
        }
        if put_back {
            assert!(before.put_back(&mut own, &mut balancer), "moved");
            assert_eq!(TunnelState::of(&own, &balancer), before);
        }

        maps.log.clear();
        balancer.apply(&mut maps, &desired(&[&unrelated])).unwrap();
        let rewritten = maps.log.iter().any(|l| l == "tunnel config");
        // Without putting back (as before), the unrelated commit
        // writes the moved settings.
        assert_eq!(rewritten, !put_back, "{:?}", maps.log);
        let written = maps.tunnel.expect("written for the VIP served before");
        let expected = if put_back { at_start } else { now };
        assert_eq!(written, resolve(&settings, 3, &expected).config);
    }
}

/// A backend routed out of another interface than the balancer's
/// (eth1) answers the check from the VIP to the source on eth1, so
/// the reply arrives there: `accept_local` goes on for eth1 as well as
/// the balancer's eth0 (before, for eth0 only: on the master every
/// such backend went down). A labelled address counts for its
/// interface; IPv6 sources and unknown ones add nothing.
#[test]
fn accept_local_goes_on_where_each_checks_source_is() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let addresses = vec![
        ("lo".to_owned(), ip("127.0.0.1")),
        ("eth0".to_owned(), ip("198.18.0.2")),
        ("eth1".to_owned(), ip("198.19.0.2")),
        ("eth2".to_owned(), ip("198.20.0.2")),
        ("eth2".to_owned(), ip("2001:2::2")),
    ];
    let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(
        accept_local_interfaces("eth0", &[ip("198.19.0.2")], &addresses),
        set(&["eth0", "eth1"])
    );
    assert_eq!(
        accept_local_interfaces(
            "eth0",
            &[ip("198.18.0.2"), ip("198.19.0.2"), ip("198.19.0.2")],
            &addresses
        ),
        set(&["eth0", "eth1"])
    );
    assert_eq!(
        accept_local_interfaces("eth0", &[ip("2001:2::2"), ip("203.0.113.1")], &addresses),
        set(&["eth0"])
    );
    assert_eq!(
        accept_local_interfaces("eth0", &[], &addresses),
        set(&["eth0"])
    );
}

/// While `tc_hc_encap` is missing from an egress the checks need,
/// they fail with a reason naming it (and why the attach failed);
/// once it is on both, they run.
#[test]
fn checks_fail_with_the_reason_while_the_path_is_not_attached() {
    let wanted = hc_interfaces("eth0");
    let missing = missing_interfaces(&wanted, ["lo"]);
    assert_eq!(missing, ["eth0"]);
    assert_eq!(
        unattached_reason(&missing, Some("loading: verifier refused")).as_deref(),
        Some("tc_hc_encap is not on the egress of eth0: loading: verifier refused")
    );
    let none = missing_interfaces(&wanted, []);
    assert_eq!(
        unattached_reason(&none, None).as_deref(),
        Some("tc_hc_encap is not on the egress of lo, eth0")
    );
    let all = missing_interfaces(&wanted, ["eth0", "lo"]);
    assert!(all.is_empty());
    assert_eq!(unattached_reason(&all, Some("an old error")), None);
}

/// The routed scan drops from lbd's record exactly the attachments
/// the kernel says are gone (so they are attached again); one it
/// cannot tell about, or got no answer for, stays. Before, the record
/// was never checked: a `tc_hc_encap` removed under lbd stayed listed
/// and the checks went out unwrapped.
#[test]
fn only_attachments_the_kernel_says_are_gone_are_dropped() {
    let mut links = vec![("lo", 1), ("eth0", 2), ("lo", 3), ("eth0", 4)];
    let gone = prune_gone(&mut links, &[Some(false), Some(true), None]);
    assert_eq!(gone, [("lo", 1)]);
    assert_eq!(links, [("eth0", 2), ("lo", 3), ("eth0", 4)]);
    let gone = prune_gone(&mut links, &[Some(false), Some(false), Some(false)]);
    assert_eq!(gone, [("eth0", 2), ("lo", 3), ("eth0", 4)]);
    assert!(links.is_empty());
    assert!(prune_gone(&mut links, &[Some(false)]).is_empty());
    let mut running = vec![("lo", 1), ("eth0", 2)];
    assert!(prune_gone(&mut running, &[Some(true), None]).is_empty());
    assert_eq!(running.len(), 2);
}

/// Whether `tc_hc_encap` is among the tc egress filters of `device`.
fn hc_filter_shown(device: &str) -> bool {
    let out = std::process::Command::new("tc")
        .args(["filter", "show", "dev", device, "egress"])
        .output()
        .expect("running tc");
    String::from_utf8_lossy(&out.stdout).contains(names::PROG_TC_HC_ENCAP)
}

/// `tc` in this thread's network namespace; panics if it fails.
fn tc(args: &[&str]) {
    let status = std::process::Command::new("tc")
        .args(args)
        .status()
        .expect("running tc");
    assert!(status.success(), "tc {args:?}");
}

/// Inside a test's own network namespace: `lo` up, a veth `hc0` (the
/// balancer interface, its index returned) up, a runtime for the scan's
/// look, and a data plane whose `tc_hc_encap` the test attaches.
fn hc_bed() -> (u32, tokio::runtime::Runtime, crate::dataplane::Dataplane) {
    use crate::test_netns::ip;
    ip(&["link", "add", "hc0", "type", "veth", "peer", "name", "hc1"]);
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "set", "hc0", "up"]);
    let balancer = cls_bpf::interface_index("hc0").expect("hc0's index");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dataplane = crate::dataplane::Dataplane::load(crate::dataplane::MapSizes {
        max_vips: 4,
        conntrack: 4096,
        nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    })
    .expect("the data plane");
    (balancer, runtime, dataplane)
}

/// The data plane, its `tc_hc_encap` attached through cls_bpf on the
/// egress of `lo` and of a balancer interface, `hc0` (a veth). Someone
/// deletes the filter on `lo` (`tc filter del ... pref 50000`), and
/// then the clsact qdisc of `hc0`: the routed scan's look drops each
/// from lbd's record, and the attach after puts each back. Before,
/// lbd never noticed: the record still listed both, and the checks
/// went out unwrapped. In a network namespace of the test's own.
#[test]
fn a_hc_filter_removed_under_lbd_is_attached_again_at_the_scan() {
    if !crate::test_netns::is_root() {
        eprintln!("skipped: needs root (a network namespace of its own)");
        return;
    }
    crate::test_netns::in_own_netns(|| {
        let (balancer, runtime, mut dataplane) = hc_bed();
        let mut links = Vec::new();
        let attach = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
            attach_hc_where_missing(dataplane.ebpf_mut(), links, "hc0", balancer, || {
                Ok(TcPath::ClsBpf)
            })
            .expect("attached");
        };
        attach(&mut dataplane, &mut links);
        assert!(hc_filter_shown("lo") && hc_filter_shown("hc0"));
        let look = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
            let program = hc_program(dataplane.ebpf_mut()).expect("tc_hc_encap");
            runtime.block_on(forget_gone_hc_links(program, links))
        };
        assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
        assert_eq!(links.len(), 2);

        tc(&["filter", "del", "dev", "lo", "egress", "pref", "50000"]);
        assert!(!hc_filter_shown("lo"));
        assert_eq!(look(&mut dataplane, &mut links), ["lo"]);
        attach(&mut dataplane, &mut links);
        assert!(hc_filter_shown("lo"), "tc_hc_encap is back on lo");

        tc(&["qdisc", "del", "dev", "hc0", "clsact"]);
        assert_eq!(look(&mut dataplane, &mut links), ["hc0"]);
        attach(&mut dataplane, &mut links);
        assert!(hc_filter_shown("hc0"), "tc_hc_encap is back on hc0");
        assert!(look(&mut dataplane, &mut links).is_empty());
        let on: Vec<&str> = links.iter().map(|l| l.interface.as_str()).collect();
        assert_eq!(on, ["lo", "hc0"]);
    });
}

/// The ids of the tcx links of program `program`, as `bpftool link
/// show` lists them (older bpftools name the type by its number, 11,
/// and leave out the interface).
fn tcx_link_ids(program: u32) -> Vec<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .expect("running bpftool");
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    let links = links.as_array().cloned().unwrap_or_default();
    links
        .iter()
        .filter(|l| (l["type"] == "tcx" || l["type"] == 11) && l["prog_id"] == program)
        .filter_map(|l| l["id"].as_u64())
        .collect()
}

/// The same on the tcx path (kernels with tcx, the default): the
/// `tc_hc_encap` links detached under lbd (`bpftool link detach`) are
/// dropped from lbd's record at the scan's look and attached again.
/// Skipped where the kernel has no tcx or there is no bpftool.
#[test]
fn hc_tcx_links_detached_under_lbd_are_attached_again_at_the_scan() {
    if !crate::test_netns::is_root() {
        eprintln!("skipped: needs root (a network namespace of its own)");
        return;
    }
    if std::process::Command::new("bpftool")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs bpftool");
        return;
    }
    crate::test_netns::in_own_netns(|| {
        let (balancer, runtime, mut dataplane) = hc_bed();
        let mut links = Vec::new();
        let attach = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
            attach_hc_where_missing(dataplane.ebpf_mut(), links, "hc0", balancer, || {
                Ok(TcPath::Tcx)
            })
            .expect("attached");
        };
        attach(&mut dataplane, &mut links);
        if links.iter().any(|l| l.hook != HcHook::Tcx) {
            eprintln!("skipped: the kernel has no tcx");
            return;
        }
        let look = |dataplane: &mut crate::dataplane::Dataplane, links: &mut Vec<HcLink>| {
            let program = hc_program(dataplane.ebpf_mut()).expect("tc_hc_encap");
            runtime.block_on(forget_gone_hc_links(program, links))
        };
        let ours = hc_program(dataplane.ebpf_mut())
            .expect("tc_hc_encap")
            .info()
            .expect("its id")
            .id();
        let attached = tcx_link_ids(ours);
        assert_eq!(attached.len(), 2, "on lo and hc0");
        assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
        for link in &attached {
            let status = std::process::Command::new("bpftool")
                .args(["link", "detach", "id", &link.to_string()])
                .status()
                .expect("running bpftool");
            assert!(status.success(), "bpftool link detach id {link}");
        }
        assert_eq!(look(&mut dataplane, &mut links), ["lo", "hc0"]);
        assert!(links.is_empty());
        attach(&mut dataplane, &mut links);
        let again = tcx_link_ids(ours);
        assert_eq!(again.len(), 2, "back on lo and hc0: {again:?}");
        assert!(again.iter().all(|l| !attached.contains(l)), "new links");
        assert!(look(&mut dataplane, &mut links).is_empty(), "both run");
    });
}

#[test]
fn the_check_path_runs_on_loopback_and_the_balancer_interface() {
    assert_eq!(hc_interfaces("eth0"), ["lo", "eth0"]);
    assert_eq!(
        accept_local_path("eth0.100"),
        PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/accept_local")
    );
}

/// A move of a default outer source (the one kept left the interface)
/// is told with the old and the new source, for the warning that
/// points at lb-decap's `sources`; a family that gains its first
/// source, or no change, is no move.
#[test]
fn a_source_move_names_the_old_and_the_new_source() {
    let settings = crate::config::TunnelSettings::default();
    let own = |v4: &str| OwnAddresses {
        ipv4: Some(v4.parse().unwrap()),
        ipv6: None,
    };
    let before = resolve(&settings, 3, &own("198.18.0.2"));
    let after = resolve(&settings, 3, &own("198.18.0.3"));
    assert_eq!(
        source_move(&before, &after).as_deref(),
        Some("IPv4 198.18.0.2/32 -> 198.18.0.3/32")
    );
    assert_eq!(source_move(&before, &before), None);
    let none = resolve(&settings, 3, &OwnAddresses::default());
    assert_eq!(source_move(&none, &after), None);
    assert_eq!(
        source_move(&before, &none).as_deref(),
        Some("IPv4 198.18.0.2/32 -> none")
    );
}
