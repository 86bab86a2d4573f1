//! A VIP's client affinity from what its sources' directives say of it:
//! source when any kept a client on one server (`balance source`,
//! `ip_hash`, `persistence_timeout`, ...), since the client's connections
//! then reached one server end to end; with a NOTE naming which said what
//! where they disagree.

use crate::import::model::{Service, Sourced};
use lb_common::Affinity;

/// The VIP's `affinity` key (value and provenance comment) when it is not
/// lbd's default, and the NOTE where `service`'s directives disagree.
pub(super) fn affinity(service: &Service) -> (Option<(Affinity, String)>, Option<String>) {
    let said = |wanted: Affinity| -> Vec<&Sourced<Affinity>> {
        service
            .affinity
            .iter()
            .filter(|a| a.value == wanted)
            .collect()
    };
    let source = said(Affinity::Source);
    let Some(first) = source.first() else {
        return (None, None);
    };
    let comment = source
        .iter()
        .map(|a| a.comment())
        .collect::<Vec<_>>()
        .join(", ");
    let connection = said(Affinity::Connection);
    let note = (!connection.is_empty()).then(|| {
        let list = |votes: &[&Sourced<Affinity>]| {
            votes
                .iter()
                .map(|a| format!("{} ({})", a.what, a.origin))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{}: client affinity: {} kept each client on one server, {} balanced each connection; affinity = \"source\", as the client's connections reached one server",
            first.origin,
            list(&source),
            list(&connection)
        )
    });
    (Some((Affinity::Source, comment)), note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::model::Origin;

    fn service(votes: &[(Affinity, usize, &str)]) -> Service {
        let origin = Origin::new("k.conf", 1);
        Service {
            name: "virtual_server 198.18.0.100 80".to_owned(),
            origin: origin.clone(),
            listens: Vec::new(),
            backends: Vec::new(),
            forwarding: None,
            affinity: votes
                .iter()
                .map(|(a, line, what)| Sourced::new(*a, &Origin::new("k.conf", *line), *what))
                .collect(),
            acl: Vec::new(),
            passive: None,
            all_backups: None,
            idle_timeout: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn any_source_directive_makes_source_affinity_and_disagreement_is_noted() {
        assert_eq!(affinity(&service(&[])), (None, None));
        assert_eq!(
            affinity(&service(&[(
                Affinity::Connection,
                2,
                "lb_algo mh, mh-port"
            )])),
            (None, None)
        );
        let (key, note) = affinity(&service(&[
            (Affinity::Source, 2, "lb_algo sh"),
            (Affinity::Source, 4, "persistence_timeout 50"),
        ]));
        assert_eq!(
            key,
            Some((
                Affinity::Source,
                "k.conf:2 (lb_algo sh), k.conf:4 (persistence_timeout 50)".to_owned()
            ))
        );
        assert_eq!(note, None);
        let (key, note) = affinity(&service(&[
            (Affinity::Connection, 2, "lb_algo mh, mh-port"),
            (Affinity::Source, 4, "persistence_timeout 50"),
        ]));
        assert_eq!(key.map(|k| k.0), Some(Affinity::Source));
        assert_eq!(
            note.as_deref(),
            Some("k.conf:4: client affinity: persistence_timeout 50 (k.conf:4) kept each client on one server, lb_algo mh, mh-port (k.conf:2) balanced each connection; affinity = \"source\", as the client's connections reached one server")
        );
    }
}
