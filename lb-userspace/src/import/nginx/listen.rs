//! A `listen` line as the VIPs it gives: an address (none: every one of
//! the family; `[::]` IPv6 clients only unless `ipv6only=off`, as nginx),
//! one port or a range of ports, TCP, `udp` or `quic` (UDP), and notes
//! on `ssl`, `quic` and `proxy_protocol`, which the backends must then
//! handle.

use std::net::IpAddr;

use super::Context;
use crate::config::Protocol;
use crate::import::blocks::Statement;
use crate::import::model::{Listen, Note, Origin};
use crate::import::ImportError;

/// The ports of a `listen` port part: one, or a range (`5060-5062`,
/// nginx >= 1.15.10), each imported as a VIP of its own.
fn ports(
    file: &str,
    statement: &Statement,
    spec: &str,
    port: &str,
) -> Result<Vec<u16>, ImportError> {
    crate::import::port_range(port).map_err(|e| match e {
        crate::import::PortRangeError::Invalid => ImportError::at(
            file,
            statement.line,
            format!("listen {spec}: {port:?} is not a port or a range of ports"),
        ),
        crate::import::PortRangeError::TooMany(n) => ImportError::at(
            file,
            statement.line,
            format!("listen {spec}: {n} ports; lbd has one VIP per port and the import writes at most {MAX_RANGE} for one range: split it or write the [[vip]]s yourself"),
        ),
    })
}

/// Most ports one `listen` range becomes.
const MAX_RANGE: usize = crate::import::MAX_PORT_RANGE;

/// A `listen [ADDRESS][:PORT] [udp | quic] [ssl] ...` line (no port: 80, no
/// address: every one, as nginx).
pub(super) fn listen(
    file: &str,
    statement: &Statement,
    context: Context,
    listens: &mut Vec<Listen>,
    notes: &mut Vec<Note>,
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
        notes.push(Note::new(
            &origin,
            format!(
                "WARNING: {}: a UNIX socket; not carried over",
                statement.text()
            ),
        ));
        return Ok(());
    }
    let options = &statement.args()[1..];
    // `quic` (`http3` in nginx's early QUIC builds): HTTP/3, served on
    // UDP; read as TCP it merged into the `listen 443 ssl` VIP and UDP 443
    // was lost without a word.
    let quic = options.iter().find(|o| *o == "quic" || *o == "http3");
    let protocol = if let Some(quic) = quic {
        notes.push(Note::new(
            &origin,
            format!("listen ... {quic}: HTTP/3 over QUIC, on UDP: imported as a UDP VIP; lbd carries QUIC as plain UDP datagrams to the backends, which must serve QUIC (HTTP/3, its TLS) on that UDP port themselves, where nginx terminated it and spoke HTTP to them"),
        ));
        Protocol::Udp
    } else if options.iter().any(|o| o == "udp") {
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
    // `ipv6only=on|off`: whether `[::]` takes IPv6 clients only; on
    // unless said otherwise (nginx's default, unlike Linux's).
    let mut v6_only = true;
    for option in options {
        if let Some(value) = option.strip_prefix("ipv6only=") {
            v6_only = match value {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(ImportError::at(
                        file,
                        statement.line,
                        format!("listen ... {option}: {value:?} is not on or off"),
                    ))
                }
            };
        }
        if option == "ssl" || option == "proxy_protocol" {
            notes.push(Note::new(
                &origin,
                format!("listen ... {option}: lbd forwards the connection as it is; the backends must handle {option} themselves"),
            ));
        }
    }
    // `8080`, `8080-8082`, `198.18.0.100`, `[2001:2::100]`, `*:80`,
    // `198.18.0.100:80`, `[::]:80`.
    let (host, port) = if spec.chars().all(|c| c.is_ascii_digit() || c == '-') {
        ("*", spec.as_str())
    } else if spec.parse::<IpAddr>().is_ok() || (spec.starts_with('[') && spec.ends_with(']')) {
        (spec.as_str(), "80")
    } else {
        match spec.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => (spec.as_str(), "80"),
        }
    };
    let ports = ports(file, statement, spec, port)?;
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
    for port in ports {
        listens.push(Listen {
            address,
            wildcard_v6,
            v6_only: wildcard_v6 && v6_only,
            port,
            protocol,
            origin: origin.clone(),
            what: statement.text(),
        });
    }
    Ok(())
}
