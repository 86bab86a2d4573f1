//! What of HAProxy's client stickiness lbd keeps: `balance source` and
//! `stick on src` (`stick match src`) are lbd's source affinity; stick
//! rules on anything else (cookies, headers, payload) are noted as not
//! carried over.

use super::settings::Settings;
use crate::import::model::{Note, Sourced};
use lb_common::Affinity;

/// What the section holding a service's servers (`farm`) says of client
/// affinity, and the NOTE where lbd's differs: a stick table remembered
/// each client's server across server changes, lbd follows the hash.
pub(super) fn affinity(farm: &Settings) -> (Vec<Sourced<Affinity>>, Vec<Note>) {
    let mut said: Vec<Sourced<Affinity>> = farm
        .balance_source
        .iter()
        .map(|b| Sourced::new(Affinity::Source, &b.origin, b.what.clone()))
        .collect();
    let mut notes = Vec::new();
    for (i, rule) in farm.sticky_sources().enumerate() {
        said.push(Sourced::new(
            Affinity::Source,
            &rule.origin,
            rule.what.clone(),
        ));
        if i > 0 {
            continue;
        }
        let expire = match &farm.stick_table {
            Some(table) => match &table.value {
                Some(expire) => format!(" (stick-table expire {expire}, {})", table.origin),
                None => format!(" (stick-table without expire, {})", table.origin),
            },
            None => String::new(),
        };
        notes.push(Note::new(
            &rule.origin,
            format!(
                "{}: HAProxy kept each client on the server its stick-table remembered{expire}, even across server changes; lbd's source affinity follows the hash: a backend change moves the clients whose Maglev slots change (established connections stay)",
                rule.what
            ),
        ));
    }
    (said, notes)
}

/// Notes on the stick rules of `settings` that are not source affinity:
/// stickiness on another key, and addresses stored for a `stick match`
/// of another section.
pub(super) fn other_stick_notes(settings: &Settings) -> Vec<Note> {
    let sticky = settings.sticky_sources().next().is_some();
    settings
        .stick_rules
        .iter()
        .filter_map(|rule| match (rule.on_source, rule.matches) {
            (true, true) => None,
            // Storing what its own `stick match src` reads.
            (true, false) if sticky => None,
            (true, false) => Some(Note::new(
                &rule.origin,
                format!(
                    "{}: records client addresses for another section's stick match: not carried over",
                    rule.what
                ),
            )),
            (false, _) => Some(Note::sticky_by_other_key(&rule.origin, &rule.what)),
        })
        .collect()
}
