//! A source's check as lbd's health keys: kinds, ports and timings within
//! lbd's ranges (a value outside is brought in, with a note), the
//! timeout and the fast interval never longer than the interval, as lbd
//! requires.

use std::time::Duration;

use crate::import::model::{Check, CheckKind, Sourced};
use crate::import::write::Entry;

/// lbd's defaults, for keys the source leaves out (see `config::health`).
const DEFAULT_INTERVAL: Duration = Duration::from_millis(2000);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// lbd's range of check times, in ms.
const MIN_MS: u128 = 10;
const MAX_MS: u128 = 3_600_000;

/// The health keys of `check` (None: not checked), and notes on values
/// brought into lbd's ranges.
pub(super) fn entries(check: Option<&Check>, notes: &mut Vec<String>) -> Vec<Entry> {
    let Some(check) = check else {
        return vec![Entry::new(
            "check",
            "none",
            "the source does not check this backend",
        )];
    };
    let mut out = Vec::new();
    let kind = &check.kind;
    match &kind.value {
        CheckKind::Tcp => out.push(Entry::new("check", "tcp", kind.comment())),
        CheckKind::Http {
            path,
            host,
            expect_status,
            expect_body,
        } => {
            out.push(Entry::new("check", "http", kind.comment()));
            out.push(Entry::new("path", path.clone(), ""));
            if let Some(host) = host {
                out.push(Entry::new("host", host.clone(), ""));
            }
            out.push(Entry::new("expect_status", i64::from(*expect_status), ""));
            if let Some(text) = expect_body {
                out.push(Entry::new(
                    "expect_body",
                    text.value.clone(),
                    text.comment(),
                ));
            }
        }
        CheckKind::Pgsql { user } => {
            out.push(Entry::new("check", "pgsql", kind.comment()));
            out.push(Entry::new("user", user.clone(), ""));
        }
    }
    if let Some(tls) = check.tls.as_ref().filter(|t| t.value) {
        out.push(Entry::new("tls", true, tls.comment()));
    }
    if let Some(port) = &check.port {
        out.push(Entry::new("port", i64::from(port.value), port.comment()));
    }
    let millis = |key: &'static str, value: &Sourced<Duration>, notes: &mut Vec<String>| {
        let ms = value.value.as_millis();
        let clamped = ms.clamp(MIN_MS, MAX_MS);
        if clamped != ms {
            notes.push(format!(
                "{}: {} ms is outside lbd's {MIN_MS}..={MAX_MS} ms; {clamped} ms is used",
                value.origin, ms
            ));
        }
        Entry::new(
            key,
            i64::try_from(clamped).unwrap_or(i64::MAX),
            value.comment(),
        )
    };
    let interval = check
        .interval
        .as_ref()
        .map_or(DEFAULT_INTERVAL, |i| i.value);
    if let Some(v) = &check.interval {
        out.push(millis("interval_ms", v, notes));
    }
    if let Some(v) = &check.fast_interval {
        // lbd checks a changing backend at least as often as a stable one
        // (keepalived's retry delay defaults to 3 s whatever its loop).
        if v.value > interval {
            let mut capped = v.clone();
            capped.value = interval;
            capped.what = format!("{}, capped to the interval", v.what);
            notes.push(format!(
                "{}: {} ms between checks of a changing backend is longer than the interval; lbd takes the interval, {} ms",
                v.origin,
                v.value.as_millis(),
                interval.as_millis()
            ));
            out.push(millis("fast_interval_ms", &capped, notes));
        } else {
            out.push(millis("fast_interval_ms", v, notes));
        }
    }
    let timeout = check.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| t.value);
    if timeout > interval {
        let mut capped = check
            .timeout
            .clone()
            .unwrap_or_else(|| Sourced::new(interval, &check.kind.origin, ""));
        capped.value = interval;
        capped.what = match check.timeout.as_ref() {
            Some(t) => format!("{}, capped to the interval", t.what),
            None => "lbd's default, capped to the interval".to_owned(),
        };
        // The source's own timeout, shortened: a backend slower than the
        // interval, which the source waited for, now fails its check.
        if let Some(t) = &check.timeout {
            notes.push(format!(
                "{}: a check timeout of {} ms is longer than the interval; lbd's may not be: {} ms is used, so a backend answering later than that fails its check where the source waited for it",
                t.origin,
                t.value.as_millis(),
                interval.as_millis()
            ));
        }
        out.push(millis("timeout_ms", &capped, notes));
    } else if let Some(v) = &check.timeout {
        out.push(millis("timeout_ms", v, notes));
    }
    for (key, value) in [("rise", &check.rise), ("fall", &check.fall)] {
        if let Some(v) = value {
            let n = v.value.clamp(1, 100);
            if n != v.value {
                notes.push(format!(
                    "{}: {key} {} is outside lbd's 1..=100; {n} is used",
                    v.origin, v.value
                ));
            }
            out.push(Entry::new(key, i64::from(n), v.comment()));
        }
    }
    out
}
