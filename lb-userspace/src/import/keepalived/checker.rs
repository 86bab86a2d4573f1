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
    let mut http: Option<(Sourced<String>, Option<u16>)> = None;
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
    check.fast_interval = Some(Sourced::new(
        Duration::from_secs(1),
        &origin,
        "delay_before_retry: keepalived's default 1s",
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
                for part in child.children() {
                    match part.name() {
                        "path" => {
                            path = Some(Sourced::new(
                                one(file, part)?.to_owned(),
                                &Origin::new(file, part.line),
                                part.text(),
                            ))
                        }
                        "status_code" => status = Some(number(file, part, 100..=599u16)?),
                        "digest" => notes.push(Note::new(
                            &Origin::new(file, part.line),
                            "digest: lbd checks the status code, not the body",
                        )),
                        _ => {}
                    }
                }
                let path =
                    path.ok_or_else(|| ImportError::at(file, child.line, "url needs a path"))?;
                http = Some((path, status));
            }
            _ => notes.push(Note::new(
                &at,
                format!("{}: not carried over", child.text()),
            )),
        }
    }
    if let (Some((path, status)), "HTTP_GET") = (http, kind) {
        check.kind = Sourced::new(
            CheckKind::Http {
                path: path.value.clone(),
                host,
                expect_status: status.unwrap_or(200),
            },
            &path.origin,
            format!("{kind} url {}", path.what),
        );
    }
    Ok(check)
}
