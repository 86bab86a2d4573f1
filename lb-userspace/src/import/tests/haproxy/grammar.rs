//! haproxy.cfg's grammar: quotes, escapes and comments, the sections that
//! end a proxy, conditional blocks, environment variables, and broken
//! input refused at its line.

use super::*;

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
        format: Some(crate::import::Format::Haproxy),
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
            format: Some(crate::import::Format::Haproxy),
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
