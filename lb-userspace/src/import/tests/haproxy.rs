//! HAProxy, alone and with keepalived.

use std::time::Duration;

use super::*;
use crate::config::{CheckType, Protocol};
use lb_common::Mode;

/// The keepalived + HAProxy pair of the usual guide: node A's files.
pub(super) const HAPROXY: &str = "global
    log /dev/log local0
    maxconn 4096
    daemon

defaults
    mode http
    option httplog
    timeout connect 1s
    timeout client 50s

frontend http_front
    bind *:80
    default_backend web_servers

backend web_servers
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    server web1 198.18.0.11:80 check inter 2s rise 2 fall 3
    server web2 198.18.0.12:80 check inter 2s rise 2 fall 3 weight 2
    server web3 198.18.0.13:80 check inter 500ms fall 2 backup
";

pub(super) const KEEPALIVED: &str = "! Configuration File for keepalived
global_defs {
   router_id LB1
}

vrrp_script chk_haproxy {
    script \"killall -0 haproxy\"
    interval 2
    weight 2
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 101
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        198.18.0.100/24 dev eth0
    }
    track_script {
        chk_haproxy
    }
}
";

#[test]
fn the_guide_pair_becomes_a_vip_with_http_checks_and_a_vrrp_instance() {
    let imported = ok(
        &[("haproxy.cfg", HAPROXY), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    let config = &imported.config;
    assert_eq!(config.interface, "eth0");
    assert_eq!(config.vips.len(), 1);
    let vip = &config.vips[0];
    assert_eq!(
        (vip.address, vip.port, vip.protocol),
        (ip("198.18.0.100"), 80, Protocol::Tcp)
    );
    assert_eq!(vip.forwarding, Mode::DsrL2);
    assert_eq!(vip.health.check, CheckType::Http);
    assert_eq!(vip.health.path, "/health");
    assert_eq!(vip.health.expect_status, 200);
    assert_eq!(vip.health.interval, Duration::from_secs(2));
    assert_eq!(vip.health.fast_interval, Duration::from_secs(2));
    assert_eq!(vip.health.timeout, Duration::from_secs(1));
    assert_eq!((vip.health.rise, vip.health.fall), (2, 3));
    // Weights 1 and 2 keep their ratio; the backup takes nothing.
    assert_eq!(
        weights(vip),
        [
            (ip("198.18.0.11"), 100),
            (ip("198.18.0.12"), 200),
            (ip("198.18.0.13"), 0)
        ]
    );
    assert!(vip
        .backends
        .iter()
        .all(|b| b.mac.is_none() && b.port.is_none()));
    // The backup's own checks differ: its own table.
    let backup = vip.backends[2].health.as_ref().expect("own health");
    assert_eq!(
        (backup.interval, backup.timeout, backup.fall),
        (Duration::from_millis(500), Duration::from_millis(500), 2)
    );
    assert_eq!(config.vrrp.len(), 1);
    let vrrp = &config.vrrp[0];
    assert_eq!((vrrp.vrid, vrrp.priority), (51, 101));
    assert_eq!(vrrp.advert_interval, Duration::from_secs(1));
    assert_eq!(vrrp.addresses, [ip("198.18.0.100")]);
    assert_eq!(vrrp.track_dataplane, 2);
    let text = &imported.text;
    for expected in [
        "address = \"198.18.0.100\"  # keepalived.conf:23 (virtual_ipaddress 198.18.0.100/24 dev eth0) + haproxy.cfg:13 (bind *:80)",
        "interval_ms = 2000  ",
        "# haproxy.cfg:20 (inter 2s)",
        "# NOTE haproxy.cfg:7: WARNING: frontend http_front is in mode http",
        "# NOTE haproxy.cfg:17: balance roundrobin: lbd balances with Maglev",
        "# NOTE haproxy.cfg:22: a backup server",
        "# NOTE keepalived.conf:13: state MASTER",
        "timeout client 50s",
        "vrid = 51",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    assert!(imported.notes.iter().any(|n| n.contains("authentication")));
}

#[test]
fn a_tcp_listen_on_other_ports_needs_nat_and_its_address_moves_with_the_vip() {
    let haproxy = "listen pgbouncer
    bind *:5432
    mode tcp
    balance leastconn
    option pgsql-check user postgres
    default-server inter 1s fall 2 rise 1
    server pgb1 198.19.2.10:6432 check
    server pgb2 198.19.2.11:6432 check weight 50
    server pgb3 198.19.2.12:6432 check disabled
";
    let error = refused(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(
        error,
        "haproxy.cfg:1: listen pgbouncer needs lbd's NAT mode (backends listen on other ports than the VIP's 5432), which needs a NAT address: pass --nat-source ADDRESS (an address of this node's network, moved with the VIPs)"
    );
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &options,
    );
    let vip = &imported.config.vips[0];
    assert_eq!((vip.port, vip.forwarding), (5432, Mode::Nat));
    // HAProxy's pgsql-check speaks the protocol: so does lbd's.
    assert_eq!(vip.health.check, CheckType::Pgsql);
    assert_eq!(vip.health.user.as_deref(), Some("postgres"));
    assert_eq!(
        (vip.health.interval, vip.health.rise, vip.health.fall),
        (Duration::from_secs(1), 1, 2)
    );
    assert_eq!(
        vip.backends.iter().map(|b| b.port).collect::<Vec<_>>(),
        [Some(6432); 3]
    );
    assert_eq!(
        weights(vip).iter().map(|w| w.1).collect::<Vec<_>>(),
        [100, 5000, 0]
    );
    assert_eq!(imported.config.nat.source_ipv4, Some(ip("198.18.0.50")));
    assert_eq!(
        imported.config.vrrp[0].addresses,
        [ip("198.18.0.100"), ip("198.18.0.50")]
    );
    assert!(
        imported.notes.iter().any(|n| n
            .contains("option pgsql-check user postgres: lbd's pgsql check sends a StartupMessage as postgres")),
        "{:?}",
        imported.notes
    );
    // Forced to dsr-l2, the port difference is refused at the server.
    let forced = Options {
        forwarding: Some(Mode::DsrL2),
        ..Options::default()
    };
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)], &forced),
        "haproxy.cfg:7: pgb1 listens on port 6432, the VIP on 5432: lbd's dsr-l2 mode keeps the port; use --forwarding nat (with --nat-source)"
    );
}

/// HAProxy's idle timeouts carry over: the longer of `timeout client`
/// and `timeout server` (or `timeout tunnel`) becomes the node's
/// `tcp_idle_timeout_s` and, for a NAT VIP, `[nat]
/// tcp_established_timeout_s` with a margin, each said in a NOTE.
#[test]
fn haproxy_idle_timeouts_become_lbds_for_dsr_and_nat() {
    let haproxy = "defaults
    mode tcp
    timeout connect 5s
    timeout client 8h
    timeout server 1h

listen pg
    bind *:5432
    server pgb1 198.19.2.10:6432 check
";
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..Options::default()
    };
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &options,
    );
    let config = &imported.config;
    assert_eq!(config.vips[0].forwarding, Mode::Nat);
    assert_eq!(config.tcp_idle_timeout, Duration::from_secs(28_800));
    assert_eq!(
        config.nat.timeouts.tcp_established,
        Duration::from_secs(28_800 + 240)
    );
    let text = &imported.text;
    for expected in [
        "tcp_idle_timeout_s = 28800  # haproxy.cfg:4 (timeout client 8h)",
        "tcp_established_timeout_s = 29040  # haproxy.cfg:4 (timeout client 8h) + 240 s",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    let notes = &imported.notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("a NAT VIP's translations are not held by tcp_idle_timeout_s")),
        "{notes:?}"
    );
    assert!(
        !notes
            .iter()
            .any(|n| n.contains("not carried over") && n.contains("timeout client")),
        "{notes:?}"
    );
    // A backend's timeout tunnel wins over client and server (DSR here).
    let haproxy = "defaults\n    mode tcp\n    timeout client 30m\n\
        frontend f\n    bind *:5432\n    default_backend b\n\
        backend b\n    timeout tunnel 2h\n    server s1 198.18.0.11:5432 check\n";
    let imported = ok(
        &[("haproxy.cfg", haproxy), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(imported.config.vips[0].forwarding, Mode::DsrL2);
    assert_eq!(imported.config.tcp_idle_timeout, Duration::from_secs(7200));
    assert_eq!(
        imported.config.nat.timeouts.tcp_established,
        Duration::from_secs(7440),
        "no NAT VIP: [nat] untouched"
    );
}

/// `option pgsql-check` without `user` names no role for lbd's pgsql
/// check (which needs one): a TCP check, saying why; other protocol
/// checks stay TCP.
#[test]
fn a_pgsql_check_without_a_user_and_other_protocol_checks_stay_tcp() {
    for (option, note) in [
        ("option pgsql-check", "option pgsql-check: names no role lbd's pgsql check can log in as"),
        ("option mysql-check user haproxy", "option mysql-check user haproxy: lbd checks that a TCP connection opens; the protocol is not spoken"),
    ] {
        let haproxy = format!(
            "listen db\n    bind *:5432\n    mode tcp\n    {option}\n    server s1 198.18.0.11:5432 check\n"
        );
        let imported = ok(
            &[("haproxy.cfg", haproxy.as_str()), ("keepalived.conf", KEEPALIVED)],
            &Options::default(),
        );
        let vip = &imported.config.vips[0];
        assert_eq!(vip.health.check, CheckType::Tcp, "{option}");
        assert_eq!(vip.health.user, None);
        assert!(
            imported.notes.iter().any(|n| n.contains(note)),
            "{note:?} in {:?}",
            imported.notes
        );
    }
}

#[test]
fn a_wildcard_bind_without_keepalived_takes_its_address_from_vip() {
    // (The servers speak TLS: lbd cannot terminate it.)
    let haproxy = "frontend f\n  mode tcp\n  bind :443 ssl crt /etc/ssl/x.pem\n  default_backend b\nbackend b\n  server s1 198.18.0.11:443 ssl\n";
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy)], &on_eth0()),
        "haproxy.cfg:3: bind :443 names no address and no keepalived virtual_ipaddress gives one: pass --vip ADDRESS:443/tcp"
    );
    let options = Options {
        vips: vec![vip("198.18.0.100:443/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("haproxy.cfg", haproxy)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!((vip.address, vip.port), (ip("198.18.0.100"), 443));
    // Not checked in HAProxy: not checked by lbd.
    assert_eq!(vip.health.check, CheckType::None);
    assert!(imported.text.contains("HAProxy terminates TLS here"));
    // Without keepalived nor --interface, the interface is asked for.
    let options = Options {
        vips: vec![super::vip("198.18.0.100")],
        ..Options::default()
    };
    assert!(refused(&[("haproxy.cfg", haproxy)], &options).contains("pass --interface NAME"));
    // A --vip no service takes is an error, not silently dropped.
    let options = Options {
        vips: vec![
            super::vip("198.18.0.100:443/tcp"),
            super::vip("198.18.0.101:80/tcp"),
        ],
        ..on_eth0()
    };
    assert_eq!(
        refused(&[("haproxy.cfg", haproxy)], &options),
        "--vip 198.18.0.101:80/tcp: no service of the sources takes it (they all have an address, or none has its port)"
    );
}

#[test]
fn broken_haproxy_input_is_refused_with_file_line_and_reason() {
    let cases = [
        ("  bind *:80\n", "h.cfg:1: \"bind\" is outside any section (global, defaults, frontend, backend, listen)"),
        ("frontend f\n  bind \"*:80\n", "h.cfg:2: unterminated quote: the \" is never closed on this line"),
        ("listen l\n  bind *:80\n  server a web1.example.com:80\n", "h.cfg:3: server a: \"web1.example.com\" is not an IP address (lbd balances to addresses: write the server's)"),
        ("listen l\n  bind *:80\n  server a 198.18.0.11:80 weight 300\n", "h.cfg:3: weight 300: \"300\" is not a weight of 0 to 256"),
        ("listen l\n  bind *:80\n  server a 198.18.0.11:80 check inter soon\n", "h.cfg:3: inter soon: \"soon\" is not a time such as 2s or 500ms"),
        ("frontend f\n  bind *:80\n  default_backend nowhere\n", "h.cfg:3: default_backend nowhere: no backend section of that name"),
        ("listen l\n  bind *:http\n", "h.cfg:2: bind *:http: \"http\" is not a port"),
        ("listen l\n  mode udp\n", "h.cfg:2: unknown mode \"udp\""),
        ("listen l\n  bind *:80\n  server a 198.18.0.11:+1\n", "h.cfg:3: server a: port +1: a port offset has no lbd equivalent; write the port"),
    ];
    let options = Options {
        format: Some(super::super::Format::Haproxy),
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    for (text, expected) in cases {
        assert_eq!(refused(&[("h.cfg", text)], &options), expected, "{text}");
    }
}

#[test]
fn escapes_comments_and_unused_backends() {
    let haproxy = "frontend \"web front\" # comment\n  bind 198.18.0.100:80 # the VIP\n  default_backend b\n  use_backend api if { path_beg /api }\nbackend b\n  server s\\ 1 198.18.0.11 check\nbackend api\n  server a1 198.18.0.21:80\n";
    let imported = ok(&[("h.cfg", haproxy)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!((vip.address, vip.port), (ip("198.18.0.100"), 80));
    assert_eq!(weights(vip), [(ip("198.18.0.11"), 100)]);
    assert!(
        imported.text.contains("server s 1 198.18.0.11 check"),
        "{}",
        imported.text
    );
    assert!(imported
        .notes
        .iter()
        .any(|n| n.starts_with("h.cfg:4: use_backend api")));
    assert!(imported
        .notes
        .iter()
        .any(|n| n.starts_with("h.cfg:7: backend api is no frontend's default_backend")));
}

#[test]
fn an_unbracketed_ipv6_server_is_split_at_its_last_colon() {
    let text = tcp_haproxy("listen pg\n  bind [2001:2::100]:5432\n  server pg1 2001:2::12:6432\n  server pg2 ipv6@2001:2::14:6432\n");
    let imported = ok(&[("h.cfg", &text)], &with_nat());
    let vip = &imported.config.vips[0];
    assert_eq!(vip.forwarding, Mode::Nat);
    assert_eq!(
        vip.backends
            .iter()
            .map(|b| (b.address, b.port))
            .collect::<Vec<_>>(),
        [
            (ip("2001:2::12"), Some(6432)),
            (ip("2001:2::14"), Some(6432))
        ]
    );
    // Without a port HAProxy refuses it too; the message says how to write it.
    let text = tcp_haproxy("listen pg\n  bind [2001:2::100]:5432\n  server pg1 2001:2::12\n");
    assert!(refused(&[("h.cfg", &text)], &with_nat()).starts_with(
        "h.cfg:6: server pg1: \"2001:2::12\": HAProxy reads what follows the last ':' as the port"
    ));
}

#[test]
fn an_ipv6_family_bind_takes_ipv6_addresses() {
    let text = tcp_haproxy("listen tls6\n  bind ipv6@:443\n  server s1 2001:2::51:443 check\n");
    let options = Options {
        vips: vec![vip("2001:2::100")],
        ..on_eth0()
    };
    let imported = ok(&[("h.cfg", &text)], &options);
    assert_eq!(imported.config.vips[0].address, ip("2001:2::100"));
    // `v6only` keeps IPv4 out: an IPv4 --vip is not taken.
    let text = text.replace("ipv6@:443", "udp6@:443 v6only");
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    assert!(refused(&[("h.cfg", &text)], &options).contains("names no address"));
}

#[test]
fn check_settings_after_the_servers_still_apply() {
    let text = tcp_haproxy("backend be\n  server web1 198.18.0.11:80 check\n  option httpchk GET /healthz\n  http-check expect status 204\n  timeout check 500ms\nfrontend fe\n  bind 198.18.0.100:80\n  default_backend be\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(
        (health.path.as_str(), health.expect_status),
        ("/healthz", 204)
    );
    assert_eq!(health.timeout, std::time::Duration::from_millis(500));
}

#[test]
fn an_old_style_httpchk_host_header_is_found_after_its_escapes() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  option httpchk GET /healthz HTTP/1.1\\r\\nHost:\\ app.example.com\n  server w1 198.18.0.11:80 check\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(
        imported.config.vips[0].health.host.as_deref(),
        Some("app.example.com")
    );
    // The comment shows the escapes again: one line of valid TOML.
    assert!(
        imported
            .text
            .contains("HTTP/1.1\\r\\nHost: app.example.com"),
        "{}",
        imported.text
    );
    let bad = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  option httpchk GET /\\xZZ\n");
    assert!(refused(&[("h.cfg", &bad)], &on_eth0()).starts_with("h.cfg:6: \\xZZ: an invalid"));
}

#[test]
fn default_server_notes_reach_the_servers_inheriting_them() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:443\n  default-server send-proxy-v2 maxconn 100 slowstart 10s check\n  server w1 198.18.0.11:443\n  server w2 198.18.0.12:443 send-proxy-v2\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    for needle in [
        "h.cfg:6: WARNING: send-proxy-v2: HAProxy sent this server a PROXY protocol header with the client's address; lbd sends none, so a server that requires one (accept-proxy) refuses every connection through lbd: turn that off on it (in dsr-l2 mode it sees the client's address itself; in nat mode, the NAT address) (default-server, inherited by server w1)",
        "h.cfg:6: maxconn 100: lbd forwards packets and limits no connections (default-server, inherited by server w2)",
        "slowstart 10s: lbd has no slow start",
        "h.cfg:8: WARNING: send-proxy-v2",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    // w2's own send-proxy-v2 is said once, not again as inherited.
    assert!(!has_note(&imported, "WARNING: send-proxy-v2: HAProxy sent this server a PROXY protocol header with the client's address; lbd sends none, so a server that requires one (accept-proxy) refuses every connection through lbd: turn that off on it (in dsr-l2 mode it sees the client's address itself; in nat mode, the NAT address) (default-server, inherited by server w2)"));
}

#[test]
fn a_disabled_proxy_is_not_imported_and_says_so() {
    let text = tcp_haproxy("listen old_pg\n  bind 198.18.0.100:5433\n  disabled\n  server pg1 198.18.0.11:5433 check\nlisten pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert_eq!(imported.config.vips[0].port, 5432);
    assert!(has_note(&imported, "h.cfg:6: listen old_pg is disabled"));
}

#[test]
fn a_stats_only_listen_is_not_imported() {
    let text = tcp_haproxy("listen stats\n  bind 198.18.0.100:8404\n  mode http\n  stats enable\n  stats uri /\nlisten pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert!(has_note(
        &imported,
        "h.cfg:7: listen stats serves HAProxy's statistics page"
    ));
}

#[test]
fn tcp_check_rules_warn_that_the_check_no_longer_selects_servers() {
    // The classic Redis check: only the master passes in HAProxy.
    let text = tcp_haproxy("listen redis\n  bind 198.18.0.100:6379\n  option tcp-check\n  tcp-check connect port 6380\n  tcp-check send PING\\r\\n\n  tcp-check expect string +PONG\n  tcp-check send info\\ replication\\r\\n\n  tcp-check expect string role:master\n  server r1 198.18.0.11:6379 check inter 1s port 9999\n  server r2 198.18.0.12:6379 check inter 1s\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.check, CheckType::Tcp);
    // `tcp-check connect port` is where HAProxy's check connected (over
    // the server's `port`).
    assert_eq!(health.port, Some(6380));
    assert!(imported.config.vips[0]
        .backends
        .iter()
        .all(|b| b.health.is_none()));
    for needle in [
        "h.cfg:8: WARNING: option tcp-check (h.cfg:6) runs tcp-check rules lbd's check cannot: tcp-check send PING\\r\\n (line 8); tcp-check expect string +PONG (line 9); tcp-check send info replication\\r\\n (line 10); tcp-check expect string role:master (line 11).",
        "the check no longer selects which servers are eligible",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    assert!(
        !imported
            .notes
            .iter()
            .any(|n| n.contains("no meaning for an L4 balancer") && n.contains("tcp-check")),
        "{:#?}",
        imported.notes
    );
    assert!(imported
        .text
        .contains("# h.cfg:7 (tcp-check connect port 6380)"));
    // Options of the connection lbd does not make are said; a port that
    // is an expression is not taken.
    let other = text.replace("connect port 6380", "connect port var(check.port) ssl");
    let imported = ok(&[("h.cfg", &other)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.port, Some(9999));
    assert!(has_note(
        &imported,
        "h.cfg:7: WARNING: tcp-check connect port var(check.port) ssl: port var(check.port) is not a port number"
    ));
    assert!(has_note(
        &imported,
        "h.cfg:7: tcp-check connect port var(check.port) ssl: ssl: not carried over"
    ));
    // Unchecked servers: the rules change nothing, listed as such.
    let unchecked = text.replace(" check inter 1s", "");
    let imported = ok(&[("h.cfg", &unchecked)], &on_eth0());
    assert!(!has_note(&imported, "WARNING: option tcp-check"));
    assert!(has_note(
        &imported,
        "tcp-check expect string role:master (line 11)"
    ));
    // `option tcp-check` alone is a connection check, as lbd's.
    let bare = tcp_haproxy("listen redis\n  bind 198.18.0.100:6379\n  option tcp-check\n  server r1 198.18.0.11:6379 check\n");
    let imported = ok(&[("h.cfg", &bare)], &on_eth0());
    assert_eq!(imported.config.vips[0].health.check, CheckType::Tcp);
    assert!(!has_note(&imported, "tcp-check"), "{:#?}", imported.notes);
}

#[test]
fn no_argument_server_keywords_do_not_swallow_the_next_one() {
    for flag in [
        "no-ssl-reuse",
        "ssl-reuse",
        "force-sslv3",
        "force-tlsv10",
        "force-tlsv11",
        "force-tlsv12",
        "force-tlsv13",
        "no-send-proxy-v2-ssl",
        "no-send-proxy-v2-ssl-cn",
        "no-tfo",
        "no-check-send-proxy",
        "renegotiate",
        "no-renegotiate",
    ] {
        let text = tcp_haproxy(&format!(
            "listen web\n  bind 198.18.0.100:443 ssl crt /etc/ssl/web.pem\n  server w1 198.18.0.11:443 ssl {flag} check\n"
        ));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        assert_eq!(
            imported.config.vips[0].health.check,
            CheckType::Tcp,
            "{flag} took `check` as its value"
        );
        assert!(has_note(
            &imported,
            &format!("h.cfg:6: {flag}: not carried over")
        ));
    }
}

#[test]
fn client_persistence_is_said_not_carried_over() {
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  balance source\n  stick-table type ip size 200k expire 30m\n  stick on src\n  server pg1 198.18.0.11:5432\nlisten web\n  bind 198.18.0.100:80\n  stick-table type ip size 1m store conn_rate(10s)\n  server w1 198.18.0.11:80\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    for needle in [
        "h.cfg:6: balance source: client persistence (source stickiness) is not carried over; lbd's Maglev hashing and connection table keep each connection on its backend, not each client",
        "h.cfg:7: stick-table type ip size 200k expire 30m: client persistence",
        "h.cfg:8: stick on src: client persistence",
        // A table of counters only is not persistence.
        "no meaning for an L4 balancer): stick-table type ip size 1m store conn_rate(10s) (line 12)",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    assert!(!has_note(
        &imported,
        "balance source: lbd balances with Maglev"
    ));
}

#[test]
fn bind_options_lbd_does_not_carry_over_are_noted() {
    // /tmp/audit-config/t2 of the audit.
    let text = "frontend web\n    mode tcp\n    bind 198.18.0.100:80 accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6\n    default_backend web\nbackend web\n    server w1 198.18.0.11:80 check\n";
    let imported = ok(&[("h.cfg", text)], &on_eth0());
    assert_eq!(imported.config.vips[0].address, ip("198.18.0.100"));
    for needle in [
        "h.cfg:3: WARNING: bind option accept-proxy: HAProxy read the PROXY protocol header the front sends",
        "h.cfg:3: bind option interface eth1: HAProxy accepted only on that interface",
        "h.cfg:3: bind option mss 1400: HAProxy set the TCP MSS",
        "h.cfg:3: bind option transparent: HAProxy accepted for an address not its own",
        "h.cfg:3: bind option namespace blue: HAProxy listened in that network namespace",
        "h.cfg:3: bind option maxconn 100: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    assert!(!has_note(&imported, "v4v6"), "{:#?}", imported.notes);
    // Options with a value take it (not read as an option of its own).
    let valued = text.replace(
        "accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6",
        "idle-ping 30s cc bbr tcp-ss 1 nbconn 4",
    );
    let imported = ok(&[("h.cfg", &valued)], &on_eth0());
    for needle in [
        "bind option idle-ping 30s: not carried over",
        "bind option cc bbr: not carried over",
        "bind option tcp-ss 1: not carried over",
        "bind option nbconn 4: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    for value in [
        "bind option 30s",
        "bind option bbr",
        "bind option 1:",
        "bind option 4:",
    ] {
        assert!(
            !has_note(&imported, value),
            "{value:?} in {:#?}",
            imported.notes
        );
    }
    // TLS options are said by the one note on `ssl`.
    let tls = text.replace(
        "accept-proxy interface eth1 mss 1400 transparent namespace blue maxconn 100 v4v6",
        "ssl crt /etc/ssl/x.pem alpn h2,http/1.1 default-crt /etc/ssl/y.pem ktls on ech /etc/ech",
    )
    // (Servers of plain TCP behind a TLS bind are refused.)
    .replace("198.18.0.11:80 check", "198.18.0.11:80 ssl check");
    let imported = ok(&[("h.cfg", &tls)], &on_eth0());
    let bind_notes: Vec<&String> = imported
        .notes
        .iter()
        .filter(|n| n.starts_with("h.cfg:3:"))
        .collect();
    assert_eq!(bind_notes.len(), 1, "{bind_notes:#?}");
    assert!(bind_notes[0].contains("HAProxy terminates TLS here"));
}

#[test]
fn http_check_send_keys_lbd_does_not_send_are_noted() {
    let text = tcp_haproxy("backend be\n  option httpchk\n  http-check send meth GET uri /health ver HTTP/1.1 hdr Host app.example hdr X-Token abc body ping comment probe\n  server web1 198.18.0.11:80 check\nfrontend fe\n  bind 198.18.0.100:80\n  default_backend be\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let health = &imported.config.vips[0].health;
    assert_eq!(health.path, "/health");
    assert_eq!(health.host.as_deref(), Some("app.example"));
    for needle in [
        "h.cfg:6: http-check send hdr X-Token abc: not carried over",
        "h.cfg:6: http-check send body ping: not carried over",
    ] {
        assert!(
            has_note(&imported, needle),
            "no {needle:?} in {:#?}",
            imported.notes
        );
    }
    for absent in [
        "send ver",
        "send comment",
        "send meth",
        "send uri",
        "hdr Host",
    ] {
        assert!(
            !has_note(&imported, absent),
            "{absent:?} in {:#?}",
            imported.notes
        );
    }
    let lf = text.replace("uri /health", "uri /health uri-lf /%[date]");
    let imported = ok(&[("h.cfg", &lf)], &on_eth0());
    assert!(has_note(
        &imported,
        "http-check send uri-lf /%[date]: not carried over"
    ));
}

#[test]
fn an_http_check_over_tls_is_imported_as_a_tcp_check_with_a_warning() {
    let checked = |server: &str| {
        // A bind of TLS (passed through) to `ssl` servers, of plaintext to
        // the others: the import refuses the other pairings.
        let tls = if server.split_whitespace().any(|w| w == "ssl") {
            " ssl crt /etc/ssl/web.pem"
        } else {
            ""
        };
        let text = tcp_haproxy(&format!(
            "listen web\n  bind 198.18.0.100:443{tls}\n  option httpchk GET /health\n  server w1 198.18.0.11:443 {server}\n"
        ));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        let tls_warning = imported
            .notes
            .iter()
            .any(|n| n.contains("over TLS") && n.contains("WARNING"));
        (imported.config.vips[0].health.check, tls_warning)
    };
    // `ssl` makes the checks TLS too, as `check-ssl` does.
    assert_eq!(checked("ssl check"), (CheckType::Tcp, true));
    assert_eq!(checked("check check-ssl"), (CheckType::Tcp, true));
    // Unless the check goes elsewhere, or is told not to.
    assert_eq!(checked("ssl check port 8080"), (CheckType::Http, false));
    // `addr` sends HAProxy's check elsewhere in the clear, but lbd checks
    // the server's own port, which speaks TLS.
    assert_eq!(
        checked("ssl check addr 198.18.0.99"),
        (CheckType::Tcp, true)
    );
    assert_eq!(checked("ssl check no-check-ssl"), (CheckType::Http, false));
    assert_eq!(checked("check"), (CheckType::Http, false));
    // With `check-ssl` too, the check is TLS wherever it goes.
    assert_eq!(
        checked("check check-ssl addr 198.18.0.99"),
        (CheckType::Tcp, true)
    );
}

#[test]
fn notes_on_tls_checks_say_what_each_server_gets() {
    // A bind of TLS (passed through) where the servers speak it (`ssl`),
    // of plaintext where they do not: the import refuses the other
    // pairings.
    let imported = |servers: &str, option: &str| {
        let tls = if servers.lines().any(|l| {
            l.trim_start().starts_with("server ") && l.split_whitespace().any(|w| w == "ssl")
        }) {
            " ssl crt /etc/ssl/web.pem"
        } else {
            ""
        };
        let text = tcp_haproxy(&format!(
            "listen web\n  bind 198.18.0.100:443{tls}\n{option}{servers}"
        ));
        ok(&[("h.cfg", &text)], &on_eth0())
    };
    let httpchk = "  option httpchk /health\n";
    // Every HTTP check became TCP: HAProxy's method and statuses are moot.
    let all_tls = imported("  server w1 198.18.0.11:443 ssl check\n", httpchk);
    assert_eq!(all_tls.config.vips[0].health.check, CheckType::Tcp);
    for moot in ["HAProxy checks with OPTIONS", "lbd expects exactly 200"] {
        assert!(
            !has_note(&all_tls, moot),
            "{moot:?} in {:#?}",
            all_tls.notes
        );
    }
    // Some did: the notes name the servers they are about.
    let mixed = imported(
        "  server w1 198.18.0.11:443 ssl check\n  server w2 198.18.0.12:443 ssl check port 8080\n",
        httpchk,
    );
    for needle in [
        "h.cfg:6: HAProxy checks with OPTIONS; lbd's HTTP checks send GET (servers w2; the others' checks are TCP)",
        "lbd expects exactly 200 (set expect_status) (servers w2; the others' checks are TCP)",
    ] {
        assert!(has_note(&mixed, needle), "no {needle:?} in {:#?}", mixed.notes);
    }
    // `no-ssl` on the server's line cancels default-server's `ssl`: no
    // ssl note for it, and its HTTP check stays one.
    let cancelled = imported(
        "  default-server ssl check\n  server w1 198.18.0.11:443 no-ssl\n",
        httpchk,
    );
    assert_eq!(cancelled.config.vips[0].health.check, CheckType::Http);
    assert!(
        !has_note(&cancelled, "ssl: HAProxy speaks TLS"),
        "{:#?}",
        cancelled.notes
    );
    assert!(has_note(
        &cancelled,
        "lbd expects exactly 200 (set expect_status)"
    ));
    // A server's own value replaces default-server's, said once.
    let replaced = imported(
        "  default-server maxconn 100\n  server w1 198.18.0.11:443 maxconn 200\n",
        "",
    );
    assert!(has_note(&replaced, "h.cfg:7: maxconn 200"));
    assert!(!has_note(&replaced, "maxconn 100"), "{:#?}", replaced.notes);
    // A TCP check HAProxy makes over TLS is a handshake; lbd's is not.
    let handshake = imported("  server w1 198.18.0.11:443 check check-ssl\n", "");
    assert!(
        has_note(
            &handshake,
            "h.cfg:6: check-ssl: HAProxy's check is a TLS handshake; lbd's only opens TCP"
        ),
        "{:#?}",
        handshake.notes
    );
}

/// `http-check connect` opens the HTTP check's connection: its port is
/// the one checked (Patroni's REST port beside PostgreSQL), its `ssl`
/// makes the check TLS, its other options are said.
#[test]
fn http_check_connect_gives_the_port_and_tls_of_the_check() {
    let imported = |connect: &str, server: &str| {
        let text = tcp_haproxy(&format!(
            "listen pg\n  bind 198.18.0.100:5432\n  option httpchk GET /health\n{connect}  server a 198.18.0.11:5432 {server}\n"
        ));
        ok(&[("h.cfg", &text)], &on_eth0())
    };
    let patroni = imported("  http-check connect port 8008\n", "check");
    let health = &patroni.config.vips[0].health;
    assert_eq!(health.port, Some(8008));
    assert_eq!(health.check, CheckType::Http);
    assert_eq!(health.path, "/health");
    assert!(
        !has_note(&patroni, "no meaning for an L4 balancer"),
        "{:#?}",
        patroni.notes
    );
    assert!(patroni
        .text
        .contains("# h.cfg:7 (http-check connect port 8008)"));
    // The rule's port wins over the server's, as in HAProxy.
    let over = imported("  http-check connect port 8008\n", "check port 9999");
    assert_eq!(over.config.vips[0].health.port, Some(8008));
    // `ssl`: HAProxy's HTTP check is made over TLS, which lbd's cannot.
    let tls = imported("  http-check connect port 8008 ssl sni pg\n", "check");
    assert_eq!(tls.config.vips[0].health.check, CheckType::Tcp);
    assert_eq!(tls.config.vips[0].health.port, Some(8008));
    for needle in [
        "h.cfg:7: WARNING: option httpchk GET /health is made over TLS (http-check connect port 8008 ssl sni pg)",
        "h.cfg:7: http-check connect port 8008 ssl sni pg: sni pg: not carried over",
    ] {
        assert!(has_note(&tls, needle), "no {needle:?} in {:#?}", tls.notes);
    }
    // A connection of its own port in the clear: the server's `ssl` is
    // not the check's.
    let clear = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432 ssl crt /etc/ssl/pg.pem\n  option httpchk GET /health\n  http-check connect port 8008\n  server a 198.18.0.11:5432 ssl check\n");
    let clear = ok(&[("h.cfg", &clear)], &on_eth0());
    assert_eq!(clear.config.vips[0].health.check, CheckType::Http);
    // A second connection lbd does not make.
    let second = imported(
        "  http-check connect port 8008\n  http-check send meth GET uri /health\n  http-check connect port 8009\n",
        "check",
    );
    assert_eq!(second.config.vips[0].health.port, Some(8008));
    assert!(has_note(
        &second,
        "h.cfg:9: WARNING: http-check connect port 8009: a further connection"
    ));
    // Unchecked servers: the rule changes nothing, listed as such.
    let unchecked = imported("  http-check connect port 8008\n", "");
    assert!(has_note(
        &unchecked,
        "not carried over (no meaning for an L4 balancer): http-check connect port 8008 (line 7)"
    ));
}

/// A backend with a check of its own port gets its own health table; a
/// backend checked at its own port beside it must not inherit the VIP's
/// other port through lbd's key-by-key merge.
#[test]
fn a_backends_own_health_table_does_not_inherit_the_vips_check_port_or_host() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80 check port 8080\n  server b 198.18.0.12:80 check\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(vip.health.port, Some(8080));
    let b = vip.backends[1]
        .health
        .as_ref()
        .expect("b has its own health table");
    // Checked at its own port, 80, as HAProxy did (None would be the same).
    assert!(b.port.is_none_or(|p| p == 80), "b checked on {:?}", b.port);
    // The same for the Host of an HTTP check (keepalived's virtualhost).
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n  real_server 198.18.0.11 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n      virtualhost www.example\n    }\n  }\n  real_server 198.18.0.12 80 {\n    HTTP_GET {\n      url {\n        path /health\n        status_code 200\n      }\n    }\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(vip.health.host.as_deref(), Some("www.example"));
    let second = vip.backends[1]
        .health
        .as_ref()
        .expect("the second has its own health table");
    assert!(
        second.host.as_deref().is_none_or(|h| h == "198.18.0.12"),
        "second sends Host {:?}",
        second.host
    );
}

/// HAProxy takes `default_backend` in a listen: its connections go there,
/// not to its own servers. Only a frontend's was read: the listen's VIP
/// was imported without backends.
#[test]
fn a_default_backend_of_a_listen_takes_its_connections() {
    let listen = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  default_backend app\nbackend app\n  server a1 198.18.0.11:80 check\n  server a2 198.18.0.12:80 check\n");
    let imported = ok(&[("h.cfg", &listen)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 100)]
    );
    assert!(
        !has_note(&imported, "backend app is no frontend's default_backend"),
        "{:#?}",
        imported.notes
    );
    // With servers of its own, the default_backend's still take the
    // connections, as in HAProxy; its own are said to be left out.
    let both = listen.replace(
        "  default_backend app\n",
        "  default_backend app\n  server own 198.18.0.21:80\n",
    );
    let imported = ok(&[("h.cfg", &both)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 100), (ip("198.18.0.12"), 100)]
    );
    assert!(
        has_note(
            &imported,
            "h.cfg:7: listen web: HAProxy sends its connections to its default_backend app (h.cfg:6), not to its own servers: those are not imported"
        ),
        "{:#?}",
        imported.notes
    );
}

/// A `default_backend` in defaults is every later frontend's (and
/// listen's), as in HAProxy; each frontend was skipped as having none.
#[test]
fn a_default_backend_of_defaults_is_the_frontends_after_it() {
    // The frontends after it use it, unless they name their own.
    let defaults = "defaults\n  mode tcp\n  default_backend app\nfrontend web\n  bind 198.18.0.100:80\nfrontend web2\n  bind 198.18.0.101:80\n  default_backend other\nbackend app\n  server a1 198.18.0.11:80\nbackend other\n  server o1 198.18.0.31:80\n";
    let imported = ok(&[("h.cfg", defaults)], &on_eth0());
    let vips = &imported.config.vips;
    assert_eq!(vips.len(), 2, "{:#?}", imported.notes);
    assert_eq!(weights(&vips[0]), [(ip("198.18.0.11"), 100)]);
    assert_eq!(weights(&vips[1]), [(ip("198.18.0.31"), 100)]);
    assert!(!has_note(&imported, "has no default_backend"));
    assert!(!has_note(&imported, "default_backend app (line 3)"));
    // A name no section has is refused at the defaults line.
    assert_eq!(
        refused(
            &[(
                "h.cfg",
                &defaults.replace("default_backend app", "default_backend gone")
            )],
            &on_eth0()
        ),
        "h.cfg:3: default_backend gone: no backend section of that name"
    );
}

#[test]
fn conditional_blocks_are_refused_unless_their_condition_is_known() {
    // Which branch HAProxy reads is decided when it starts: importing
    // both gave two active servers for one.
    let text = tcp_haproxy("backend be\n  .if defined(STAGING)\n  server s1 198.18.0.21:80 check\n  .else\n  server s1 198.18.0.11:80 check\n  .endif\nfrontend fe\n  bind 198.18.0.100:80\n  default_backend be\n");
    assert_eq!(
        refused(&[("h.cfg", &text)], &on_eth0()),
        "h.cfg:5: `.if defined(STAGING)`: conditional blocks cannot be imported: their condition is decided when HAProxy starts (environment, version, build features); resolve it first: keep the lines of the branch HAProxy takes on this node (`haproxy -cc 'defined(STAGING)'` evaluates the condition), remove the directives and import again"
    );
    // An `.elif` reached with an unknown condition, too.
    let text = tcp_haproxy("listen l\n  bind 198.18.0.100:80\n  .if 0\n  server a 198.18.0.11:80\n  .elif version_atleast(2.8)\n  server b 198.18.0.12:80\n  .endif\n");
    assert!(refused(&[("h.cfg", &text)], &on_eth0()).starts_with(
        "h.cfg:8: `.elif version_atleast(2.8)`: conditional blocks cannot be imported"
    ));
    // A section opened inside one is refused at the section, naming the
    // `.if`; one in a defaults section (read) at the `.if`.
    let edge = ".if defined(EDGE)\nlisten edge\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80\n.endif\n";
    assert!(refused(&[("h.cfg", &format!("{edge}{TCP}"))], &on_eth0()).starts_with(
        "h.cfg:2: listen edge is inside `.if defined(EDGE)` (line 1): conditional blocks cannot be imported"
    ));
    assert!(refused(&[("h.cfg", &format!("{TCP}{edge}"))], &on_eth0())
        .starts_with("h.cfg:4: `.if defined(EDGE)`: conditional blocks cannot be imported"));
    // Literal conditions are HAProxy's own: 0 is false, other integers
    // true, an empty condition false; one branch is read, as HAProxy does,
    // and what a dropped branch holds is not looked at.
    let text = tcp_haproxy("listen l\n  bind 198.18.0.100:80\n  .if 0\n  server a 198.18.0.11:80\n  .if defined(X)\n  server x 198.18.0.19:80\n  .endif\n  .elif !0\n  server b 198.18.0.12:80\n  .elif 1\n  server c 198.18.0.13:80\n  .else\n  server d 198.18.0.14:80\n  .endif\n  .if\n  server e 198.18.0.15:80\n  .else\n  server f 198.18.0.16:80\n  .endif\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.12"), 100), (ip("198.18.0.16"), 100)]
    );
    // In global (whose lines are not imported either way) a block whose
    // condition is unknown is dropped with a note.
    let text = format!(
        "global\n  .if feature(QUIC)\n  tune.quic.socket-owner connection\n  .endif\n{}",
        tcp_haproxy("listen l\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80\n")
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "h.cfg:2: `.if feature(QUIC)` (lines 2-4) in global: not evaluated"
        ),
        "{:#?}",
        imported.notes
    );
    // Messages are noted; an `.alert` HAProxy reads stops it.
    let text = format!(
        ".notice \"starting\"\n{}",
        tcp_haproxy("listen l\n  bind 198.18.0.100:80\n  .warning \"old servers\"\n  server a 198.18.0.11:80\n")
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(has_note(
        &imported,
        "h.cfg:1: .notice starting: a message HAProxy prints"
    ));
    assert!(has_note(
        &imported,
        "h.cfg:7: .warning old servers: a message HAProxy prints"
    ));
    for (body, expected) in [
        (".if 1\n.alert \"set ENV\"\n.endif\n", "h.cfg:2: .alert set ENV: HAProxy refuses to start on this configuration (an `.alert` it reads is fatal)"),
        (".if 0\n.alert \"never\"\n.endif\n.endif\n", "h.cfg:4: `.endif` without an `.if`"),
        (".if 1\n.else\n.else\n.endif\n", "h.cfg:3: `.else` after the `.else` of line 2"),
        (".if 1\n.else\n.elif 1\n.endif\n", "h.cfg:3: `.elif` after the `.else` of line 2"),
        (".if 1\n", "h.cfg:1: `.if 1` is never closed with `.endif`"),
        (".endif 1\n", "h.cfg:1: `.endif 1`: .endif takes no argument"),
        (".include x.cfg\n", "h.cfg:1: `.include x.cfg`: not a directive HAProxy knows (it refuses the configuration)"),
    ] {
        let options = Options {
            format: Some(super::super::Format::Haproxy),
            ..on_eth0()
        };
        assert_eq!(refused(&[("h.cfg", body)], &options), expected, "{body}");
    }
}

#[test]
fn every_section_haproxy_knows_ends_the_proxy_before_it() {
    // A log-forward's binds are syslog listeners, not the web VIP's.
    let text = tcp_haproxy("listen web\n  bind *:80\n  server s1 198.18.0.11 check\nlog-forward syslog\n  bind 0.0.0.0:514\n  dgram-bind 0.0.0.0:514\n  log global\n");
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    let imported = ok(&[("h.cfg", &text)], &options);
    assert_eq!(
        imported
            .config
            .vips
            .iter()
            .map(|v| v.port)
            .collect::<Vec<_>>(),
        [80]
    );
    assert!(has_note(
        &imported,
        "h.cfg:7: log-forward section: not carried over"
    ));
    for section in [
        "userlist",
        "peers",
        "resolvers",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "fcgi-app",
        "log-forward",
        "log-profile",
        "crt-store",
        "traces",
        "acme",
        "healthcheck",
        "namespace_list",
    ] {
        let text = tcp_haproxy(&format!("listen web\n  bind 198.18.0.100:80\n  server s1 198.18.0.11 check\n{section} x\n  bind 198.18.0.100:514\n"));
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        assert_eq!(imported.config.vips.len(), 1, "{section}");
        assert!(
            has_note(
                &imported,
                &format!("h.cfg:7: {section} section: not carried over")
            ),
            "{section}"
        );
    }
}

#[test]
fn with_no_usable_active_server_the_backups_take_over_with_a_warning() {
    let haproxy = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server a 198.18.0.11:80 disabled\n  server b 198.18.0.12:80 weight 0\n  server c 198.18.0.13:80 backup weight 2\n  server d 198.18.0.14:80 backup\n");
    let imported = ok(&[("h.cfg", &haproxy)], &on_eth0());
    // The first backup takes every flow, as in HAProxy.
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 200),
            (ip("198.18.0.14"), 0)
        ]
    );
    assert!(
        has_note(&imported, "h.cfg:4: WARNING: listen web has no active server that takes connections (each is disabled, down or of weight 0), so they went to its backup servers; lbd has no backup servers: c (the first, as HAProxy takes without option allbackups) take every new flow as active backends. The failover is lost"),
        "{:#?}",
        imported.notes
    );
    assert!(lb_userspace_warnings(&imported).is_empty());
    // With option allbackups, all of them.
    let all = haproxy.replace("listen web\n", "listen web\n  option allbackups\n");
    let imported = ok(&[("h.cfg", &all)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])[2..],
        [(ip("198.18.0.13"), 200), (ip("198.18.0.14"), 100)]
    );
    assert!(has_note(
        &imported,
        "c, d (all of them, as option allbackups (h.cfg:5))"
    ));
    // An active server that takes flows keeps the backups out.
    let one_up = haproxy.replace("weight 0\n", "\n");
    let imported = ok(&[("h.cfg", &one_up)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])[1..],
        [
            (ip("198.18.0.12"), 100),
            (ip("198.18.0.13"), 0),
            (ip("198.18.0.14"), 0)
        ]
    );
    assert!(!has_note(
        &imported,
        "WARNING: listen web has no active server"
    ));
}

/// lbd's own warnings on an import's result (what `lbctl config check`
/// prints).
fn lb_userspace_warnings(imported: &Imported) -> Vec<String> {
    crate::config::warnings(&imported.config)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn balance_first_keeps_the_first_server_and_warns_the_order_is_lost() {
    let haproxy = tcp_haproxy("frontend f\n  bind 198.18.0.100:80\n  default_backend b\nbackend b\n  balance first\n  server a 198.18.0.11:80 disabled\n  server b1 198.18.0.12:80 weight 3\n  server b2 198.18.0.13:80 weight 5\n");
    let imported = ok(&[("h.cfg", &haproxy)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 300),
            (ip("198.18.0.13"), 0)
        ]
    );
    assert!(has_note(&imported, "h.cfg:8: WARNING: balance first: HAProxy sent each connection to the first server (in file order) with a free connection slot and went on to the next only when it was full or down; lbd has no failover order: server b1 takes all new flows and the others are written with weight 0"));
    assert!(
        imported
            .text
            .contains("# h.cfg:8 (balance first: a failover server (weight 5), weight 0)"),
        "{}",
        imported.text
    );
    // Another balance after it (a backend's own over defaults') is a split.
    let split = haproxy.replace(
        "  balance first\n",
        "  balance first\n  balance roundrobin\n",
    );
    let imported = ok(&[("h.cfg", &split)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])[2],
        (ip("198.18.0.13"), 500)
    );
}

#[test]
fn a_server_template_is_refused_at_its_line() {
    let haproxy = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server-template srv 3 _http._tcp.web.service.consul resolvers consul\n");
    assert_eq!(
        refused(&[("h.cfg", &haproxy)], &on_eth0()),
        "h.cfg:6: server-template srv 3 _http._tcp.web.service.consul resolvers consul: its servers are made from DNS answers (server-template); lbd balances to addresses: write a server line with each server's address instead"
    );
}

#[test]
fn a_bind_port_range_is_a_vip_per_port() {
    let haproxy = tcp_haproxy(
        "listen web\n  bind 198.18.0.100:8000-8002,198.18.0.100:9000\n  server a 198.18.0.11\n",
    );
    let imported = ok(&[("h.cfg", &haproxy)], &with_nat());
    let ports: Vec<u16> = imported.config.vips.iter().map(|v| v.port).collect();
    assert_eq!(ports, [8000, 8001, 8002, 9000]);
    let wide = haproxy.replace("8000-8002", "8000-9000");
    assert_eq!(
        refused(&[("h.cfg", &wide)], &with_nat()),
        "h.cfg:5: bind 198.18.0.100:8000-9000: 1001 ports; lbd has one VIP per port and the import writes at most 64 for one range: split it or write the [[vip]]s yourself"
    );
    let backwards = haproxy.replace("8000-8002", "8002-8000");
    assert_eq!(
        refused(&[("h.cfg", &backwards)], &with_nat()),
        "h.cfg:5: bind 198.18.0.100:8002-8000: \"8002-8000\" is not a range of ports"
    );
}

#[test]
fn a_wildcard_bind_leaves_an_address_another_frontend_binds_to_it() {
    let haproxy = tcp_haproxy("frontend all\n  bind *:80\n  default_backend b\nfrontend five\n  bind 198.18.0.5:80\n  default_backend c\nbackend b\n  server a 198.18.0.11:80\nbackend c\n  server x 198.18.0.21:80\n");
    let keepalived = "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.5\n    198.18.0.100\n  }\n}\n";
    let imported = ok(
        &[("h.cfg", &haproxy), ("k.conf", keepalived)],
        &Options::default(),
    );
    let vips: Vec<_> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, weights(v)))
        .collect();
    assert_eq!(
        vips,
        [
            (ip("198.18.0.100"), vec![(ip("198.18.0.11"), 100)]),
            (ip("198.18.0.5"), vec![(ip("198.18.0.21"), 100)]),
        ]
    );
    assert!(has_note(&imported, "h.cfg:5: bind *:80 of frontend all does not take 198.18.0.5:80/tcp: frontend five binds it explicitly (bind 198.18.0.5:80 at h.cfg:8)"), "{:#?}", imported.notes);
    // Also for a --vip.
    let options = Options {
        vips: vec![vip("198.18.0.5:80/tcp"), vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("h.cfg", &haproxy)], &options);
    assert_eq!(imported.config.vips.len(), 2);
}

#[test]
fn cut_sessions_on_a_state_change_are_warned_about_and_downinter_says_when_lbd_checks() {
    let text = tcp_haproxy("listen pg\n  bind 198.18.0.100:5432\n  server pg1 198.18.0.11:5432 check downinter 5s on-marked-down shutdown-sessions\n  server pg2 198.18.0.12:5432 check on-marked-up shutdown-backup-sessions\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    for needle in [
        "h.cfg:6: WARNING: on-marked-down shutdown-sessions: lbd does not cut a backend's connections",
        "h.cfg:7: WARNING: on-marked-up shutdown-backup-sessions: lbd does not cut the connections of backups",
        "h.cfg:6: downinter 5s: lbd checks a down backend every interval",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
}

/// Backups next to active servers no longer take over: a WARNING once
/// per VIP, not only a NOTE on each.
#[test]
fn backups_beside_active_servers_are_warned_of_once() {
    let imported = ok(
        &[("haproxy.cfg", HAPROXY), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    let warnings: Vec<&String> = imported
        .notes
        .iter()
        .filter(|n| n.contains("has backup servers"))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", imported.notes);
    assert!(
        warnings[0]
            .starts_with("haproxy.cfg:22: WARNING: frontend http_front has backup servers (web3)"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains("lbd drops new flows"));
}

/// `mode log` (2.9+) and `mode spop` (3.1+) proxies serve no clients:
/// skipped with a warning, the rest imported.
#[test]
fn log_and_spop_backends_are_skipped_with_a_warning() {
    let with = format!("{HAPROXY}backend syslog\n    mode log\n    server s 198.18.0.9:514\nbackend agents\n    mode spop\n    server a 198.18.0.8:12345\n");
    let imported = ok(
        &[("haproxy.cfg", &with), ("keepalived.conf", KEEPALIVED)],
        &Options::default(),
    );
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "haproxy.cfg:24: WARNING: backend syslog is in mode log"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(has_note(
        &imported,
        "haproxy.cfg:27: WARNING: backend agents is in mode spop"
    ));
    // A frontend sending its connections to one is skipped too.
    let used = format!("{TCP}frontend f\n  bind 198.18.0.100:514\n  default_backend syslog\nlisten l\n  bind 198.18.0.100:80\n  server w 198.18.0.11:80\nbackend syslog\n  mode log\n  server s 198.18.0.9:514\n");
    let imported = ok(&[("h.cfg", &used)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "h.cfg:11: WARNING: backend syslog, the default_backend of frontend f, is in mode log"
        ),
        "{:#?}",
        imported.notes
    );
}

/// The most common HTTPS front: HAProxy terminates TLS on :443 and speaks
/// plain HTTP to the servers. lbd cannot terminate TLS, so a VIP :443 to
/// the servers' plaintext port would hand every ClientHello to an HTTP
/// listener: refused at the bind. With `ssl` servers (HAProxy
/// re-encrypts) the clients' TLS reaches them: a WARNING naming `crt`.
#[test]
fn a_tls_terminating_bind_to_plain_servers_is_refused_at_the_bind() {
    let text = "frontend https_in\n    mode http\n    bind *:80\n    bind *:443 ssl crt /etc/haproxy/certs/site.pem alpn h2,http/1.1\n    http-request redirect scheme https unless { ssl_fc }\n    default_backend app\nbackend app\n    server a1 10.0.1.11:8080 check\n    server a2 10.0.1.12:8080 check\n";
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        nat_source: vec![ip("198.18.0.50")],
        ..on_eth0()
    };
    let error = refused(&[("haproxy.cfg", text)], &options);
    assert!(
        error.starts_with("haproxy.cfg:4: ") && error.contains("lbd cannot terminate TLS"),
        "{error}"
    );
    assert!(error.contains("a1, a2"), "{error}");
    // mode tcp (TLS offload for LDAPS, PostgreSQL): the same.
    let tcp = text.replace("mode http", "mode tcp").replace(
        "    http-request redirect scheme https unless { ssl_fc }\n",
        "",
    );
    let error = refused(&[("haproxy.cfg", &tcp)], &options);
    assert!(error.starts_with("haproxy.cfg:4: "), "{error}");
    // Re-encrypting to `ssl` servers: imported, with a WARNING naming crt.
    let reencrypt = text.replace("8080 check", "8443 ssl check");
    let imported = ok(&[("haproxy.cfg", &reencrypt)], &options);
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("haproxy.cfg:4: WARNING:")
                && n.contains("crt /etc/haproxy/certs/site.pem")),
        "{:#?}",
        imported.notes
    );
    assert_eq!(
        imported
            .config
            .vips
            .iter()
            .map(|v| v.port)
            .collect::<Vec<_>>(),
        [443],
        "{}",
        imported.text
    );
}

/// A redirect decided whether port 80 was served at all: an unconditional
/// one (or one only for requests without TLS) keeps the plain binds out
/// with a WARNING; any other is a WARNING naming the binds, never "no
/// meaning for an L4 balancer".
#[test]
fn an_http_to_https_redirect_keeps_the_plain_binds_out_or_warns() {
    let other = "listen other\n  bind 198.18.0.101:8000\n  server o 10.0.1.21:8000\n";
    let text = format!("frontend f\n mode http\n bind *:80\n redirect scheme https code 301\n default_backend b\nbackend b\n server s 10.0.1.11:80\n{other}");
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    // The --vip is left over: the :80 bind is not imported.
    let error = refused(&[("h.cfg", &text)], &options);
    assert!(
        error.contains("no service of the sources takes it"),
        "{error}"
    );
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert_eq!(imported.config.vips.len(), 1, "{}", imported.text);
    assert!(
        has_note(
            &imported,
            "h.cfg:4: WARNING: redirect scheme https code 301"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(
        !has_note(&imported, "no meaning for an L4 balancer): redirect"),
        "{:#?}",
        imported.notes
    );
    for only_plain in [
        "http-request redirect scheme https if !{ ssl_fc }",
        "redirect scheme https unless { ssl_fc }",
    ] {
        let text = text.replace("redirect scheme https code 301", only_plain);
        let imported = ok(&[("h.cfg", &text)], &on_eth0());
        assert_eq!(imported.config.vips.len(), 1, "{}", imported.text);
        assert!(
            has_note(&imported, &format!("h.cfg:4: WARNING: {only_plain}")),
            "{:#?}",
            imported.notes
        );
    }
    // A condition the import does not interpret: imported, warned of.
    let text = text.replace(
        "redirect scheme https code 301",
        "redirect prefix /new if { path_beg /old }",
    );
    let imported = ok(&[("h.cfg", &text)], &options);
    assert_eq!(imported.config.vips.len(), 2, "{}", imported.text);
    assert!(
        imported.notes.iter().any(|n| n
            .starts_with("h.cfg:4: WARNING: redirect prefix /new if { path_beg /old }")
            && n.contains("bind *:80")),
        "{:#?}",
        imported.notes
    );
}

/// A frontend that routes only with use_backend (SNI routing) is not
/// imported: a WARNING naming it and its rules, not a plain NOTE.
#[test]
fn a_frontend_of_use_backend_rules_only_is_dropped_with_a_warning() {
    let text = format!("{TCP}frontend tls_sni\n  bind *:443\n  tcp-request inspect-delay 5s\n  use_backend be_a if {{ req_ssl_sni -i a.example.com }}\n  use_backend be_b if {{ req_ssl_sni -i b.example.com }}\nbackend be_a\n  server a 10.0.1.11:443\nbackend be_b\n  server b 10.0.1.12:443\nlisten other\n  bind 198.18.0.101:8000\n  server o 10.0.1.21:8000\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("h.cfg:4: WARNING: frontend tls_sni")
                && n.contains("use_backend be_a")
                && n.contains("line 8")),
        "{:#?}",
        imported.notes
    );
}

/// HAProxy expands `"${VAR}"` and `"$VAR"` inside double quotes when it
/// starts; read literally, a check's Host became `${APP_HOST}`.
#[test]
fn an_environment_variable_in_double_quotes_is_refused_at_its_line() {
    let text = format!("{TCP}backend b\n  option httpchk\n  http-check send meth GET uri /health hdr Host \"${{APP_HOST}}\"\n  server s 10.0.1.11:80 check\nfrontend f\n  bind 198.18.0.100:80\n  default_backend b\n");
    let error = refused(&[("h.cfg", &text)], &on_eth0());
    assert!(
        error.starts_with("h.cfg:6: \"${APP_HOST}\": an environment variable HAProxy expands"),
        "{error}"
    );
    let bare = text.replace("${APP_HOST}", "$APP_HOST");
    let error = refused(&[("h.cfg", &bare)], &on_eth0());
    assert!(error.starts_with("h.cfg:6: \"$APP_HOST\""), "{error}");
    // Escaped, or not a name after it: literal.
    for literal in ["\\$APP_HOST", "a$"] {
        let text = text.replace("${APP_HOST}", literal);
        ok(&[("h.cfg", &text)], &on_eth0());
    }
}

/// A server on this node's loopback is out of lbd's reach (it forwards
/// packets onto the network): refused at its line.
#[test]
fn a_loopback_or_unspecified_server_is_refused_at_its_line() {
    for (server, what) in [
        ("127.0.0.1:3000", "loopback"),
        ("[::1]:3000", "loopback"),
        ("0.0.0.0:3000", "unspecified"),
    ] {
        let text = format!("{TCP}listen app\n  bind 198.18.0.100:80\n  server s {server}\n");
        let error = refused(&[("h.cfg", &text)], &with_nat());
        assert!(
            error.starts_with("h.cfg:6: ") && error.contains(what),
            "{server}: {error}"
        );
    }
}

/// The converse of TLS termination: clients connect in plaintext and
/// HAProxy speaks TLS to `ssl` servers (TLS origination, `mode tcp` or
/// `http`). lbd forwards the clients' connection as it is, so their
/// plaintext would reach the servers' TLS port: refused at the bind,
/// naming the servers, as a TLS bind to plain servers is. Once HAProxy
/// redirected every plaintext request (to its TLS bind), the plain bind
/// is left out and nothing is refused.
#[test]
fn a_plaintext_bind_to_ssl_servers_is_refused_at_the_bind() {
    let text = tcp_haproxy("listen ldap\n  bind 198.18.0.100:389\n  server l1 198.18.0.11:636 ssl verify none check\n  server l2 198.18.0.12:636 ssl verify none check\n");
    let options = Options {
        nat_source: vec![ip("198.18.0.50")],
        ..on_eth0()
    };
    let error = refused(&[("h.cfg", &text)], &options);
    assert!(
        error.starts_with("h.cfg:5: bind 198.18.0.100:389: clients connect here in plaintext and HAProxy speaks TLS to listen ldap's servers l1, l2"),
        "{error}"
    );
    // The servers without `ssl` are not named; one with it is enough.
    let mixed = text.replace("198.18.0.12:636 ssl verify none", "198.18.0.12:636");
    let error = refused(&[("h.cfg", &mixed)], &options);
    assert!(error.contains("servers l1 (ssl"), "{error}");
    // A TLS bind beside it is passed through (with its WARNING); the
    // plaintext one is still refused.
    let both = text.replace(
        "  bind 198.18.0.100:389\n",
        "  bind 198.18.0.100:636 ssl crt /etc/ssl/ldap.pem\n  bind 198.18.0.100:389\n",
    );
    assert!(refused(&[("h.cfg", &both)], &options).starts_with("h.cfg:6: bind 198.18.0.100:389: "));
    // Without the plaintext bind: imported.
    let tls_only = both.replace("  bind 198.18.0.100:389\n", "");
    let imported = ok(&[("h.cfg", &tls_only)], &options);
    assert_eq!(imported.config.vips.len(), 1);
    // HAProxy redirecting every plaintext request leaves that bind out.
    let redirected = "frontend web\n  mode http\n  bind 198.18.0.100:80\n  bind 198.18.0.100:443 ssl crt /etc/ssl/web.pem\n  redirect scheme https if !{ ssl_fc }\n  default_backend app\nbackend app\n  mode http\n  server a1 198.18.0.11:443 ssl check\n";
    let imported = ok(&[("h.cfg", redirected)], &options);
    assert_eq!(imported.config.vips.len(), 1);
    assert_eq!(imported.config.vips[0].port, 443);
}
