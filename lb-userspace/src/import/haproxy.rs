//! haproxy.cfg: a line grammar of sections (`global`, `defaults`,
//! `frontend`, `backend`, `listen`, ...) whose lines are words, with
//! `"..."` (escapes) and `'...'` quotes, backslash escapes and `#`
//! comments. A frontend's binds and its `default_backend`'s servers make a
//! service; a `listen` section is both at once. Each proxy starts from the
//! last `defaults` section before it, as in HAProxy.

mod bind;
mod check;
mod lexer;
mod server;

use std::time::Duration;

use super::model::{Listen, Note, Origin, Service, Setup, Sourced};
use super::ImportError;

use bind::bind;
use check::check_of;
use lexer::{sections, Line};
use server::ServerParams;

use lexer::time;

/// An HTTP check as `option httpchk` / `http-check` set it.
#[derive(Debug, Clone, Default)]
struct HttpCheck {
    origin: Option<Origin>,
    what: String,
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
}

/// The settings of a proxy that its servers' checks and the notes use,
/// inherited from the last `defaults` section.
#[derive(Debug, Clone, Default)]
struct Settings {
    mode: Option<Sourced<String>>,
    http_check: Option<HttpCheck>,
    /// `option pgsql-check` and friends: protocol checks lbd does as TCP.
    protocol_check: Option<Sourced<String>>,
    expect_status: Option<Sourced<u16>>,
    timeout_check: Option<Sourced<Duration>>,
    timeout_connect: Option<Sourced<Duration>>,
    default_server: ServerParams,
    notes: Vec<Note>,
    /// Directives with no L4 meaning, listed in one note per section.
    ignored: Vec<String>,
}

/// A frontend, backend or listen section, read.
#[derive(Debug)]
struct Proxy {
    kind: String,
    name: String,
    origin: Origin,
    settings: Settings,
    binds: Vec<Listen>,
    default_backend: Option<Sourced<String>>,
    servers: Vec<super::model::Backend>,
}

/// Reads `text` (named `file`) into `setup`.
pub(crate) fn parse(file: &str, text: &str, setup: &mut Setup) -> Result<(), ImportError> {
    let mut defaults = Settings::default();
    let mut proxies: Vec<Proxy> = Vec::new();
    for section in sections(file, text)? {
        let origin = Origin::new(file, section.no);
        match section.kind.as_str() {
            "defaults" => {
                let mut settings = Settings::default();
                for line in &section.lines {
                    apply(file, line, &mut settings)?;
                }
                // Said once here, not again for every proxy inheriting them.
                let origin = Origin::new(file, section.no);
                setup.notes.append(&mut settings.notes);
                if !settings.ignored.is_empty() {
                    setup.notes.push(Note::new(
                        &origin,
                        format!(
                            "defaults: not carried over (no meaning for an L4 balancer): {}",
                            std::mem::take(&mut settings.ignored).join("; ")
                        ),
                    ));
                }
                defaults = settings;
            }
            "frontend" | "backend" | "listen" => {
                let name = section.args.first().cloned().ok_or_else(|| {
                    ImportError::at(file, section.no, format!("{} without a name", section.kind))
                })?;
                let mut proxy = Proxy {
                    kind: section.kind.clone(),
                    name,
                    origin: origin.clone(),
                    settings: defaults.clone(),
                    binds: Vec::new(),
                    default_backend: None,
                    servers: Vec::new(),
                };
                proxy.settings.notes.clear();
                proxy.settings.ignored.clear();
                // Old syntax: `listen NAME ADDRESS:PORT`.
                if let Some(address) = section.args.get(1) {
                    let line = Line {
                        no: section.no,
                        words: vec!["bind".to_owned(), address.clone()],
                    };
                    bind(file, &line, &mut proxy)?;
                }
                for line in &section.lines {
                    proxy_line(file, line, &mut proxy)?;
                }
                proxies.push(proxy);
            }
            "global" => setup.notes.push(Note::new(
                &origin,
                "global: HAProxy's process settings (user, maxconn, logging, stats socket); lbd's are its own",
            )),
            other => setup.notes.push(Note::new(
                &origin,
                format!("{other} section: not carried over (lbd has no equivalent)"),
            )),
        }
    }
    for proxy in &proxies {
        if proxy.kind == "backend" {
            continue;
        }
        let mut notes = proxy_notes(proxy);
        let servers = if proxy.kind == "listen" {
            proxy.servers.clone()
        } else {
            let Some(wanted) = &proxy.default_backend else {
                setup.notes.extend(notes);
                setup.notes.push(Note::new(
                    &proxy.origin,
                    format!(
                        "frontend {} has no default_backend: not imported (lbd forwards every connection of a VIP to one set of backends)",
                        proxy.name
                    ),
                ));
                continue;
            };
            let backend = proxies
                .iter()
                .find(|p| p.kind == "backend" && p.name == wanted.value)
                .ok_or_else(|| {
                    ImportError::at_origin(
                        &wanted.origin,
                        format!(
                            "default_backend {}: no backend section of that name",
                            wanted.value
                        ),
                    )
                })?;
            notes.extend(proxy_notes(backend));
            backend.servers.clone()
        };
        if proxy.binds.is_empty() {
            setup.notes.extend(notes);
            setup.notes.push(Note::new(
                &proxy.origin,
                format!("{} {} has no bind: not imported", proxy.kind, proxy.name),
            ));
            continue;
        }
        setup.services.push(Service {
            name: format!("{} {}", proxy.kind, proxy.name),
            origin: proxy.origin.clone(),
            listens: proxy.binds.clone(),
            backends: servers,
            forwarding: None,
            notes,
        });
    }
    for backend in proxies.iter().filter(|p| p.kind == "backend") {
        let used = proxies.iter().any(|p| {
            p.default_backend
                .as_ref()
                .is_some_and(|b| b.value == backend.name)
        });
        if !used {
            setup.notes.push(Note::new(
                &backend.origin,
                format!(
                    "backend {} is no frontend's default_backend: not imported",
                    backend.name
                ),
            ));
        }
    }
    Ok(())
}

/// The notes of a proxy: its own, its mode's, its ignored directives.
fn proxy_notes(proxy: &Proxy) -> Vec<Note> {
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
    if let (Some(http), true) = (&proxy.settings.http_check, checked) {
        let at = http.origin.clone().unwrap_or_else(|| proxy.origin.clone());
        let method = http.method.as_deref().unwrap_or("OPTIONS");
        if method != "GET" {
            notes.push(Note::new(
                &at,
                format!("HAProxy checks with {method}; lbd's HTTP checks send GET"),
            ));
        }
        if proxy.settings.expect_status.is_none() {
            notes.push(Note::new(
                &at,
                "HAProxy takes any 2xx or 3xx status as healthy; lbd expects exactly 200 (set expect_status)",
            ));
        }
    }
    if let (Some(protocol), true) = (&proxy.settings.protocol_check, checked) {
        notes.push(Note::new(
            &protocol.origin,
            format!(
                "{}: lbd checks that a TCP connection opens; the protocol is not spoken",
                protocol.what
            ),
        ));
    }
    if !proxy.settings.ignored.is_empty() {
        notes.push(Note::new(
            &proxy.origin,
            format!(
                "not carried over (no meaning for an L4 balancer): {}",
                proxy.settings.ignored.join("; ")
            ),
        ));
    }
    notes
}

/// One line inside a frontend, backend or listen section.
fn proxy_line(file: &str, line: &Line, proxy: &mut Proxy) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    match line.words[0].as_str() {
        "bind" if proxy.kind != "backend" => bind(file, line, proxy),
        "default_backend" if proxy.kind == "frontend" => {
            let name = line.words.get(1).ok_or_else(|| {
                ImportError::at(file, line.no, "default_backend needs a backend name")
            })?;
            proxy.default_backend = Some(Sourced::new(name.clone(), &origin, line.text()));
            Ok(())
        }
        "use_backend" => {
            proxy.settings.notes.push(Note::new(
                &origin,
                format!(
                    "{}: content switching is not carried over (lbd sends a VIP's connections to one set of backends: the default_backend's)",
                    line.text()
                ),
            ));
            Ok(())
        }
        "server" if proxy.kind != "frontend" => {
            let server = server::server(file, line, &proxy.settings.default_server)?;
            let check = server
                .check_enabled
                .then(|| check_of(&proxy.settings, &server, &origin));
            let mut backend = server.backend;
            backend.check = check;
            proxy.servers.push(backend);
            Ok(())
        }
        _ => apply(file, line, &mut proxy.settings),
    }
}

/// A line of settings (also in `defaults`).
fn apply(file: &str, line: &Line, settings: &mut Settings) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    let words = &line.words;
    let arg = |i: usize| words.get(i).map(String::as_str);
    match (words[0].as_str(), arg(1)) {
        ("mode", Some(mode)) => {
            if !matches!(mode, "tcp" | "http") {
                return Err(ImportError::at(file, line.no, format!("unknown mode {mode:?}")));
            }
            settings.mode = Some(Sourced::new(mode.to_owned(), &origin, line.text()));
        }
        ("balance", Some(_)) => settings.notes.push(Note::new(
            &origin,
            format!(
                "{}: lbd balances with Maglev consistent hashing of each connection (weights kept), the same on every node and stable when backends come and go",
                line.text()
            ),
        )),
        ("option", Some("httpchk")) => {
            // option httpchk [<uri>] | [<method> <uri> [<version>]]
            let mut check = HttpCheck {
                origin: Some(origin.clone()),
                what: line.text(),
                ..HttpCheck::default()
            };
            match (arg(2), arg(3)) {
                (Some(uri), None) => check.path = Some(uri.to_owned()),
                (Some(method), Some(uri)) => {
                    check.method = Some(method.to_owned());
                    check.path = Some(uri.to_owned());
                    // HTTP/1.1\r\nHost:\ www: the old way to send a Host.
                    if let Some(version) = arg(4) {
                        check.host = version
                            .split("\\r\\n")
                            .chain(version.split("\r\n"))
                            .find_map(|h| h.strip_prefix("Host:"))
                            .map(|h| h.trim().to_owned());
                    }
                }
                _ => {}
            }
            settings.http_check = Some(check);
        }
        ("option", Some("tcp-check")) => settings.http_check = None,
        ("option", Some(kind))
            if kind.ends_with("-check") || matches!(kind, "smtpchk" | "ssl-hello-chk") =>
        {
            settings.http_check = None;
            settings.protocol_check = Some(Sourced::new(kind.to_owned(), &origin, line.text()));
        }
        ("http-check", Some("expect")) => match (arg(2), arg(3)) {
            (Some("status"), Some(code)) => match code.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => {
                    settings.expect_status = Some(Sourced::new(code, &origin, line.text()));
                }
                _ => settings.notes.push(Note::new(
                    &origin,
                    format!("{}: lbd expects one status code; 200 is used", line.text()),
                )),
            },
            _ => settings.notes.push(Note::new(
                &origin,
                format!(
                    "{}: lbd checks the status code only (200 unless `http-check expect status N`)",
                    line.text()
                ),
            )),
        },
        ("http-check", Some("send")) => {
            let check = settings.http_check.get_or_insert_with(HttpCheck::default);
            check.origin = Some(origin.clone());
            check.what = line.text();
            let mut rest = words[2..].iter();
            while let Some(key) = rest.next() {
                let value = rest.next().cloned();
                match key.as_str() {
                    "meth" => check.method = value,
                    "uri" => check.path = value,
                    "hdr" => {
                        let header = value.unwrap_or_default();
                        let content = rest.next().cloned();
                        if header.eq_ignore_ascii_case("host") {
                            check.host = content;
                        }
                    }
                    _ => {}
                }
            }
        }
        ("timeout", Some(kind @ ("check" | "connect"))) => {
            let value = arg(2).and_then(time).ok_or_else(|| {
                ImportError::at(file, line.no, format!("timeout {kind} needs a time such as 5s"))
            })?;
            let sourced = Some(Sourced::new(value, &origin, line.text()));
            if kind == "check" {
                settings.timeout_check = sourced;
            } else {
                settings.timeout_connect = sourced;
            }
        }
        ("default-server", _) => {
            server::params(file, line, 1, &mut settings.default_server)?;
        }
        _ => settings.ignored.push(line.text()),
    }
    Ok(())
}
