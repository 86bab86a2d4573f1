//! The check of a checked HAProxy server, in lbd's terms.

use std::time::Duration;

use super::server::{self, ServerParams};
use super::settings::{ProtocolCheck, Settings, TcpRule};
use crate::import::model::{Check, CheckKind, Note, Origin, Sourced};

/// `tcp-check connect` options that take a value (HAProxy 2.x); the
/// others (`default`, `ssl`, `send-proxy`, `via-socks4`, `linger`) take
/// none.
const CONNECT_VALUES: &[&str] = &["port", "addr", "sni", "alpn", "proto", "comment"];

/// The WARNING for a connect rule whose `port` (its value, if any) is no
/// port number: lbd then checks the server's own port.
fn port_warning(rule: &TcpRule, port: Option<&str>) -> Option<Note> {
    let port = port.filter(|p| crate::import::port_number(p).is_none())?;
    Some(Note::new(
        &rule.origin,
        format!(
            "WARNING: {}: port {port} is not a port number; lbd checks the server's port",
            rule.what
        ),
    ))
}

/// The `port` of a `tcp-check connect` rule (as written) and its other
/// options, which lbd's plain TCP connection does not carry.
fn connect_options(rule: &TcpRule) -> (Option<&str>, Vec<String>) {
    let mut port = None;
    let mut others = Vec::new();
    let mut words = rule.options.iter();
    while let Some(word) = words.next() {
        if CONNECT_VALUES.contains(&word.as_str()) {
            let value = words.next().map(String::as_str);
            if word == "port" {
                port = value;
            } else {
                others.push(format!("{word} {}", value.unwrap_or_default()));
            }
        } else {
            others.push(word.clone());
        }
    }
    (port, others)
}

/// The role of an `option pgsql-check user X` that lbd's `pgsql` check
/// can log in as: a PostgreSQL name lbd's config takes (1 to 63 bytes, no
/// control character). None for another protocol check, a pgsql-check
/// without `user` (lbd's needs one: it checks TCP then), or a name lbd
/// would refuse.
pub(super) fn pgsql_user(check: &ProtocolCheck) -> Option<&str> {
    let user = check.pgsql_user.as_deref()?;
    let fits = !user.is_empty()
        && user.len() <= crate::config::MAX_HEALTH_PGSQL_NAME_BYTES
        && !user.chars().any(char::is_control);
    fits.then_some(user)
}

/// The rule that opens the check's connection: the first `tcp-check`
/// rule when it is a `connect` (else HAProxy connects to the server's
/// check port before the first rule). None without `option tcp-check`,
/// which HAProxy needs to run the rules.
fn first_connect(settings: &Settings) -> Option<&TcpRule> {
    settings.tcp_check.as_ref()?;
    settings.tcp_rules.first().filter(|r| r.connect)
}

/// The rule that opens the HTTP check's connection: the first
/// `http-check` rule when it is a `connect` (HAProxy refuses a `connect`
/// after other rules unless the first is one; without one it connects
/// to the server's check port). None without an HTTP check.
fn first_http_connect(settings: &Settings) -> Option<&TcpRule> {
    settings.http_check.as_ref()?;
    settings.http_rules.first().filter(|r| r.connect)
}

/// The port of a `connect port N` rule, as lbd's health `port`.
fn connect_port(rule: &TcpRule) -> Option<Sourced<u16>> {
    let port = crate::import::port_number(connect_options(rule).0?)?;
    Some(Sourced::new(port, &rule.origin, rule.what.clone()))
}

/// The port of `tcp-check connect port N` or `http-check connect port N`
/// when that rule opens the check's connection: lbd's health `port`
/// (HAProxy takes it over the server's `port`). Without it an
/// `http-check connect port 8008` was dropped and lbd checked the
/// server's own port, which HAProxy never checked.
fn connect_rule_port(settings: &Settings) -> Option<Sourced<u16>> {
    first_connect(settings)
        .or_else(|| first_http_connect(settings))
        .and_then(connect_port)
}

/// Why lbd's HTTP check of a server meets TLS (which lbd's checks do not
/// speak).
pub(super) enum HttpTls<'a> {
    /// The `http-check connect ... ssl` rule that opens the check's
    /// connection.
    Connect(&'a TcpRule),
    /// The server's `ssl` / `check-ssl` (see [`ServerParams::tls_check`]).
    Server(&'a Origin),
}

impl HttpTls<'_> {
    /// Where it is written.
    pub(super) fn origin(&self) -> &Origin {
        match self {
            HttpTls::Connect(rule) => &rule.origin,
            HttpTls::Server(at) => at,
        }
    }
}

/// Where lbd's HTTP check of a server meets TLS. A first `http-check
/// connect` decides as HAProxy's check does: `ssl` makes it TLS; with a
/// `port` of its own it is TLS only with `default` (the server's check
/// settings) where the server's check is; without a port lbd checks the
/// server's port, TLS as [`ServerParams::tls_check`] says.
pub(super) fn http_tls<'a>(
    settings: &'a Settings,
    params: &'a ServerParams,
) -> Option<HttpTls<'a>> {
    let Some(rule) = first_http_connect(settings) else {
        return params.tls_check().map(HttpTls::Server);
    };
    let (port, others) = connect_options(rule);
    let flag = |name: &str| others.iter().any(|o| o == name);
    if flag("ssl") {
        return Some(HttpTls::Connect(rule));
    }
    match port.and_then(crate::import::port_number) {
        Some(_) if flag("default") => params.haproxy_tls_check().map(HttpTls::Server),
        Some(_) => None,
        None => params.tls_check().map(HttpTls::Server),
    }
}

/// Notes on a proxy's `http-check connect` rules: its first rule's
/// options lbd's check does not carry (`ssl` is warned of per server
/// where it makes the check TLS, `default` is what lbd does anyway), and
/// any further connection, which lbd's one-connection check does not
/// make. Without an HTTP check or a checked server, the rules have no
/// effect: returned for the "not carried over" list instead.
pub(super) fn http_connect_notes(settings: &Settings, checked: bool) -> (Vec<Note>, Vec<String>) {
    let connects = settings.http_rules.iter().filter(|r| r.connect);
    if settings.http_check.is_none() || !checked {
        let ignored = connects
            .map(|r| format!("{} (line {})", r.what, r.origin.line))
            .collect();
        return (Vec::new(), ignored);
    }
    let mut notes = Vec::new();
    let first = first_http_connect(settings);
    if let Some(rule) = first {
        let (port, others) = connect_options(rule);
        notes.extend(port_warning(rule, port));
        let others: Vec<String> = others
            .into_iter()
            .filter(|o| o != "ssl" && o != "default")
            .collect();
        if !others.is_empty() {
            notes.push(Note::new(
                &rule.origin,
                format!(
                    "{}: {}: not carried over; lbd's check connects to the backend's own address without them",
                    rule.what,
                    others.join(", ")
                ),
            ));
        }
    }
    for rule in connects.filter(|r| !first.is_some_and(|f| std::ptr::eq(*r, f))) {
        notes.push(Note::new(
            &rule.origin,
            format!(
                "WARNING: {}: a further connection of HAProxy's HTTP check; lbd's check makes one connection (the first): not carried over",
                rule.what
            ),
        ));
    }
    (notes, Vec::new())
}

/// What lbd's check does not do of a proxy's `tcp-check` rules: a WARNING
/// naming the rules that send and expect (lbd's check only connects, so
/// it no longer tells the servers that answer right from the others: a
/// Redis replica from the master), a note on connection options it does
/// not carry. When no server is checked, or without `option tcp-check`
/// (HAProxy then runs none of them), the rules have no effect: they are
/// returned for the "not carried over" list instead.
pub(super) fn tcp_check_notes(settings: &Settings, checked: bool) -> (Vec<Note>, Vec<String>) {
    let mut notes = Vec::new();
    let Some(option) = settings.tcp_check.as_ref().filter(|_| checked) else {
        let ignored = settings
            .tcp_rules
            .iter()
            .map(|r| format!("{} (line {})", r.what, r.origin.line))
            .collect();
        return (notes, ignored);
    };
    let first = first_connect(settings);
    if let Some(rule) = first {
        let (port, others) = connect_options(rule);
        notes.extend(port_warning(rule, port));
        if !others.is_empty() {
            notes.push(Note::new(
                &rule.origin,
                format!(
                    "{}: {}: not carried over; lbd's check opens a plain TCP connection",
                    rule.what,
                    others.join(", ")
                ),
            ));
        }
    }
    let spoken: Vec<&TcpRule> = settings
        .tcp_rules
        .iter()
        .filter(|r| !first.is_some_and(|f| std::ptr::eq(*r, f)))
        .collect();
    if let Some(at) = spoken.first() {
        let rules: Vec<String> = spoken
            .iter()
            .map(|r| format!("{} (line {})", r.what, r.origin.line))
            .collect();
        notes.push(Note::new(
            &at.origin,
            format!(
                "WARNING: {} ({}) runs tcp-check rules lbd's check cannot: {}. lbd's check only opens a TCP connection and sends and expects nothing, so the check no longer selects which servers are eligible: every server that accepts a connection takes traffic (a replica as well as the primary)",
                option.what,
                option.origin,
                rules.join("; ")
            ),
        ));
    }
    (notes, Vec::new())
}

/// Where lbd's check of a server is made over TLS (`tls = true`): an
/// HTTP check that meets TLS ([`http_tls`]), a TCP check HAProxy makes
/// over TLS (a handshake, as lbd's then is). A pgsql check has no TLS in
/// lbd (noted by `tls::tls_check_note`).
fn over_tls(
    settings: &Settings,
    params: &server::ServerParams,
    kind: &CheckKind,
) -> Option<Sourced<bool>> {
    let (at, what) = match kind {
        CheckKind::Http { .. } => {
            let tls = http_tls(settings, params)?;
            let what = match tls {
                HttpTls::Connect(rule) => rule.what.clone(),
                HttpTls::Server(_) => tls_keyword(params).to_owned(),
            };
            (tls.origin().clone(), what)
        }
        CheckKind::Tcp => (
            params.haproxy_tls_check()?.clone(),
            tls_keyword(params).to_owned(),
        ),
        CheckKind::Pgsql { .. } => return None,
    };
    Some(Sourced::new(
        true,
        &at,
        format!("{what}: HAProxy's check is made over TLS"),
    ))
}

/// The server keyword that makes its check TLS: `check-ssl`, else `ssl`.
pub(super) fn tls_keyword(params: &server::ServerParams) -> &'static str {
    match params.check_ssl {
        Some((true, _)) => "check-ssl",
        _ => "ssl",
    }
}

/// A checked server's check, from its parameters and its proxy's
/// settings, with HAProxy's defaults (inter 2 s, fastinter = inter, rise
/// 2, fall 3) written out where the file leaves them.
pub(super) fn check_of(settings: &Settings, server: &server::Server, origin: &Origin) -> Check {
    let params = &server.params;
    let tls = http_tls(settings, params);
    let kind = match (&settings.http_check, &tls) {
        // Over TLS or not (`tls` below), the same GET.
        (Some(http), _) => {
            let status = settings.expect_status.as_ref().map_or(200, |s| s.value);
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            let at = http.origin.clone().unwrap_or_else(|| origin.clone());
            Sourced::new(
                CheckKind::Http {
                    path,
                    host: http.host.clone(),
                    expect_status: status,
                    expect_body: settings.expect_body.clone(),
                },
                &at,
                match &settings.expect_status {
                    Some(expect) => format!("{}; {}: {}", http.what, expect.origin, expect.what),
                    None => http.what.clone(),
                },
            )
        }
        (None, _) => match (&settings.protocol_check, &settings.tcp_check) {
            (Some(protocol), _) => {
                let kind = match pgsql_user(&protocol.value) {
                    Some(user) => CheckKind::Pgsql {
                        user: user.to_owned(),
                    },
                    None => CheckKind::Tcp,
                };
                Sourced::new(kind, &protocol.origin, protocol.what.clone())
            }
            (None, Some(tcp)) => Sourced::new(CheckKind::Tcp, &tcp.origin, tcp.what.clone()),
            (None, None) => Sourced::new(CheckKind::Tcp, origin, "check"),
        },
    };
    let interval = params.inter.clone().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(2),
            origin,
            "inter: HAProxy's default 2s",
        )
    });
    let fast_interval = params.fastinter.clone().unwrap_or_else(|| {
        Sourced::new(
            interval.value,
            origin,
            "fastinter: HAProxy's default, inter",
        )
    });
    let timeout = settings
        .timeout_check
        .clone()
        .or_else(|| settings.timeout_connect.clone())
        .map(|mut t| {
            if t.value > interval.value {
                t.value = interval.value;
                t.what = format!("{}, capped to inter", t.what);
            }
            t
        })
        .unwrap_or_else(|| Sourced::new(interval.value, origin, "HAProxy's check timeout: inter"));
    let tls = over_tls(settings, params, &kind.value);
    Check {
        tls,
        kind,
        port: connect_rule_port(settings).or_else(|| params.check_port.clone()),
        interval: Some(interval),
        fast_interval: Some(fast_interval),
        timeout: Some(timeout),
        rise: Some(
            params
                .rise
                .clone()
                .unwrap_or_else(|| Sourced::new(2, origin, "rise: HAProxy's default")),
        ),
        fall: Some(
            params
                .fall
                .clone()
                .unwrap_or_else(|| Sourced::new(3, origin, "fall: HAProxy's default")),
        ),
    }
}
