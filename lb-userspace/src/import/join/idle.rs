//! The idle timeout the source held TCP connections to (HAProxy's
//! `timeout tunnel`, else the longer of `timeout client` and `timeout
//! server`) as lbd's: `tcp_idle_timeout_s`, node-wide (the largest of the
//! VIPs'), and for NAT VIPs, whose translations that key does not cover,
//! `[nat] tcp_established_timeout_s` a few minutes longer. A pool of
//! database connections kept 8 h by HAProxy would otherwise be treated
//! as over after lbd's 15 minutes (2 h 04 in NAT mode).

use std::time::Duration;

use crate::config::{NatTimeouts, DEFAULT_TCP_IDLE_TIMEOUT};
use crate::import::model::Sourced;
use crate::import::write::Entry;

/// The longest timeout lbd's config takes, in seconds: a week.
const MAX_S: u64 = 7 * 86_400;

/// What `[nat] tcp_established_timeout_s` adds to the idle timeout, as
/// its default (7440 s) adds four minutes to Linux's keepalive time: a
/// keepalive sent right at the idle limit still finds its translation.
const NAT_MARGIN_S: u64 = 240;

/// One TCP VIP's idle timeout from its source.
pub(super) struct IdleOf<'a> {
    /// The VIP, for the notes (`198.18.0.100:5432/tcp`).
    pub(super) vip: String,
    pub(super) timeout: &'a Sourced<Duration>,
    /// Forwarded in NAT mode.
    pub(super) nat: bool,
}

/// The keys the idle timeouts give, and the notes on them.
#[derive(Debug, Default)]
pub(super) struct IdleKeys {
    /// `tcp_idle_timeout_s`, top-level.
    pub(super) idle: Option<Entry>,
    /// `tcp_established_timeout_s` of `[nat]`.
    pub(super) nat_established: Option<Entry>,
    pub(super) notes: Vec<String>,
}

/// Whole seconds, a fraction rounded up; HAProxy's 0 (no timeout) as
/// None.
fn seconds(d: Duration) -> Option<u64> {
    (!d.is_zero()).then(|| d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// The seconds of `timeout` within lbd's range, with a WARNING into
/// `notes` when brought in (HAProxy's 0, no timeout at all, becomes the
/// longest lbd takes).
fn within_range(timeout: &Sourced<Duration>, key: &str, notes: &mut Vec<String>) -> u64 {
    match seconds(timeout.value) {
        Some(s) if s <= MAX_S => s,
        got => {
            let was = got.map_or("no timeout".to_owned(), |s| format!("{s} s"));
            notes.push(format!(
                "{}: WARNING: {} ({was}) is past the longest {key} lbd takes; {MAX_S} s (a week) is used",
                timeout.origin, timeout.what
            ));
            MAX_S
        }
    }
}

/// The idle keys of the TCP VIPs `uses` (those whose source says).
pub(super) fn idle_keys(uses: &[IdleOf<'_>]) -> IdleKeys {
    let mut out = IdleKeys::default();
    let longest = |nat_only: bool| {
        uses.iter()
            .filter(|u| !nat_only || u.nat)
            .max_by_key(|u| seconds(u.timeout.value).unwrap_or(u64::MAX))
    };
    let Some(widest) = longest(false) else {
        return out;
    };
    let default_s = DEFAULT_TCP_IDLE_TIMEOUT.as_secs();
    let idle_s = within_range(widest.timeout, "tcp_idle_timeout_s", &mut out.notes);
    let differ = uses.iter().any(|u| u.timeout.value != widest.timeout.value);
    if differ {
        let each: Vec<String> = uses
            .iter()
            .map(|u| format!("{} {} ({})", u.vip, u.timeout.what, u.timeout.origin))
            .collect();
        out.notes.push(format!(
            "{}: HAProxy's idle timeouts differ ({}); lbd's tcp_idle_timeout_s is one for the node: the largest, {idle_s} s, holds every VIP's connections",
            widest.timeout.origin,
            each.join("; ")
        ));
    }
    if idle_s < default_s {
        out.notes.push(format!(
            "{}: {}: HAProxy closed connections idle that long; lbd closes none, and an idle timeout under its default ({default_s} s) only makes it forget sooner connections the servers keep open: tcp_idle_timeout_s keeps its default",
            widest.timeout.origin, widest.timeout.what
        ));
    } else {
        out.notes.push(format!(
            "{}: {}: HAProxy kept idle connections {idle_s} s; lbd holds a DSR or tunnelled VIP's idle connection as long (tcp_idle_timeout_s; not NAT VIPs: [nat] tcp_established_timeout_s)",
            widest.timeout.origin, widest.timeout.what
        ));
        out.idle = Some(Entry::new(
            "tcp_idle_timeout_s",
            i64::try_from(idle_s).unwrap_or(i64::MAX),
            widest.timeout.comment(),
        ));
    }
    if let Some(nat) = longest(true) {
        let mut ignored = Vec::new();
        let nat_idle = within_range(nat.timeout, "tcp_established_timeout_s", &mut ignored);
        let wanted = nat_idle.saturating_add(NAT_MARGIN_S).min(MAX_S);
        if wanted > NatTimeouts::default().tcp_established.as_secs() {
            out.notes.push(format!(
                "{}: {}: a NAT VIP's translations are not held by tcp_idle_timeout_s: [nat] tcp_established_timeout_s = {wanted} s, HAProxy's {nat_idle} s and {NAT_MARGIN_S} s more (as lbd's default 7440 s is Linux's 7200 s keepalive time and 240 s more)",
                nat.timeout.origin, nat.timeout.what
            ));
            out.nat_established = Some(Entry::new(
                "tcp_established_timeout_s",
                i64::try_from(wanted).unwrap_or(i64::MAX),
                format!("{} + {NAT_MARGIN_S} s", nat.timeout.comment()),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::model::Origin;

    fn sourced(secs: u64, what: &str) -> Sourced<Duration> {
        Sourced::new(
            Duration::from_secs(secs),
            &Origin::new("haproxy.cfg", 7),
            what,
        )
    }

    fn value(entry: &Option<Entry>) -> Option<i64> {
        entry.as_ref().and_then(|e| e.value.as_integer())
    }

    /// The largest of the VIPs' timeouts is the node's, said; NAT VIPs
    /// get theirs and a margin in `[nat]`.
    #[test]
    fn the_largest_timeout_is_the_nodes_and_nat_gets_a_margin() {
        let (long, short) = (
            sourced(28_800, "timeout client 8h"),
            sourced(3600, "timeout client 1h"),
        );
        let keys = idle_keys(&[
            IdleOf {
                vip: "a".into(),
                timeout: &short,
                nat: false,
            },
            IdleOf {
                vip: "b".into(),
                timeout: &long,
                nat: true,
            },
        ]);
        assert_eq!(value(&keys.idle), Some(28_800));
        assert_eq!(value(&keys.nat_established), Some(29_040));
        assert!(
            keys.notes.iter().any(|n| n.contains("differ")),
            "{:?}",
            keys.notes
        );
        // Short ones keep lbd's defaults.
        let keys = idle_keys(&[IdleOf {
            vip: "a".into(),
            timeout: &short,
            nat: true,
        }]);
        assert_eq!(value(&keys.idle), Some(3600));
        assert_eq!(
            value(&keys.nat_established),
            None,
            "7440 s already covers 1 h"
        );
        let fifty = sourced(50, "timeout client 50s");
        let keys = idle_keys(&[IdleOf {
            vip: "a".into(),
            timeout: &fifty,
            nat: false,
        }]);
        assert_eq!(value(&keys.idle), None);
        assert!(
            keys.notes[0].contains("timeout client 50s"),
            "{:?}",
            keys.notes
        );
    }

    /// Past a week (or HAProxy's 0, no timeout), the value is brought
    /// into lbd's range with a WARNING.
    #[test]
    fn a_timeout_past_lbds_range_is_clamped_with_a_warning() {
        for t in [
            sourced(30 * 86_400, "timeout tunnel 30d"),
            sourced(0, "timeout tunnel 0"),
        ] {
            let keys = idle_keys(&[IdleOf {
                vip: "a".into(),
                timeout: &t,
                nat: true,
            }]);
            assert_eq!(value(&keys.idle), Some(604_800));
            assert_eq!(value(&keys.nat_established), Some(604_800));
            assert!(
                keys.notes.iter().any(|n| n.contains("WARNING")),
                "{:?}",
                keys.notes
            );
        }
    }
}
