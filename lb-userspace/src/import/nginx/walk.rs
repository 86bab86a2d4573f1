//! The directive walk: the statements of the main, `http` and `stream`
//! contexts read in order, their upstreams and server blocks collected,
//! a level's `allow`/`deny` rules (those of the files it includes spliced
//! in where nginx reads them) handed down to its server blocks, and what
//! lbd has no use for noted.

use super::include::{matches, Files};
use super::server::server;
use super::{upstream, Collected, Context};
use crate::import::acl::{self, Ordered};
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Setup};
use crate::import::ImportError;

/// What a level (main, http, stream) passes to the blocks in it.
pub(super) struct Level<'a> {
    /// The files read, to tell whether an include is and to read the
    /// rules of those that are.
    pub(super) files: &'a Files<'a>,
    /// The `allow`/`deny` rules a server block without its own inherits.
    pub(super) inherited: Vec<Ordered>,
    /// The statements are an included file's: the content of its
    /// includer's block, whose rules (`inherited`) already hold those at
    /// the top of this file, spliced in where nginx reads them.
    pub(super) enclosed: bool,
}

/// The rules of a level's `statements` as nginx reads them: its own
/// `allow`/`deny`, with those at the top of each file an `include` names
/// (of the `files` given) spliced in at the include, as nginx's include is
/// textual. `seen` holds the files being read, so that a file including
/// itself ends.
pub(super) fn level_rules<'a>(
    file: &'a str,
    statements: &'a [Statement],
    files: &'a Files<'a>,
    seen: &mut Vec<&'a str>,
) -> Result<Vec<Ordered>, ImportError> {
    let mut out = Vec::new();
    for s in statements {
        if s.name() != "include" || s.block.is_some() {
            out.extend(access_rule(file, s)?);
            continue;
        }
        let pattern = s.args().first().map_or("", String::as_str);
        for (name, top) in files {
            if !seen.contains(name) && matches(pattern, name) {
                seen.push(name);
                out.extend(level_rules(name, top, files, seen)?);
                seen.pop();
            }
        }
    }
    Ok(out)
}

/// The rule `s` is, if it is an `allow` or `deny` (one of a UNIX socket
/// is none: lbd sees no such clients); an address nginx would refuse is
/// an error at its line.
pub(super) fn access_rule(file: &str, s: &Statement) -> Result<Option<Ordered>, ImportError> {
    let allow = match (s.name(), s.block.is_some()) {
        ("allow", false) => true,
        ("deny", false) => false,
        _ => return Ok(None),
    };
    let [spec] = s.args() else {
        return Err(ImportError::at(
            file,
            s.line,
            format!("{}: takes one address, prefix or all", s.text()),
        ));
    };
    if spec.starts_with("unix:") {
        return Ok(None);
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
    Ok(Some(Ordered {
        allow,
        source,
        origin: Origin::new(file, s.line),
        what: s.text(),
    }))
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
    let own = level_rules(file, statements, level.files, &mut vec![file])?;
    let inner = Level {
        files: level.files,
        inherited: if own.is_empty() || level.enclosed {
            level.inherited.clone()
        } else {
            own
        },
        enclosed: false,
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
                    files: level.files,
                    inherited: Vec::new(),
                    enclosed: false,
                },
                collected,
                setup,
            )?,
            ("upstream", true) => {
                collected.upstreams.push((
                    context,
                    upstream::upstream(file, statement, context, level.files)?,
                ));
            }
            ("server", true) => {
                if let Some(proxy) = server(file, statement, context, &inner, setup)? {
                    collected.proxies.push(proxy);
                }
            }
            ("allow" | "deny", false) => {}
            ("include", false) => {
                let pattern = statement.args().first().map_or("", String::as_str);
                if !level
                    .files
                    .iter()
                    .any(|(n, _)| *n != file && matches(pattern, n))
                {
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
