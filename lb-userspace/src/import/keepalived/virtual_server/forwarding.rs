//! How IPVS forwarded a virtual_server's packets (`lb_kind` /
//! `lvs_method`, or keepalived's default NAT where none is named) as
//! lbd's forwarding mode, one for the whole VIP.

use crate::import::blocks::Statement;
use crate::import::model::{Backend, Note, Origin, Service, Sourced};
use crate::import::ImportError;

/// keepalived's forwarding method where a virtual_server names none
/// (check_parser.c: "no forwarding method set, setting default NAT"):
/// IPVS NAT, which the backends answer through (they do not hold the
/// VIP), so lbd's nat mode, whose join warns that the backends then see
/// the NAT address and not the client's. Guessing dsr-l2 from the ports,
/// as for a proxy, left backends without the VIP receiving packets for
/// it. `default_forwarded`, a real_server without its own lvs_method,
/// is refused when others name a method other than NAT: an lbd VIP has
/// one forwarding mode.
pub(super) fn default_nat(
    service: &mut Service,
    origin: &Origin,
    default_forwarded: Option<&Backend>,
) -> Result<(), ImportError> {
    match (&service.forwarding, default_forwarded) {
        (None, _) => {
            service.forwarding = Some(Sourced::new(
                lb_common::Mode::Nat,
                origin,
                "no lb_kind/lvs_method: keepalived's default NAT",
            ));
            Ok(())
        }
        (Some(own), Some(backend)) if own.value != lb_common::Mode::Nat => {
            Err(ImportError::at_origin(
                &backend.origin,
                format!(
                    "real_server {} names no lvs_method and its virtual_server none, so keepalived forwards it with its default NAT, otherwise than {}; an lbd VIP has one forwarding mode: split the service or make them agree",
                    backend.address,
                    own.comment()
                ),
            ))
        }
        (Some(_), _) => Ok(()),
    }
}

/// `lb_kind` / `lvs_method` (its newer name): `NAT`, `DR`, `TUN [type
/// ipip|gue port N|gre] [nocsum|csum|remcsum]`, as lbd's forwarding mode.
pub(super) fn method(
    file: &str,
    statement: &Statement,
    notes: &mut Vec<Note>,
) -> Result<lb_common::Mode, ImportError> {
    let at = Origin::new(file, statement.line);
    let bad = |reason: String| ImportError::at(file, statement.line, reason);
    match statement.args() {
        [kind] if kind == "DR" => Ok(lb_common::Mode::DsrL2),
        [kind] if kind == "NAT" => Ok(lb_common::Mode::Nat),
        [kind, rest @ ..] if kind == "TUN" => {
            let tunnel = match rest {
                [] => "ipip",
                [key, value, ..] if key == "type" => value.as_str(),
                _ => {
                    return Err(bad(format!(
                        "{}: expected TUN [type ipip|gue|gre ...]",
                        statement.text()
                    )))
                }
            };
            match tunnel {
                "ipip" => {
                    notes.push(Note::new(
                        &at,
                        format!("{}: lbd's ipip mode; the backends run lb-decap (or an ipip device) and hold the VIP on lo", statement.text()),
                    ));
                    Ok(lb_common::Mode::Ipip)
                }
                "gue" => {
                    notes.push(Note::new(
                        &at,
                        format!("{}: lbd's gue mode; the GUE port is lbd's [tunnel] gue_port (default 6080), one for all VIPs: set it to keepalived's; the backends run lb-decap", statement.text()),
                    ));
                    Ok(lb_common::Mode::Gue)
                }
                other => Err(bad(format!(
                    "{}: lbd tunnels with ipip or gue, not {other}",
                    statement.text()
                ))),
            }
        }
        [other, ..] => Err(bad(format!(
            "{} {other}: not DR, NAT or TUN",
            statement.name()
        ))),
        [] => Err(bad(format!("{} needs DR, NAT or TUN", statement.name()))),
    }
}
