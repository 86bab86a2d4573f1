//! The directive walk: the statements of the main, `http` and `stream`
//! contexts read in order, their upstreams and server blocks collected,
//! a level's `allow`/`deny` rules handed down to its server blocks, and
//! what lbd has no use for noted.

use super::include::matches;
use super::server::server;
use super::{upstream, Collected, Context};
use crate::import::acl::{self, Ordered};
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Setup};
use crate::import::ImportError;

/// What a level (main, http, stream) passes to the blocks in it.
pub(super) struct Level<'a> {
    /// The names of the files read, to tell whether an include is.
    pub(super) names: &'a [&'a str],
    /// The `allow`/`deny` rules a server block without its own inherits.
    pub(super) inherited: Vec<Ordered>,
}

/// The `allow`/`deny` rules among `statements`, in order; an address
/// nginx would refuse is an error at its line.
pub(super) fn access_rules(
    file: &str,
    statements: &[Statement],
) -> Result<Vec<Ordered>, ImportError> {
    let mut out = Vec::new();
    for s in statements {
        let allow = match (s.name(), s.block.is_some()) {
            ("allow", false) => true,
            ("deny", false) => false,
            _ => continue,
        };
        let [spec] = s.args() else {
            return Err(ImportError::at(
                file,
                s.line,
                format!("{}: takes one address, prefix or all", s.text()),
            ));
        };
        if spec.starts_with("unix:") {
            continue;
        }
        let source = if spec == "all" {
            None
        } else {
            Some(acl::source(spec).ok_or_else(|| {
                ImportError::at(
                    file,
                    s.line,
                    format!("{}: {spec:?} is not an address, a prefix or all", s.text()),
                )
            })?)
        };
        out.push(Ordered {
            allow,
            source,
            origin: Origin::new(file, s.line),
            what: s.text(),
        });
    }
    Ok(out)
}

/// Reads the statements of a context.
pub(super) fn walk(
    file: &str,
    statements: &[Statement],
    context: Context,
    level: &Level<'_>,
    collected: &mut Collected,
    setup: &mut Setup,
) -> Result<(), ImportError> {
    let own = access_rules(file, statements)?;
    let inner = Level {
        names: level.names,
        inherited: if own.is_empty() {
            level.inherited.clone()
        } else {
            own
        },
    };
    let mut left = Vec::new();
    for statement in statements {
        let origin = Origin::new(file, statement.line);
        match (statement.name(), statement.block.is_some()) {
            (name @ ("http" | "stream"), true) => walk(
                file,
                statement.children(),
                if name == "http" {
                    Context::Http
                } else {
                    Context::Stream
                },
                &Level {
                    names: level.names,
                    inherited: Vec::new(),
                },
                collected,
                setup,
            )?,
            ("upstream", true) => {
                collected
                    .upstreams
                    .push((context, upstream::upstream(file, statement, context)?));
            }
            ("server", true) => {
                if let Some(proxy) = server(file, statement, context, &inner, setup)? {
                    collected.proxies.push(proxy);
                }
            }
            ("allow" | "deny", false) => {}
            ("include", false) => {
                let pattern = statement.args().first().map_or("", String::as_str);
                let read: Vec<&str> = level
                    .names
                    .iter()
                    .copied()
                    .filter(|n| matches(pattern, n))
                    .collect();
                if read.is_empty() {
                    setup.notes.push(Note::new(
                        &origin,
                        format!(
                            "WARNING: {}: not followed; pass the included files to import too",
                            statement.text()
                        ),
                    ));
                }
            }
            _ => left.push(format!("{} ({origin})", statement.text())),
        }
    }
    if !left.is_empty() {
        let at = Origin::new(file, statements.first().map_or(1, |s| s.line));
        setup.notes.push(Note::new(
            &at,
            format!(
                "not carried over (nginx's process, logging and protocol settings; lbd's are its own): {}",
                left.join("; ")
            ),
        ));
    }
    Ok(())
}
