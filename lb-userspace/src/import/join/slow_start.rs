//! A VIP's `slow_start_s` from its servers' slow starts (HAProxy's
//! `slowstart`, nginx's `slow_start=`): lbd's is per VIP, so the longest
//! of them, in whole seconds rounded up (HAProxy keeps it so too) and at
//! most lbd's hour, with a NOTE where the servers differ or it is cut.

use std::{cmp::Reverse, time::Duration};

use crate::config::value::MAX_SLOW_START_S;
use crate::import::model::{Backend, Service};

/// The VIP's `slow_start_s` key (seconds and provenance comment) when a
/// server of `service` has a slow start, and the NOTEs where lbd's
/// differs: cut to an hour, or one value for servers that had several.
pub(super) fn slow_start(service: &Service) -> (Option<(i64, String)>, Vec<String>) {
    let of = |b: &Backend| b.slow_start.as_ref().map_or(0, |s| seconds(s.value));
    // The longest; of equal ones, the first written.
    let Some((longest, source)) = service
        .backends
        .iter()
        .filter_map(|b| b.slow_start.as_ref().map(|s| (b, s)))
        .max_by_key(|(b, s)| (seconds(s.value), Reverse(b.origin.line)))
    else {
        return (None, Vec::new());
    };
    let wanted = seconds(source.value);
    let value = wanted.min(u64::from(MAX_SLOW_START_S));
    let mut comment = source.comment();
    let mut notes = Vec::new();
    if wanted > value {
        comment.push_str(&format!(", at most {MAX_SLOW_START_S} s"));
        notes.push(format!(
            "{}: {} (server {}): longer than lbd's longest slow start, {MAX_SLOW_START_S} s (an hour): slow_start_s = {value}",
            source.origin, source.what, longest.name
        ));
    } else if source.value != Duration::from_secs(wanted) {
        comment.push_str(", rounded up to whole seconds");
    }
    let lbd = |b: &Backend| of(b).min(u64::from(MAX_SLOW_START_S));
    if service.backends.iter().any(|b| lbd(b) != value) {
        let each: Vec<String> = service
            .backends
            .iter()
            .map(|b| match &b.slow_start {
                Some(s) => format!("{} {} ({})", b.name, s.what, s.origin),
                None => format!("{} none", b.name),
            })
            .collect();
        notes.push(format!(
            "{}: lbd's slow start is per VIP, not per server: the servers' differ ({}); slow_start_s = {value}, the longest, ramps every backend of the VIP",
            source.origin,
            each.join(", ")
        ));
    }
    (
        Some((i64::try_from(value).unwrap_or(i64::MAX), comment)),
        notes,
    )
}

/// `duration` in whole seconds, rounded up (500ms is 1, 1500ms is 2;
/// saturating: a crafted nginx time can be Duration's longest).
fn seconds(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_rounded_up() {
        assert_eq!(seconds(Duration::from_millis(500)), 1);
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_secs(30)), 30);
        assert_eq!(seconds(Duration::from_micros(1)), 1);
        assert_eq!(seconds(Duration::MAX), u64::MAX);
    }
}
