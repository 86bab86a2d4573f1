//! A frontend, backend or listen section: its lines (binds,
//! `default_backend`, servers, source rules, the stats page) read into a
//! [`Proxy`], and the notes on what of it stays behind.

use super::affinity::other_stick_notes;
use super::bind::bind;
use super::check::{http_connect_notes, tcp_check_notes};
use super::lexer::Line;
use super::settings::{apply, Settings};
use super::{acl, server};
use crate::import::model::{Backend, CheckKind, Listen, Note, Origin, Sourced};
use crate::import::ImportError;

/// A frontend, backend or listen section, read.
#[derive(Debug)]
pub(super) struct Proxy {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) origin: Origin,
    pub(super) settings: Settings,
    pub(super) binds: Vec<Listen>,
    pub(super) default_backend: Option<Sourced<String>>,
    pub(super) servers: Vec<Backend>,
    /// Servers as read; their checks are made once the whole section is
    /// read, because `option httpchk` and friends may follow them.
    pub(super) pending: Vec<server::Server>,
    /// `stats enable` / `stats uri`: the proxy serves HAProxy's own page.
    pub(super) stats: Option<Origin>,
    /// Its `acl` lines and `tcp-request ... reject` rules.
    pub(super) acl: acl::Rules,
    /// Its binds that terminate TLS (`ssl`), checked against the servers
    /// once they are known.
    pub(super) tls_binds: Vec<TlsBind>,
    /// The names of its servers that HAProxy speaks TLS to (`ssl`).
    pub(super) ssl_servers: Vec<String>,
    /// Its `redirect` and `http-request redirect` rules.
    pub(super) redirects: Vec<Redirect>,
    /// Its `use_backend` lines (where, as written): where its connections
    /// went without a default_backend.
    pub(super) use_backends: Vec<(Origin, String)>,
}

/// A `bind ... ssl` line: HAProxy terminated TLS there.
#[derive(Debug, Clone)]
pub(super) struct TlsBind {
    pub(super) origin: Origin,
    /// The line as written.
    pub(super) what: String,
    /// Its `crt` / `crt-list` (and value), the certificate the clients saw.
    pub(super) crt: Option<String>,
}

/// Which requests a redirect rule answers, as far as the import can tell
/// without interpreting ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RedirectScope {
    /// No condition: every request.
    Every,
    /// `if !{ ssl_fc }` / `unless { ssl_fc }`: every request without TLS
    /// (HTTP to HTTPS).
    Plain,
    /// Any other condition, not interpreted.
    Conditional,
}

/// A `redirect` or `http-request redirect` line.
#[derive(Debug, Clone)]
pub(super) struct Redirect {
    pub(super) origin: Origin,
    pub(super) what: String,
    pub(super) scope: RedirectScope,
}

impl Redirect {
    /// The rule of `line`, whose redirect's arguments start at word
    /// `start`: only a missing condition, or one on `ssl_fc` alone, is
    /// read; any other is [`RedirectScope::Conditional`].
    fn new(origin: Origin, line: &Line, start: usize) -> Self {
        let words = &line.words[start.min(line.words.len())..];
        let scope = match words.iter().position(|w| w == "if" || w == "unless") {
            None => RedirectScope::Every,
            Some(at) => {
                let condition: Vec<&str> = words[at + 1..].iter().map(String::as_str).collect();
                let plain = matches!(
                    (words[at].as_str(), condition.as_slice()),
                    ("if", ["!{", "ssl_fc", "}"] | ["!", "{", "ssl_fc", "}"])
                        | ("unless", ["{", "ssl_fc", "}"])
                );
                if plain {
                    RedirectScope::Plain
                } else {
                    RedirectScope::Conditional
                }
            }
        };
        Self {
            origin,
            what: line.text(),
            scope,
        }
    }
}

/// One line inside a frontend, backend or listen section.
pub(super) fn proxy_line(file: &str, line: &Line, proxy: &mut Proxy) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    match line.words[0].as_str() {
        "bind" if proxy.kind != "backend" => bind(file, line, proxy),
        // HAProxy ignores it in a backend (no frontend side to switch).
        "default_backend" if proxy.kind == "backend" => {
            proxy
                .settings
                .ignored
                .push(format!("{} (line {})", line.text(), line.no));
            Ok(())
        }
        // In a listen too: HAProxy sends its connections there, not to
        // its own servers.
        "default_backend" => {
            let name = line.words.get(1).ok_or_else(|| {
                ImportError::at(file, line.no, "default_backend needs a backend name")
            })?;
            proxy.default_backend = Some(Sourced::new(name.clone(), &origin, line.text()));
            Ok(())
        }
        // HAProxy answered these requests itself: warned of (or the
        // binds it answered are kept out) where the service is made.
        "redirect" => {
            proxy.redirects.push(Redirect::new(origin, line, 1));
            Ok(())
        }
        "http-request" if line.words.get(1).is_some_and(|w| w == "redirect") => {
            proxy.redirects.push(Redirect::new(origin, line, 2));
            Ok(())
        }
        "use_backend" => {
            proxy.use_backends.push((origin.clone(), line.text()));
            proxy.settings.notes.push(Note::new(
                &origin,
                format!(
                    "{}: content switching is not carried over (lbd sends a VIP's connections to one set of backends: the default_backend's)",
                    line.text()
                ),
            ));
            Ok(())
        }
        "acl" => {
            proxy.acl.define(file, line);
            Ok(())
        }
        "tcp-request" if proxy.acl.tcp_request(file, line) => Ok(()),
        "http-request" | "tcp-response" | "http-response"
            if line.words.get(1).is_some_and(|a| {
                matches!(
                    a.as_str(),
                    "deny" | "reject" | "tarpit" | "silent-drop" | "auth"
                )
            }) =>
        {
            proxy.settings.notes.push(Note::new(
                &origin,
                format!(
                    "WARNING: {}: a rule refusing requests; lbd forwards connections and cannot apply it: not carried over (source rules can be written as [[acl]])",
                    line.text()
                ),
            ));
            Ok(())
        }
        // Its servers are made from DNS answers at run time: lbd needs
        // their addresses, as for a `server` with a host name.
        "server-template" if proxy.kind != "frontend" => Err(ImportError::at(
            file,
            line.no,
            format!(
                "{}: its servers are made from DNS answers (server-template); lbd balances to addresses: write a server line with each server's address instead",
                line.text()
            ),
        )),
        "server" if proxy.kind != "frontend" => {
            let server = server::server(file, line, &proxy.settings.default_server)?;
            proxy.pending.push(server);
            Ok(())
        }
        "stats"
            if proxy.kind != "backend"
                && line
                    .words
                    .get(1)
                    .is_some_and(|w| w == "enable" || w == "uri") =>
        {
            proxy.stats.get_or_insert(origin);
            proxy
                .settings
                .ignored
                .push(format!("{} (line {})", line.text(), line.no));
            Ok(())
        }
        _ => apply(file, line, &mut proxy.settings),
    }
}

/// The notes of a proxy: its own, its mode's, its ignored directives.
pub(super) fn proxy_notes(proxy: &Proxy) -> Vec<Note> {
    let mut notes = proxy.settings.notes.clone();
    if let Some(mode) = &proxy.settings.mode {
        if mode.value == "http" && proxy.kind != "backend" {
            notes.push(Note::new(
                &mode.origin,
                format!(
                    "WARNING: {} {} is in mode http; lbd balances TCP connections at L4 and carries over only where they go: HTTP routing, headers, keep-alive, TLS termination and logging stay behind",
                    proxy.kind, proxy.name
                ),
            ));
        }
    }
    let checked = proxy.servers.iter().any(|s| s.check.is_some());
    // The servers whose check is lbd's HTTP check: not those whose
    // HTTP check met TLS and became a TCP check (each warned of).
    let http_checked: Vec<&str> = proxy
        .servers
        .iter()
        .filter(|s| {
            s.check
                .as_ref()
                .is_some_and(|c| matches!(c.kind.value, CheckKind::Http { .. }))
        })
        .map(|s| s.name.as_str())
        .collect();
    if let (Some(http), false) = (&proxy.settings.http_check, http_checked.is_empty()) {
        let at = http.origin.clone().unwrap_or_else(|| proxy.origin.clone());
        let some = proxy.servers.iter().filter(|s| s.check.is_some()).count() > http_checked.len();
        // Said of the servers it is true of, when others' checks are TCP.
        let which = if some {
            format!(
                " (servers {}; the others' checks are TCP)",
                http_checked.join(", ")
            )
        } else {
            String::new()
        };
        let method = http.method.as_deref().unwrap_or("OPTIONS");
        if method != "GET" {
            notes.push(Note::new(
                &at,
                format!("HAProxy checks with {method}; lbd's HTTP checks send GET{which}"),
            ));
        }
        match (&proxy.settings.expect_status, &proxy.settings.expect_body) {
            (Some(_), _) => {}
            // HAProxy's rule then judges the body alone.
            (None, Some(body)) => notes.push(Note::new(
                &at,
                format!("HAProxy's {} takes any status whose body has the text; lbd's check also expects exactly 200 (set expect_status){which}", body.what),
            )),
            (None, None) => notes.push(Note::new(
                &at,
                format!("HAProxy takes any 2xx or 3xx status as healthy; lbd expects exactly 200 (set expect_status){which}"),
            )),
        }
    }
    if let (Some(protocol), true) = (&proxy.settings.protocol_check, checked) {
        let text = match (super::check::pgsql_user(&protocol.value), &protocol.value) {
            (Some(user), _) => format!(
                "{}: lbd's pgsql check sends a StartupMessage as {user} and wants an authentication request, as HAProxy's does (check = \"pgsql\", user = \"{user}\")",
                protocol.what
            ),
            (None, p) if p.kind == "pgsql-check" => format!(
                "{}: names no role lbd's pgsql check can log in as (user, 1 to 63 bytes); lbd checks that a TCP connection opens (set check = \"pgsql\" and user = \"...\" to speak the protocol)",
                protocol.what
            ),
            _ => format!(
                "{}: lbd checks that a TCP connection opens; the protocol is not spoken",
                protocol.what
            ),
        };
        notes.push(Note::new(&protocol.origin, text));
    }
    let (mut tcp_notes, mut ignored) = tcp_check_notes(&proxy.settings, checked);
    notes.append(&mut tcp_notes);
    let (mut http_notes, mut http_ignored) = http_connect_notes(&proxy.settings, checked);
    notes.append(&mut http_notes);
    ignored.append(&mut http_ignored);
    // A table the stick rules use is said with them (see the affinity
    // module); one of counters only has no L4 meaning.
    if let Some(table) = &proxy.settings.stick_table {
        if proxy.settings.stick_rules.is_empty() {
            ignored.push(format!("{} (line {})", table.what, table.origin.line));
        }
    }
    notes.extend(other_stick_notes(&proxy.settings));
    ignored.splice(0..0, proxy.settings.ignored.iter().cloned());
    if !ignored.is_empty() {
        notes.push(Note::new(
            &proxy.origin,
            format!(
                "not carried over (no meaning for an L4 balancer): {}",
                ignored.join("; ")
            ),
        ));
    }
    notes
}
