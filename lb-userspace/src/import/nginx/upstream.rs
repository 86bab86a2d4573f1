//! An nginx `upstream` block: its servers with `weight`, `backup`,
//! `down`, and `max_fails`/`fail_timeout` turned into an active TCP check
//! (fall = max_fails, back after one success); the balancing method and
//! connection keep-alive noted, as they have no meaning at L4, client
//! persistence (`ip_hash`, `hash $remote_addr`) as lbd's source affinity,
//! and `slow_start=` (nginx Plus) as the VIP's slow start.

use std::net::IpAddr;

use super::include::{block_items, Files, Item};
use super::{time, Context};
use crate::import::blocks::Statement;
use crate::import::model::{Backend, Check, CheckKind, Note, Origin, Role, Service, Sourced};
use crate::import::ImportError;

/// nginx's defaults: one failed attempt marks a server unavailable.
const DEFAULT_MAX_FAILS: u32 = 1;

/// Reads `upstream NAME { ... }`, with the files its includes name (of
/// `files`) read where they stand: not followed, an upstream of
/// `include app-servers.conf;` had no backends.
pub(super) fn upstream(
    file: &str,
    statement: &Statement,
    context: Context,
    files: &Files<'_>,
) -> Result<Service, ImportError> {
    let origin = Origin::new(file, statement.line);
    let name = statement
        .args()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::at(file, statement.line, "upstream needs a name"))?;
    let mut service = Service {
        name: format!("upstream {name}"),
        origin: origin.clone(),
        listens: Vec::new(),
        backends: Vec::new(),
        forwarding: None,
        affinity: Vec::new(),
        acl: Vec::new(),
        passive: None,
        // nginx balances among all of them by their weights.
        all_backups: Some(
            "nginx shares the connections among all the backup servers of an upstream".to_owned(),
        ),
        idle_timeout: None,
        notes: Vec::new(),
    };
    let mut checked = false;
    let mut method: Option<Method> = None;
    let items = block_items(
        file,
        statement,
        &service.name,
        files,
        false,
        &mut service.notes,
    )?;
    for Item {
        file,
        statement: child,
        ..
    } in items
    {
        let at = Origin::new(file, child.line);
        match child.name() {
            "server" => {
                if let Some(backend) = server(file, child, context, &mut service.notes)? {
                    checked |= backend.check.is_some();
                    service.backends.push(backend);
                }
            }
            // A balancing method: nginx keeps the last (warning that it
            // was redefined).
            "ip_hash" | "hash" | "least_conn" | "random" | "least_time" => {
                let read = balancing(&at, child);
                let note = read.note.clone();
                if let Some(earlier) = method.replace(read) {
                    // Its own note is said of a method nginx does not use.
                    if let Some(said) = &earlier.note {
                        service.notes.retain(|n| n != said);
                    }
                    service.notes.push(Note::new(
                        &earlier.origin,
                        format!(
                            "{}: redefined by {} ({at}), which nginx uses",
                            earlier.what,
                            child.text()
                        ),
                    ));
                }
                service.notes.extend(note);
            }
            // Cookie or route stickiness (NGINX Plus).
            "sticky" => service
                .notes
                .push(Note::sticky_by_other_key(&at, &child.text())),
            "keepalive" | "keepalive_requests" | "keepalive_time" | "keepalive_timeout" => {
                service.notes.push(Note::new(
                    &at,
                    format!(
                        "{}: not applicable at L4; lbd keeps no connections of its own to the backends",
                        child.text()
                    ),
                ))
            }
            _ => service
                .notes
                .push(Note::new(&at, format!("{}: not carried over", child.text()))),
        }
    }
    if let Some(method) = method {
        service
            .notes
            .extend(method.slow_start_note(&service.backends));
        service.affinity.extend(method.affinity);
    }
    if checked {
        // Said in join, where the VIP's protocol is known.
        service.passive = Some(origin.clone());
    }
    Ok(service)
}

/// An upstream's balancing method (`ip_hash`, `hash KEY`, `least_conn`,
/// ...): what it says of client affinity, and its note.
struct Method {
    origin: Origin,
    what: String,
    affinity: Option<Sourced<lb_common::Affinity>>,
    note: Option<Note>,
    /// `hash`, `ip_hash` or `random`, which nginx does not slow-start
    /// servers under.
    no_slow_start: bool,
}

impl Method {
    /// The NOTE where `backends` have a slow start under a method that
    /// nginx does not slow-start with, which lbd does.
    fn slow_start_note(&self, backends: &[Backend]) -> Option<Note> {
        let ramp = backends.iter().find_map(|b| b.slow_start.as_ref())?;
        self.no_slow_start.then(|| {
            Note::new(
                &ramp.origin,
                format!(
                    "{}: nginx does not slow-start servers under {} ({}); lbd does, also with affinity = \"source\"",
                    ramp.what, self.what, self.origin
                ),
            )
        })
    }
}

/// The method `statement` (at `at`) names: `ip_hash` and `hash
/// $remote_addr` (with or without `consistent`) hash the client's address,
/// lbd's source affinity; a hash of any other key, and the methods that
/// count connections or pick at random, are not carried over.
fn balancing(at: &Origin, statement: &Statement) -> Method {
    let what = statement.text();
    let source = Some(Sourced::new(lb_common::Affinity::Source, at, what.clone()));
    let (affinity, note) = match (statement.name(), statement.args()) {
        ("ip_hash", _) => (
            source,
            Some(format!(
                "{what}: nginx hashed the first three octets of an IPv4 client's address (a /24 shared a server) and an IPv6 client's whole address; lbd hashes the whole address, so clients of one /24 may go to different backends"
            )),
        ),
        ("hash", [key] | [key, _])
            if matches!(key.as_str(), "$remote_addr" | "$binary_remote_addr") =>
        {
            (source, None)
        }
        ("hash", _) => (
            None,
            Some(format!(
                "{what}: a hash of another key than the client's address alone is not carried over; lbd balances with Maglev consistent hashing of each connection (weights kept)"
            )),
        ),
        _ => (
            None,
            Some(format!(
                "{what}: not applicable at L4; lbd balances with Maglev consistent hashing of each connection (weights kept)"
            )),
        ),
    };
    Method {
        origin: at.clone(),
        what,
        affinity,
        note: note.map(|text| Note::new(at, text)),
        no_slow_start: matches!(statement.name(), "hash" | "ip_hash" | "random"),
    }
}

/// A `server ADDRESS[:PORT] [weight=N] [max_fails=N] ...` line (None: a
/// UNIX socket, noted).
fn server(
    file: &str,
    statement: &Statement,
    context: Context,
    notes: &mut Vec<Note>,
) -> Result<Option<Backend>, ImportError> {
    let origin = Origin::new(file, statement.line);
    let Some(spec) = statement.args().first() else {
        return Err(ImportError::at(
            file,
            statement.line,
            "server needs an address",
        ));
    };
    if spec.starts_with("unix:") {
        notes.push(Note::new(
            &origin,
            format!("{}: a UNIX socket; not carried over", statement.text()),
        ));
        return Ok(None);
    }
    let not_address = |host: &str| {
        ImportError::at(
            file,
            statement.line,
            format!("server {spec}: {host:?} is not an IP address (lbd balances to addresses: write the server's)"),
        )
    };
    let (address, port): (IpAddr, Option<u16>) = match crate::import::whole_address(spec) {
        Some(address) => (address, None),
        None => {
            let (host, port) = spec.rsplit_once(':').ok_or_else(|| not_address(spec))?;
            let host = crate::import::unbracketed(host);
            let address = host.parse().map_err(|_| not_address(host))?;
            let port = crate::import::port_number(port).ok_or_else(|| {
                ImportError::at(
                    file,
                    statement.line,
                    format!("server {spec}: {port:?} is not a port"),
                )
            })?;
            (address, Some(port))
        }
    };
    let port = match (port, context) {
        (Some(port), _) => Some(port),
        (None, Context::Http) => Some(80),
        (None, Context::Stream) => {
            return Err(ImportError::at(
                file,
                statement.line,
                format!("server {spec}: no port (a stream upstream's servers need one)"),
            ))
        }
    };
    let mut backend = Backend::named(
        spec.clone(),
        address,
        port,
        origin.clone(),
        statement.text(),
    );
    let mut max_fails: Option<Sourced<u32>> = None;
    let mut fail_timeout = None;
    for param in &statement.args()[1..] {
        let (key, value) = param.split_once('=').unwrap_or((param.as_str(), ""));
        let bad = |expected: &str| {
            ImportError::at(
                file,
                statement.line,
                format!("{param}: {value:?} is not {expected}"),
            )
        };
        match key {
            "weight" => {
                let weight = value
                    .parse::<u32>()
                    .ok()
                    .filter(|w| *w >= 1)
                    .ok_or_else(|| bad("a weight of 1 or more"))?;
                backend.weight = Some(Sourced::new(weight, &origin, param.clone()));
            }
            // Any count nginx takes: one above lbd's fall range is
            // brought into it (with a note) where the check is written.
            "max_fails" => {
                let n = value.parse::<u32>().map_err(|_| bad("a number"))?;
                max_fails = Some(Sourced::new(n, &origin, param.clone()));
            }
            "fail_timeout" => {
                fail_timeout = Some(time(value).ok_or_else(|| bad("a time such as 30s"))?)
            }
            // `down` wins in either order: nginx uses a server marked
            // down for nothing, backup or not (`down backup` written as a
            // backup took over when no active server could).
            "backup" => {
                if !matches!(backend.role, Role::Disabled(_)) {
                    backend.role = Role::Backup(origin.clone());
                }
            }
            "down" => backend.role = Role::Disabled(origin.clone()),
            "max_conns" => backend.notes.push(Note::new(
                &origin,
                format!("{param}: lbd forwards packets and limits no connections"),
            )),
            // The VIP's slow_start_s, made in join from its servers' (0: off).
            "slow_start" => {
                let ramp = time(value).ok_or_else(|| bad("a time such as 30s"))?;
                backend.slow_start =
                    Some(Sourced::new(ramp, &origin, param.clone())).filter(|s| !s.value.is_zero());
            }
            _ => backend
                .notes
                .push(Note::new(&origin, format!("{param}: not carried over"))),
        }
    }
    let fall = max_fails.unwrap_or_else(|| {
        Sourced::new(DEFAULT_MAX_FAILS, &origin, "max_fails: nginx's default 1")
    });
    if fall.value > 0 {
        let what = match fail_timeout {
            Some(t) => format!("{} (fail_timeout {}s)", fall.what, t.as_secs()),
            None => fall.what.clone(),
        };
        let mut check = Check::new(Sourced::new(
            CheckKind::Tcp,
            &origin,
            "passive checks made active",
        ));
        check.fall = Some(Sourced::new(fall.value, &origin, what));
        check.rise = Some(Sourced::new(
            1,
            &origin,
            "nginx tries a failed server again with one request",
        ));
        backend.check = Some(check);
    } else {
        backend
            .notes
            .push(Note::new(&origin, "max_fails=0: not checked, as in nginx"));
    }
    Ok(Some(backend))
}
