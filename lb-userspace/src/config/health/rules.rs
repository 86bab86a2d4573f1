//! The rules of a health table's keys, one set for the config file and the
//! admin API: each key alone, then the kind's needs (PostgreSQL's names,
//! the tunnel's one port) and the timing between keys.

use std::time::Duration;

use super::super::{
    value::{self, FieldError, ValueError},
    Protocol,
};
use super::{
    CheckType, ChecksFor, HealthConfig, HealthKeys, MAX_HEALTH_EXPECT_BODY_BYTES,
    MAX_HEALTH_HOST_BYTES, MAX_HEALTH_PATH_BYTES, MAX_HEALTH_PGSQL_NAME_BYTES,
};

/// Range of the `*_ms` keys.
const MILLIS: std::ops::RangeInclusive<u32> = 10..=3_600_000;

/// `base` with the keys given in `keys` replaced, by the config file's
/// rules: the one place they live, called by the file's checker
/// ([`Checker::health`](super::super::Checker::health)) and the API's conversion (`api::convert`), so
/// both accept and refuse alike. `vip` is the VIP the table belongs to
/// (`through_tunnel` needs a tunnelled one, and its checks go to the VIP's
/// own port and protocol, the only ones the data plane carries through
/// the tunnel); `base_is` says where the
/// values not given come from ("the default", "the VIP's"), for errors
/// about them. An error names the key (`interval_ms`), bare: the caller
/// puts its own path in front; a timing error about two keys neither of
/// which was given names the shorter one.
pub fn resolve(
    keys: &HealthKeys,
    base: &HealthConfig,
    vip: ChecksFor,
    base_is: &str,
) -> Result<HealthConfig, FieldError> {
    let mut out = apply(keys, base, Some(vip.mode))?;
    // A fast interval not given here (the default, or the VIP's) follows
    // a shorter interval down: a table that only shortens interval_ms
    // stays valid.
    if keys.fast_interval_ms.is_none() && out.fast_interval > out.interval {
        out.fast_interval = out.interval;
    }
    timing(keys, &out, base_is)?;
    pgsql_has_a_user(keys, &out, base_is)?;
    body_needs_http(keys, &out, base_is)?;
    tls_needs_tcp_or_http(keys, &out, base_is)?;
    through_tunnel_reaches(keys, &out, vip, base_is)?;
    Ok(out)
}

/// A PostgreSQL check names a role in its StartupMessage, and there is no
/// default one to take: a wrong guess would be refused by every server
/// and take every backend down. The error names `check` when this table
/// chose the kind, else `user`.
fn pgsql_has_a_user(
    keys: &HealthKeys,
    out: &HealthConfig,
    base_is: &str,
) -> Result<(), FieldError> {
    if out.check != CheckType::Pgsql || out.user.is_some() {
        return Ok(());
    }
    let (field, whose) = if keys.check.is_some() {
        ("check", String::new())
    } else {
        ("user", format!(" (check = \"pgsql\" is {base_is})"))
    };
    Err(ValueError::invalid(format!(
        "a pgsql check needs user, the role it names when it connects{whose}: set user = \"...\" (any role: a server that asks it for a password is up)"
    ))
    .at(field))
}

/// `expect_body` written in a table whose check is not HTTP: only an
/// HTTP check reads a body, so the text would be silently ignored and
/// the backend judged without it. Refused by name, not warned of as
/// `path` is: the key asks more of a backend than its check would. One
/// inherited (a backend's `check = "tcp"` under its VIP's HTTP check,
/// as the import writes for a server whose HTTP check met TLS) is fine.
fn body_needs_http(keys: &HealthKeys, out: &HealthConfig, base_is: &str) -> Result<(), FieldError> {
    let fits = out.check == CheckType::Http;
    refused_on_its_check(keys.expect_body.is_some() && !fits, keys, out, base_is)
        .map_err(|(check, whose)| {
            ValueError::invalid(format!(
                "only an HTTP check reads a body, and this check is \"{check}\"{whose}: set check = \"http\" or leave expect_body out"
            ))
            .at("expect_body")
        })
}

/// `tls = true` written in a table whose check is neither TCP nor HTTP:
/// a pgsql check speaks no TLS here and `none` checks nothing, so the key
/// would be silently ignored. Refused by name, as `expect_body` on a
/// check that reads no body; one inherited (a backend's own `check`
/// under its VIP's TLS check) is fine, and unused.
fn tls_needs_tcp_or_http(
    keys: &HealthKeys,
    out: &HealthConfig,
    base_is: &str,
) -> Result<(), FieldError> {
    let fits = matches!(out.check, CheckType::Tcp | CheckType::Http);
    refused_on_its_check(keys.tls == Some(true) && !fits, keys, out, base_is)
        .map_err(|(check, whose)| {
            ValueError::invalid(format!(
                "only a TCP or HTTP check runs over TLS, and this check is \"{check}\"{whose}: set check = \"tcp\" or \"http\", or leave tls out"
            ))
            .at("tls")
        })
}

/// For a key its check cannot use (`refused`): the check, and where it
/// came from when this table does not write it (` (check = "tcp" is
/// BASE_IS)`), for the refusal's text.
fn refused_on_its_check(
    refused: bool,
    keys: &HealthKeys,
    out: &HealthConfig,
    base_is: &str,
) -> Result<(), (CheckType, String)> {
    if !refused {
        return Ok(());
    }
    let whose = if keys.check.is_some() {
        String::new()
    } else {
        format!(" (check = \"{}\" is {base_is})", out.check)
    };
    Err((out.check, whose))
}

/// `expect_body`'s text as a check can look for it: not empty (it would
/// match any body), at most [`MAX_HEALTH_EXPECT_BODY_BYTES`], no NUL nor
/// other control characters but tab (a page's marker is one line).
fn expect_body(text: &str) -> Result<String, FieldError> {
    let key = "expect_body";
    if text.len() > MAX_HEALTH_EXPECT_BODY_BYTES {
        return Err(ValueError::invalid(format!(
            "is {} bytes long; at most {MAX_HEALTH_EXPECT_BODY_BYTES} are allowed",
            text.len()
        ))
        .at(key));
    }
    if text.is_empty() {
        return Err(ValueError::invalid(
            "is empty, which every body contains: give the text a healthy answer carries, or leave expect_body out",
        )
        .at(key));
    }
    if text.contains('\0') {
        return Err(ValueError::invalid(format!("{text:?} contains a NUL byte")).at(key));
    }
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ValueError::invalid(format!(
            "{text:?} contains a control character (only tab is allowed)"
        ))
        .at(key));
    }
    Ok(text.to_owned())
}

/// A PostgreSQL name (`user`, `database`) as the StartupMessage can carry
/// it: not empty, at most [`MAX_HEALTH_PGSQL_NAME_BYTES`], no NUL (it
/// would end the value early) nor other control characters.
fn pgsql_name(text: &str, key: &str) -> Result<String, FieldError> {
    if text.len() > MAX_HEALTH_PGSQL_NAME_BYTES {
        return Err(ValueError::invalid(format!(
            "is {} bytes long; at most {MAX_HEALTH_PGSQL_NAME_BYTES} are allowed (PostgreSQL's longest name)",
            text.len()
        ))
        .at(key));
    }
    if text.is_empty() {
        return Err(ValueError::invalid("is empty: name a PostgreSQL role or database").at(key));
    }
    if text.contains('\0') {
        return Err(ValueError::invalid(format!("{text:?} contains a NUL byte")).at(key));
    }
    if text.chars().any(char::is_control) {
        return Err(ValueError::invalid(format!("{text:?} contains a control character")).at(key));
    }
    Ok(text.to_owned())
}

/// A check through the tunnel reaches a backend only as a packet to the
/// VIP's own address, port and protocol: the data plane encapsulates it
/// after finding its VIP by those three, and drops one it finds none for,
/// so a check on another port, or a TCP or HTTP check of a UDP VIP, would
/// fail every time and take every backend down. The error names the key
/// given here that makes the conflict, else `through_tunnel`.
fn through_tunnel_reaches(
    keys: &HealthKeys,
    out: &HealthConfig,
    vip: ChecksFor,
    base_is: &str,
) -> Result<(), FieldError> {
    if !out.through_tunnel {
        return Ok(());
    }
    let named = |preferred: &'static str, given: bool| {
        if given || keys.through_tunnel.is_none() {
            preferred
        } else {
            "through_tunnel"
        }
    };
    if let Some(port) = out.port.filter(|p| *p != vip.port) {
        let field = named("port", keys.port.is_some());
        let whose = if keys.port.is_some() {
            String::new()
        } else {
            format!(", not port {port} ({base_is})")
        };
        return Err(ValueError::invalid(format!(
            "a check through the tunnel goes to the VIP itself, so it must use the VIP's port {}{whose}: leave port out or set through_tunnel = false",
            vip.port
        ))
        .at(field));
    }
    if vip.protocol == Protocol::Udp && out.check != CheckType::None {
        let field = named("check", keys.check.is_some());
        return Err(ValueError::invalid(format!(
            "a check through the tunnel goes to the VIP itself, which serves UDP, so a {} check cannot reach it: set check = \"none\" or through_tunnel = false",
            out.check
        ))
        .at(field));
    }
    Ok(())
}

/// The rules about each key given in `keys` alone (its type's range, a
/// path's form, ...), without those between keys, on the VIP's mode or on
/// the values not given: for a client that checks a value before lbd is
/// asked (lbctl's flags, as it checks a weight); lbd checks all by
/// [`resolve`].
pub fn check_keys(keys: &HealthKeys) -> Result<(), FieldError> {
    apply(keys, &HealthConfig::default_for(Protocol::Tcp), None).map(drop)
}

/// `base` with each key given in `keys` replaced, checked by its own rule;
/// `through_tunnel = true` also by the VIP's forwarding `mode`, when known.
fn apply(
    keys: &HealthKeys,
    base: &HealthConfig,
    mode: Option<lb_common::Mode>,
) -> Result<HealthConfig, FieldError> {
    let mut out = base.clone();
    if let Some(text) = &keys.check {
        out.check = value::choice(
            text,
            &[
                ("none", CheckType::None),
                ("tcp", CheckType::Tcp),
                ("http", CheckType::Http),
                ("pgsql", CheckType::Pgsql),
            ],
        )
        .map_err(|e| e.at("check"))?;
    }
    if let Some(n) = keys.port {
        out.port = Some(value::integer(n, 1..=u16::MAX).map_err(|e| e.at("port"))?);
    }
    if let Some(path) = &keys.path {
        if path.len() > MAX_HEALTH_PATH_BYTES {
            return Err(ValueError::invalid(format!(
                "is {} bytes long; at most {MAX_HEALTH_PATH_BYTES} are allowed",
                path.len()
            ))
            .at("path"));
        }
        // What the check's request can carry as it is: no fragment (it
        // would be cut off), nothing an HTTP request line refuses.
        let sendable =
            !path.contains('#') && path.parse::<hyper::http::uri::PathAndQuery>().is_ok();
        if !path.starts_with('/')
            || path.chars().any(|c| c.is_whitespace() || c.is_control())
            || !sendable
        {
            return Err(ValueError::invalid(format!(
                "{path:?} is not an absolute URL path an HTTP request can carry (no spaces, no fragment, characters such as < > ` percent-encoded)"
            ))
            .at("path"));
        }
        out.path.clone_from(path);
    }
    if let Some(host) = &keys.host {
        if host.len() > MAX_HEALTH_HOST_BYTES {
            return Err(ValueError::invalid(format!(
                "is {} bytes long; at most {MAX_HEALTH_HOST_BYTES} are allowed",
                host.len()
            ))
            .at("host"));
        }
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::invalid(format!("{host:?} is not a host name")).at("host"));
        }
        out.host = Some(host.clone());
    }
    if let Some(n) = keys.expect_status {
        // 1xx answers are interim: the final answer decides.
        out.expect_status = value::integer(n, 200..=599).map_err(|e| e.at("expect_status"))?;
    }
    if let Some(text) = &keys.expect_body {
        out.expect_body = Some(expect_body(text)?);
    }
    if let Some(on) = keys.tls {
        out.tls = on;
    }
    if let Some(user) = &keys.user {
        out.user = Some(pgsql_name(user, "user")?);
    }
    if let Some(database) = &keys.database {
        out.database = Some(pgsql_name(database, "database")?);
    }
    let millis = |n: i64, name: &str| -> Result<Duration, FieldError> {
        Ok(Duration::from_millis(
            value::integer(n, MILLIS).map_err(|e| e.at(name))?.into(),
        ))
    };
    if let Some(n) = keys.interval_ms {
        out.interval = millis(n, "interval_ms")?;
    }
    if let Some(n) = keys.fast_interval_ms {
        out.fast_interval = millis(n, "fast_interval_ms")?;
    }
    if let Some(n) = keys.timeout_ms {
        out.timeout = millis(n, "timeout_ms")?;
    }
    if let Some(n) = keys.rise {
        out.rise = value::integer(n, 1..=100).map_err(|e| e.at("rise"))?;
    }
    if let Some(n) = keys.fall {
        out.fall = value::integer(n, 1..=100).map_err(|e| e.at("fall"))?;
    }
    if let Some(on) = keys.through_tunnel {
        if let (true, Some(mode)) = (on, mode) {
            value::through_tunnel_allowed(mode).map_err(|e| e.at("through_tunnel"))?;
        }
        out.through_tunnel = on;
    }
    Ok(out)
}

/// The rules between the timing keys of `out` (`keys` applied to its
/// base): which were given decides which key an error names and how.
fn timing(keys: &HealthKeys, out: &HealthConfig, base_is: &str) -> Result<(), FieldError> {
    // A check must end before the next is due, and checks of a backend
    // changing state come at least as often as of a stable one.
    // (timeout_ms <= fast_interval_ms is not asked: the defaults, 1000
    // and 500 ms, break it.)
    let timing = [
        (
            "timeout_ms",
            out.timeout,
            keys.timeout_ms.is_some(),
            "interval_ms",
            out.interval,
            keys.interval_ms.is_some(),
        ),
        (
            "fast_interval_ms",
            out.fast_interval,
            keys.fast_interval_ms.is_some(),
            "interval_ms",
            out.interval,
            keys.interval_ms.is_some(),
        ),
    ];
    for (short_name, short, short_given, long_name, long, long_given) in timing {
        if short <= long {
            continue;
        }
        let (short_ms, long_ms) = (short.as_millis(), long.as_millis());
        let invalid = ValueError::invalid;
        return Err(match (short_given, long_given) {
            (true, true) => invalid(format!(
                "{short_name} ({short_ms}) is longer than {long_name} ({long_ms})"
            ))
            .at(short_name),
            (true, false) => invalid(format!(
                "{short_name} ({short_ms}) is longer than {long_name} ({long_ms}, {base_is}): set {long_name} too"
            ))
            .at(short_name),
            (false, true) => invalid(format!(
                "{long_name} ({long_ms}) is shorter than {short_name} ({short_ms}, {base_is}): set {short_name} too"
            ))
            .at(long_name),
            (false, false) => invalid(format!(
                "{short_name} ({short_ms}, {base_is}) is longer than {long_name} ({long_ms}, {base_is})"
            ))
            .at(short_name),
        });
    }
    Ok(())
}
