//! keepalived's real-server checkers (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`)
//! as lbd checks: `delay_loop` is the interval, `delay_before_retry` the
//! fast interval, `connect_timeout` the timeout, a failure and its
//! `retry` retries the fall; keepalived brings a server back at its first
//! success (rise 1).

use std::time::Duration;

use super::{duration, number, one};
use crate::import::blocks::Statement;
use crate::import::model::{Check, CheckKind, Note, Origin, Sourced};
use crate::import::ImportError;

/// An HTTP_GET's first `url`: its path, its status and its own
/// `virtualhost`.
type Url = (Sourced<String>, Option<Sourced<u16>>, Option<String>);

/// The check a checker block describes.
pub(super) fn check(
    file: &str,
    statement: &Statement,
    delay_loop: Option<&Sourced<Duration>>,
    notes: &mut Vec<Note>,
) -> Result<Check, ImportError> {
    let origin = Origin::new(file, statement.line);
    let kind = statement.name();
    if kind == "SSL_GET" {
        notes.push(Note::new(
            &origin,
            "SSL_GET: lbd's checks speak no TLS; the port is checked with a TCP connection",
        ));
    }
    let mut http: Option<Url> = None;
    let mut check = Check::new(Sourced::new(CheckKind::Tcp, &origin, kind));
    check.interval = Some(delay_loop.cloned().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(60),
            &origin,
            "delay_loop: keepalived's default 60s",
        )
    }));
    check.timeout = Some(Sourced::new(
        Duration::from_secs(5),
        &origin,
        "connect_timeout: keepalived's default 5s",
    ));
    // keepalived waits 3 s before an HTTP_GET/SSL_GET retry, 1 s before
    // a TCP_CHECK one.
    let retry_default = if kind == "TCP_CHECK" { 1 } else { 3 };
    check.fast_interval = Some(Sourced::new(
        Duration::from_secs(retry_default),
        &origin,
        format!("delay_before_retry: keepalived's default {retry_default}s for {kind}"),
    ));
    check.rise = Some(Sourced::new(
        1,
        &origin,
        "keepalived restores a server at its first good check",
    ));
    check.fall = Some(Sourced::new(
        2,
        &origin,
        "retry: keepalived's default 1, plus the first failure",
    ));
    let mut host = None;
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        match child.name() {
            "connect_timeout" => {
                check.timeout = Some(Sourced::new(duration(file, child)?, &at, child.text()));
            }
            "connect_port" => {
                check.port = Some(Sourced::new(
                    number(file, child, 1..=65_535u16)?,
                    &at,
                    child.text(),
                ));
            }
            "retry" | "nb_get_retry" => {
                let retries: u32 = number(file, child, 0..=99)?;
                check.fall = Some(Sourced::new(retries + 1, &at, child.text()));
            }
            "delay_before_retry" => {
                check.fast_interval = Some(Sourced::new(duration(file, child)?, &at, child.text()));
            }
            "virtualhost" => host = Some(one(file, child)?.to_owned()),
            "url" if kind != "TCP_CHECK" => {
                if http.is_some() {
                    notes.push(Note::new(
                        &at,
                        "a further url: lbd checks one path; the first is kept",
                    ));
                    continue;
                }
                let mut path = None;
                let mut status = None;
                // keepalived: a url's own virtualhost over the checker's.
                let mut url_host = None;
                for part in child.children() {
                    let file = part.file_in(file);
                    let part_at = Origin::new(file, part.line);
                    match part.name() {
                        "path" => {
                            path = Some(Sourced::new(
                                one(file, part)?.to_owned(),
                                &Origin::new(file, part.line),
                                part.text(),
                            ))
                        }
                        "status_code" => status = Some(status_code(file, part, notes)?),
                        "digest" => notes.push(Note::new(
                            &part_at,
                            "digest: lbd checks the status code, not the body",
                        )),
                        "virtualhost" => url_host = Some(one(file, part)?.to_owned()),
                        "regex" | "regex_no_match" | "regex_min_offset" | "regex_max_offset" => {
                            notes.push(Note::new(
                                &part_at,
                                format!(
                                    "WARNING: {}: lbd checks the status code, not the body (a backend answering the status with another body counts as up)",
                                    part.text()
                                ),
                            ));
                        }
                        _ => notes.push(Note::new(
                            &part_at,
                            format!("url {}: not carried over", part.text()),
                        )),
                    }
                }
                let path =
                    path.ok_or_else(|| ImportError::at(file, child.line, "url needs a path"))?;
                http = Some((path, status, url_host));
            }
            _ => notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    if let (Some((path, status, url_host)), "HTTP_GET") = (http, kind) {
        let host = url_host.or(host);
        let what = match &status {
            Some(status) => format!("{kind} url {}; {}", path.what, status.comment()),
            None => {
                notes.push(Note::new(
                    &path.origin,
                    "url without status_code: keepalived takes any 2xx status as healthy; lbd expects exactly one: 200 (a backend answering 204 or 301 counts as down)",
                ));
                format!("{kind} url {}", path.what)
            }
        };
        check.kind = Sourced::new(
            CheckKind::Http {
                path: path.value.clone(),
                host,
                expect_status: status.map_or(200, |s| s.value),
            },
            &path.origin,
            what,
        );
    }
    Ok(check)
}

/// `status_code 200`, `200-299`, `200-299,301`: keepalived's set of
/// healthy statuses, as the one status lbd expects: 200 when the set
/// holds it, else its first; a set of more than one is noted.
fn status_code(
    file: &str,
    statement: &Statement,
    notes: &mut Vec<Note>,
) -> Result<Sourced<u16>, ImportError> {
    let at = Origin::new(file, statement.line);
    let text = statement.args().join("");
    let bad = || {
        ImportError::at(
            file,
            statement.line,
            format!(
                "status_code {text}: not a status (100..=599, one of them 200 or more), a range (200-299) or a list of them"
            ),
        )
    };
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let (low, high) = match part.split_once('-') {
            Some((low, high)) => (code(low).ok_or_else(bad)?, code(high).ok_or_else(bad)?),
            None => {
                let c = code(part).ok_or_else(bad)?;
                (c, c)
            }
        };
        if low > high {
            return Err(bad());
        }
        ranges.push((low, high));
    }
    // A final answer's status: 1xx are interim, never what a check gets.
    let first = ranges
        .iter()
        .map(|&(l, h)| (l.max(200), h))
        .find(|(l, h)| l <= h)
        .map(|(l, _)| l)
        .ok_or_else(bad)?;
    let chosen = if ranges.iter().any(|(l, h)| (*l..=*h).contains(&200)) {
        200
    } else {
        first
    };
    if ranges.iter().any(|(l, h)| l != h) || ranges.len() > 1 {
        notes.push(Note::new(
            &at,
            format!(
                "status_code {text}: keepalived takes any of these statuses as healthy; lbd expects exactly one: {chosen} (a backend answering another counts as down)"
            ),
        ));
    }
    Ok(Sourced::new(chosen, &at, statement.text()))
}
