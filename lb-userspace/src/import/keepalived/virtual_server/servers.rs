//! A virtual_server's `real_server` blocks (with their weights,
//! checkers and own forwarding method) and its `sorry_server`, as lbd's
//! backends.

use super::forwarding::method;
use crate::import::blocks::Statement;
use crate::import::keepalived::{checker, number};
use crate::import::model::{Backend, Note, Origin, Role, Sourced};
use crate::import::ImportError;

/// The `ADDRESS [PORT]` of a `real_server` or `sorry_server` statement
/// (`what`), refused at its line when it is not an IP address and an
/// optional port.
fn server_address(
    file: &str,
    statement: &Statement,
    what: &str,
) -> Result<(std::net::IpAddr, Option<u16>), ImportError> {
    let (address, port) = match statement.args() {
        [address, port] => (address, Some(port)),
        [address] => (address, None),
        _ => {
            return Err(ImportError::at(
                file,
                statement.line,
                format!("{what} needs an address and a port"),
            ))
        }
    };
    let address: std::net::IpAddr = address.parse().map_err(|_| {
        ImportError::at(
            file,
            statement.line,
            format!("{what} {address}: not an IP address"),
        )
    })?;
    let port = match port {
        None => None,
        Some(p) => Some(crate::import::port_number(p).ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!("{what} port {p:?}: not a port"),
            )
        })?),
    };
    Ok((address, port))
}

/// `sorry_server ADDRESS [PORT]`: the server IPVS sent the clients to
/// when every real_server was down (a maintenance page): lbd's backup
/// (`backup = true`), which takes new flows only while no other backend
/// of its VIP can.
pub(super) fn sorry_server(file: &str, statement: &Statement) -> Result<Backend, ImportError> {
    let at = Origin::new(file, statement.line);
    let (address, port) = server_address(file, statement, "sorry_server")?;
    Ok(Backend {
        role: Role::Backup(at.clone()),
        ..Backend::named(
            format!("sorry_server {address}"),
            address,
            port,
            at,
            statement.text(),
        )
    })
}

/// A `real_server ADDRESS PORT { weight N; TCP_CHECK {...} }` block, and
/// its own `lvs_method` if it has one.
pub(super) fn real_server(
    file: &str,
    statement: &Statement,
    inherited: &checker::Inherited,
) -> Result<(Backend, Option<Sourced<lb_common::Mode>>), ImportError> {
    let origin = Origin::new(file, statement.line);
    let (address, port) = server_address(file, statement, "real_server")?;
    let mut backend = Backend::named(
        address.to_string(),
        address,
        port,
        origin.clone(),
        statement.text(),
    );
    let mut own = None;
    let mut first_checker: Option<String> = None;
    // The real_server's checker settings over the virtual_server's,
    // wherever in the block they are written: read before its checkers.
    let mut settings = inherited.clone();
    for child in statement.children() {
        settings.read(child.file_in(file), child, &mut backend.notes)?;
    }
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        match child.name() {
            _ if checker::is_inherited(child.name()) => {}
            "weight" => {
                let weight = number(file, child, 0..=65_535u32)?;
                if weight == 0 {
                    backend.role = Role::Disabled(at.clone());
                }
                backend.weight = Some(Sourced::new(weight, &at, child.text()));
            }
            "lvs_method" | "lb_kind" => {
                let mode = method(file, child, &mut backend.notes)?;
                own = Some(Sourced::new(mode, &at, child.text()));
            }
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "DNS_CHECK" | "MISC_CHECK"
            | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" => {
                // keepalived needs every checker to pass; lbd has one check
                // per backend: the first is kept, the others said.
                if let Some(first) = &first_checker {
                    backend.notes.push(Note::new(
                        &at,
                        format!(
                            "WARNING: {}: a further checker of this real_server; keepalived needed all of them to pass, lbd checks a backend one way: only the first ({first}) is carried over",
                            child.name()
                        ),
                    ));
                    continue;
                }
                first_checker = Some(format!("{} at {at}", child.name()));
                if matches!(child.name(), "TCP_CHECK" | "HTTP_GET" | "SSL_GET") {
                    backend.check =
                        Some(checker::check(file, child, &settings, &mut backend.notes)?);
                } else {
                    backend.notes.push(Note::new(
                        &at,
                        format!(
                            "WARNING: {}: lbd checks with a TCP connection or an HTTP GET; this checker is not carried over and the backend is not checked",
                            child.name()
                        ),
                    ));
                }
            }
            _ => backend.notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    Ok((backend, own))
}
