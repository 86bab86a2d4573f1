//! The check of a checked HAProxy server, in lbd's terms.

use std::time::Duration;

use super::server;
use super::settings::Settings;
use crate::import::model::{Check, CheckKind, Origin, Sourced};

/// A checked server's check, from its parameters and its proxy's
/// settings, with HAProxy's defaults (inter 2 s, fastinter = inter, rise
/// 2, fall 3) written out where the file leaves them.
pub(super) fn check_of(settings: &Settings, server: &server::Server, origin: &Origin) -> Check {
    let params = &server.params;
    let kind = match &settings.http_check {
        Some(http) => {
            let status = settings.expect_status.as_ref().map_or(200, |s| s.value);
            let path = http.path.clone().unwrap_or_else(|| "/".to_owned());
            let at = http.origin.clone().unwrap_or_else(|| origin.clone());
            Sourced::new(
                CheckKind::Http {
                    path,
                    host: http.host.clone(),
                    expect_status: status,
                },
                &at,
                match &settings.expect_status {
                    Some(expect) => format!("{}; {}: {}", http.what, expect.origin, expect.what),
                    None => http.what.clone(),
                },
            )
        }
        None => match &settings.protocol_check {
            Some(protocol) => Sourced::new(CheckKind::Tcp, &protocol.origin, protocol.what.clone()),
            None => Sourced::new(CheckKind::Tcp, origin, "check"),
        },
    };
    let interval = params.inter.clone().unwrap_or_else(|| {
        Sourced::new(
            Duration::from_secs(2),
            origin,
            "inter: HAProxy's default 2s",
        )
    });
    let fast_interval = params.fastinter.clone().unwrap_or_else(|| {
        Sourced::new(
            interval.value,
            origin,
            "fastinter: HAProxy's default, inter",
        )
    });
    let timeout = settings
        .timeout_check
        .clone()
        .or_else(|| settings.timeout_connect.clone())
        .map(|mut t| {
            if t.value > interval.value {
                t.value = interval.value;
                t.what = format!("{}, capped to inter", t.what);
            }
            t
        })
        .unwrap_or_else(|| Sourced::new(interval.value, origin, "HAProxy's check timeout: inter"));
    Check {
        kind,
        port: params.check_port.clone(),
        interval: Some(interval),
        fast_interval: Some(fast_interval),
        timeout: Some(timeout),
        rise: Some(
            params
                .rise
                .clone()
                .unwrap_or_else(|| Sourced::new(2, origin, "rise: HAProxy's default")),
        ),
        fall: Some(
            params
                .fall
                .clone()
                .unwrap_or_else(|| Sourced::new(3, origin, "fall: HAProxy's default")),
        ),
    }
}
