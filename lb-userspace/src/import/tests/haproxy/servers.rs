//! `server` and `default-server` lines as backends: addresses, keywords
//! with and without a value, what is inherited, what is refused.

use super::*;
use crate::config::CheckType;
use lb_common::Mode;

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
fn default_server_notes_reach_the_servers_inheriting_them() {
    let text = tcp_haproxy("listen web\n  bind 198.18.0.100:443\n  default-server send-proxy-v2 maxconn 100 slowstart 10s check\n  server w1 198.18.0.11:443\n  server w2 198.18.0.12:443 send-proxy-v2\n");
    let imported = ok(&[("h.cfg", &text)], &on_eth0());
    for needle in [
        "h.cfg:6: WARNING: send-proxy-v2: HAProxy sent this server a PROXY protocol header with the client's address; lbd sends none, so a server that requires one (accept-proxy) refuses every connection through lbd: turn that off on it (in dsr-l2 mode it sees the client's address itself; in nat mode, the NAT address) (default-server, inherited by server w1)",
        "h.cfg:6: maxconn 100: lbd forwards packets and limits no connections (default-server, inherited by server w2)",
        "h.cfg:6: slowstart 10s: HAProxy ramps a server up only when",
        "h.cfg:8: WARNING: send-proxy-v2",
    ] {
        assert!(has_note(&imported, needle), "no {needle:?} in {:#?}", imported.notes);
    }
    // w2's own send-proxy-v2 is said once, not again as inherited.
    assert!(!has_note(&imported, "WARNING: send-proxy-v2: HAProxy sent this server a PROXY protocol header with the client's address; lbd sends none, so a server that requires one (accept-proxy) refuses every connection through lbd: turn that off on it (in dsr-l2 mode it sees the client's address itself; in nat mode, the NAT address) (default-server, inherited by server w2)"));
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
fn a_server_template_is_refused_at_its_line() {
    let haproxy = tcp_haproxy("listen web\n  bind 198.18.0.100:80\n  server-template srv 3 _http._tcp.web.service.consul resolvers consul\n");
    assert_eq!(
        refused(&[("h.cfg", &haproxy)], &on_eth0()),
        "h.cfg:6: server-template srv 3 _http._tcp.web.service.consul resolvers consul: its servers are made from DNS answers (server-template); lbd balances to addresses: write a server line with each server's address instead"
    );
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
