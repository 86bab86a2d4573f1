//! A proxying `server` block: its listens, where its `proxy_pass` goes
//! (an upstream's name or an address), who may connect, and notes on
//! what stays behind at L4 (locations, TLS, the PROXY protocol). The
//! files its includes name are read where they stand.

use std::net::IpAddr;

use super::include::block_items;
use super::listen::listen;
use super::walk::{access_rule, Level};
use super::Context;
use crate::config::Protocol;
use crate::import::acl;
use crate::import::blocks::Statement;
use crate::import::model::{AclRule, Backend, Listen, Note, Origin, Setup};
use crate::import::ImportError;

/// Where a `server` block sends its connections.
#[derive(Debug)]
pub(super) enum Target {
    /// `proxy_pass NAME` / `proxy_pass http://NAME/...`: an upstream.
    Upstream(String),
    /// `proxy_pass 198.18.0.61:3306`: one server.
    Address(Box<Backend>),
}

/// A `server { listen ...; proxy_pass ...; }` block.
#[derive(Debug)]
pub(super) struct Proxy {
    pub(super) listens: Vec<Listen>,
    pub(super) target: Target,
    pub(super) origin: Origin,
    pub(super) context: Context,
    pub(super) acl: Vec<AclRule>,
    pub(super) notes: Vec<Note>,
}

/// A `server` block: its listens, where its `proxy_pass` goes and who
/// may connect (None when it proxies nowhere lbd can follow: noted).
pub(super) fn server(
    file: &str,
    statement: &Statement,
    context: Context,
    level: &Level<'_>,
    setup: &mut Setup,
) -> Result<Option<Proxy>, ImportError> {
    let block_at = Origin::new(file, statement.line);
    let mut listens = Vec::new();
    let mut notes = Vec::new();
    let mut left = Vec::new();
    let mut passes = Vec::new();
    // Its statements, those of the files its includes name spliced in
    // (a `listen 443` there was lost), its locations' marked.
    let items = block_items(file, statement, "server", level.files, true, &mut notes)?;
    let mut own = Vec::new();
    for item in items.iter().filter(|i| !i.in_location) {
        own.extend(access_rule(item.file, item.statement)?);
    }
    for item in &items {
        let (file, child, in_location) = (item.file, item.statement, item.in_location);
        let at = Origin::new(file, child.line);
        match child.name() {
            "listen" if !in_location => listen(file, child, context, &mut listens, &mut notes)?,
            "allow" | "deny" if !in_location => {}
            "allow" | "deny" => notes.push(Note::new(
                &at,
                format!(
                    "WARNING: {}: a rule of one location; lbd's rules are per VIP: not carried over",
                    child.text()
                ),
            )),
            // The other protocols nginx proxies in: followed as proxy_pass,
            // the protocol warned of; which one is, decided below.
            "proxy_pass" | "grpc_pass" | "uwsgi_pass" | "scgi_pass" | "fastcgi_pass" => {
                passes.push((file, child));
            }
            "proxy_protocol" if child.args().first().is_some_and(|a| a == "on") => {
                notes.push(Note::new(
                    &at,
                    format!("WARNING: {}: nginx sent a PROXY protocol header to the backends; lbd sends none: turn it off on them (in dsr-l2 mode they see the client's address themselves)", child.text()),
                ));
            }
            name if name.starts_with("ssl_") || name.starts_with("proxy_ssl") => {
                notes.push(Note::new(
                    &at,
                    format!("WARNING: {}: nginx's TLS; lbd forwards the connection as it is: not carried over", child.text()),
                ));
            }
            _ => left.push(format!("{} ({at})", child.text())),
        }
    }
    let target = follow(&passes, context, &mut notes)?;
    let target = match target {
        Some((target, tls)) => {
            let upstream_tls = tls || (context == Context::Stream && proxy_ssl_on(&items));
            notes.extend(tls_terminated(&items, upstream_tls)?);
            Some(target)
        }
        None => None,
    };
    if !left.is_empty() {
        let http = context == Context::Http;
        notes.push(Note::new(
            &block_at,
            format!(
                "{}not carried over from this server block: {}",
                if http { "" } else { "WARNING: " },
                left.join("; ")
            ),
        ));
    }
    let rules = if own.is_empty() {
        level.inherited.clone()
    } else {
        own
    };
    let acl = match acl::first_match(&rules) {
        Ok(acl) => acl,
        Err(note) => {
            notes.push(note);
            Vec::new()
        }
    };
    let Some(target) = target else {
        setup.notes.extend(notes);
        setup.notes.push(Note::new(
            &block_at,
            if passes.is_empty() {
                "server block without proxy_pass (nginx serves it itself): not imported"
            } else {
                "server block whose passes lbd cannot follow (said above): not imported"
            },
        ));
        return Ok(None);
    };
    if listens.is_empty() && context == Context::Http {
        listens.push(Listen {
            address: None,
            wildcard_v6: false,
            v6_only: false,
            port: 80,
            protocol: Protocol::Tcp,
            origin: block_at.clone(),
            what: "server without listen: nginx's default *:80".to_owned(),
        });
    }
    if context == Context::Http {
        let to = match &target {
            Target::Upstream(name) => name.clone(),
            Target::Address(b) => b.name.clone(),
        };
        notes.push(Note::new(
            &block_at,
            format!(
                "WARNING: the http server block proxying to {to} is reduced to L4: lbd balances its TCP connections; HTTP routing (locations), headers and TLS termination stay behind"
            ),
        ));
    }
    Ok(Some(Proxy {
        listens,
        target,
        origin: block_at,
        context,
        acl,
        notes,
    }))
}

/// Whether the block's own `proxy_ssl on` makes a stream server speak
/// TLS to its upstream (an http one's scheme says, `https://`).
fn proxy_ssl_on(items: &[super::include::Item<'_>]) -> bool {
    items.iter().any(|i| {
        !i.in_location
            && i.statement.name() == "proxy_ssl"
            && i.statement.args().first().is_some_and(|a| a == "on")
    })
}

/// Each TLS-terminating `listen ... ssl` of a server block (all of its
/// listens under the old `ssl on`), against what it proxies to: nginx
/// decrypted the clients' TLS there and lbd cannot, so the clients' TLS
/// reaches the backends as it is. Refused at the listen where nginx spoke
/// plain to them (`proxy_pass http://`, a stream proxy_pass without
/// `proxy_ssl on`): TLS to a plaintext port. Where it re-encrypted, a
/// WARNING naming the certificate they must now present.
fn tls_terminated(
    items: &[super::include::Item<'_>],
    upstream_tls: bool,
) -> Result<Vec<Note>, ImportError> {
    let own = || items.iter().filter(|i| !i.in_location);
    let all_tls = own().any(|i| {
        i.statement.name() == "ssl" && i.statement.args().first().is_some_and(|a| a == "on")
    });
    let certificates: Vec<String> = own()
        .filter(|i| i.statement.name() == "ssl_certificate")
        .map(|i| i.statement.text())
        .collect();
    let mut notes = Vec::new();
    for item in own().filter(|i| {
        i.statement.name() == "listen"
            && (all_tls || i.statement.args().iter().skip(1).any(|a| a == "ssl"))
    }) {
        let at = Origin::new(item.file, item.statement.line);
        let listen = item.statement.text();
        if !upstream_tls {
            return Err(ImportError::at_origin(
                &at,
                format!(
                    "{listen}: nginx terminates TLS here and speaks plain to the backends (proxy_pass without https://, or a stream proxy_pass without proxy_ssl on); lbd cannot terminate TLS, so the clients' TLS would reach their plaintext port: remove this listen from the copy you import (keep nginx in front for TLS), or make the backends serve TLS on a port of their own and proxy_pass https:// (stream: proxy_ssl on) to it"
                ),
            ));
        }
        let crt = if certificates.is_empty() {
            "nginx's certificate (ssl_certificate)".to_owned()
        } else {
            format!("the certificate of {}", certificates.join(", "))
        };
        notes.push(Note::new(
            &at,
            format!(
                "WARNING: {listen}: nginx terminates TLS here and re-encrypted to the backends; lbd forwards the clients' TLS as it is, so each backend now terminates it: each must present {crt} (the names the clients ask for) and accept the TLS versions and ALPN the clients offer"
            ),
        ));
    }
    Ok(notes)
}

/// Where a server block's passes send its connections: the first
/// `proxy_pass` / `grpc_pass` lbd can follow, or where the block has
/// neither (a PHP site's `fastcgi_pass`), the first `fastcgi_pass`,
/// `scgi_pass` or `uwsgi_pass` it can follow. nginx sent the clients'
/// HTTP to the former and only some locations' requests to the latter,
/// so a location's FastCGI server must not take the VIP from an HTTP
/// upstream, whatever their order. One lbd cannot follow (a UNIX socket,
/// a variable) leaves the choice to the next; the others are noted as
/// not carried over. None when none can be followed (or there is none).
fn follow(
    passes: &[(&str, &Statement)],
    context: Context,
    notes: &mut Vec<Note>,
) -> Result<Option<(Target, bool)>, ImportError> {
    let http_pass = |s: &Statement| matches!(s.name(), "proxy_pass" | "grpc_pass");
    let has_http_pass = passes.iter().any(|(_, s)| http_pass(s));
    // The kind of pass followed: the HTTP ones where the block has any.
    let eligible = |s: &Statement| http_pass(s) == has_http_pass;
    let mut followed = None;
    for (i, &(file, statement)) in passes.iter().enumerate() {
        if !eligible(statement) {
            continue;
        }
        if let Some(target) = proxy_pass(file, statement, context, notes)? {
            followed = Some((i, target));
            break;
        }
    }
    // The ones before it were tried and not followed, said by their own
    // notes; the others are not carried over.
    let (first_left, chosen) = match &followed {
        Some((i, _)) => (i + 1, passes.get(*i)),
        None => (passes.len(), None),
    };
    for (i, &(file, statement)) in passes.iter().enumerate() {
        if i < first_left && eligible(statement) {
            continue;
        }
        let instead = match chosen {
            Some((chosen_file, chosen)) => format!(
                "lbd sends a VIP's connections to one place, where `{}` ({}) sends them",
                chosen.text(),
                Origin::new(chosen_file, chosen.line)
            ),
            // A FastCGI server is no stand-in for an HTTP pass lbd cannot
            // follow.
            None => "nginx sent the clients' HTTP elsewhere".to_owned(),
        };
        notes.push(Note::new(
            &Origin::new(file, statement.line),
            format!(
                "WARNING: {}: another location's {}; {instead}: not carried over",
                statement.text(),
                statement.name()
            ),
        ));
    }
    Ok(followed.map(|(_, target)| target))
}

/// What a `*_pass` other than proxy_pass made nginx speak to the
/// backends, for the WARNING that says the backends get the clients'
/// own connections instead.
fn protocol_warning(statement: &Statement) -> Option<String> {
    let text = statement.text();
    let spoken = match statement.name() {
        "grpc_pass" => return Some(format!(
            "WARNING: {text}: nginx spoke gRPC to the backends for the clients' requests; through lbd the clients' own connections reach them (TLS included where the listen has ssl), so they must serve those connections themselves"
        )),
        "fastcgi_pass" => "FastCGI",
        "scgi_pass" => "SCGI",
        "uwsgi_pass" => "uwsgi",
        _ => return None,
    };
    Some(format!(
        "WARNING: {text}: nginx spoke {spoken} to the backends and HTTP to the clients; through lbd the clients' HTTP reaches the backends, which must then serve HTTP themselves (a {spoken} server does not)"
    ))
}

/// A `proxy_pass` (or `grpc_pass`, `uwsgi_pass`, `scgi_pass`,
/// `fastcgi_pass`): an upstream's name, an address (a one-server
/// service), or None for what lbd cannot follow (a variable, a UNIX
/// socket), noted.
fn proxy_pass(
    file: &str,
    statement: &Statement,
    context: Context,
    notes: &mut Vec<Note>,
) -> Result<Option<(Target, bool)>, ImportError> {
    let at = Origin::new(file, statement.line);
    let target = statement
        .args()
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let mut tls = false;
    // The scheme's port, where it has one (grpc_pass's are http's).
    let (scheme_port, rest) = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("grpc://"))
    {
        (Some(80), rest)
    } else if let Some(rest) = target
        .strip_prefix("https://")
        .or_else(|| target.strip_prefix("grpcs://"))
    {
        tls = true;
        (Some(443), rest)
    } else if let Some(rest) = target.strip_prefix("uwsgi://") {
        (None, rest)
    } else if let Some(rest) = target.strip_prefix("suwsgi://") {
        tls = true;
        (None, rest)
    } else {
        (None, target)
    };
    let host = rest.split('/').next().unwrap_or(rest);
    if host.contains('$') || host.is_empty() {
        notes.push(Note::new(
            &at,
            format!("WARNING: {}: a destination chosen at run time (a variable); lbd needs fixed backends: not followed", statement.text()),
        ));
        return Ok(None);
    }
    if host.starts_with("unix:") {
        notes.push(Note::new(
            &at,
            format!("WARNING: {}: a UNIX socket; not followed", statement.text()),
        ));
        return Ok(None);
    }
    // Followed: what nginx did there that lbd does not.
    if let Some(warning) = protocol_warning(statement) {
        notes.push(Note::new(&at, warning));
    }
    if tls {
        notes.push(Note::new(
            &at,
            format!("{}: nginx speaks TLS to the backends; through lbd the client's own connection reaches them", statement.text()),
        ));
    }
    let bad_port = |port: &str| {
        ImportError::at(
            file,
            statement.line,
            format!("{}: {port:?} is not a port", statement.text()),
        )
    };
    let address = match crate::import::whole_address(host) {
        Some(address) => Some((address, None)),
        None => match host.rsplit_once(':') {
            Some((h, port)) => match crate::import::unbracketed(h).parse::<IpAddr>() {
                Ok(address) => Some((
                    address,
                    Some(crate::import::port_number(port).ok_or_else(|| bad_port(port))?),
                )),
                // `NAME:PORT` is never an upstream (nginx refuses an
                // upstream with a port): a host name, which lbd cannot
                // balance to; refused as README says, not dropped with
                // a hint to pass an upstream's file.
                Err(_) if port.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(ImportError::at(
                        file,
                        statement.line,
                        format!(
                            "{}: {h:?} is not an IP address (lbd balances to addresses: write the backend's, or an upstream of them)",
                            statement.text()
                        ),
                    ))
                }
                Err(_) => None,
            },
            // No ':' and not an address: an upstream's name.
            None => None,
        },
    };
    let Some((address, port)) = address else {
        return Ok(Some((Target::Upstream(host.to_owned()), tls)));
    };
    // proxy_pass and grpc_pass default to port 80; nginx refuses the
    // others' addresses without a port.
    let defaults_to_80 = matches!(statement.name(), "proxy_pass" | "grpc_pass");
    let port = match (port.or(scheme_port), context) {
        (Some(port), _) => port,
        (None, Context::Http) if defaults_to_80 => 80,
        (None, Context::Http) => {
            return Err(ImportError::at(
                file,
                statement.line,
                format!("{}: no port (nginx needs one here)", statement.text()),
            ))
        }
        (None, Context::Stream) => {
            return Err(ImportError::at(
                file,
                statement.line,
                format!(
                    "{}: no port (nginx needs one in a stream proxy_pass)",
                    statement.text()
                ),
            ))
        }
    };
    Ok(Some((
        Target::Address(Box::new(Backend::named(
            std::net::SocketAddr::new(address, port).to_string(),
            address,
            Some(port),
            at,
            statement.text(),
        ))),
        tls,
    )))
}
