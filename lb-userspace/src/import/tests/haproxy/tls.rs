//! TLS HAProxy terminated, originated or redirected to, which lbd cannot
//! carry: refused at the bind, warned of, or the redirected binds kept out.

use super::*;

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
