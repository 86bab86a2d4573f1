//! haproxy.cfg: a line grammar of sections (`global`, `defaults`,
//! `frontend`, `backend`, `listen`, ...) whose lines are words, with
//! `"..."` (escapes) and `'...'` quotes, backslash escapes and `#`
//! comments. A frontend's binds and its `default_backend`'s servers make a
//! service; a `listen` section is both at once (its own servers, unless it
//! names a `default_backend`, which HAProxy sends its connections to; one
//! in `defaults` is every later frontend's and listen's). Each proxy starts from the
//! last `defaults` section before it, as in HAProxy.

mod acl;
mod affinity;
mod balance_first;
mod bind;
mod check;
mod cond;
mod defaults;
mod lexer;
mod proxy;
mod redirect;
mod server;
mod settings;
mod skipped;
mod slow_start;
mod tls;

use super::model::{Note, Origin, Service, Setup};
use super::ImportError;

use affinity::affinity;
use balance_first::first_only;
use bind::bind;
use check::check_of;
use defaults::{inherited, name_and_from};
use lexer::{sections, Line};
use proxy::{proxy_line, proxy_notes, Proxy};
use redirect::redirected;
use settings::{apply, Settings};
use skipped::{no_default_backend, serves_no_clients};
use slow_start::slow_start_notes;
use tls::{tls_check_note, tls_terminated};

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
        // The section holding the servers balances: a frontend's (or a
        // listen's with a default_backend) balance and stick rules are
        // not HAProxy's for these servers.
        let (affinity, mut affinity_notes) = affinity(farm);
        notes.append(&mut affinity_notes);
        notes.extend(slow_start_notes(&servers, farm));
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
            affinity,
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
