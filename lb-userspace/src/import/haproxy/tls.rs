//! HAProxy's TLS, which lbd cannot carry (it forwards the clients' bytes
//! as they are): a bind that terminates TLS, servers HAProxy speaks TLS
//! to, and a check made over TLS. Each is refused or warned of here.

use super::proxy::Proxy;
use super::settings::Settings;
use super::{check, server};
use crate::import::model::{Backend, Listen, Note};
use crate::import::ImportError;

/// Whether `listen` is one of `proxy`'s TLS-terminating binds.
pub(super) fn is_tls(proxy: &Proxy, listen: &Listen) -> bool {
    proxy.tls_binds.iter().any(|t| t.origin == listen.origin)
}

/// Each TLS-terminating bind among `listens`, against `servers` (of
/// `farm`, the section holding them): HAProxy decrypted the clients' TLS
/// there; lbd cannot, so the clients' TLS reaches the servers as it is.
/// Refused at the bind where a server speaks plain (no `ssl`): a VIP
/// :443 to port 8080 handed every ClientHello to an HTTP listener while
/// the check stayed green. With `ssl` servers, a WARNING naming the
/// certificate (`crt`) they must now present.
pub(super) fn tls_terminated(
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

/// What a checked server's TLS check loses in lbd, whose checks over
/// TLS (`tls = true`, see `check::check_of`) verify no certificate: a
/// NOTE where HAProxy's check is an HTTP one sent in the clear to `addr`
/// (lbd checks the server's own TLS port, over TLS); a WARNING where a
/// pgsql check meets TLS, which lbd's pgsql check does not speak.
pub(super) fn tls_check_note(settings: &Settings, params: &server::ServerParams) -> Option<Note> {
    let haproxy_tls = params.haproxy_tls_check();
    match &settings.http_check {
        Some(http) => {
            let tls = check::http_tls(settings, params)?;
            match (&tls, haproxy_tls, &params.check_addr) {
                (check::HttpTls::Server(at), None, Some(addr)) => Some(Note::new(
                    at,
                    format!(
                        "{}: HAProxy sends it in the clear to addr {addr}; lbd does not follow addr and checks this server's own address at its port, which speaks TLS (ssl), so its check is made over TLS (tls = true)",
                        http.what
                    ),
                )),
                _ => None,
            }
        }
        None => {
            let at = haproxy_tls?;
            let pgsql = settings
                .protocol_check
                .as_ref()
                .is_some_and(|p| check::pgsql_user(&p.value).is_some());
            pgsql.then(|| {
                Note::new(
                    at,
                    format!(
                        "WARNING: {}: HAProxy's pgsql check is made over TLS; lbd's pgsql check speaks no TLS, so it is sent in the clear",
                        check::tls_keyword(params)
                    ),
                )
            })
        }
    }
}
