//! keepalived: VRRP instances and IPVS virtual servers.

use std::time::Duration;

use super::*;
use crate::config::{CheckType, Protocol};
use lb_common::Mode;

/// An IPVS setup as the keepalived guides write it: a DR service with TCP
/// checks, a NAT one with HTTP checks, and the VRRP instance moving both.
pub(super) const IPVS: &str = "vrrp_instance VI_1 {
    state BACKUP
    interface eth1
    virtual_router_id 60
    priority 90
    advert_int 0.1
    nopreempt
    preempt_delay 30
    unicast_src_ip 198.18.0.2
    unicast_peer {
        198.18.0.3
    }
    virtual_ipaddress {
        198.18.0.100
        198.18.0.101
    }
    track_interface {
        eth1 weight -30
        eth2
    }
    notify /etc/keepalived/notify.sh
}

virtual_server 198.18.0.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind DR
    persistence_timeout 50
    protocol TCP

    real_server 198.18.0.11 80 {
        weight 3
        TCP_CHECK {
            connect_timeout 3
            retry 2
            delay_before_retry 1
        }
    }
    real_server 198.18.0.12 80 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
}

virtual_server 198.18.0.101 53 {
    lb_kind TUN
    protocol UDP
    real_server 198.18.0.21 53 {
        weight 0
    }
}

virtual_server 198.18.0.100 8080 {
    delay_loop 10
    lb_kind NAT
    protocol TCP
    real_server 198.19.2.11 80 {
        HTTP_GET {
            url {
                path /status
                status_code 204
            }
            connect_timeout 2
            nb_get_retry 4
        }
    }
}
";

#[test]
fn ipvs_services_keep_their_modes_weights_and_checks() {
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(&[("keepalived.conf", IPVS)], &options);
    let config = &imported.config;
    assert_eq!(config.interface, "eth1");
    let dr = &config.vips[0];
    assert_eq!(
        (dr.address, dr.port, dr.forwarding),
        (ip("198.18.0.100"), 80, Mode::DsrL2)
    );
    assert_eq!(
        weights(dr),
        [(ip("198.18.0.11"), 300), (ip("198.18.0.12"), 100)]
    );
    assert_eq!(dr.health.check, CheckType::Tcp);
    assert_eq!(dr.health.interval, Duration::from_secs(6));
    assert_eq!(dr.health.timeout, Duration::from_secs(3));
    assert_eq!(dr.health.fast_interval, Duration::from_secs(1));
    assert_eq!((dr.health.rise, dr.health.fall), (1, 3));
    // The second server's default retry: its own table.
    assert_eq!(dr.backends[1].health.as_ref().map(|h| h.fall), Some(2));
    let tun = &config.vips[1];
    assert_eq!((tun.protocol, tun.forwarding), (Protocol::Udp, Mode::Ipip));
    assert_eq!(weights(tun), [(ip("198.18.0.21"), 0)]);
    let nat = &config.vips[2];
    assert_eq!((nat.port, nat.forwarding), (8080, Mode::Nat));
    assert_eq!(nat.backends[0].port, Some(80));
    assert_eq!(nat.health.check, CheckType::Http);
    assert_eq!(
        (nat.health.path.as_str(), nat.health.expect_status),
        ("/status", 204)
    );
    assert_eq!(
        (nat.health.interval, nat.health.timeout, nat.health.fall),
        (Duration::from_secs(10), Duration::from_secs(2), 5)
    );
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.vrid, vrrp.priority, vrrp.preempt), (60, 90, false));
    assert_eq!(vrrp.advert_interval, Duration::from_millis(100));
    // keepalived clears preempt_delay with nopreempt (vrrp.c).
    assert_eq!(vrrp.preempt_delay, Duration::ZERO);
    assert_eq!(vrrp.unicast_peers, [ip("198.18.0.3")]);
    // The address the peer's unicast_peer lists: adverts go from it.
    assert_eq!(vrrp.unicast_src_ip, Some(ip("198.18.0.2")));
    assert!(imported.text.contains("unicast_src_ip = \"198.18.0.2\""));
    assert_eq!(
        vrrp.addresses,
        [ip("198.18.0.100"), ip("198.18.0.101"), ip("198.18.0.50")]
    );
    assert_eq!(vrrp.track_interface, 30);
    assert_eq!(
        vrrp.notify.as_deref(),
        Some(std::path::Path::new("/etc/keepalived/notify.sh"))
    );
    let text = &imported.text;
    for expected in [
        "# keepalived.conf:27 (lb_kind DR)",
        "keepalived.conf:19: track_interface eth2: lbd tracks only the interface it serves on",
        "# keepalived.conf:9 (unicast_src_ip 198.18.0.2)",
        "keepalived.conf:26: lb_algo wrr: lbd balances with Maglev",
        "lb_kind TUN: lbd's ipip mode",
        "notify /etc/keepalived/notify.sh: lbd runs it as `notify STATE VRID",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    assert!(has_note(
        &imported,
        "keepalived.conf:28: persistence_timeout 50: client persistence (source stickiness) is not carried over"
    ));
    assert!(
        !imported.notes.iter().any(|n| n.contains("unicast_src_ip")),
        "mapped, not noted: {:?}",
        imported.notes
    );
}

/// `unicast_src_ip` is mapped where lbd takes it (with unicast peers, of
/// the instance's family); elsewhere it is noted and left out, so the
/// generated file passes lbd's check.
#[test]
fn unicast_src_ip_is_carried_over_with_unicast_peers_only() {
    let with = |extra: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  unicast_src_ip 198.18.0.7\n{extra}  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let peers = with("  unicast_peer {\n    198.18.0.3\n  }\n");
    let imported = ok(&[("k.conf", &peers)], &Options::default());
    assert_eq!(
        imported.config.vrrp[0].unicast_src_ip,
        Some(ip("198.18.0.7"))
    );
    let multicast = with("");
    let imported = ok(&[("k.conf", &multicast)], &Options::default());
    assert_eq!(imported.config.vrrp[0].unicast_src_ip, None);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:4: unicast_src_ip 198.18.0.7: without unicast_peer")),
        "{:?}",
        imported.notes
    );
    let v6 = peers.replace("198.18.0.7", "2001:2::7");
    let imported = ok(&[("k.conf", &v6)], &Options::default());
    assert_eq!(imported.config.vrrp[0].unicast_src_ip, None);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n
                .starts_with("k.conf:4: unicast_src_ip 2001:2::7: not of the instance's family")),
        "{:?}",
        imported.notes
    );
    let bad = peers.replace("198.18.0.7", "eth0");
    assert!(refused(&[("k.conf", &bad)], &Options::default()).starts_with("k.conf:4: "));
}

#[test]
fn an_ipvs_nat_service_without_a_nat_address_is_refused() {
    assert_eq!(
        refused(&[("k.conf", IPVS)], &Options::default()),
        "k.conf:55: virtual_server 198.18.0.100 8080 needs lbd's NAT mode (k.conf:57 (lb_kind NAT)), which needs a NAT address: pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)"
    );
}

#[test]
fn a_track_script_that_is_not_about_the_proxy_is_noted_not_mapped() {
    let text = "vrrp_script chk_disk {\n  script \"/usr/local/bin/disk-ok\"\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    198.18.0.100\n  }\n  track_script {\n    chk_disk\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 100);
    assert!(imported.notes.iter().any(|n| n.starts_with(
        "k.conf:11: track_script chk_disk (/usr/local/bin/disk-ok): lbd runs no scripts"
    )));
    // Without a weight, a failing proxy script gives mastership up (FAULT).
    let text = text.replace("/usr/local/bin/disk-ok", "pidof haproxy");
    let imported = ok(&[("k.conf", &text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 254);
    // A process check watches the proxy only when it names it: one of
    // another daemon is noted like any script, not mapped.
    for other in ["pidof bird", "killall -0 bird", "pgrep -x sshd"] {
        let text = text.replace("pidof haproxy", other);
        let imported = ok(&[("k.conf", &text)], &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 100, "{other}");
        assert!(
            has_note(
                &imported,
                &format!("k.conf:11: track_script chk_disk ({other}): lbd runs no scripts")
            ),
            "{other}: {:#?}",
            imported.notes
        );
        assert!(
            !has_note(&imported, "watched the proxy lbd replaces"),
            "{other}"
        );
    }
    for proxy in [
        "killall -0 haproxy",
        "pidof nginx",
        "pgrep -x haproxy",
        "/etc/keepalived/check_haproxy.sh",
    ] {
        let text = text.replace("pidof haproxy", proxy);
        let imported = ok(&[("k.conf", &text)], &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 254, "{proxy}");
    }
}

#[test]
fn broken_keepalived_input_is_refused_with_file_line_and_reason() {
    let cases = [
        ("vrrp_instance A {\n  virtual_router_id 300\n}\n", "k.conf:2: virtual_router_id 300: not a number in 1..=255"),
        ("vrrp_instance A {\n  interface eth0\n", "k.conf:1: the block \"vrrp_instance A {\" opened here is never closed"),
        ("vrrp_instance A {\n  track_script {\n    nothing\n  }\n}\n", "k.conf:3: track_script nothing: no vrrp_script of that name"),
        ("vrrp_instance A {\n  interface eth0\n  virtual_ipaddress {\n    vip.example.com\n  }\n}\n", "k.conf:4: \"vip.example.com\" is not an IP address"),
        ("vrrp_instance A {\n  interface eth0\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\n", "k.conf:1: vrrp_instance A has no virtual_router_id"),
        ("virtual_server 198.18.0.100 80 {\n  lb_kind FULLNAT\n}\n", "k.conf:2: lb_kind FULLNAT: not DR, NAT or TUN"),
        ("virtual_server 198.18.0.100 80 {\n  real_server 198.18.0.11 80 {\n    TCP_CHECK {\n      connect_timeout soon\n    }\n  }\n}\n", "k.conf:4: connect_timeout soon: not a number of seconds"),
        ("vrrp_instance A {\n  advert_int 50\n}\n", "k.conf:2: advert_int 50: VRRPv3 adverts are 0.01 to 40.95 s apart"),
    ];
    for (text, expected) in cases {
        assert_eq!(refused(&[("k.conf", text)], &on_eth0()), expected, "{text}");
    }
    // Two nodes' files at once.
    assert!(refused(
        &[
            ("a.conf", super::haproxy::KEEPALIVED),
            ("b.conf", super::haproxy::KEEPALIVED)
        ],
        &Options::default()
    )
    .starts_with("b.conf:12: vrrp_instance VI_1: a second instance with virtual_router_id 51"));
}

#[test]
fn lvs_method_is_lb_kind_also_in_a_real_server() {
    let text = "virtual_server 198.18.0.210 80 {\n  lvs_method TUN\n  real_server 198.18.0.11 80 {\n    weight 1\n  }\n}\nvirtual_server 198.18.0.211 80 {\n  real_server 198.18.0.12 80 {\n    lvs_method DR\n  }\n}\nvirtual_server 198.18.0.212 80 {\n  lvs_method TUN type gue port 6080\n  real_server 198.18.0.13 80 {\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let modes: Vec<Mode> = imported.config.vips.iter().map(|v| v.forwarding).collect();
    assert_eq!(modes, [Mode::Ipip, Mode::DsrL2, Mode::Gue]);
    let mixed = "virtual_server 198.18.0.210 80 {\n  lvs_method DR\n  real_server 198.18.0.11 80 {\n    lvs_method NAT\n  }\n}\n";
    assert!(refused(&[("k.conf", mixed)], &with_nat())
        .starts_with("k.conf:4: lvs_method NAT: real_server 198.18.0.11 is forwarded otherwise"));
}

#[test]
fn a_real_server_with_several_checkers_keeps_the_first_and_says_so() {
    let text = "virtual_server 198.18.0.100 80 {\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].health.check, CheckType::Http);
    assert!(has_note(
        &imported,
        "k.conf:9: WARNING: TCP_CHECK: a further checker of this real_server"
    ));
}

#[test]
fn http_get_statuses_and_retry_delay_follow_keepalived_defaults() {
    let text = "virtual_server 198.18.0.100 80 {\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n      }\n    }\n  }\n}\nvirtual_server 198.18.0.100 81 {\n  real_server 198.18.0.11 81 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 300-399,204\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    let first = &imported.config.vips[0].health;
    assert_eq!(first.expect_status, 200);
    assert_eq!(first.fast_interval, std::time::Duration::from_secs(3));
    assert!(has_note(
        &imported,
        "k.conf:5: url without status_code: keepalived takes any 2xx"
    ));
    assert_eq!(imported.config.vips[1].health.expect_status, 300);
    assert!(has_note(
        &imported,
        "k.conf:15: status_code 300-399,204: keepalived takes any of these"
    ));
    let bad = text.replace("300-399,204", "399-300");
    assert!(refused(&[("k.conf", &bad)], &with_nat())
        .starts_with("k.conf:15: status_code 399-300: not a status"));
}

#[test]
fn ipvs_nat_says_the_client_address_is_lost() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind NAT\n  real_server 198.18.0.11 8080 {\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].forwarding, Mode::Nat);
    assert!(has_note(
        &imported,
        "k.conf:2: WARNING: IPVS NAT rewrites only the destination"
    ));
}

#[test]
fn a_retry_delay_longer_than_the_loop_is_capped_to_it() {
    // keepalived's retry delay defaults to 3 s whatever the loop; lbd
    // checks a changing backend at least as often as a stable one.
    let text = "virtual_server 198.18.0.100 80 {\n  delay_loop 1\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.interval, Duration::from_secs(1));
    assert_eq!(health.fast_interval, Duration::from_secs(1));
    assert!(
        has_note(
            &imported,
            "longer than the interval; lbd takes the interval, 1000 ms"
        ),
        "{}",
        imported.text
    );
}

#[test]
fn a_preempt_delay_past_the_limit_is_refused_at_its_line() {
    let text = |delay: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  preempt_delay {delay}\n  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let imported = ok(&[("k.conf", &text("1000"))], &Options::default());
    assert_eq!(
        imported.config.vrrp[0].preempt_delay,
        Duration::from_secs(1000)
    );
    assert_eq!(
        refused(&[("k.conf", &text("2000"))], &Options::default()),
        "k.conf:4: preempt_delay 2000: keepalived and lbd wait at most 1000 s before preempting"
    );
}

#[test]
fn gratuitous_arp_repeats_and_refreshes_are_carried_over() {
    let text = |lines: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n{lines}  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let imported = ok(
        &[(
            "k.conf",
            &text("  garp_master_repeat 5\n  garp_master_refresh 60\n  garp_master_refresh_repeat 2\n"),
        )],
        &Options::default(),
    );
    let vrrp = &imported.config.vrrp[0];
    assert_eq!(vrrp.announce_count, 5);
    assert_eq!(vrrp.announce_refresh, Some(Duration::from_secs(60)));
    for (key, origin) in [
        ("announce_count = 5", "# k.conf:4 (garp_master_repeat 5)"),
        (
            "announce_refresh_ms = 60000",
            "# k.conf:5 (garp_master_refresh 60)",
        ),
    ] {
        assert!(
            imported
                .text
                .lines()
                .any(|l| l.starts_with(key) && l.ends_with(origin)),
            "{key} {origin}\n{}",
            imported.text
        );
    }
    let note =
        "# NOTE k.conf:6: garp_master_refresh_repeat 2: lbd sends one round of gratuitous ARP";
    assert!(imported.text.contains(note), "{}", imported.text);
    // keepalived's defaults: 0 is no refresh, and lbd's own count stays.
    let imported = ok(
        &[("k.conf", &text("  garp_master_refresh 0\n"))],
        &Options::default(),
    );
    assert_eq!(imported.config.vrrp[0].announce_refresh, None);
    assert_eq!(imported.config.vrrp[0].announce_count, 3);
    assert_eq!(
        refused(
            &[("k.conf", &text("  garp_master_refresh 1m\n"))],
            &Options::default()
        ),
        "k.conf:4: garp_master_refresh 1m: not a number in 0..=86400"
    );
}

#[test]
fn a_track_script_may_use_a_vrrp_script_of_another_file() {
    let scripts = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 2\n}\n";
    let instance = "include /etc/keepalived/scripts.conf\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    198.18.0.100\n  }\n  track_script {\n    chk_haproxy\n  }\n}\n";
    // Given before or after the file that uses it.
    for files in [
        [("keepalived.conf", instance), ("scripts.conf", scripts)],
        [("scripts.conf", scripts), ("keepalived.conf", instance)],
    ] {
        let imported = ok(&files, &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 2);
        assert!(
            imported.text.contains("(scripts.conf:1)"),
            "{}",
            imported.text
        );
    }
    // Not given at all: still refused at the track_script.
    assert_eq!(
        refused(&[("keepalived.conf", instance)], &Options::default()),
        "keepalived.conf:9: track_script chk_haproxy: no vrrp_script of that name"
    );
}

/// /tmp/audit-config/t3 of the audit: an HTTP_GET url with its own
/// virtualhost and a body regex.
const URL_HOST: &str = "vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        198.18.0.100
    }
}
virtual_server 198.18.0.100 80 {
    delay_loop 5
    lb_kind DR
    protocol TCP
    real_server 198.18.0.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /health
                virtualhost app.example
                regex \"OK\"
                status_code 200
                fast_recovery on
            }
            connect_timeout 2
        }
    }
}
";

#[test]
fn a_urls_own_virtualhost_is_the_checks_host_and_its_other_keys_are_noted() {
    let imported = ok(&[("k.conf", URL_HOST)], &Options::default());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.host.as_deref(), Some("app.example"));
    assert!(
        has_note(
            &imported,
            "k.conf:18: WARNING: regex OK: lbd checks the status code, not the body"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(
        has_note(
            &imported,
            "k.conf:20: url fast_recovery on: not carried over"
        ),
        "{:#?}",
        imported.notes
    );
    // The url's virtualhost wins over the checker's, as in keepalived.
    let both = URL_HOST.replace(
        "            connect_timeout 2",
        "            connect_timeout 2\n            virtualhost other.example",
    );
    let imported = ok(&[("k.conf", &both)], &Options::default());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("app.example")
    );
    let checker_only = URL_HOST
        .replace("                virtualhost app.example\n", "")
        .replace(
            "            connect_timeout 2",
            "            connect_timeout 2\n            virtualhost other.example",
        );
    let imported = ok(&[("k.conf", &checker_only)], &Options::default());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("other.example")
    );
}

/// Several scripts watching the proxy all fail when it does; keepalived
/// adds up their weights (one without a weight means FAULT), so the
/// loss does not depend on which is tracked last.
#[test]
fn several_proxy_track_scripts_add_up_whatever_their_order() {
    let scripts = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 20\n}\nvrrp_script chk_pid {\n  script \"pidof haproxy\"\n  weight 30\n}\nvrrp_script chk_fault {\n  script \"pgrep haproxy\"\n}\n";
    let instance = |tracked: &[&str]| {
        format!(
            "{scripts}vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {{\n    198.18.0.100\n  }}\n  track_script {{\n{}  }}\n}}\n",
            tracked.iter().map(|t| format!("    {t}\n")).collect::<String>()
        )
    };
    let loss = |tracked: &[&str]| {
        ok(&[("k.conf", &instance(tracked))], &Options::default())
            .config
            .vrrp[0]
            .track_dataplane
    };
    assert_eq!(loss(&["chk_haproxy", "chk_pid"]), 50);
    assert_eq!(loss(&["chk_pid", "chk_haproxy"]), 50);
    // A weight on the track_script line overrides the script's.
    assert_eq!(loss(&["chk_haproxy weight -5", "chk_pid"]), 35);
    // FAULT (no weight) takes all of it, in either order.
    assert_eq!(loss(&["chk_fault", "chk_haproxy"]), 254);
    assert_eq!(loss(&["chk_haproxy", "chk_fault"]), 254);
    // Large weights saturate at 254.
    let big = instance(&["chk_haproxy weight 200", "chk_pid weight 200"]);
    let imported = ok(&[("k.conf", &big)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 254);
    // The comment names every script.
    let imported = ok(
        &[("k.conf", &instance(&["chk_haproxy", "chk_pid"]))],
        &Options::default(),
    );
    assert!(
        imported.text.contains("track_script chk_haproxy:")
            && imported.text.contains("track_script chk_pid:"),
        "{}",
        imported.text
    );
}

/// IPVS's rr, lc and dh schedulers ignore weights (but 0): the servers
/// had equal shares, which lbd's weighted Maglev keeps only with equal
/// weights; sh and mh hash the source, which is client persistence.
#[test]
fn schedulers_that_ignore_weights_give_equal_weights() {
    let text = |algo: &str| {
        format!("virtual_server 198.18.0.100 80 {{\n  lb_algo {algo}\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 1\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 3\n  }}\n  real_server 198.18.0.13 80 {{\n    weight 0\n  }}\n}}\n")
    };
    for algo in ["rr", "lc", "dh"] {
        let imported = ok(&[("k.conf", &text(algo))], &on_eth0());
        let shares: Vec<u32> = weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect();
        assert_eq!(shares[0], shares[1], "{algo}: {shares:?}");
        assert!(shares[0] > 0, "{algo}: {shares:?}");
        // Weight 0 still takes nothing.
        assert_eq!(shares[2], 0, "{algo}: {shares:?}");
        assert!(
            has_note(
                &imported,
                &format!("k.conf:2: lb_algo {algo}: IPVS gives every server of weight above 0 an equal share")
            ),
            "{:#?}",
            imported.notes
        );
    }
    // Weighted schedulers keep the weights.
    let imported = ok(&[("k.conf", &text("wrr"))], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect::<Vec<_>>(),
        [100, 300, 0]
    );
    for algo in ["sh", "mh"] {
        let imported = ok(&[("k.conf", &text(algo))], &on_eth0());
        assert!(
            has_note(
                &imported,
                &format!("k.conf:2: lb_algo {algo}: client persistence (source stickiness) is not carried over")
            ),
            "{:#?}",
            imported.notes
        );
    }
}

/// A virtual_ipaddress of a subnet prefix is added as a host address by
/// lbd: said even when no other word follows it.
#[test]
fn a_virtual_ipaddress_prefix_lbd_drops_is_noted() {
    let text = |entry: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {{\n    {entry}\n  }}\n}}\n")
    };
    for entry in [
        "198.18.0.100/24",
        "2001:2::100/64",
        "198.18.0.100/24 dev eth0",
    ] {
        let imported = ok(&[("k.conf", &text(entry))], &Options::default());
        assert!(
            has_note(
                &imported,
                &format!("k.conf:5: WARNING: {entry}: lbd adds the address as /")
            ),
            "{entry}: {:#?}",
            imported.notes
        );
    }
    // The connected route keepalived's prefix installed is named.
    let imported = ok(&[("k.conf", &text("198.18.0.100/24"))], &Options::default());
    assert!(
        has_note(&imported, "connected route to 198.18.0.0/24 on eth0"),
        "{:#?}",
        imported.notes
    );
    for entry in ["198.18.0.100", "198.18.0.100/32", "2001:2::100/128"] {
        let imported = ok(&[("k.conf", &text(entry))], &Options::default());
        assert!(
            !has_note(&imported, "lbd adds the address as /32"),
            "{entry}: {:#?}",
            imported.notes
        );
    }
}

/// A VRRP instance moving 198.18.0.100 and .101, for the IPVS tests below.
const INSTANCE: &str = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.100\n    198.18.0.101\n  }\n}\n";

#[test]
fn an_include_inside_a_virtual_server_is_read_where_it_stands() {
    let main = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  include /etc/keepalived/real_servers/*.conf\n}}\n");
    let web =
        "real_server 198.18.0.11 80 {\n  weight 2\n  TCP_CHECK {\n    connect_timeout 3\n  }\n}\n";
    let more =
        "real_server 198.18.0.12 80 {\n  weight 1\n  include /etc/keepalived/checks/tcp.conf\n}\n";
    let check = "TCP_CHECK {\n  connect_timeout 2\n}\n";
    let files = [
        ("keepalived.conf", main.as_str()),
        ("real_servers/web.conf", web),
        ("real_servers/more.conf", more),
        ("checks/tcp.conf", check),
    ];
    let imported = ok(&files, &Options::default());
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 200), (ip("198.18.0.12"), 100)]
    );
    // Each value names its own file; the checker two includes down too.
    assert!(
        imported
            .text
            .contains("# real_servers/web.conf:1 (real_server 198.18.0.11 80)"),
        "{}",
        imported.text
    );
    assert_eq!(
        vip.backends[1].health.as_ref().map(|h| h.timeout),
        Some(Duration::from_secs(2))
    );
    assert!(imported
        .text
        .contains("checks/tcp.conf:2 (connect_timeout 2)"));
    // Read in place, not again on their own.
    assert!(!has_note(
        &imported,
        "not carried over (lbd has no equivalent)"
    ));
    assert!(!has_note(&imported, "has no backends"));
    // An error in an included file names it and its line.
    let broken = web.replace("connect_timeout 3", "connect_timeout soon");
    assert_eq!(
        refused(
            &[
                ("keepalived.conf", main.as_str()),
                ("real_servers/web.conf", &broken)
            ],
            &Options::default()
        ),
        "real_servers/web.conf:4: connect_timeout soon: not a number of seconds"
    );
    // Not given: refused at the include, naming what to pass.
    assert_eq!(
        refused(&[("keepalived.conf", main.as_str())], &Options::default()),
        "keepalived.conf:11: include /etc/keepalived/real_servers/*.conf: inside virtual_server 198.18.0.100 80 (line 9), and no file given is the one it names: the block's contents are unknown, so it cannot be imported faithfully; pass the included file too (as real_servers/*.conf, under its directory's name)"
    );
    // A file including itself (through a wildcard) ends.
    let looping = format!("{web}include /etc/keepalived/real_servers/*.conf\n");
    let imported = ok(
        &[
            ("keepalived.conf", main.as_str()),
            ("real_servers/web.conf", &looping),
        ],
        &Options::default(),
    );
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 200)]
    );
}

#[test]
fn a_virtual_server_group_gives_each_of_its_addresses_the_real_servers() {
    let text = format!("{INSTANCE}virtual_server group web {{\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 1\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 3\n  }}\n}}\nvirtual_server_group web {{\n  198.18.0.100-101 80\n  198.18.0.100 443\n  fwmark 7\n}}\n");
    let imported = ok(&[("keepalived.conf", &text)], &Options::default());
    let vips: Vec<_> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, v.port, weights(v)))
        .collect();
    let backends = vec![(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 300)];
    assert_eq!(
        vips,
        [
            (ip("198.18.0.100"), 80, backends.clone()),
            (ip("198.18.0.101"), 80, backends.clone()),
            (ip("198.18.0.100"), 443, backends),
        ]
    );
    assert!(imported
        .text
        .contains("keepalived.conf:19 (198.18.0.100-101 80 in virtual_server_group web)"));
    assert!(has_note(
        &imported,
        "keepalived.conf:21: fwmark 7 (virtual_server_group web): IPVS took the packets a firewall rule marked"
    ));
    // A group of no file given is refused at the virtual_server.
    let alone = format!(
        "{INSTANCE}virtual_server group web {{\n  real_server 198.18.0.11 80 {{\n  }}\n}}\n"
    );
    assert_eq!(
        refused(&[("keepalived.conf", &alone)], &Options::default()),
        "keepalived.conf:9: virtual_server group web: no virtual_server_group web in the files given (pass the file that defines it too)"
    );
    let bad = text.replace("198.18.0.100-101 80", "198.18.0.100-99 80");
    assert!(refused(&[("keepalived.conf", &bad)], &Options::default())
        .starts_with("keepalived.conf:19: 198.18.0.100-99 80 (virtual_server_group web): \"198.18.0.100-99\" is not an address"));
}

#[test]
fn a_fwmark_virtual_server_keeps_its_real_servers_for_a_vip_argument() {
    let text = format!("{INSTANCE}virtual_server fwmark 5 {{\n  lb_kind DR\n  protocol TCP\n  real_server 198.18.0.11 80 {{\n    weight 2\n  }}\n  real_server 198.18.0.12 80 {{\n  }}\n}}\n");
    let options = Options {
        vips: vec![vip("198.18.0.101:80/tcp")],
        ..Options::default()
    };
    let imported = ok(&[("keepalived.conf", &text)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!((vip.address, vip.port), (ip("198.18.0.101"), 80));
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 200), (ip("198.18.0.12"), 100)]
    );
    assert!(has_note(
        &imported,
        "keepalived.conf:9: virtual_server fwmark 5: IPVS took the packets a firewall rule marked, whatever their address; an lbd VIP is an address and a port: pass --vip ADDRESS:PORT/PROTOCOL"
    ));
    // Without it, the advice the note gives.
    assert_eq!(
        refused(&[("keepalived.conf", &text)], &Options::default()),
        "keepalived.conf:9: virtual_server fwmark 5 names no address or port to serve on: pass --vip ADDRESS:PORT/PROTOCOL (one per such service, in file order)"
    );
}

#[test]
fn lb_algo_fo_keeps_the_highest_weight_and_warns_the_order_is_lost() {
    let text = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_algo fo\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 5\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 10\n  }}\n  real_server 198.18.0.13 80 {{\n    weight 10\n  }}\n  real_server 198.18.0.14 80 {{\n  }}\n}}\n");
    let imported = ok(&[("keepalived.conf", &text)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 1000),
            (ip("198.18.0.14"), 0)
        ]
    );
    // IPVS picks one server; of those tied at the top weight, the one at
    // the head of its list: the last keepalived gave it.
    assert!(has_note(&imported, "keepalived.conf:10: WARNING: lb_algo fo: IPVS sent every connection to the available real_server of highest weight and failed over to the next when it went down; lbd has no failover order: 198.18.0.13 (weight 10, the last of 2 tied, as IPVS picked the one given it last) takes all new flows"), "{:#?}", imported.notes);
    let ovf = text.replace("lb_algo fo", "lvs_sched ovf");
    let imported = ok(&[("keepalived.conf", &ovf)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 1000),
            (ip("198.18.0.14"), 0)
        ]
    );
    assert!(has_note(
        &imported,
        "until its active connections passed its weight, then overflowed to the next"
    ));
    // Without a tie, the highest weight wherever it stands.
    let untied = text.replacen("weight 10", "weight 20", 1);
    let imported = ok(&[("keepalived.conf", &untied)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0])[1],
        (ip("198.18.0.12"), 2000)
    );
    assert!(
        has_note(
            &imported,
            "lbd has no failover order: 198.18.0.12 (weight 20) takes all new flows"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn a_positive_track_script_weight_is_warned_of_with_both_priorities() {
    let text = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 2\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  track_script {\n    chk_haproxy\n  }\n  priority 101\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 2);
    assert!(has_note(&imported, "k.conf:9: WARNING: track_script chk_haproxy weight +2 (k.conf:9): keepalived added a positive weight to the priority while the proxy check succeeded (priority 103 while it ran, 101 when it failed); lbd takes it off while its data plane is down instead (priority 101 while it runs, 99 when it is down)"), "{:#?}", imported.notes);
    // A negative one means what lbd does: nothing to warn of.
    let negative = text.replace("weight 2", "weight -2");
    let imported = ok(&[("k.conf", &negative)], &Options::default());
    assert!(!has_note(&imported, "keepalived added a positive weight"));
}

/// keepalived's own default forwarding method is NAT (check_parser.c:
/// "no forwarding method set, setting default NAT"): the backends do not
/// hold the VIP, so dsr-l2 (guessed from the ports, as for a proxy) left
/// them dropping its packets.
#[test]
fn a_virtual_server_without_lb_kind_is_ipvs_nat() {
    let text = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\nvirtual_server 198.18.0.100 80 {\n  delay_loop 5\n  protocol TCP\n  real_server 198.18.0.11 80 {\n    TCP_CHECK {\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &with_nat());
    assert_eq!(imported.config.vips[0].forwarding, Mode::Nat);
    assert!(
        has_note(
            &imported,
            "k.conf:8: WARNING: IPVS NAT rewrites only the destination"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(!has_note(&imported, "proxied connections"));
    assert!(imported
        .text
        .contains("no lb_kind/lvs_method: keepalived's default NAT"));
    // Without a NAT address: refused, naming keepalived's default.
    assert!(refused(&[("k.conf", text)], &on_eth0())
        .contains("(k.conf:8 (no lb_kind/lvs_method: keepalived's default NAT))"));
    // A real_server's own DR makes the service DR; another real_server
    // left to keepalived's default NAT is refused at its line.
    let own = text.replace("    TCP_CHECK", "    lvs_method DR\n    TCP_CHECK");
    let imported = ok(&[("k.conf", &own)], &on_eth0());
    assert_eq!(imported.config.vips[0].forwarding, Mode::DsrL2);
    let mixed = own.replace(
        "  real_server 198.18.0.11 80 {",
        "  real_server 198.18.0.12 80 {\n  }\n  real_server 198.18.0.11 80 {",
    );
    assert!(
        refused(&[("k.conf", &mixed)], &with_nat()).starts_with(
            "k.conf:11: real_server 198.18.0.12 names no lvs_method and its virtual_server none"
        ),
        "{}",
        refused(&[("k.conf", &mixed)], &with_nat())
    );
}

/// keepalived takes `virtualhost`, `connect_timeout`, `delay_loop`,
/// `retry` and `delay_before_retry` on the virtual_server and on each
/// real_server for their checkers, the lower level winning.
#[test]
fn checker_settings_of_the_virtual_and_real_server_reach_the_check() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  virtualhost app.example\n  retry 3\n  connect_timeout 2\n  delay_before_retry 1\n  real_server 198.18.0.11 80 {\n    delay_loop 4\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.host.as_deref(), Some("app.example"));
    assert_eq!(health.fall, 4);
    assert_eq!(health.interval, Duration::from_secs(4));
    assert_eq!(health.timeout, Duration::from_secs(2));
    assert_eq!(health.fast_interval, Duration::from_secs(1));
    let written = &imported.text;
    for expected in [
        "k.conf:4 (retry 3, plus the first failure)",
        "k.conf:8 (delay_loop 4)",
        "k.conf:5 (connect_timeout 2)",
        "k.conf:3 (virtualhost app.example)",
    ] {
        assert!(written.contains(expected), "no {expected:?} in\n{written}");
    }
    for wrong in [
        "retry: keepalived's default",
        "delay_loop: keepalived's default",
        "connect_timeout: keepalived's default",
    ] {
        assert!(!written.contains(wrong), "{wrong:?} in\n{written}");
    }
    assert!(
        !has_note(&imported, "not carried over"),
        "{:#?}",
        imported.notes
    );
    // The checker's own over the real_server's over the virtual_server's.
    let own = text.replace(
        "    HTTP_GET {\n",
        "    retry 0\n    HTTP_GET {\n      retry 5\n      virtualhost own.example\n",
    );
    let health = ok(&[("k.conf", &own)], &on_eth0()).config.vips[0]
        .health
        .clone();
    assert_eq!(
        (health.fall, health.host.as_deref()),
        (6, Some("own.example"))
    );
    // What lbd has no equivalent of is said.
    let warmup = text.replace("  retry 3\n", "  warmup 10\n  alpha\n");
    let imported = ok(&[("k.conf", &warmup)], &on_eth0());
    assert!(has_note(
        &imported,
        "k.conf:4: warmup 10: keepalived delayed"
    ));
    assert!(has_note(&imported, "k.conf:5: alpha: keepalived started"));
}

/// A check timeout above the interval lbd cannot keep is said, not only
/// commented.
#[test]
fn a_check_timeout_capped_to_the_interval_is_noted() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  delay_loop 2\n  real_server 198.18.0.11 80 {\n    TCP_CHECK {\n      connect_timeout 5\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.timeout,
        Duration::from_secs(2)
    );
    assert!(
        has_note(
            &imported,
            "k.conf:6: a check timeout of 5000 ms is longer than the interval"
        ),
        "{:#?}",
        imported.notes
    );
}

/// A top-level include of files not given may hold every service: a
/// WARNING, as nginx's.
#[test]
fn a_keepalived_include_not_followed_is_a_warning() {
    let text = format!("include /etc/keepalived/conf.d/*.conf\n{INSTANCE}");
    let imported = ok(&[("k.conf", &text)], &on_eth0());
    assert!(
        has_note(
            &imported,
            "k.conf:1: WARNING: include /etc/keepalived/conf.d/*.conf: not followed"
        ),
        "{:#?}",
        imported.notes
    );
}

/// Imports `files` as the keepalived of config id `config_id`.
fn as_node(files: &[(&str, &str)], config_id: Option<&str>) -> Result<Imported, ImportError> {
    let sources: Vec<Source> = files
        .iter()
        .map(|(name, text)| Source {
            name: (*name).to_owned(),
            text: (*text).to_owned(),
        })
        .collect();
    super::super::import_with_config_id(&sources, &on_eth0(), config_id)
}

/// One keepalived.conf for both nodes: `@ID` lines apply to the node of
/// that config id only, `@^ID` to the others; without an id they are
/// refused at their line, never dropped.
#[test]
fn conditional_lines_follow_the_config_id() {
    let text = "vrrp_instance V {\n  interface eth0\n  virtual_router_id 5\n  @a priority 150\n  @b priority 90\n  @^a nopreempt\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\n";
    let a = as_node(&[("k.conf", text)], Some("a")).expect("imports as a");
    assert_eq!(
        (a.config.vrrp[0].priority, a.config.vrrp[0].preempt),
        (150, true)
    );
    assert!(a.text.contains("k.conf:4 (priority 150)"), "{}", a.text);
    let b = as_node(&[("k.conf", text)], Some("b")).expect("imports as b");
    assert_eq!(
        (b.config.vrrp[0].priority, b.config.vrrp[0].preempt),
        (90, false)
    );
    let err = as_node(&[("k.conf", text)], None)
        .expect_err("refused")
        .to_string();
    assert!(
        err.starts_with("k.conf:4: \"@a priority 150\": a conditional line"),
        "{err}"
    );
    assert_eq!(refused(&[("k.conf", text)], &on_eth0()), err);
}

/// "Heartbeat on the private NIC, VIP on the public one": the address's
/// `dev` differs from the instance's `interface`. lbd serves VIPs and
/// adverts on one interface, so without --interface this is refused at
/// the address (taking the advert interface put the VIP on the wrong
/// NIC); with --interface a differing dev is a WARNING.
#[test]
fn a_virtual_ipaddress_on_another_dev_than_the_adverts_is_refused() {
    let text = "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 51\n    priority 150\n    unicast_src_ip 10.0.0.2\n    unicast_peer { 10.0.0.3 }\n    virtual_ipaddress {\n        203.0.113.10/24 dev eth1 label eth1:vip\n    }\n    track_interface { eth1 weight -50 }\n}\nvirtual_server 203.0.113.10 80 {\n    real_server 10.0.1.11 80 { }\n}\n";
    let options = Options {
        nat_source: vec![ip("10.0.0.50")],
        ..Options::default()
    };
    let error = refused(&[("k.conf", text)], &options);
    assert!(
        error.starts_with("k.conf:8: ")
            && error.contains("dev eth1")
            && error.contains("--interface eth1"),
        "{error}"
    );
    let moved = Options {
        interface: Some("eth1".to_owned()),
        ..options.clone()
    };
    let imported = ok(&[("k.conf", text)], &moved);
    assert_eq!(imported.config.interface, "eth1");
    // The /24's connected route keepalived installed: named.
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:8: WARNING:") && n.contains("203.0.113.0/24")),
        "{:#?}",
        imported.notes
    );
    let elsewhere = Options {
        interface: Some("eth2".to_owned()),
        ..options
    };
    let imported = ok(&[("k.conf", text)], &elsewhere);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:8: WARNING:") && n.contains("dev eth1")),
        "{:#?}",
        imported.notes
    );
}

/// keepalived clears nopreempt with priority 255 or `state MASTER`, and
/// preempt_delay with `state MASTER` or nopreempt: the import does the
/// same (carried over as written, node 1 of a copied pair never took
/// its VIP back).
#[test]
fn nopreempt_and_preempt_delay_follow_keepalived_reconciliation() {
    let text = |body: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 5\n{body}  virtual_ipaddress {{ 198.18.0.100 }}\n}}\n")
    };
    let vrrp = |body: &str| {
        let imported = ok(&[("k.conf", &text(body))], &Options::default());
        let vrrp = imported.config.vrrp[0].clone();
        (vrrp.preempt, vrrp.preempt_delay, imported)
    };
    let (preempt, delay, imported) =
        vrrp("  state MASTER\n  priority 150\n  nopreempt\n  preempt_delay 30\n");
    assert_eq!(
        (preempt, delay),
        (true, Duration::ZERO),
        "{}",
        imported.text
    );
    assert!(
        has_note(
            &imported,
            "k.conf:6: nopreempt: keepalived clears it with state MASTER"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(
        has_note(
            &imported,
            "k.conf:7: preempt_delay 30: keepalived clears it with state MASTER"
        ),
        "{:#?}",
        imported.notes
    );
    let (preempt, _, imported) = vrrp("  state BACKUP\n  priority 255\n  nopreempt\n");
    assert!(preempt, "{}", imported.text);
    assert!(has_note(
        &imported,
        "nopreempt: keepalived clears it with priority 255"
    ));
    let (preempt, delay, imported) =
        vrrp("  state BACKUP\n  priority 100\n  nopreempt\n  preempt_delay 30\n");
    assert_eq!(
        (preempt, delay),
        (false, Duration::ZERO),
        "{}",
        imported.text
    );
    assert!(has_note(
        &imported,
        "preempt_delay 30: keepalived clears it with nopreempt"
    ));
    let (preempt, delay, _) = vrrp("  state BACKUP\n  preempt_delay 30\n");
    assert_eq!((preempt, delay), (true, Duration::from_secs(30)));
}

/// keepalived reads the files its main file's includes name, and no
/// other: a file given that none names (`b.conf.bak` beside
/// `include conf.d/*.conf`) is refused, naming it.
#[test]
fn a_file_no_include_of_the_main_file_names_is_refused() {
    let main = "global_defs {\n  router_id a\n}\ninclude /etc/keepalived/conf.d/*.conf\n";
    let a = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  real_server 198.18.0.11 80 {{ }}\n}}\n");
    let b = "virtual_server 198.18.0.101 80 {\n  lb_kind DR\n  real_server 198.18.0.12 80 { }\n}\n";
    let error = refused(
        &[
            ("keepalived.conf", main),
            ("conf.d/a.conf", &a),
            ("conf.d/b.conf.bak", b),
        ],
        &on_eth0(),
    );
    assert!(
        error.starts_with("conf.d/b.conf.bak: not read by keepalived"),
        "{error}"
    );
    let imported = ok(
        &[("keepalived.conf", main), ("conf.d/a.conf", &a)],
        &on_eth0(),
    );
    assert_eq!(imported.config.vips.len(), 1);
}

/// IPVS's sorry_server took the clients when every real_server was down;
/// lbd has no such server: a backup server, with the backup WARNING.
#[test]
fn a_sorry_server_is_a_backup_with_its_warning() {
    let text = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  sorry_server 198.18.0.99 80\n  real_server 198.18.0.11 80 {{ TCP_CHECK {{ connect_timeout 3 }} }}\n}}\n");
    let imported = ok(&[("k.conf", &text)], &on_eth0());
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("k.conf:11: WARNING:")
                && n.contains("sorry_server 198.18.0.99")
                && n.contains("drops new flows")),
        "{:#?}",
        imported.notes
    );
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.99"), 0)]
    );
}

/// keepalived's parameter definitions (`$NAME=VALUE`, used as `$NAME` or
/// `${NAME}`, keepalived.conf(5) "Parameter substitution") are expanded
/// where they are used, as keepalived does, across the files of one
/// setup; read literally they wrote `interface = "$IFACE"`.
#[test]
fn parameter_definitions_are_expanded_where_used() {
    let main = "$IFACE=eth1\n$VIP=198.18.0.100   # the service address\n$RS_PORT = 8080\nvrrp_instance VI_1 {\n    interface $IFACE\n    virtual_router_id 51\n    priority 100\n    virtual_ipaddress {\n        ${VIP}/32 dev $IFACE\n    }\n}\nvirtual_server $VIP 80 {\n    lb_kind NAT\n    include /etc/keepalived/rs.conf\n}\n";
    let rs = "real_server 198.18.0.11 ${RS_PORT} {\n    TCP_CHECK {\n        connect_port $RS_PORT\n    }\n}\n";
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(&[("k.conf", main), ("rs.conf", rs)], &options);
    assert_eq!(imported.config.interface, "eth1", "{}", imported.text);
    // (With the NAT address, which moves with the NAT VIP.)
    assert_eq!(
        imported.config.vrrp[0].addresses,
        [ip("198.18.0.100"), ip("198.18.0.50")]
    );
    let vip = &imported.config.vips[0];
    assert_eq!(vip.address, ip("198.18.0.100"));
    assert_eq!(vip.backends[0].port, Some(8080));
    assert!(!has_note(&imported, "$IFACE"), "{:#?}", imported.notes);
    // Provenance names the line, its definitions expanded.
    assert!(
        imported.text.contains("k.conf:5 (interface eth1)"),
        "{}",
        imported.text
    );
    // `$` that names no definition stays as written (a script's `$(...)`).
    let script = format!(
        "vrrp_script chk {{\n    script \"/bin/sh -c 'kill -0 $(cat /run/haproxy.pid)'\"\n}}\n{main}"
    );
    ok(&[("k.conf", &script), ("rs.conf", rs)], &options);
}

/// What the import cannot expand is refused at its line, never read
/// literally: a multi-line definition (ending in `\`) and `~SEQ`.
#[test]
fn multi_line_definitions_and_sequences_are_refused_at_their_line() {
    let multi = format!("$RS=real_server 198.18.0.11 80 {{ \\\n  weight 1 \\\n}}\n{INSTANCE}");
    let err = refused(&[("k.conf", &multi)], &on_eth0());
    assert!(
        err.starts_with("k.conf:1: $RS: a multi-line definition"),
        "{err}"
    );
    let seq = format!("{INSTANCE}~SEQ(N, 11, 13) real_server 198.18.0.$N 80 {{\n}}\n");
    let lines = INSTANCE.lines().count();
    let err = refused(&[("k.conf", &seq)], &on_eth0());
    assert!(
        err.starts_with(&format!("k.conf:{}: ~SEQ(N, 11, 13)", lines + 1)),
        "{err}"
    );
}
