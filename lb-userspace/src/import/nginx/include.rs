//! Which context each file of a setup is read in: a file nginx.conf
//! includes inside `http { }` or `stream { }` is that block's content
//! (matched by file and directory name, as copies land elsewhere), and a
//! file no include names is judged by its server blocks.

use super::walk::level_rules;
use super::Context;
use crate::import::acl::Ordered;
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Setup};
use crate::import::ImportError;

pub(super) use crate::import::pattern::matches;
use crate::import::pattern::strictly_matches;

/// The files of a setup, parsed: each name with its top-level statements.
pub(super) type Files<'a> = [(&'a str, Vec<Statement>)];

/// An `include`, the context it is in, to read the named files in, and
/// the `allow`/`deny` rules of its level, for their server blocks.
pub(super) struct Include {
    /// The file holding it, which it never names: a name without a
    /// directory (`nginx.conf`) matches `/etc/nginx/stream.d/*.conf`.
    pub(super) file: String,
    pub(super) pattern: String,
    pub(super) context: Context,
    /// The rules the server blocks of the level holding the include
    /// inherit: the level's own, with those at the top of each included
    /// file given spliced in where the include is (nginx's include is
    /// textual), or none. An included file's server blocks are that
    /// level's too, so they inherit these: without them, a server of
    /// `stream.d/db.conf` under `stream { allow ...; deny all; include
    /// stream.d/*.conf; }` was imported open.
    pub(super) rules: Vec<Ordered>,
}

/// Includes in the `http` and `stream` blocks of `statements` (the top of
/// a file read in nginx's main context), with their level's rules.
pub(super) fn gather_includes(
    file: &str,
    statements: &[Statement],
    files: &Files<'_>,
    out: &mut Vec<Include>,
) -> Result<(), ImportError> {
    for s in statements {
        let context = match (s.name(), &s.block) {
            ("http", Some(_)) => Context::Http,
            ("stream", Some(_)) => Context::Stream,
            _ => continue,
        };
        let rules = level_rules(file, s.children(), files, &mut vec![file])?;
        out.extend(includes_of(file, s.children(), context, &rules));
    }
    Ok(())
}

/// The includes among `statements`, a level of `context` whose server
/// blocks inherit `rules` (also the top of an included file, which is
/// its includer's level).
pub(super) fn includes_of(
    file: &str,
    statements: &[Statement],
    context: Context,
    rules: &[Ordered],
) -> Vec<Include> {
    statements
        .iter()
        .filter(|s| s.name() == "include" && s.block.is_none())
        .filter_map(|s| s.args().first())
        .map(|pattern| Include {
            file: file.to_owned(),
            pattern: pattern.clone(),
            context,
            rules: rules.to_vec(),
        })
        .collect()
}

impl Include {
    /// Whether it includes the file named `name` (by `matches`).
    pub(super) fn names(&self, name: &str) -> bool {
        self.file != name && matches(&self.pattern, name)
    }
}

/// The context a file without `http { }` or `stream { }` is read in: a
/// conf.d file of server blocks is http content unless its server blocks
/// are stream ones (a `proxy_pass` with no scheme right in the server
/// block, a `listen ... udp`) and none is http's (a `location`, a
/// `server_name`, a `proxy_pass http://`).
pub(super) fn infer(file: &str, top: &[Statement], setup: &mut Setup) -> Context {
    if top
        .iter()
        .any(|s| matches!(s.name(), "http" | "stream" | "events"))
    {
        return Context::Http;
    }
    let mut stream = None;
    let mut http = false;
    for server in top
        .iter()
        .filter(|s| s.name() == "server" && s.block.is_some())
    {
        for child in server.children() {
            match child.name() {
                "location" | "server_name" | "root" | "return" | "try_files" => http = true,
                "proxy_pass" => {
                    let target = child.args().first().map_or("", String::as_str);
                    if target.contains("://") {
                        http = true;
                    } else {
                        stream.get_or_insert(child.line);
                    }
                }
                "listen" if child.args().iter().any(|a| a == "udp") => {
                    stream.get_or_insert(child.line);
                }
                _ => {}
            }
        }
    }
    match (stream, http) {
        (Some(line), false) => {
            setup.notes.push(Note::new(
                &Origin::new(file, line),
                format!("{file} has no http or stream block; its server blocks are stream ones (proxy_pass without a scheme, listen ... udp): read as the content of stream {{ }}"),
            ));
            Context::Stream
        }
        _ => Context::Http,
    }
}

/// The files given that an `include` of `pattern` in `file` reads (never
/// `file` itself).
fn included<'f, 'a>(
    files: &'f Files<'a>,
    file: &'f str,
    pattern: &'f str,
) -> impl Iterator<Item = &'f (&'a str, Vec<Statement>)> {
    files
        .iter()
        .filter(move |(name, _)| *name != file && matches(pattern, name))
}

/// The files given that an `include` of `pattern` in `file`, inside an
/// `upstream` or `server` block, reads: those [`included`] names, but
/// strictly, since a wrong file there adds backends or listens. A name
/// given without its directory matches a pattern with a wildcard only
/// when the pattern has no directory either (`nginx.conf` or `proxy.conf`
/// is no file of `upstreams/*.conf`), and a file holding `http`, `stream`,
/// `events`, `mail`, `upstream` or `server { }` blocks is no block's
/// content.
fn included_in_block<'f, 'a>(
    files: &'f Files<'a>,
    file: &'f str,
    pattern: &'f str,
) -> impl Iterator<Item = &'f (&'a str, Vec<Statement>)> {
    included(files, file, pattern).filter(move |(name, top)| {
        strictly_matches(pattern, name)
            && !top.iter().any(|s| {
                s.block.is_some()
                    && matches!(
                        s.name(),
                        "http" | "stream" | "events" | "mail" | "upstream" | "server"
                    )
            })
    })
}

/// The files read as the content of an `upstream` or `server` block: those
/// an include inside one names, and those their own includes name. They
/// are read where they are included, not on their own (at the top, their
/// `server 198.18.0.11:80;` lines meant nothing).
pub(super) fn block_included<'a>(files: &Files<'a>) -> Vec<&'a str> {
    /// The includes among `statements` that are inside a block (`inside`:
    /// the statements already are).
    fn includes_inside<'s>(
        file: &'s str,
        statements: &'s [Statement],
        inside: bool,
        out: &mut Vec<(&'s str, &'s str)>,
    ) {
        for s in statements {
            if inside && s.name() == "include" && s.block.is_none() {
                out.push((file, s.args().first().map_or("", String::as_str)));
            }
            let inner = inside || (matches!(s.name(), "upstream" | "server") && s.block.is_some());
            includes_inside(file, s.children(), inner, out);
        }
    }
    let mut out: Vec<&'a str> = Vec::new();
    // From each file holding such a block: what it reads into it, never
    // itself (as block_items, which skips the files being read).
    for (root, top) in files {
        let mut patterns = Vec::new();
        includes_inside(root, top, false, &mut patterns);
        let mut reached: Vec<&'a str> = vec![root];
        let mut read = 0;
        while let Some(&(file, pattern)) = patterns.get(read) {
            read += 1;
            for (name, top) in included_in_block(files, file, pattern) {
                if reached.contains(name) {
                    continue;
                }
                reached.push(name);
                if !out.contains(name) {
                    out.push(name);
                }
                includes_inside(name, top, true, &mut patterns);
            }
        }
    }
    out
}

/// One statement of a block, from the block or a file it includes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item<'a> {
    /// The file it is written in.
    pub(super) file: &'a str,
    pub(super) statement: &'a Statement,
    /// It is inside a `location` of the block.
    pub(super) in_location: bool,
}

/// The statements of `block` (`name`: `upstream app`, `server`, in
/// `file`), with the files its includes name spliced in where they stand,
/// as nginx's include is textual, and (`locations`) those of its
/// locations, marked. An include naming no file given is refused, since
/// the block's backends, listens or rules may be in it; inside a location
/// (which holds no listen, and whose rules and second proxy_pass are not
/// carried over anyway) it is noted, as at the http level.
pub(super) fn block_items<'a>(
    file: &'a str,
    block: &'a Statement,
    name: &str,
    files: &'a Files<'a>,
    locations: bool,
    notes: &mut Vec<Note>,
) -> Result<Vec<Item<'a>>, ImportError> {
    let mut out = Vec::new();
    let context = Splice {
        block_file: file,
        block_line: block.line,
        name,
        files,
        locations,
    };
    context.splice(
        file,
        block.children(),
        false,
        &mut vec![file],
        &mut out,
        notes,
    )?;
    Ok(out)
}

/// What [`block_items`] splices in for.
struct Splice<'a, 'n> {
    block_file: &'a str,
    block_line: usize,
    name: &'n str,
    files: &'a Files<'a>,
    locations: bool,
}

impl<'a> Splice<'a, '_> {
    fn splice(
        &self,
        file: &'a str,
        statements: &'a [Statement],
        in_location: bool,
        seen: &mut Vec<&'a str>,
        out: &mut Vec<Item<'a>>,
        notes: &mut Vec<Note>,
    ) -> Result<(), ImportError> {
        for s in statements {
            match (s.name(), s.block.is_some()) {
                ("include", false) => {
                    let pattern = s.args().first().map_or("", String::as_str);
                    let named: Vec<_> = included_in_block(self.files, file, pattern).collect();
                    if named.is_empty() {
                        self.missing(file, s, in_location, notes)?;
                    }
                    for (name, top) in named {
                        // A file including itself ends, as in level_rules.
                        if seen.contains(name) {
                            continue;
                        }
                        seen.push(name);
                        self.splice(name, top, in_location, seen, out, notes)?;
                        seen.pop();
                    }
                }
                ("location", true) if self.locations => {
                    self.splice(file, s.children(), true, seen, out, notes)?;
                }
                _ => out.push(Item {
                    file,
                    statement: s,
                    in_location,
                }),
            }
        }
        Ok(())
    }

    /// An include that names no file given: refused in the block itself,
    /// noted in a location.
    fn missing(
        &self,
        file: &str,
        include: &Statement,
        in_location: bool,
        notes: &mut Vec<Note>,
    ) -> Result<(), ImportError> {
        if in_location {
            notes.push(Note::new(
                &Origin::new(file, include.line),
                format!(
                    "WARNING: {}: not followed; pass the included files to import too",
                    include.text()
                ),
            ));
            return Ok(());
        }
        let pattern = include.args().first().map_or("", String::as_str);
        let path = std::path::Path::new(pattern);
        // A wildcard takes only files given under its directory's name.
        let hint = match (path.parent().and_then(|d| d.file_name()), path.file_name()) {
            (Some(dir), Some(name)) if name.to_string_lossy().contains(['*', '?']) => format!(
                " (as {}/{}, under its directory's name)",
                dir.to_string_lossy(),
                name.to_string_lossy()
            ),
            _ => String::new(),
        };
        let block_at = if file == self.block_file {
            format!("line {}", self.block_line)
        } else {
            Origin::new(self.block_file, self.block_line).to_string()
        };
        Err(ImportError::at(
            file,
            include.line,
            format!(
                "{}: inside {} ({block_at}), and no file given is the one it names: the block's contents are unknown, so it cannot be imported faithfully; pass the included file too{hint}",
                include.text(),
                self.name
            ),
        ))
    }
}
