//! Reading keepalived's files as keepalived does: includes, parameter
//! definitions, `@ID` conditional lines, and broken input refused at its
//! line.

use std::time::Duration;

use super::*;

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
