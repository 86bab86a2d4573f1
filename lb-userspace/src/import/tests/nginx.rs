//! nginx upstreams, alone and with the server blocks that use them.

use std::time::Duration;

use super::*;
use crate::config::{CheckType, Protocol};
use lb_common::{Affinity, Mode};

/// The upstream of the usual guide: least_conn, passive checks, weights.
pub(super) const UPSTREAM: &str = "# /etc/nginx/conf.d/app.conf
upstream app {
    least_conn;
    server 198.18.0.11:80 weight=5 max_fails=3 fail_timeout=30s;
    server 198.18.0.12:80 weight=3 max_fails=3 fail_timeout=30s;
    server 198.18.0.13:80 max_fails=3 fail_timeout=30s;
    server 198.18.0.14:80 backup;
    server 198.18.0.15:80 down;
    keepalive 32;
}
";

#[test]
fn an_upstream_alone_takes_its_vip_and_turns_max_fails_into_checks() {
    assert_eq!(
        refused(&[("app.conf", UPSTREAM)], &on_eth0()),
        "app.conf:2: upstream app names no address or port to serve on: pass --vip ADDRESS:PORT/PROTOCOL (one per such service, in file order)"
    );
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("app.conf", UPSTREAM)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!(
        (vip.address, vip.port, vip.forwarding),
        (ip("198.18.0.100"), 80, Mode::DsrL2)
    );
    assert_eq!(
        weights(vip).iter().map(|w| w.1).collect::<Vec<_>>(),
        [500, 300, 100, 100, 0]
    );
    assert_eq!(backups(vip), [vip.backends[3].address]);
    assert_eq!(vip.health.check, CheckType::Tcp);
    assert_eq!((vip.health.rise, vip.health.fall), (1, 3));
    // The backup's default max_fails=1: its own table.
    assert_eq!(vip.backends[3].health.as_ref().map(|h| h.fall), Some(1));
    let text = &imported.text;
    for expected in [
        "app.conf:3: least_conn: not applicable at L4",
        "app.conf:9: keepalive 32: not applicable at L4",
        "# app.conf:4 (max_fails=3 (fail_timeout 30s))",
        "app.conf:7: takes new flows only while no other backend can",
        "app.conf:8: disabled in the source",
        "address = \"198.18.0.100\"  # --vip 198.18.0.100:80/tcp",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
}

#[test]
fn stream_and_http_server_blocks_give_the_port() {
    let text = "events {}
stream {
    upstream dns {
        server 198.18.0.21:53 max_fails=0;
        server 198.18.0.22:53;
    }
    server {
        listen 198.18.0.100:53 udp;
        proxy_pass dns;
    }
}
http {
    upstream web {
        server 198.18.0.11;
        server [2001:2::11]:8080 weight=2;
    }
    server {
        listen 8443 ssl;
        location / {
            proxy_pass https://web/;
        }
    }
}
";
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        nat_source: vec![ip("198.18.0.50")],
        ..on_eth0()
    };
    let error = refused(&[("nginx.conf", text)], &options);
    assert_eq!(
        error,
        "nginx.conf:15: 2001:2::11 is IPv6 but VIP 198.18.0.100 is IPv4: lbd reaches IPv6 backends of an IPv4 VIP only in ipip or gue mode (--forwarding ipip or gue)"
    );
    let text = text.replace("[2001:2::11]:8080", "198.18.0.12:8080");
    let imported = ok(&[("nginx.conf", &text)], &options);
    let config = &imported.config;
    let dns = &config.vips[0];
    assert_eq!(
        (dns.address, dns.port, dns.protocol),
        (ip("198.18.0.100"), 53, Protocol::Udp)
    );
    assert_eq!(dns.health.check, CheckType::None);
    let web = &config.vips[1];
    assert_eq!((web.port, web.forwarding), (8443, Mode::Nat));
    assert_eq!(
        web.backends.iter().map(|b| b.port).collect::<Vec<_>>(),
        [Some(80), Some(8080)]
    );
    assert_eq!(
        weights(web).iter().map(|w| w.1).collect::<Vec<_>>(),
        [100, 200]
    );
    assert_eq!(web.health.interval, Duration::from_secs(2));
    assert!(
        imported.text.contains("listen ... ssl"),
        "{}",
        imported.text
    );
    assert!(imported
        .text
        .contains("WARNING: the http server block proxying to web is reduced to L4"));
}

#[test]
fn broken_nginx_input_is_refused_with_file_line_and_reason() {
    let cases = [
        ("upstream a {\n  server 198.18.0.11:80\n}\n", "n.conf:2: \"server 198.18.0.11:80\" is not ended with ';'"),
        ("upstream a {\n  server backend1.example.com;\n}\n", "n.conf:2: server backend1.example.com: \"backend1.example.com\" is not an IP address (lbd balances to addresses: write the server's)"),
        ("stream {\n  upstream a {\n    server 198.18.0.11;\n  }\n}\n", "n.conf:3: server 198.18.0.11: no port (a stream upstream's servers need one)"),
        ("upstream a {\n  server 198.18.0.11 weight=0;\n}\n", "n.conf:2: weight=0: \"0\" is not a weight of 1 or more"),
        ("upstream a {\n  server 198.18.0.11 fail_timeout=soon;\n}\n", "n.conf:2: fail_timeout=soon: \"soon\" is not a time such as 30s"),
        ("http {\n  upstream a {\n    server 198.18.0.11;\n  }\n", "n.conf:1: the block \"http {\" opened here is never closed"),
        ("upstream a {\n  server \"198.18.0.11;\n}\n", "n.conf:2: unterminated quote: the \" opened here is never closed"),
    ];
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    for (text, expected) in cases {
        assert_eq!(refused(&[("n.conf", text)], &options), expected, "{text}");
    }
}

#[test]
fn nginx_times_read_units() {
    use super::super::nginx::time;
    assert_eq!(time("30s"), Some(Duration::from_secs(30)));
    assert_eq!(time("30"), Some(Duration::from_secs(30)));
    assert_eq!(time("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(time("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(time("soon"), None);
    assert_eq!(time(""), None);
    // A sum past Duration's range is no time, not a panic.
    let max = u64::MAX;
    assert_eq!(time(&format!("{max}s{max}s")), None);
    assert_eq!(time(&format!("{max}s{max}ms")), None);
    assert_eq!(
        time(&format!("{max}ms{max}ms")),
        Some(Duration::from_millis(max) * 2)
    );
}

#[test]
fn an_overflowing_fail_timeout_is_refused_at_its_line() {
    // /tmp/audit-config/t5 of the audit.
    let text = "upstream app {\n    server 198.18.0.11:80 fail_timeout=18446744073709551615s18446744073709551615s;\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let error = refused(&[("app.conf", text)], &options);
    assert!(error.starts_with("app.conf:2: "), "{error}");
    assert!(error.contains("is not a time"), "{error}");
}

#[test]
fn both_wildcards_of_one_server_block_make_one_vip_per_address() {
    let text = "upstream web {\n  server 198.18.0.11;\n}\nserver {\n  listen 80;\n  listen [::]:80;\n  location / { proxy_pass http://web; }\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100"), vip("2001:2::100")],
        ..on_eth0()
    };
    let error = refused(&[("web.conf", text)], &options);
    // The IPv6 VIP cannot reach the IPv4 backend in dsr-l2 mode.
    assert!(
        error.starts_with("web.conf:2: 198.18.0.11 is IPv4 but VIP 2001:2::100 is IPv6"),
        "{error}"
    );
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    let imported = ok(&[("web.conf", text)], &options);
    assert_eq!(imported.config.vips.len(), 1);
    assert_eq!(imported.config.vips[0].backends[0].port, None);
    // `[::]:80` is IPv6 only (nginx's ipv6only=on): with no IPv6 address
    // given it is left out, and said so.
    assert!(
        has_note(
            &imported,
            "web.conf:6: listen [::]:80 takes IPv6 clients only and no IPv6 address is given"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn an_nginx_proxy_pass_to_an_address_is_a_service_and_a_variable_is_noted() {
    let text = "stream {\n  server {\n    listen 198.18.0.100:3306;\n    proxy_pass 198.18.0.61:3306;\n  }\n  server {\n    listen 198.18.0.100:3307;\n    proxy_pass $backend;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(
        (vip.port, weights(vip)),
        (3306, vec![(ip("198.18.0.61"), 100)])
    );
    assert_eq!(imported.config.vips.len(), 1);
    assert!(has_note(
        &imported,
        "n.conf:8: WARNING: proxy_pass $backend: a destination chosen at run time"
    ));
}

#[test]
fn nginx_udp_upstreams_are_not_checked_over_tcp() {
    let text = "stream {\n  upstream syslog {\n    server 198.18.0.81:514;\n  }\n  server {\n    listen 198.18.0.100:514 udp;\n    proxy_pass syslog;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &on_eth0());
    let vip = &imported.config.vips[0];
    assert_eq!(
        (vip.protocol, vip.health.check),
        (Protocol::Udp, CheckType::None)
    );
    assert!(has_note(
        &imported,
        "n.conf:2: nginx counts failed UDP exchanges"
    ));
}

#[test]
fn an_ipv6_wildcard_listen_is_ipv6_only_unless_ipv6only_off() {
    let nginx = "stream {\n  upstream dns4 {\n    server 198.18.0.21:53;\n  }\n  upstream dns6 {\n    server [2001:2::21]:53;\n  }\n  server {\n    listen 53 udp;\n    proxy_pass dns4;\n  }\n  server {\n    listen [::]:53 udp;\n    proxy_pass dns6;\n  }\n}\n";
    let keepalived = "vrrp_instance V4 {\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\nvrrp_instance V6 {\n  interface eth0\n  virtual_router_id 52\n  virtual_ipaddress {\n    2001:2::100\n  }\n}\n";
    let imported = ok(
        &[("nginx.conf", nginx), ("keepalived.conf", keepalived)],
        &Options::default(),
    );
    let vips: Vec<(IpAddr, u16, Protocol, Vec<IpAddr>)> = imported
        .config
        .vips
        .iter()
        .map(|v| {
            (
                v.address,
                v.port,
                v.protocol,
                v.backends.iter().map(|b| b.address).collect(),
            )
        })
        .collect();
    assert_eq!(
        vips,
        [
            (
                ip("198.18.0.100"),
                53,
                Protocol::Udp,
                vec![ip("198.18.0.21")]
            ),
            (ip("2001:2::100"), 53, Protocol::Udp, vec![ip("2001:2::21")]),
        ]
    );
    // `ipv6only=off`: the IPv6 wildcard takes IPv4 clients too, so both
    // server blocks claim the IPv4 VIP.
    let dual = nginx.replace("[::]:53 udp", "[::]:53 udp ipv6only=off");
    assert!(refused(
        &[("nginx.conf", &dual), ("keepalived.conf", keepalived)],
        &Options::default()
    )
    .contains("both serve 198.18.0.100:53/udp"));
    let bad = nginx.replace("[::]:53 udp", "[::]:53 udp ipv6only=maybe");
    assert_eq!(
        refused(
            &[("nginx.conf", &bad), ("keepalived.conf", keepalived)],
            &Options::default()
        ),
        "nginx.conf:13: listen ... ipv6only=maybe: \"maybe\" is not on or off"
    );
}

#[test]
fn bracketed_ipv6_addresses_without_a_port_are_read_whole() {
    let text = "http {\n  upstream web6 {\n    server [2001:2::11];\n    server [2001:2::12]:8080;\n  }\n  server {\n    listen [::]:80;\n    location / {\n      proxy_pass http://web6;\n    }\n  }\n  server {\n    listen [::]:8081;\n    location / {\n      proxy_pass http://[2001:2::13]/;\n    }\n  }\n}\n";
    let options = Options {
        vips: vec![vip("2001:2::100")],
        ..with_nat()
    };
    let imported = ok(&[("nginx.conf", text)], &options);
    let backends: Vec<Vec<(IpAddr, Option<u16>)>> = imported
        .config
        .vips
        .iter()
        .map(|v| v.backends.iter().map(|b| (b.address, b.port)).collect())
        .collect();
    assert_eq!(
        backends,
        [
            // Port 80 is the VIP's: lbd leaves it out.
            vec![(ip("2001:2::11"), None), (ip("2001:2::12"), Some(8080))],
            vec![(ip("2001:2::13"), Some(80))],
        ]
    );
    assert!(has_note(&imported, "proxying to [2001:2::13]:80"));
}

#[test]
fn nginx_client_persistence_is_source_affinity() {
    let text = "upstream a {\n  ip_hash;\n  server 198.18.0.11:80;\n}\nupstream b {\n  hash $remote_addr consistent;\n  server 198.18.0.12:80;\n}\nupstream c {\n  hash $request_uri;\n  server 198.18.0.13:80;\n}\nupstream d {\n  hash $remote_addr$remote_port;\n  server 198.18.0.14:80;\n}\nupstream e {\n  ip_hash;\n  least_conn;\n  sticky cookie srv_id expires=1h;\n  server 198.18.0.15:80;\n}\n";
    let options = Options {
        vips: (100..105)
            .map(|i| vip(&format!("198.18.0.{i}:80/tcp")))
            .collect(),
        ..on_eth0()
    };
    let imported = ok(&[("n.conf", text)], &options);
    let affinities: Vec<Affinity> = imported.config.vips.iter().map(|v| v.affinity).collect();
    assert_eq!(
        affinities,
        [
            Affinity::Source,
            Affinity::Source,
            Affinity::Connection,
            Affinity::Connection,
            Affinity::Connection
        ]
    );
    assert_eq!(
        affinity_lines(&imported),
        [
            "affinity = \"source\" # n.conf:2 (ip_hash)",
            "affinity = \"source\" # n.conf:6 (hash $remote_addr consistent)",
        ]
    );
    for needle in [
        "n.conf:2: ip_hash: nginx hashed the first three octets of an IPv4 client's address (a /24 shared a server) and an IPv6 client's whole address; lbd hashes the whole address, so clients of one /24 may go to different backends",
        "n.conf:10: hash $request_uri: a hash of another key than the client's address alone is not carried over",
        "n.conf:14: hash $remote_addr$remote_port: a hash of another key than the client's address alone is not carried over",
        // nginx keeps the last method.
        "n.conf:18: ip_hash: redefined by least_conn (n.conf:19), which nginx uses",
        "n.conf:19: least_conn: not applicable at L4",
        "n.conf:20: sticky cookie srv_id expires=1h: stickiness by something other than the client's address is not carried over",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    // hash $remote_addr is carried over as it is: nothing to note.
    assert!(!has_note(&imported, "n.conf:6"), "{:#?}", imported.notes);
    assert!(!has_note(&imported, "n.conf:18: ip_hash: nginx hashed"));
}

/// nginx reads `${name}` as part of a word (the `{` after `$` opens no
/// block) and a `}` inside a word as a character: a redirect with one
/// imports, in an http or a stream context.
#[test]
fn a_braced_variable_is_part_of_its_word() {
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    for context in ["http", "stream"] {
        let text = format!(
            "{context} {{\n  upstream web {{\n    server 198.18.0.11:80;\n  }}\n  server {{ listen 80; return 301 https://${{host}}$request_uri; }}\n}}\n"
        );
        let imported = ok(&[("n.conf", &text)], &options);
        assert_eq!(
            weights(&imported.config.vips[0]),
            [(ip("198.18.0.11"), 100)],
            "{context}: {}",
            imported.text
        );
    }
}

/// The imported ACL rules as "action source scope", sorted.
fn scoped_acl(imported: &Imported) -> Vec<String> {
    let mut acl: Vec<String> = imported
        .config
        .guard
        .acl
        .iter()
        .map(|r| format!("{} {} {}", r.action, r.source, r.scope))
        .collect();
    acl.sort();
    acl
}

/// nginx's include is textual: a server block of an included file
/// inherits the rules of the block holding the include, and rules at the
/// top of an included file are that block's. Read file by file, the
/// included server was imported open, without a note.
#[test]
fn server_blocks_of_an_included_file_inherit_the_includers_rules() {
    let main = "events {}\nstream {\n  allow 198.18.10.0/24;\n  deny all;\n  include /etc/nginx/stream.d/*.conf;\n}\n";
    let db = "upstream db {\n  server 198.18.0.61:3306;\n}\nserver {\n  listen 198.18.0.100:3306;\n  proxy_pass db;\n}\n";
    let files = [("nginx.conf", main), ("stream.d/db.conf", db)];
    let imported = ok(&files, &on_eth0());
    assert_eq!(
        scoped_acl(&imported),
        ["allow 198.18.10.0/24 198.18.0.100:3306/tcp"]
    );
    assert!(
        imported
            .text
            .contains("# nginx.conf:3 (allow 198.18.10.0/24)"),
        "{}",
        imported.text
    );
    // Through an include of the included file too.
    let forced = Options {
        format: Some(super::super::Format::Nginx),
        ..on_eth0()
    };
    let imported = ok(
        &[
            ("nginx.conf", main),
            ("stream.d/db.conf", "include /etc/nginx/db/*.conf;\n"),
            ("db/servers.conf", db),
        ],
        &forced,
    );
    assert_eq!(
        scoped_acl(&imported),
        ["allow 198.18.10.0/24 198.18.0.100:3306/tcp"]
    );
    // A server block's own rules still replace the level's.
    let own = db.replace(
        "  proxy_pass db;",
        "  allow 198.18.11.0/24;\n  deny all;\n  proxy_pass db;",
    );
    let imported = ok(
        &[("nginx.conf", main), ("stream.d/db.conf", &own)],
        &on_eth0(),
    );
    assert_eq!(
        scoped_acl(&imported),
        ["allow 198.18.11.0/24 198.18.0.100:3306/tcp"]
    );
    // Rules at the top of an included file are the stream block's: its
    // own servers, and those of the includer, inherit them.
    let main = "events {}\nstream {\n  include /etc/nginx/stream.d/*.conf;\n  upstream pg {\n    server 198.18.0.11:5432;\n  }\n  server {\n    listen 198.18.0.100:5432;\n    proxy_pass pg;\n  }\n}\n";
    let guarded = format!("allow 198.18.10.0/24;\ndeny all;\n{db}");
    let imported = ok(
        &[("nginx.conf", main), ("stream.d/db.conf", &guarded)],
        &on_eth0(),
    );
    assert_eq!(
        scoped_acl(&imported),
        [
            "allow 198.18.10.0/24 198.18.0.100:3306/tcp",
            "allow 198.18.10.0/24 198.18.0.100:5432/tcp"
        ]
    );
    // An included file not given is still said to be left out.
    let imported = ok(&[("nginx.conf", main)], &on_eth0());
    assert!(
        has_note(
            &imported,
            "nginx.conf:3: WARNING: include /etc/nginx/stream.d/*.conf: not followed"
        ),
        "{:#?}",
        imported.notes
    );
}

/// An include inside an upstream or server block is that block's content
/// (nginx's include is textual): not followed, the upstream had no
/// backends and a server's included `listen 443` became nginx's default
/// port 80.
#[test]
fn includes_inside_upstream_and_server_blocks_are_followed() {
    let main = "events {}\nhttp {\n  upstream app {\n    include /etc/nginx/app-servers.conf;\n  }\n  server {\n    include /etc/nginx/snippets/listen-tls.conf;\n    location / {\n      include proxy.conf;\n    }\n  }\n}\n";
    let servers = "server 198.18.0.11:80 weight=2;\ninclude /etc/nginx/more/*-servers.conf;\n";
    let more = "server 198.18.0.12:80;\n";
    let tls = "listen 198.18.0.100:443 ssl;\nssl_certificate /etc/ssl/app.pem;\n";
    // (https: nginx re-encrypts; plain behind `listen ... ssl` is refused.)
    let proxy = "proxy_set_header Host $host;\nproxy_pass https://app;\n";
    let forced = Options {
        format: Some(super::super::Format::Nginx),
        ..with_nat()
    };
    let files = [
        ("nginx.conf", main),
        ("app-servers.conf", servers),
        ("more/b-servers.conf", more),
        ("snippets/listen-tls.conf", tls),
        ("proxy.conf", proxy),
    ];
    let imported = ok(&files, &forced);
    let vips = &imported.config.vips;
    assert_eq!(vips.len(), 1, "{}", imported.text);
    assert_eq!(
        (vips[0].address, vips[0].port, vips[0].protocol),
        (ip("198.18.0.100"), 443, Protocol::Tcp)
    );
    assert_eq!(
        weights(&vips[0]),
        [(ip("198.18.0.11"), 200), (ip("198.18.0.12"), 100)]
    );
    for expected in [
        "# app-servers.conf:1 (server 198.18.0.11:80 weight=2)",
        "# more/b-servers.conf:1 (server 198.18.0.12:80)",
    ] {
        assert!(
            imported.text.contains(expected),
            "no {expected:?} in\n{}",
            imported.text
        );
    }
    for expected in [
        "snippets/listen-tls.conf:1: listen ... ssl",
        "snippets/listen-tls.conf:2: WARNING: ssl_certificate /etc/ssl/app.pem: nginx's TLS",
        "proxy_set_header Host $host (proxy.conf:1)",
    ] {
        assert!(
            has_note(&imported, expected),
            "no {expected:?} in {:#?}",
            imported.notes
        );
    }
    // The included files are not read again on their own.
    assert!(
        !has_note(&imported, "app-servers.conf:1: not carried over"),
        "{:#?}",
        imported.notes
    );
    // Rules in a stream server's include are its own.
    let stream = "events {}\nstream {\n  upstream db {\n    server 198.18.0.61:3306;\n  }\n  server {\n    include guard.conf;\n    listen 198.18.0.100:3306;\n    proxy_pass db;\n  }\n}\n";
    let imported = ok(
        &[
            ("nginx.conf", stream),
            ("guard.conf", "allow 198.18.10.0/24;\ndeny all;\n"),
        ],
        &forced,
    );
    assert_eq!(
        scoped_acl(&imported),
        ["allow 198.18.10.0/24 198.18.0.100:3306/tcp"]
    );
    // A wildcard in a directory takes the files given under that
    // directory's name only: a name given without one (the main
    // nginx.conf, proxy.conf) is not read into the upstream.
    let loose = main.replace("/etc/nginx/app-servers.conf", "/etc/nginx/upstreams/*.conf");
    let imported = ok(
        &[
            ("site/nginx.conf", loose.as_str()),
            ("upstreams/app-servers.conf", servers),
            ("more/b-servers.conf", more),
            ("snippets/listen-tls.conf", tls),
            ("proxy.conf", proxy),
        ],
        &forced,
    );
    assert_eq!(weights(&imported.config.vips[0]).len(), 2);
    assert!(refused(
        &[
            ("nginx.conf", loose.as_str()),
            ("snippets/listen-tls.conf", tls),
            ("proxy.conf", proxy),
            ("other.conf", "events {}\n"),
        ],
        &forced
    )
    .ends_with("pass the included file too (as upstreams/*.conf, under its directory's name)"));
    // What an upstream or server block includes must be given: without
    // it the block's backends, listens or rules are unknown.
    let without = |left: &str| -> Vec<(&str, &str)> {
        files.iter().copied().filter(|(n, _)| *n != left).collect()
    };
    assert_eq!(
        refused(&without("app-servers.conf"), &forced),
        "nginx.conf:4: include /etc/nginx/app-servers.conf: inside upstream app (line 3), and no file given is the one it names: the block's contents are unknown, so it cannot be imported faithfully; pass the included file too"
    );
    assert_eq!(
        refused(&without("more/b-servers.conf"), &forced),
        "app-servers.conf:2: include /etc/nginx/more/*-servers.conf: inside upstream app (nginx.conf:3), and no file given is the one it names: the block's contents are unknown, so it cannot be imported faithfully; pass the included file too (as more/*-servers.conf, under its directory's name)"
    );
    assert!(refused(&without("snippets/listen-tls.conf"), &forced).starts_with(
        "nginx.conf:7: include /etc/nginx/snippets/listen-tls.conf: inside server (line 6), and no file given is the one it names"
    ));
    // In a location (which holds no listen), it is noted as at http level.
    let imported = ok(
        &[
            (
                "nginx.conf",
                &main.replace(
                    "include proxy.conf;",
                    "include proxy_params;\n      proxy_pass https://app;",
                ),
            ),
            ("app-servers.conf", servers),
            ("more/b-servers.conf", more),
            ("snippets/listen-tls.conf", tls),
        ],
        &forced,
    );
    assert_eq!(imported.config.vips.len(), 1);
    assert!(
        has_note(
            &imported,
            "nginx.conf:9: WARNING: include proxy_params: not followed"
        ),
        "{:#?}",
        imported.notes
    );
}

/// `listen 443 quic` is HTTP/3 on UDP 443: it was read as TCP and merged
/// into the `listen 443 ssl` VIP, so UDP 443 silently disappeared.
#[test]
fn a_quic_listen_is_a_udp_vip() {
    let text = "events {}\nhttp {\n  upstream web {\n    server 198.18.0.11:443;\n    server 198.18.0.12:443;\n  }\n  server {\n    listen 198.18.0.100:443 ssl;\n    listen 198.18.0.100:443 quic reuseport;\n    location / {\n      proxy_pass https://web;\n    }\n  }\n}\n";
    let imported = ok(&[("nginx.conf", text)], &on_eth0());
    let vips = &imported.config.vips;
    assert_eq!(
        vips.iter()
            .map(|v| (v.address, v.port, v.protocol))
            .collect::<Vec<_>>(),
        [
            (ip("198.18.0.100"), 443, Protocol::Tcp),
            (ip("198.18.0.100"), 443, Protocol::Udp)
        ],
        "{}",
        imported.text
    );
    assert_eq!(vips[1].backends.len(), 2);
    assert!(
        has_note(
            &imported,
            "nginx.conf:9: listen ... quic: HTTP/3 over QUIC, on UDP: imported as a UDP VIP"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn with_every_primary_down_all_the_backups_take_over() {
    let text = "upstream app {\n    server 198.18.0.11:80 down;\n    server 198.18.0.12:80 backup weight=2;\n    server 198.18.0.13:80 backup;\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("app.conf", text)], &options);
    // nginx shares the connections among all its backups, by weight:
    // so does lbd, with nothing to note.
    let vip = &imported.config.vips[0];
    assert_eq!(
        weights(vip),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 200),
            (ip("198.18.0.13"), 100)
        ]
    );
    assert_eq!(backups(vip), [ip("198.18.0.12"), ip("198.18.0.13")]);
    assert!(serves_on_backups(&imported));
    assert!(!has_note(&imported, "backup"), "{:#?}", imported.notes);
}

#[test]
fn a_max_fails_above_lbds_fall_range_is_brought_into_it() {
    let text = "upstream app {\n    server 198.18.0.11:80 max_fails=200;\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("app.conf", text)], &options);
    assert_eq!(imported.config.vips[0].health.fall, 100);
    assert!(has_note(
        &imported,
        "app.conf:2: fall 200 is outside lbd's 1..=100; 100 is used"
    ));
}

#[test]
fn grpc_fastcgi_scgi_and_uwsgi_passes_are_followed_with_a_warning() {
    let upstream = "upstream app {\n    server 198.18.0.11:9000;\n}\n";
    for (pass, protocol) in [
        ("grpc_pass grpc://app", "gRPC"),
        ("fastcgi_pass app", "FastCGI"),
        ("scgi_pass app", "SCGI"),
        ("uwsgi_pass uwsgi://app", "uwsgi"),
    ] {
        let text = format!("http {{\n  {upstream}  server {{\n    listen 198.18.0.100:80;\n    location / {{\n      {pass};\n    }}\n  }}\n}}\n");
        let imported = ok(&[("n.conf", &text)], &with_nat());
        let vip = &imported.config.vips[0];
        assert_eq!(
            (vip.port, weights(vip)),
            (80, vec![(ip("198.18.0.11"), 100)]),
            "{pass}"
        );
        assert!(
            has_note(
                &imported,
                &format!("n.conf:8: WARNING: {pass}: nginx spoke {protocol} to the backends")
            ),
            "{pass}: {:#?}",
            imported.notes
        );
    }
    // An address: grpc_pass's port defaults as proxy_pass's; FastCGI's
    // needs one, as nginx says.
    let text = "http {\n  server {\n    listen 198.18.0.100:80;\n    grpc_pass grpc://198.18.0.11;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 100)]
    );
    let text = text.replace("grpc_pass grpc://198.18.0.11", "fastcgi_pass 198.18.0.11");
    assert_eq!(
        refused(&[("n.conf", &text)], &on_eth0()),
        "n.conf:4: fastcgi_pass 198.18.0.11: no port (nginx needs one here)"
    );
}

#[test]
fn a_wildcard_listen_leaves_an_address_another_server_block_listens_on() {
    let text = "stream {\n  server {\n    listen 5432;\n    proxy_pass 198.18.0.11:5432;\n  }\n  server {\n    listen 198.18.0.5:5432;\n    proxy_pass 198.18.0.21:5432;\n  }\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.5:5432/tcp"), vip("198.18.0.100:5432/tcp")],
        ..on_eth0()
    };
    let imported = ok(&[("n.conf", text)], &options);
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
    assert!(
        has_note(
            &imported,
            "n.conf:3: listen 5432 of server block at n.conf:2 does not take 198.18.0.5:5432/tcp"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn a_php_locations_fastcgi_pass_leaves_the_vip_to_the_proxy_pass() {
    let upstream = "upstream app {\n    server 198.18.0.11:8080;\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..with_nat()
    };
    // A UNIX socket lbd cannot follow, before the proxy_pass: the server
    // block is still the app's.
    let text = format!("http {{\n  {upstream}  server {{\n    listen 80;\n    location ~ \\.php$ {{\n      fastcgi_pass unix:/run/php/fpm.sock;\n    }}\n    location / {{\n      proxy_pass http://app;\n    }}\n  }}\n}}\n");
    let imported = ok(&[("n.conf", &text)], &options);
    let vip = &imported.config.vips[0];
    assert_eq!(
        (vip.port, weights(vip)),
        (80, vec![(ip("198.18.0.11"), 100)]),
        "{:#?}",
        imported.notes
    );
    assert!(has_note(&imported, "n.conf:8: WARNING: fastcgi_pass unix:/run/php/fpm.sock: another location's fastcgi_pass; lbd sends a VIP's connections to one place, where `proxy_pass http://app` (n.conf:11) sends them: not carried over"), "{:#?}", imported.notes);
    assert!(
        !imported.notes.iter().any(|n| n.contains("UNIX socket")),
        "{:#?}",
        imported.notes
    );
    // A FastCGI server lbd could follow: the clients' HTTP still goes
    // to the app, and no FastCGI warning is given for the one left.
    let text = text.replace("unix:/run/php/fpm.sock", "198.18.0.5:9000");
    let imported = ok(&[("n.conf", &text)], &options);
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.11"), 100)],
        "{:#?}",
        imported.notes
    );
    assert!(has_note(&imported, "n.conf:8: WARNING: fastcgi_pass 198.18.0.5:9000: another location's fastcgi_pass; lbd sends a VIP's connections to one place, where `proxy_pass http://app` (n.conf:11) sends them: not carried over"), "{:#?}", imported.notes);
    assert!(
        !has_note(&imported, "nginx spoke FastCGI"),
        "{:#?}",
        imported.notes
    );
    assert!(
        !has_note(&imported, "the first proxy_pass's"),
        "{:#?}",
        imported.notes
    );
    // Alone, it is followed, with its warning.
    let alone = "http {\n  server {\n    listen 80;\n    location ~ \\.php$ {\n      fastcgi_pass 198.18.0.5:9000;\n    }\n  }\n}\n";
    let imported = ok(&[("n.conf", alone)], &options);
    assert_eq!(weights(&imported.config.vips[0]), [(ip("198.18.0.5"), 100)]);
    assert!(
        has_note(
            &imported,
            "n.conf:5: WARNING: fastcgi_pass 198.18.0.5:9000: nginx spoke FastCGI"
        ),
        "{:#?}",
        imported.notes
    );
}

#[test]
fn a_pass_lbd_cannot_follow_leaves_the_choice_to_the_next() {
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..with_nat()
    };
    // A variable first, a fixed address after: the address is followed.
    let text = "http {\n  server {\n    listen 80;\n    location /a {\n      proxy_pass http://$backend;\n    }\n    location /b {\n      proxy_pass http://198.18.0.21:8080;\n    }\n    location /c {\n      grpc_pass grpc://198.18.0.22:50051;\n    }\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &options);
    assert_eq!(
        weights(&imported.config.vips[0]),
        [(ip("198.18.0.21"), 100)],
        "{:#?}",
        imported.notes
    );
    assert!(has_note(&imported, "n.conf:5: WARNING: proxy_pass http://$backend: a destination chosen at run time (a variable); lbd needs fixed backends: not followed"), "{:#?}", imported.notes);
    assert!(has_note(&imported, "n.conf:11: WARNING: grpc_pass grpc://198.18.0.22:50051: another location's grpc_pass; lbd sends a VIP's connections to one place, where `proxy_pass http://198.18.0.21:8080` (n.conf:8) sends them: not carried over"), "{:#?}", imported.notes);
    // Only passes lbd cannot follow: the server block is not imported,
    // and a FastCGI server does not stand in for the HTTP pass.
    let text = "http {\n  server {\n    listen 198.18.0.100:80;\n    location ~ \\.php$ {\n      fastcgi_pass 198.18.0.5:9000;\n    }\n    location / {\n      proxy_pass http://$backend;\n    }\n  }\n  server {\n    listen 198.18.0.101:80;\n    proxy_pass http://198.18.0.31:8080;\n  }\n}\n";
    let imported = ok(&[("n.conf", text)], &with_nat());
    let vips: Vec<_> = imported
        .config
        .vips
        .iter()
        .map(|v| (v.address, weights(v)))
        .collect();
    assert_eq!(vips, [(ip("198.18.0.101"), vec![(ip("198.18.0.31"), 100)])]);
    assert!(has_note(&imported, "n.conf:5: WARNING: fastcgi_pass 198.18.0.5:9000: another location's fastcgi_pass; nginx sent the clients' HTTP elsewhere: not carried over"), "{:#?}", imported.notes);
    assert!(
        has_note(
            &imported,
            "n.conf:2: server block whose passes lbd cannot follow (said above): not imported"
        ),
        "{:#?}",
        imported.notes
    );
}

/// nginx uses a server marked `down` for nothing, backup or not, in
/// either order of the two words.
#[test]
fn a_down_backup_server_is_down_in_either_order() {
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    for pair in ["down backup", "backup down"] {
        let text = format!(
            "upstream app {{\n    server 198.18.0.11:80 down;\n    server 198.18.0.12:80 {pair};\n}}\n"
        );
        let imported = ok(&[("app.conf", &text)], &options);
        assert_eq!(
            weights(&imported.config.vips[0]),
            [(ip("198.18.0.11"), 0), (ip("198.18.0.12"), 0)],
            "{pair}"
        );
        assert!(!has_note(&imported, "taking over"), "{pair}");
    }
}

/// `proxy_pass NAME:PORT` names a host (nginx refuses an upstream with a
/// port): refused at its line, as a host name anywhere else.
#[test]
fn a_proxy_pass_to_a_host_name_and_port_is_refused() {
    let text = "stream {\n  server {\n    listen 5432;\n    proxy_pass db.internal:5432;\n  }\n}\n";
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..on_eth0()
    };
    let err = refused(&[("nginx.conf", text)], &options);
    assert!(
        err.starts_with(
            "nginx.conf:4: proxy_pass db.internal:5432: \"db.internal\" is not an IP address"
        ),
        "{err}"
    );
}

/// nginx terminating TLS and proxying plain HTTP: lbd cannot terminate
/// TLS, so the VIP would send the clients' TLS to an HTTP port: refused
/// at the listen. Re-encrypting (`proxy_pass https://`): a WARNING naming
/// the certificate the backends must present.
#[test]
fn a_tls_listen_proxying_plain_http_is_refused_at_the_listen() {
    let text = "http {\n  server {\n    listen 198.18.0.100:443 ssl;\n    ssl_certificate /etc/ssl/app.pem;\n    location / {\n      proxy_pass http://198.18.0.11:8080;\n    }\n  }\n}\n";
    let error = refused(&[("n.conf", text)], &with_nat());
    assert!(
        error.starts_with("n.conf:3: ") && error.contains("lbd cannot terminate TLS"),
        "{error}"
    );
    let stream = "stream {\n  server {\n    listen 198.18.0.100:636 ssl;\n    proxy_pass 198.18.0.11:389;\n  }\n}\n";
    let error = refused(&[("n.conf", stream)], &with_nat());
    assert!(error.starts_with("n.conf:3: "), "{error}");
    let reencrypt = text.replace("http://198.18.0.11:8080", "https://198.18.0.11:8443");
    let imported = ok(&[("n.conf", &reencrypt)], &with_nat());
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.starts_with("n.conf:3: WARNING:")
                && n.contains("ssl_certificate /etc/ssl/app.pem")),
        "{:#?}",
        imported.notes
    );
}

/// nginx in front of a local app: lbd cannot forward to this node's
/// loopback: refused at the proxy_pass.
#[test]
fn a_loopback_proxy_pass_is_refused_at_its_line() {
    let text = "server { listen 80; location / { proxy_pass http://127.0.0.1:8080; } }\n";
    let options = Options {
        vips: vec![vip("198.18.0.100")],
        ..with_nat()
    };
    let error = refused(&[("n.conf", text)], &options);
    assert!(
        error.starts_with("n.conf:1: ") && error.contains("loopback"),
        "{error}"
    );
}

/// nginx reads the files its nginx.conf includes: `sites-available/*`
/// given beside `include /etc/nginx/sites-enabled/*;` is refused, naming
/// the file.
#[test]
fn a_file_nginx_conf_does_not_include_is_refused() {
    let main = "events {}\nhttp {\n  include /etc/nginx/sites-enabled/*;\n}\n";
    let site = "server {\n  listen 198.18.0.100:80;\n  location / {\n    proxy_pass http://198.18.0.11:80;\n  }\n}\n";
    let error = refused(
        &[("nginx.conf", main), ("sites-available/old", site)],
        &with_nat(),
    );
    assert!(
        error.starts_with("sites-available/old: not read by nginx"),
        "{error}"
    );
    let imported = ok(
        &[("nginx.conf", main), ("sites-enabled/app", site)],
        &with_nat(),
    );
    assert_eq!(imported.config.vips.len(), 1);
}

/// `upstream app { LINES }` alone in n.conf (its first server on line 2),
/// imported with `--vip 198.18.0.100:80/tcp`.
fn slow_upstream(lines: &str) -> Result<Imported, ImportError> {
    let text = format!("upstream app {{\n{lines}}}\n");
    let options = Options {
        vips: vec![vip("198.18.0.100:80/tcp")],
        ..on_eth0()
    };
    run(&[("n.conf", &text)], &options)
}

#[test]
fn a_servers_slow_start_is_the_vips_in_whole_seconds_rounded_up() {
    for (time, seconds, comment) in [
        ("30s", 30, "n.conf:2 (slow_start=30s)"),
        // nginx's default unit is the second.
        ("90", 90, "n.conf:2 (slow_start=90)"),
        ("1m30s", 90, "n.conf:2 (slow_start=1m30s)"),
        (
            "1500ms",
            2,
            "n.conf:2 (slow_start=1500ms), rounded up to whole seconds",
        ),
    ] {
        let imported = slow_upstream(&format!(
            "  server 198.18.0.11:80 slow_start={time};\n  server 198.18.0.12:80 slow_start={time};\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            imported.config.vips[0].slow_start,
            Some(Duration::from_secs(seconds)),
            "{time}"
        );
        assert_eq!(
            slow_start_line(&imported),
            Some(format!("slow_start_s = {seconds} # {comment}"))
        );
        assert!(!has_note(&imported, "slow"), "{:#?}", imported.notes);
    }
}

#[test]
fn nginx_servers_slow_starts_give_the_longest_at_most_an_hour_and_0_is_off() {
    let imported = slow_upstream(
        "  server 198.18.0.11:80 slow_start=10s;\n  server 198.18.0.12:80 slow_start=2h;\n  server 198.18.0.13:80;\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        imported.config.vips[0].slow_start,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        slow_start_line(&imported).as_deref(),
        Some("slow_start_s = 3600 # n.conf:3 (slow_start=2h), at most 3600 s")
    );
    for note in [
        "n.conf:3: slow_start=2h (server 198.18.0.12:80): longer than lbd's longest slow start, 3600 s (an hour): slow_start_s = 3600",
        "n.conf:3: lbd's slow start is per VIP, not per server: the servers' differ (198.18.0.11:80 slow_start=10s (n.conf:2), 198.18.0.12:80 slow_start=2h (n.conf:3), 198.18.0.13:80 none); slow_start_s = 3600, the longest, ramps every backend of the VIP",
    ] {
        assert!(has_note(&imported, note), "no {note:?} in {:#?}", imported.notes);
    }
    let imported =
        slow_upstream("  server 198.18.0.11:80 slow_start=0;\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(imported.config.vips[0].slow_start, None);
    assert_eq!(slow_start_line(&imported), None);
    assert!(!has_note(&imported, "slow_start"), "{:#?}", imported.notes);
}

#[test]
fn a_slow_start_under_a_hash_nginx_ignores_is_carried_over_with_a_note() {
    for (method, affinity) in [
        ("ip_hash", Affinity::Source),
        ("hash $remote_addr", Affinity::Source),
        ("hash $request_uri", Affinity::Connection),
        ("random", Affinity::Connection),
    ] {
        let imported = slow_upstream(&format!(
            "  {method};\n  server 198.18.0.11:80 slow_start=30s;\n  server 198.18.0.12:80;\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let vip = &imported.config.vips[0];
        assert_eq!(
            (vip.slow_start, vip.affinity),
            (Some(Duration::from_secs(30)), affinity),
            "{method}"
        );
        let note = format!("n.conf:3: slow_start=30s: nginx does not slow-start servers under {method} (n.conf:2); lbd does, also with affinity = \"source\"");
        assert!(
            has_note(&imported, &note),
            "no {note:?} in {:#?}",
            imported.notes
        );
    }
    let imported = slow_upstream("  least_conn;\n  server 198.18.0.11:80 slow_start=30s;\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        imported.config.vips[0].slow_start,
        Some(Duration::from_secs(30))
    );
    assert!(!has_note(&imported, "does not slow-start"));
}

#[test]
fn a_malformed_slow_start_is_refused_at_its_line() {
    for (param, value) in [("slow_start=fast", "fast"), ("slow_start", "")] {
        let refused = slow_upstream(&format!(
            "  server 198.18.0.11:80;\n  server 198.18.0.12:80 {param};\n"
        ))
        .map(|i| i.text)
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            refused,
            Some(format!(
                "n.conf:3: {param}: {value:?} is not a time such as 30s"
            ))
        );
    }
}
