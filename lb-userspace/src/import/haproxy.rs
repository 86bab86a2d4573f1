//! haproxy.cfg: a line grammar of sections (`global`, `defaults`,
//! `frontend`, `backend`, `listen`, ...) whose lines are words, with
//! `"..."` (escapes) and `'...'` quotes, backslash escapes and `#`
//! comments. A frontend's binds and its `default_backend`'s servers make a
//! service; a `listen` section is both at once (its own servers, unless it
//! names a `default_backend`, which HAProxy sends its connections to; one
//! in `defaults` is every later frontend's and listen's). Each proxy starts from the
//! last `defaults` section before it, as in HAProxy.

mod acl;
mod bind;
mod check;
mod cond;
mod lexer;
mod proxy;
mod server;
mod settings;

use super::model::{keep_only, Backend, Listen, Note, Origin, Service, Setup, Sourced};
use super::ImportError;

use bind::bind;
use check::check_of;
use lexer::{sections, Line};
use proxy::{proxy_line, proxy_notes, Proxy};
use settings::{apply, Settings};

/// Reads `text` (named `file`) into `setup`.
pub(super) fn parse(file: &str, text: &str, setup: &mut Setup) -> Result<(), ImportError> {
    let mut defaults = Settings::default();
    // Named defaults sections (HAProxy >= 2.4), for `from NAME`.
    let mut named: Vec<(String, Settings)> = Vec::new();
    let mut proxies: Vec<Proxy> = Vec::new();
    for section in sections(file, text, &mut setup.notes)? {
        let origin = Origin::new(file, section.no);
        match section.kind.as_str() {
            "defaults" => {
                // defaults [NAME] [from OTHER]
                let (name, from) = name_and_from(file, &section.args, section.no)?;
                let mut settings = match &from {
                    Some(from) => inherited(file, section.no, &named, from)?,
                    None => Settings::default(),
                };
                settings.notes.clear();
                settings.ignored.clear();
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
                if let Some(name) = name {
                    named.retain(|(n, _)| *n != name);
                    named.push((name, settings.clone()));
                }
                defaults = settings;
            }
            "frontend" | "backend" | "listen" => {
                let (name, from) = name_and_from(file, &section.args, section.no)?;
                let name = name.ok_or_else(|| {
                    ImportError::at(file, section.no, format!("{} without a name", section.kind))
                })?;
                let settings = match &from {
                    Some(from) => inherited(file, section.no, &named, from)?,
                    None => defaults.clone(),
                };
                // A defaults section's default_backend is a frontend's or
                // listen's, as in HAProxy; a backend has no use for one.
                let default_backend = match section.kind.as_str() {
                    "backend" => None,
                    _ => settings.default_backend.clone(),
                };
                let mut proxy = Proxy {
                    kind: section.kind.clone(),
                    name,
                    origin: origin.clone(),
                    settings,
                    binds: Vec::new(),
                    default_backend,
                    servers: Vec::new(),
                    pending: Vec::new(),
                    stats: None,
                    acl: acl::Rules::default(),
                    tls_binds: Vec::new(),
                    ssl_servers: Vec::new(),
                    redirects: Vec::new(),
                    use_backends: Vec::new(),
                };
                proxy.settings.notes.clear();
                proxy.settings.ignored.clear();
                // Old syntax: `listen NAME ADDRESS:PORT`.
                if let (Some(address), None) = (section.args.get(1), &from) {
                    let line = Line {
                        no: section.no,
                        words: vec!["bind".to_owned(), address.clone()],
                    };
                    bind(file, &line, &mut proxy)?;
                }
                for line in &section.lines {
                    proxy_line(file, line, &mut proxy)?;
                }
                // HAProxy applies a section's check settings to all its
                // servers, wherever in the section they are written.
                for server in std::mem::take(&mut proxy.pending) {
                    let origin = server.backend.origin.clone();
                    let check = server
                        .check_enabled
                        .then(|| check_of(&proxy.settings, &server, &origin));
                    if server.params.ssl.is_some() {
                        proxy.ssl_servers.push(server.backend.name.clone());
                    }
                    let mut backend = server.backend;
                    if let Some(note) = check
                        .as_ref()
                        .and_then(|_| tls_check_note(&proxy.settings, &server.params))
                    {
                        backend.notes.push(note);
                    }
                    backend.check = check;
                    proxy.servers.push(backend);
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
        if let Some(at) = &proxy.settings.disabled {
            setup.notes.extend(notes);
            setup.notes.push(Note::new(
                at,
                format!(
                    "{} {} is disabled (HAProxy does not start it): not imported",
                    proxy.kind, proxy.name
                ),
            ));
            continue;
        }
        if let Some(note) = serves_no_clients(proxy, None) {
            setup.notes.extend(notes);
            setup.notes.push(note);
            continue;
        }
        if let (Some(at), true) = (
            &proxy.stats,
            proxy.kind == "listen" && proxy.servers.is_empty(),
        ) {
            setup.notes.extend(notes);
            setup.notes.push(Note::new(
                at,
                format!(
                    "listen {} serves HAProxy's statistics page and has no servers: not imported (lbd's own: `lbctl status`, the metrics endpoint)",
                    proxy.name
                ),
            ));
            continue;
        }
        let mut rules = vec![&proxy.acl];
        // A listen's own servers serve unless it names a default_backend,
        // which HAProxy sends every connection to that no use_backend takes
        // (lbd carries over none of those).
        // The servers, and the settings of the section holding them (its
        // balance and allbackups).
        let (mut servers, farm_proxy) = if let (None, "listen") =
            (&proxy.default_backend, proxy.kind.as_str())
        {
            (proxy.servers.clone(), proxy)
        } else {
            let Some(wanted) = &proxy.default_backend else {
                setup.notes.extend(notes);
                setup.notes.push(no_default_backend(proxy));
                continue;
            };
            // A listen has a backend's side too: a default_backend may name one.
            let backend = proxies
                .iter()
                .find(|p| matches!(p.kind.as_str(), "backend" | "listen") && p.name == wanted.value)
                .ok_or_else(|| {
                    ImportError::at_origin(
                        &wanted.origin,
                        format!("{}: no backend section of that name", wanted.what),
                    )
                })?;
            notes.extend(proxy_notes(backend));
            if let Some(at) = &backend.settings.disabled {
                setup.notes.extend(notes);
                setup.notes.push(Note::new(
                    at,
                    format!(
                        "{} {} is disabled (HAProxy does not start it), so {} {} has no servers: not imported",
                        backend.kind, backend.name, proxy.kind, proxy.name
                    ),
                ));
                continue;
            }
            if let Some(first) = proxy.servers.first().filter(|_| proxy.kind == "listen") {
                notes.push(Note::new(
                    &first.origin,
                    format!(
                        "listen {}: HAProxy sends its connections to its default_backend {} ({}), not to its own servers: those are not imported",
                        proxy.name, backend.name, wanted.origin
                    ),
                ));
            }
            if let Some(note) = serves_no_clients(backend, Some(proxy)) {
                setup.notes.extend(notes);
                setup.notes.push(note);
                continue;
            }
            rules.push(&backend.acl);
            (backend.servers.clone(), backend)
        };
        let farm = &farm_proxy.settings;
        if let Some(first) = &farm.balance_first {
            notes.extend(first_only(&mut servers, first));
        }
        let (acl, mut acl_notes) = acl::Rules::resolve(&rules);
        notes.append(&mut acl_notes);
        let listens = redirected(proxy, farm_proxy, &mut notes);
        if listens.is_empty() {
            setup.notes.extend(notes);
            // (Binds a redirect answered are said by its WARNING.)
            if proxy.binds.is_empty() {
                setup.notes.push(Note::new(
                    &proxy.origin,
                    format!("{} {} has no bind: not imported", proxy.kind, proxy.name),
                ));
            }
            continue;
        }
        notes.extend(tls_terminated(proxy, farm_proxy, &listens, &servers)?);
        setup.services.push(Service {
            name: format!("{} {}", proxy.kind, proxy.name),
            origin: proxy.origin.clone(),
            listens,
            backends: servers,
            forwarding: None,
            acl,
            passive: None,
            all_backups: farm
                .all_backups
                .as_ref()
                .map(|a| format!("{} ({})", a.what, a.origin)),
            idle_timeout: proxy.settings.idle_timeout(farm),
            notes,
        });
    }
    for backend in proxies.iter().filter(|p| p.kind == "backend") {
        let used = proxies.iter().any(|p| {
            p.default_backend
                .as_ref()
                .is_some_and(|b| b.value == backend.name)
        });
        if let (false, Some(note)) = (used, serves_no_clients(backend, None)) {
            setup.notes.push(note);
        } else if !used {
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

/// The note that `proxy`, a frontend without a default_backend, is not
/// imported: a WARNING naming its use_backend rules where it has any (its
/// connections went there: a service missing after cut-over, SNI routing
/// on :443 say), a NOTE where it has none.
fn no_default_backend(proxy: &Proxy) -> Note {
    if proxy.use_backends.is_empty() {
        return Note::new(
            &proxy.origin,
            format!(
                "frontend {} has no default_backend: not imported (lbd forwards every connection of a VIP to one set of backends)",
                proxy.name
            ),
        );
    }
    let rules: Vec<String> = proxy
        .use_backends
        .iter()
        .map(|(at, what)| format!("{what} (line {})", at.line))
        .collect();
    Note::new(
        &proxy.origin,
        format!(
            "WARNING: frontend {} is not imported: it has no default_backend and its connections went to use_backend rules ({}), content switching lbd does not do (a VIP's connections go to one set of backends), so its binds serve nothing after cut-over: give each backend a VIP of its own address or port and write those [[vip]]s, or keep HAProxy for this frontend",
            proxy.name,
            rules.join("; ")
        ),
    )
}

/// Whether `listen` is one of `proxy`'s TLS-terminating binds.
fn is_tls(proxy: &Proxy, listen: &Listen) -> bool {
    proxy.tls_binds.iter().any(|t| t.origin == listen.origin)
}

/// `proxy`'s binds less those its redirects (and its backend's, `farm`)
/// answered for every request: HAProxy redirected every request (or every
/// one without TLS, `if !{ ssl_fc }`, `unless { ssl_fc }`) of its binds
/// without `ssl`, so lbd serving them would hand the application
/// cleartext requests it never saw (login forms, cookies): those binds
/// are kept out, with a WARNING. A redirect on a condition the import
/// does not interpret is a WARNING naming the binds it may have answered.
fn redirected(proxy: &Proxy, farm: &Proxy, notes: &mut Vec<Note>) -> Vec<Listen> {
    let mut redirects: Vec<&proxy::Redirect> = proxy.redirects.iter().collect();
    if !std::ptr::eq(proxy, farm) {
        redirects.extend(farm.redirects.iter());
    }
    let named = |listens: &[&Listen]| {
        listens
            .iter()
            .map(|l| format!("{} (line {})", l.what, l.origin.line))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plain: Vec<&Listen> = proxy.binds.iter().filter(|l| !is_tls(proxy, l)).collect();
    let mut keep_out = false;
    for redirect in &redirects {
        let text = match redirect.scope {
            proxy::RedirectScope::Every | proxy::RedirectScope::Plain if !plain.is_empty() => {
                keep_out = true;
                let which = if redirect.scope == proxy::RedirectScope::Every {
                    "every request"
                } else {
                    "every request without TLS"
                };
                format!(
                    "WARNING: {}: HAProxy answered {which} with a redirect on {}; lbd cannot redirect (it would send them to the servers in cleartext): not imported; serve the redirect from the backends (or keep HAProxy for it) if clients still connect there",
                    redirect.what,
                    named(&plain)
                )
            }
            proxy::RedirectScope::Every | proxy::RedirectScope::Plain => format!(
                "WARNING: {}: HAProxy answered these requests with a redirect; lbd cannot redirect: not carried over",
                redirect.what
            ),
            proxy::RedirectScope::Conditional => {
                let all: Vec<&Listen> = proxy.binds.iter().collect();
                format!(
                    "WARNING: {}: HAProxy answered the requests this condition matches with a redirect; lbd cannot redirect, so on {} they now reach the servers (the condition is not interpreted): serve the redirect from the backends, or check that they need none",
                    redirect.what,
                    named(&all)
                )
            }
        };
        notes.push(Note::new(&redirect.origin, text));
    }
    proxy
        .binds
        .iter()
        .filter(|l| !keep_out || is_tls(proxy, l))
        .cloned()
        .collect()
}

/// Each TLS-terminating bind among `listens`, against `servers` (of
/// `farm`, the section holding them): HAProxy decrypted the clients' TLS
/// there; lbd cannot, so the clients' TLS reaches the servers as it is.
/// Refused at the bind where a server speaks plain (no `ssl`): a VIP
/// :443 to port 8080 handed every ClientHello to an HTTP listener while
/// the check stayed green. With `ssl` servers, a WARNING naming the
/// certificate (`crt`) they must now present.
fn tls_terminated(
    proxy: &Proxy,
    farm: &Proxy,
    listens: &[Listen],
    servers: &[Backend],
) -> Result<Vec<Note>, ImportError> {
    let mut notes = Vec::new();
    if servers.is_empty() {
        return Ok(notes);
    }
    let plain: Vec<&str> = servers
        .iter()
        .filter(|s| !farm.ssl_servers.contains(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    for bind in proxy
        .tls_binds
        .iter()
        .filter(|t| listens.iter().any(|l| l.origin == t.origin))
    {
        if !plain.is_empty() {
            let spoken = match farm.settings.mode.as_ref().map(|m| m.value.as_str()) {
                Some("http") => "plain HTTP",
                _ => "plain TCP (no TLS)",
            };
            return Err(ImportError::at_origin(
                &bind.origin,
                format!(
                    "{}: HAProxy terminates TLS here and speaks {spoken} to {} {}'s servers {} (no ssl on their server lines); lbd cannot terminate TLS, so the clients' TLS would reach their plaintext port: remove this bind from the copy you import (keep HAProxy in front for TLS), or make the servers serve TLS on a port of their own and name it with ssl on their server lines",
                    bind.what,
                    farm.kind,
                    farm.name,
                    plain.join(", ")
                ),
            ));
        }
        let crt = bind
            .crt
            .as_deref()
            .map_or("its certificate".to_owned(), |c| {
                format!("the certificate of {c}")
            });
        notes.push(Note::new(
            &bind.origin,
            format!(
                "WARNING: {}: HAProxy terminates TLS here and re-encrypted to the servers (ssl); lbd forwards the clients' TLS as it is, so each server now terminates it: each must present {crt} (the names the clients ask for) and accept the TLS versions and ALPN the clients offer",
                bind.what
            ),
        ));
    }
    plaintext_to_tls(proxy, farm, listens, servers)?;
    Ok(notes)
}

/// Refused at the first bind among `listens` without TLS when HAProxy
/// speaks TLS (`ssl`) to some of `servers` (of `farm`): it originated TLS
/// for clients connecting in plaintext, which lbd cannot, so their
/// plaintext would reach the servers' TLS port (the converse of
/// [`tls_terminated`]'s refusal).
fn plaintext_to_tls(
    proxy: &Proxy,
    farm: &Proxy,
    listens: &[Listen],
    servers: &[Backend],
) -> Result<(), ImportError> {
    let tls: Vec<&str> = servers
        .iter()
        .filter(|s| farm.ssl_servers.contains(&s.name))
        .map(|s| s.name.as_str())
        .collect();
    let Some(bind) = listens.iter().find(|l| !is_tls(proxy, l)) else {
        return Ok(());
    };
    if tls.is_empty() {
        return Ok(());
    }
    Err(ImportError::at_origin(
        &bind.origin,
        format!(
            "{}: clients connect here in plaintext and HAProxy speaks TLS to {} {}'s servers {} (ssl on their server lines); lbd forwards the clients' connections as they are, so their plaintext would reach the servers' TLS port: remove this bind from the copy you import (keep HAProxy in front for it), or give the servers a plaintext port and name it without ssl on their server lines",
            bind.what,
            farm.kind,
            farm.name,
            tls.join(", ")
        ),
    ))
}

/// The WARNING that `proxy` (the default_backend of `user`, if given)
/// is in a mode that serves no clients (`mode log`, HAProxy 2.9+: a
/// syslog backend; `mode spop`, 3.1+: SPOE agents), so it is skipped,
/// not imported; None for `tcp` and `http`. Refusing the whole import
/// for one, as an unknown mode, lost every service beside it.
fn serves_no_clients(proxy: &Proxy, user: Option<&Proxy>) -> Option<Note> {
    let mode = proxy.settings.mode.as_ref()?;
    let what = match mode.value.as_str() {
        "log" => "log servers HAProxy forwards its logs to",
        "spop" => "SPOE agents HAProxy's filters talk to",
        _ => return None,
    };
    let used_by = user.map_or(String::new(), |u| {
        format!(", the default_backend of {} {},", u.kind, u.name)
    });
    Some(Note::new(
        &mode.origin,
        format!(
            "WARNING: {} {}{used_by} is in {} ({what}), not a service of clients' connections lbd balances: not imported",
            proxy.kind, proxy.name, mode.what
        ),
    ))
}

/// Under `balance first`, HAProxy sent each connection to the first
/// server, in file order, with a free connection slot, the next ones
/// taking over only when it was full or down: that server keeps its
/// weight, the others get 0, with a WARNING that the order is lost (a
/// weighted split sent flows to servers HAProxy kept idle).
fn first_only(servers: &mut [Backend], first: &Sourced<()>) -> Option<Note> {
    let keep = servers.iter().position(Backend::usable)?;
    let kept = keep_only(servers, &[keep], &first.origin, &first.what);
    Some(Note::new(
        &first.origin,
        format!(
            "WARNING: {}: HAProxy sent each connection to the first server (in file order) with a free connection slot and went on to the next only when it was full or down; lbd has no failover order: server {} takes all new flows and the others are written with weight 0, so nothing takes over when it fails: give another a weight then (`lbctl backend weight`)",
            first.what,
            kept.join(", ")
        ),
    ))
}

/// What a checked server's check loses to lbd's checks having no TLS:
/// an HTTP check that meets TLS (HAProxy's over `ssl`, `check-ssl` or
/// `http-check connect ... ssl`, or sent by HAProxy in the clear to
/// `addr` while lbd checks the server's own TLS port) becomes a TCP
/// check, warned of; a TCP check HAProxy makes over TLS was a TLS
/// handshake, lbd's opens a TCP connection only.
fn tls_check_note(settings: &Settings, params: &server::ServerParams) -> Option<Note> {
    let haproxy_tls = params.haproxy_tls_check();
    match &settings.http_check {
        Some(http) => {
            let tls = check::http_tls(settings, params)?;
            let text = match (&tls, haproxy_tls, &params.check_addr) {
                (check::HttpTls::Connect(rule), _, _) => format!(
                    "WARNING: {} is made over TLS ({}); lbd's checks have no TLS, so it is imported as a TCP check (the connection only, not the HTTP answer)",
                    http.what, rule.what
                ),
                (check::HttpTls::Server(_), None, Some(addr)) => format!(
                    "WARNING: {}: HAProxy sends it in the clear to addr {addr}; lbd does not follow addr and checks this server's own address at its port, which speaks TLS (ssl), and an HTTP check over TLS lbd's checks cannot make (they have no TLS), so it is imported as a TCP check (the connection only, not the HTTP answer)",
                    http.what
                ),
                (check::HttpTls::Server(_), _, _) => format!(
                    "WARNING: {} is made over TLS to this server (ssl or check-ssl); lbd's checks have no TLS, so it is imported as a TCP check (the connection only, not the HTTP answer)",
                    http.what
                ),
            };
            Some(Note::new(tls.origin(), text))
        }
        None => haproxy_tls.map(|at| {
            let keyword = match params.check_ssl {
                Some((true, _)) => "check-ssl",
                _ => "ssl",
            };
            Note::new(
                at,
                format!("{keyword}: HAProxy's check is a TLS handshake; lbd's only opens TCP"),
            )
        }),
    }
}

/// A section's name and its `from DEFAULTS` (HAProxy >= 2.4): `NAME`,
/// `NAME from DEFAULTS`, `from DEFAULTS` (an unnamed defaults section).
fn name_and_from(
    file: &str,
    args: &[String],
    no: usize,
) -> Result<(Option<String>, Option<String>), ImportError> {
    let from_at = args.iter().position(|a| a == "from").filter(|i| *i <= 1);
    match from_at {
        Some(i) => {
            let from = args.get(i + 1).cloned().ok_or_else(|| {
                ImportError::at(file, no, "from needs the name of a defaults section")
            })?;
            Ok((args.first().filter(|_| i == 1).cloned(), Some(from)))
        }
        None => Ok((args.first().cloned(), None)),
    }
}

/// The settings of the defaults section `name`, which must come before.
fn inherited(
    file: &str,
    no: usize,
    named: &[(String, Settings)],
    name: &str,
) -> Result<Settings, ImportError> {
    named
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| {
            ImportError::at(
                file,
                no,
                format!("from {name}: no defaults section of that name before this line"),
            )
        })
}
