//! keepalived.conf: `vrrp_instance` blocks (which node holds the VIPs)
//! become lbd's own `[[vrrp]]` (lbd speaks VRRPv3 itself and replaces
//! keepalived), `virtual_server` blocks (IPVS services) become VIPs.
//! Scripts keepalived ran to track HAProxy map to lbd tracking its own
//! data plane, which is what replaces HAProxy.

mod checker;
mod virtual_server;
mod vrrp;

use std::time::Duration;

use super::blocks::{self, Dialect, Statement};
use super::model::{Note, Origin, Setup, Sourced};
use super::ImportError;

use virtual_server::virtual_server;
use vrrp::script;
pub(super) use vrrp::Script;

/// Seconds as keepalived writes them (`3`, `0.5`).
fn seconds(text: &str) -> Option<Duration> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && (0.0..=1e6).contains(&value)).then(|| Duration::from_secs_f64(value))
}

/// The one argument of `statement`, or an error naming it.
pub(super) fn one<'s>(file: &str, statement: &'s Statement) -> Result<&'s str, ImportError> {
    match statement.args() {
        [value] => Ok(value),
        _ => Err(ImportError::at(
            file,
            statement.line,
            format!("{} takes one value", statement.name()),
        )),
    }
}

/// `statement`'s one argument as a number in `range`.
pub(super) fn number<T>(
    file: &str,
    statement: &Statement,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ImportError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let text = one(file, statement)?;
    text.parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!(
                    "{} {text}: not a number in {}..={}",
                    statement.name(),
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// `statement`'s one argument as seconds.
pub(super) fn duration(file: &str, statement: &Statement) -> Result<Duration, ImportError> {
    let text = one(file, statement)?;
    seconds(text).ok_or_else(|| {
        ImportError::at(
            file,
            statement.line,
            format!("{} {text}: not a number of seconds", statement.name()),
        )
    })
}

/// The `vrrp_script`s of every keepalived file of the setup (name,
/// text), in order: a `track_script` may name one defined in another
/// file (keepalived.conf including a scripts file), as keepalived reads
/// them all as one configuration. The first of a name is taken.
pub(super) fn scripts(sources: &[(&str, &str)]) -> Result<Vec<Script>, ImportError> {
    let mut out = Vec::new();
    for (file, text) in sources {
        let top = blocks::parse(file, text, Dialect::Keepalived)?;
        for statement in top.iter().filter(|s| s.name() == "vrrp_script") {
            out.push(script(file, statement)?);
        }
    }
    Ok(out)
}

/// `global_defs { ... }`: keepalived's process settings, which lbd needs
/// none of, but for `vrrp_version`: lbd speaks VRRPv3 only, so the version
/// keepalived speaks is kept for join to say whether the two can run side
/// by side.
fn global_defs(file: &str, statement: &Statement, setup: &mut Setup) -> Result<(), ImportError> {
    let origin = Origin::new(file, statement.line);
    for child in statement.children() {
        if child.name() == "vrrp_version" {
            let version = number(file, child, 2..=3u8)?;
            setup.vrrp_version = Some(Sourced::new(
                version,
                &Origin::new(file, child.line),
                child.text(),
            ));
        }
    }
    setup.notes.push(Note::new(
        &origin,
        "global_defs: keepalived's process settings (router_id, e-mail alerts) are not carried over; lbd has no equivalent (its vrrp_version is checked with each vrrp_instance)",
    ));
    Ok(())
}

/// Reads `text` (named `file`) into `setup`; `scripts` are the
/// `vrrp_script`s of all the setup's keepalived files.
pub(super) fn parse(
    file: &str,
    text: &str,
    scripts: &[Script],
    setup: &mut Setup,
) -> Result<(), ImportError> {
    let top = blocks::parse(file, text, Dialect::Keepalived)?;
    for statement in &top {
        let origin = Origin::new(file, statement.line);
        match statement.name() {
            "vrrp_script" => {}
            "vrrp_instance" => setup.vrrp.push(vrrp::instance(file, statement, scripts)?),
            "virtual_server" => {
                if let Some(service) = virtual_server(file, statement, setup)? {
                    setup.services.push(service);
                }
            }
            "global_defs" => global_defs(file, statement, setup)?,
            "include" => setup.notes.push(Note::new(
                &origin,
                format!(
                    "{}: not followed; pass the included files to import too",
                    statement.text()
                ),
            )),
            _ => setup.notes.push(Note::new(
                &origin,
                format!(
                    "{}: not carried over (lbd has no equivalent)",
                    statement.text()
                ),
            )),
        }
    }
    Ok(())
}
