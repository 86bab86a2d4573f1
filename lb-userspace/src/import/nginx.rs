//! nginx.conf (or a conf.d file): `upstream` blocks in `http` or `stream`
//! give the backends; a `server` block whose `proxy_pass` names an
//! upstream gives where it listens. nginx's passive health accounting
//! (`max_fails`, `fail_timeout`) becomes active checks, because lbd sees
//! packets, not failed requests.

mod upstream;

use std::time::Duration;

use super::blocks::{self, Dialect, Statement};
use super::model::{Listen, Note, Origin, Service, Setup};
use super::ImportError;
use crate::config::Protocol;

/// Where a block sits: `http` upstreams default to port 80; `stream`
/// ones must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Context {
    Http,
    Stream,
}

/// A time as nginx writes it (`30s`, `1m30s`, `500ms`; a bare number is
/// seconds).
pub(super) fn time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => {
                total += Duration::from_millis(n);
                rest = &rest[unit_len..];
                continue;
            }
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        total += Duration::from_secs(n.checked_mul(seconds)?);
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// A `server { listen ...; proxy_pass NAME; }` block.
#[derive(Debug)]
struct Proxy {
    listens: Vec<Listen>,
    upstream: String,
}

/// Reads `text` (named `file`) into `setup`.
pub(crate) fn parse(file: &str, text: &str, setup: &mut Setup) -> Result<(), ImportError> {
    let top = blocks::parse(file, text, Dialect::Nginx)?;
    let mut upstreams: Vec<(Context, Service)> = Vec::new();
    let mut proxies: Vec<Proxy> = Vec::new();
    walk(
        file,
        &top,
        Context::Http,
        &mut upstreams,
        &mut proxies,
        setup,
    )?;
    for (_, mut service) in upstreams {
        let name = service.name.trim_start_matches("upstream ").to_owned();
        for proxy in proxies.iter().filter(|p| p.upstream == name) {
            service.listens.extend(proxy.listens.iter().cloned());
        }
        setup.services.push(service);
    }
    Ok(())
}

/// Reads the statements of a context.
fn walk(
    file: &str,
    statements: &[Statement],
    context: Context,
    upstreams: &mut Vec<(Context, Service)>,
    proxies: &mut Vec<Proxy>,
    setup: &mut Setup,
) -> Result<(), ImportError> {
    for statement in statements {
        let origin = Origin::new(file, statement.line);
        match (statement.name(), statement.block.is_some()) {
            ("http", true) => walk(
                file,
                statement.children(),
                Context::Http,
                upstreams,
                proxies,
                setup,
            )?,
            ("stream", true) => walk(
                file,
                statement.children(),
                Context::Stream,
                upstreams,
                proxies,
                setup,
            )?,
            ("upstream", true) => {
                upstreams.push((context, upstream::upstream(file, statement, context)?));
            }
            ("server", true) => {
                if let Some(proxy) = server(file, statement, context, setup)? {
                    proxies.push(proxy);
                }
            }
            ("include", false) => setup.notes.push(Note::new(
                &origin,
                format!(
                    "{}: not followed; pass the included files to import too",
                    statement.text()
                ),
            )),
            _ => {}
        }
    }
    Ok(())
}

/// A `server` block: its listens and the upstream its `proxy_pass`
/// names (None when it names none).
fn server(
    file: &str,
    statement: &Statement,
    context: Context,
    setup: &mut Setup,
) -> Result<Option<Proxy>, ImportError> {
    let mut listens = Vec::new();
    let mut upstream = None;
    let mut stack: Vec<&Statement> = statement.children().iter().collect();
    while let Some(child) = stack.pop() {
        let at = Origin::new(file, child.line);
        match child.name() {
            "listen" => listen(file, child, context, &mut listens, setup)?,
            "location" => stack.extend(child.children()),
            "proxy_pass" => {
                let target = child.args().first().map(String::as_str).unwrap_or_default();
                let name = target
                    .strip_prefix("http://")
                    .or_else(|| target.strip_prefix("https://"))
                    .unwrap_or(target);
                let name = name.split('/').next().unwrap_or(name);
                if target.starts_with("https://") {
                    setup.notes.push(Note::new(
                        &at,
                        format!("{}: nginx speaks TLS to the backends; through lbd the client's own connection reaches them", child.text()),
                    ));
                }
                upstream = Some(name.to_owned());
            }
            _ => {}
        }
    }
    let Some(upstream) = upstream else {
        return Ok(None);
    };
    if listens.is_empty() && context == Context::Http {
        listens.push(Listen {
            address: None,
            wildcard_v6: false,
            port: 80,
            protocol: Protocol::Tcp,
            origin: Origin::new(file, statement.line),
            what: "server without listen: nginx's default *:80".to_owned(),
        });
    }
    if context == Context::Http {
        setup.notes.push(Note::new(
            &Origin::new(file, statement.line),
            format!(
                "WARNING: the http server block proxying to {upstream} is reduced to L4: lbd balances its TCP connections; HTTP routing (locations), headers and TLS termination stay behind"
            ),
        ));
    }
    Ok(Some(Proxy { listens, upstream }))
}

/// A `listen [ADDRESS:]PORT [udp] [ssl] ...` line.
fn listen(
    file: &str,
    statement: &Statement,
    context: Context,
    listens: &mut Vec<Listen>,
    setup: &mut Setup,
) -> Result<(), ImportError> {
    let origin = Origin::new(file, statement.line);
    let Some(spec) = statement.args().first() else {
        return Err(ImportError::at(
            file,
            statement.line,
            "listen needs an address or port",
        ));
    };
    if spec.starts_with("unix:") {
        setup.notes.push(Note::new(
            &origin,
            format!("{}: a UNIX socket; not carried over", statement.text()),
        ));
        return Ok(());
    }
    let options = &statement.args()[1..];
    let protocol = if options.iter().any(|o| o == "udp") {
        if context == Context::Http {
            return Err(ImportError::at(
                file,
                statement.line,
                "listen ... udp belongs in a stream block",
            ));
        }
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    for option in options {
        if option == "ssl" || option == "proxy_protocol" {
            setup.notes.push(Note::new(
                &origin,
                format!("listen ... {option}: lbd forwards the connection as it is; the backends must handle {option} themselves"),
            ));
        }
    }
    let (host, port) = match spec.parse::<u16>() {
        Ok(port) => ("*", port.to_string()),
        Err(_) => {
            let (host, port) = spec.rsplit_once(':').ok_or_else(|| {
                ImportError::at(file, statement.line, format!("listen {spec}: no port"))
            })?;
            (host, port.to_owned())
        }
    };
    let port = crate::import::port_number(&port).ok_or_else(|| {
        ImportError::at(
            file,
            statement.line,
            format!("listen {spec}: {port:?} is not a port"),
        )
    })?;
    let host = crate::import::unbracketed(host);
    let (address, wildcard_v6) = match host {
        "*" | "0.0.0.0" => (None, false),
        "::" => (None, true),
        host => (
            Some(host.parse().map_err(|_| {
                ImportError::at(
                    file,
                    statement.line,
                    format!(
                        "listen {spec}: {host:?} is not an IP address (lbd's VIPs are addresses)"
                    ),
                )
            })?),
            false,
        ),
    };
    listens.push(Listen {
        address,
        wildcard_v6,
        port,
        protocol,
        origin,
        what: statement.text(),
    });
    Ok(())
}
