//! HAProxy's `bind` lines: where a frontend or listen section accepts
//! connections (`*:80`, `:::443`, `198.18.0.100:80,198.18.0.101:80`,
//! `udp@:53`), one listen per address and port (a range of ports gives
//! one per port); what lbd cannot serve (UNIX sockets) is noted, TLS
//! termination warned about.

use super::lexer::Line;
use super::proxy::{Proxy, TlsBind};
use crate::config::Protocol;
use crate::import::model::{Listen, Note, Origin};
use crate::import::ImportError;

/// HAProxy's bind options that take a value (the next word).
const WITH_VALUE: &[&str] = &[
    "accept-netscaler-cip",
    "alpn",
    "backlog",
    "ca-file",
    "ca-ignore-err",
    "ca-sign-file",
    "ca-sign-pass",
    "ca-verify-file",
    "cc",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "crl-file",
    "crt",
    "crt-ignore-err",
    "crt-list",
    "curves",
    "default-crt",
    "ecdhe",
    "ech",
    "expose-fd",
    "gid",
    "group",
    "guid-prefix",
    "id",
    "idle-ping",
    "interface",
    "ktls",
    "label",
    "level",
    "maxconn",
    "mode",
    "mss",
    "name",
    "namespace",
    "nbconn",
    "nice",
    "npn",
    "process",
    "proto",
    "quic-cc-algo",
    "quic-socket",
    "severity-output",
    "shards",
    "sigalgs",
    "ssl-max-ver",
    "ssl-min-ver",
    "tcp-md5sig",
    "tcp-ss",
    "tcp-ut",
    "thread",
    "tls-ticket-keys",
    "uid",
    "user",
    "verify",
];

/// Bind options of TLS termination, said by the note on `ssl` (or of no
/// effect without it).
const TLS: &[&str] = &[
    "allow-0rtt",
    "alpn",
    "ca-file",
    "ca-ignore-err",
    "ca-sign-file",
    "ca-sign-pass",
    "ca-verify-file",
    "ciphers",
    "ciphersuites",
    "client-sigalgs",
    "crl-file",
    "crt",
    "crt-ignore-err",
    "crt-list",
    "curves",
    "default-crt",
    "ecdhe",
    "ech",
    "force-sslv3",
    "force-tlsv10",
    "force-tlsv11",
    "force-tlsv12",
    "force-tlsv13",
    "generate-certificates",
    "ktls",
    "no-alpn",
    "no-ca-names",
    "no-sslv3",
    "no-tls-tickets",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "npn",
    "prefer-client-ciphers",
    "sigalgs",
    "ssl-max-ver",
    "ssl-min-ver",
    "strict-sni",
    "tls-ticket-keys",
    "verify",
];

/// A note for each bind option lbd does not carry over (all but `ssl`,
/// noted on its own with its TLS options, and the address families'
/// `v6only`/`v4v6`, which the listens keep): what HAProxy did with it and
/// why lbd does not.
fn options_notes(origin: &Origin, options: &[String], notes: &mut Vec<Note>) {
    let mut words = options.iter();
    while let Some(key) = words.next() {
        let key = key.as_str();
        let value = if WITH_VALUE.contains(&key) {
            words.next().map(String::as_str)
        } else {
            None
        };
        let said = match value {
            Some(value) => format!("bind option {key} {value}"),
            None => format!("bind option {key}"),
        };
        let said = crate::import::write::printable(&said);
        let text = match key {
            "ssl" | "v6only" | "v4v6" => continue,
            _ if TLS.contains(&key) => continue,
            "accept-proxy" | "accept-netscaler-cip" => {
                let header = if key == "accept-proxy" {
                    "PROXY protocol header"
                } else {
                    "NetScaler client IP header"
                };
                format!(
                    "WARNING: {said}: HAProxy read the {header} the front sends before each connection's data; lbd forwards packets as they are, so the backends receive that header: make them accept it (nginx `listen ... proxy_protocol`; PgBouncer and others may not) or stop the front sending it"
                )
            }
            "interface" => format!(
                "{said}: HAProxy accepted only on that interface; lbd serves its VIPs on its one `interface`"
            ),
            "namespace" => format!(
                "{said}: HAProxy listened in that network namespace; lbd serves on its `interface`, in the namespace it runs in"
            ),
            "transparent" => format!(
                "{said}: HAProxy accepted for an address not its own; lbd adds each VIP to its interface itself (or [[vrrp]] does)"
            ),
            "mss" => format!(
                "{said}: HAProxy set the TCP MSS of its side; lbd does not terminate TCP, so the backends' own MSS applies"
            ),
            _ => format!("{said}: not carried over (lbd does not accept connections itself)"),
        };
        notes.push(Note::new(origin, text));
    }
}

/// A `bind` line: one listen per address (a comma-separated list).
pub(super) fn bind(file: &str, line: &Line, proxy: &mut Proxy) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    let list = line
        .words
        .get(1)
        .ok_or_else(|| ImportError::at(file, line.no, "bind needs an address"))?;
    let options = &line.words[2..];
    // Refused or warned of once the servers are known (they must speak
    // TLS themselves, with this certificate).
    if options.iter().any(|o| o == "ssl") {
        let crt = options
            .windows(2)
            .find(|w| matches!(w[0].as_str(), "crt" | "crt-list" | "default-crt"))
            .map(|w| format!("{} {}", w[0], w[1]));
        proxy.tls_binds.push(TlsBind {
            origin: origin.clone(),
            what: line.text(),
            crt,
        });
    }
    options_notes(&origin, options, &mut proxy.settings.notes);
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
        let ports = ports(file, line.no, spec, port)?;
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
        for port in ports {
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
    }
    Ok(())
}

/// The ports of a bind's port part: one, or a range (`8000-8003`), each
/// a VIP of its own (as nginx's `listen` ranges; dropped, a frontend on a
/// range served none of them).
fn ports(file: &str, no: usize, spec: &str, port: &str) -> Result<Vec<u16>, ImportError> {
    let max = crate::import::MAX_PORT_RANGE;
    crate::import::port_range(port).map_err(|e| match e {
        crate::import::PortRangeError::Invalid => {
            let what = if port.contains('-') {
                "a range of ports"
            } else {
                "a port"
            };
            ImportError::at(file, no, format!("bind {spec}: {port:?} is not {what}"))
        }
        crate::import::PortRangeError::TooMany(n) => ImportError::at(
            file,
            no,
            format!("bind {spec}: {n} ports; lbd has one VIP per port and the import writes at most {max} for one range: split it or write the [[vip]]s yourself"),
        ),
    })
}
