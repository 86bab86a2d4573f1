//! keepalived's real-server checkers (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`)
//! as lbd checks: `delay_loop` is the interval, `delay_before_retry` the
//! fast interval, `connect_timeout` the timeout, a failure and its
//! `retry` retries the fall, `virtualhost` the HTTP check's Host;
//! keepalived brings a server back at its first success (rise 1). Those
//! settings may be given on the virtual_server and on the real_server as
//! well as in the checker, the lower level winning ([`Inherited`]).

use std::time::Duration;

use super::{duration, number, one};
use crate::import::blocks::Statement;
use crate::import::model::{Check, CheckKind, Note, Origin, Sourced};
use crate::import::ImportError;

/// An HTTP_GET's first `url`: its path, its status and its own
/// `virtualhost`.
type Url = (Sourced<String>, Option<Sourced<u16>>, Option<String>);

/// The checker settings keepalived takes on a `virtual_server` and on a
/// `real_server` for the checkers below them (check_parser.c: the
/// virtual_server's are the real_server's defaults, the real_server's the
/// checker's), each with the line it was written on, so that a check
/// written from them names that line and not keepalived's defaults.
#[derive(Debug, Clone, Default)]
pub(super) struct Inherited {
    /// `delay_loop`: the check interval.
    pub(super) delay_loop: Option<Sourced<Duration>>,
    /// `connect_timeout`: the check timeout.
    pub(super) connect_timeout: Option<Sourced<Duration>>,
    /// `retry` (`nb_get_retry`): failures after the first before the
    /// server is taken out.
    pub(super) retry: Option<Sourced<u32>>,
    /// `delay_before_retry`: the delay before a retry (lbd's fast
    /// interval).
    pub(super) delay_before_retry: Option<Sourced<Duration>>,
    /// `virtualhost`: the Host an HTTP_GET sends.
    pub(super) virtualhost: Option<Sourced<String>>,
}

/// Whether `name` is one of the settings [`Inherited::read`] reads.
pub(super) fn is_inherited(name: &str) -> bool {
    matches!(
        name,
        "delay_loop"
            | "connect_timeout"
            | "retry"
            | "nb_get_retry"
            | "delay_before_retry"
            | "virtualhost"
            | "warmup"
            | "alpha"
    )
}

impl Inherited {
    /// Reads `statement` when it is one of keepalived's inherited checker
    /// settings (`warmup` and `alpha`, which lbd has no equivalent of,
    /// are noted in `notes`): whether it was one.
    pub(super) fn read(
        &mut self,
        file: &str,
        statement: &Statement,
        notes: &mut Vec<Note>,
    ) -> Result<bool, ImportError> {
        let at = Origin::new(file, statement.line);
        match statement.name() {
            "delay_loop" => {
                self.delay_loop = Some(Sourced::new(
                    duration(file, statement)?,
                    &at,
                    statement.text(),
                ));
            }
            "connect_timeout" => {
                self.connect_timeout = Some(Sourced::new(
                    duration(file, statement)?,
                    &at,
                    statement.text(),
                ));
            }
            "retry" | "nb_get_retry" => {
                self.retry = Some(Sourced::new(
                    number(file, statement, 0..=99u32)?,
                    &at,
                    statement.text(),
                ));
            }
            "delay_before_retry" => {
                self.delay_before_retry = Some(Sourced::new(
                    duration(file, statement)?,
                    &at,
                    statement.text(),
                ));
            }
            "virtualhost" => {
                self.virtualhost = Some(Sourced::new(
                    one(file, statement)?.to_owned(),
                    &at,
                    statement.text(),
                ));
            }
            "warmup" => notes.push(Note::new(
                &at,
                format!(
                    "{}: keepalived delayed each checker's first check by a random time up to this; lbd checks from the start: not carried over",
                    statement.text()
                ),
            )),
            "alpha" => notes.push(Note::new(
                &at,
                format!(
                    "{}: keepalived started each real_server down until its first good check; lbd starts a backend unknown, which counts as up (it takes new flows until its checks fail): not carried over",
                    statement.text()
                ),
            )),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The check a checker block describes, its settings not given in it
/// taken from `inherited` (the virtual_server's and real_server's), else
/// keepalived's defaults.
pub(super) fn check(
    file: &str,
    statement: &Statement,
    inherited: &Inherited,
    notes: &mut Vec<Note>,
) -> Result<Check, ImportError> {
    let origin = Origin::new(file, statement.line);
    let kind = statement.name();
    let mut http: Option<Url> = None;
    let mut check = Check::new(Sourced::new(CheckKind::Tcp, &origin, kind));
    if kind == "SSL_GET" {
        // lbd's TLS checks verify no certificate, as SSL_GET does not.
        check.tls = Some(Sourced::new(true, &origin, "SSL_GET: over TLS"));
    }
    // The checker's own settings over those it inherits.
    let mut settings = inherited.clone();
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        if settings.read(file, child, notes)? {
            continue;
        }
        match child.name() {
            "connect_port" => {
                check.port = Some(Sourced::new(
                    number(file, child, 1..=65_535u16)?,
                    &at,
                    child.text(),
                ));
            }
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
                            "digest: not carried over: lbd compares no MD5 of the whole page, which no text in it can stand for; to check the page too, set expect_body to a text a healthy page contains",
                        )),
                        "virtualhost" => url_host = Some(one(file, part)?.to_owned()),
                        "regex" | "regex_no_match" | "regex_min_offset" | "regex_max_offset" => {
                            notes.push(Note::new(
                                &part_at,
                                format!(
                                    "WARNING: {}: lbd matches no regular expression (expect_body takes a plain text a healthy page contains): not carried over, so a backend answering the status with another body counts as up",
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
    check.interval = Some(settings.delay_loop.clone().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(60),
            &origin,
            "delay_loop: keepalived's default 60s",
        )
    }));
    check.timeout = Some(settings.connect_timeout.clone().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(5),
            &origin,
            "connect_timeout: keepalived's default 5s",
        )
    }));
    // keepalived waits 3 s before an HTTP_GET/SSL_GET retry, 1 s before
    // a TCP_CHECK one.
    let retry_default = if kind == "TCP_CHECK" { 1 } else { 3 };
    check.fast_interval = Some(settings.delay_before_retry.clone().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(retry_default),
            &origin,
            format!("delay_before_retry: keepalived's default {retry_default}s for {kind}"),
        )
    }));
    check.rise = Some(Sourced::new(
        1,
        &origin,
        "keepalived restores a server at its first good check",
    ));
    check.fall = Some(match &settings.retry {
        Some(retry) => Sourced::new(
            retry.value.saturating_add(1),
            &retry.origin,
            format!("{}, plus the first failure", retry.what),
        ),
        None => Sourced::new(
            2,
            &origin,
            "retry: keepalived's default 1, plus the first failure",
        ),
    });
    if let (Some((path, status, url_host)), "HTTP_GET" | "SSL_GET") = (http, kind) {
        // keepalived: a url's own virtualhost over the checker's, the
        // real_server's and the virtual_server's.
        let inherited_host = settings
            .virtualhost
            .as_ref()
            .filter(|_| url_host.is_none())
            .map(|h| format!("; {}", h.comment()))
            .unwrap_or_default();
        let host = url_host.or(settings.virtualhost.map(|h| h.value));
        let what = match &status {
            Some(status) => format!(
                "{kind} url {}; {}{inherited_host}",
                path.what,
                status.comment()
            ),
            None => {
                notes.push(Note::new(
                    &path.origin,
                    "url without status_code: keepalived takes any 2xx status as healthy; lbd expects exactly one: 200 (a backend answering 204 or 301 counts as down)",
                ));
                format!("{kind} url {}{inherited_host}", path.what)
            }
        };
        check.kind = Sourced::new(
            CheckKind::Http {
                path: path.value.clone(),
                host,
                expect_status: status.map_or(200, |s| s.value),
                expect_body: None,
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
