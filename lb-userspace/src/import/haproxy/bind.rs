//! HAProxy's `bind` lines: where a frontend or listen section accepts
//! connections (`*:80`, `:::443`, `198.18.0.100:80,198.18.0.101:80`,
//! `udp@:53`), one listen per address; what lbd cannot serve (UNIX
//! sockets, port ranges) is noted, TLS termination warned about.

use super::lexer::Line;
use super::proxy::Proxy;
use crate::config::Protocol;
use crate::import::model::{Listen, Note, Origin};
use crate::import::ImportError;

/// A `bind` line: one listen per address (a comma-separated list).
pub(super) fn bind(file: &str, line: &Line, proxy: &mut Proxy) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    let list = line
        .words
        .get(1)
        .ok_or_else(|| ImportError::at(file, line.no, "bind needs an address"))?;
    let options = &line.words[2..];
    if options.iter().any(|o| o == "ssl") {
        proxy.settings.notes.push(Note::new(
            &origin,
            format!(
                "{}: HAProxy terminates TLS here; lbd forwards the TCP connection as it is, so the backends must serve TLS themselves (their certificates)",
                line.text()
            ),
        ));
    }
    // `v6only` makes an IPv6 wildcard refuse IPv4 clients; without it
    // Linux's default (bindv6only=0) lets them in, as with `:::443`.
    let v6_only = options.iter().any(|o| o == "v6only");
    for spec in list.split(',') {
        let mut protocol = Protocol::Tcp;
        let mut rest = spec;
        // The family a prefix forces on a wildcard (`ipv6@:443` is `:::443`).
        let mut family_v6 = false;
        if let Some((prefix, after)) = spec.split_once('@') {
            family_v6 = matches!(prefix, "ipv6" | "tcp6" | "udp6" | "quic6");
            match prefix {
                "ipv4" | "ipv6" | "tcp" | "tcp4" | "tcp6" => {}
                "udp" | "udp4" | "udp6" | "quic4" | "quic6" => protocol = Protocol::Udp,
                _ => {
                    proxy.settings.notes.push(Note::new(
                        &origin,
                        format!("bind {spec}: not a network address; not carried over"),
                    ));
                    continue;
                }
            }
            rest = after;
        }
        if rest.starts_with('/') {
            proxy.settings.notes.push(Note::new(
                &origin,
                format!("bind {spec}: a UNIX socket; not carried over"),
            ));
            continue;
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
            ImportError::at(
                file,
                line.no,
                format!("bind {spec}: no port (ADDRESS:PORT)"),
            )
        })?;
        if port.contains('-') {
            proxy.settings.notes.push(Note::new(
                &origin,
                format!(
                    "bind {spec}: a port range; an lbd VIP has one port: add a [[vip]] per port"
                ),
            ));
            continue;
        }
        let port: u16 = crate::import::port_number(port).ok_or_else(|| {
            ImportError::at(
                file,
                line.no,
                format!("bind {spec}: {port:?} is not a port"),
            )
        })?;
        let host = crate::import::unbracketed(host);
        let (address, wildcard_v6) = match host {
            "" | "*" if family_v6 => (None, true),
            "" | "*" | "0.0.0.0" => (None, false),
            "::" | ":" => (None, true),
            host => match host.parse() {
                Ok(address) => (Some(address), false),
                Err(_) => {
                    return Err(ImportError::at(
                        file,
                        line.no,
                        format!(
                            "bind {spec}: {host:?} is not an IP address (lbd's VIPs are addresses)"
                        ),
                    ))
                }
            },
        };
        proxy.binds.push(Listen {
            address,
            wildcard_v6,
            v6_only: wildcard_v6 && v6_only,
            port,
            protocol,
            origin: origin.clone(),
            what: format!("bind {spec}"),
        });
    }
    Ok(())
}
