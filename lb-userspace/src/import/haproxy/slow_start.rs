//! What differs between HAProxy's `slowstart` and lbd's `slow_start_s`
//! (which join makes from the servers' values): when a server is ramped
//! up, and, under a static balance algorithm, what is.

use super::settings::Settings;
use crate::import::model::{Backend, Note};

/// The NOTEs on the slow start of `servers`, held by the section whose
/// settings are `farm`: none when no server has one.
pub(super) fn slow_start_notes(servers: &[Backend], farm: &Settings) -> Vec<Note> {
    let Some(first) = servers.iter().find_map(|s| s.slow_start.as_ref()) else {
        return Vec::new();
    };
    let mut notes = vec![Note::new(
        &first.origin,
        format!(
            "{}: HAProxy ramps a server up only when it comes back from failed checks or out of maintenance; lbd also ramps a backend that comes out of drain, is added at run time or has its weight raised from 0 (neither ramps at start)",
            first.what
        ),
    )];
    if let Some(balance) = farm.static_weights() {
        notes.push(Note::new(
            &first.origin,
            format!(
                "{}: under {} ({}) HAProxy's weights are static, so its slowstart ramped only the server's connection limit (maxconn), not its share of connections; lbd ramps the backend's share of new flows",
                first.what, balance.what, balance.origin
            ),
        ));
    }
    notes
}
