//! keepalived's `include`, which it reads on any line: inside a block, the
//! statements of the files it names (of those given, matched as nginx's
//! includes are) spliced in where it stands, each naming its own file.
//! Not followed, a `virtual_server` whose real_servers were in an
//! included file became a VIP without backends. An include at the top of
//! a file needs nothing: the files it names are read when given.

use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin};
use crate::import::pattern::strictly_matches;
use crate::import::ImportError;

/// The keepalived files of a setup, parsed: each name with its
/// top-level statements.
pub(super) type Files<'a> = [(&'a str, Vec<Statement>)];

/// Most includes nested in one another below one block (a file including
/// itself, directly or not, ends earlier: it is not read again).
const MAX_DEPTH: usize = 8;

/// Top-level blocks whose content is imported: an include in one that
/// names no file given is refused (its backends, addresses or script
/// are unknown); in any other block it is noted.
const IMPORTED: &[&str] = &[
    "virtual_server",
    "virtual_server_group",
    "vrrp_instance",
    "vrrp_script",
];

/// Blocks that stand only at the top of a configuration: a file holding
/// one is no block's content (a top-level include's file).
const SECTIONS: &[&str] = &[
    "virtual_server",
    "virtual_server_group",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "global_defs",
];

/// The files given that an include of `pattern`, inside a block, reads:
/// strictly matched, and never a file of top-level sections. (One that
/// includes itself, directly or not, is not read again: a cycle ends.)
fn named<'f, 'a>(
    files: &'f Files<'a>,
    pattern: &'f str,
) -> impl Iterator<Item = &'f (&'a str, Vec<Statement>)> {
    files.iter().filter(move |(name, top)| {
        strictly_matches(pattern, name)
            && !top
                .iter()
                .any(|s| s.block.is_some() && SECTIONS.contains(&s.name()))
    })
}

/// The files read as the content of a block (those an include inside one
/// names, and those their own includes name): they are read where they
/// are included, not on their own.
pub(super) fn block_included<'a>(files: &Files<'a>) -> Vec<&'a str> {
    /// The include patterns among `statements` inside a block (`inside`:
    /// the statements already are).
    fn inside_blocks<'s>(statements: &'s [Statement], inside: bool, out: &mut Vec<&'s str>) {
        for s in statements {
            if inside && s.name() == "include" && s.block.is_none() {
                out.push(s.args().first().map_or("", String::as_str));
            }
            if s.block.is_some() {
                inside_blocks(s.children(), true, out);
            }
        }
    }
    let mut out: Vec<&'a str> = Vec::new();
    for (root, top) in files {
        let mut patterns = Vec::new();
        inside_blocks(top, false, &mut patterns);
        let mut reached: Vec<&'a str> = vec![root];
        let mut read = 0;
        while let Some(&pattern) = patterns.get(read) {
            read += 1;
            for (name, top) in named(files, pattern) {
                if reached.contains(name) {
                    continue;
                }
                reached.push(name);
                if !out.contains(name) {
                    out.push(name);
                }
                inside_blocks(top, true, &mut patterns);
            }
        }
    }
    out
}

/// The top-level statements of `file` with every include inside a block
/// replaced by the statements of the files it names; includes that name
/// no file given are refused inside an imported block, noted elsewhere.
pub(super) fn expand(
    file: &str,
    top: &[Statement],
    files: &Files<'_>,
    notes: &mut Vec<Note>,
) -> Result<Vec<Statement>, ImportError> {
    let mut out = Vec::with_capacity(top.len());
    for section in top {
        let mut section = section.clone();
        if let Some(children) = &section.block {
            let splice = Splice {
                files,
                section_file: file,
                section: &section,
            };
            let children = splice.splice(file, children, &mut vec![file.to_owned()], notes)?;
            section.block = Some(children);
        }
        out.push(section);
    }
    Ok(out)
}

/// What [`expand`] splices in for: the top-level block being read.
struct Splice<'f, 'a> {
    files: &'f Files<'a>,
    section_file: &'f str,
    section: &'f Statement,
}

impl Splice<'_, '_> {
    /// `statements` (of `file`) with their includes spliced in; `seen`
    /// holds the files being read, so that a cycle ends.
    fn splice(
        &self,
        file: &str,
        statements: &[Statement],
        seen: &mut Vec<String>,
        notes: &mut Vec<Note>,
    ) -> Result<Vec<Statement>, ImportError> {
        let mut out = Vec::new();
        for s in statements {
            if s.name() != "include" || s.block.is_some() {
                let mut s = s.clone();
                if let Some(children) = &s.block {
                    s.block = Some(self.splice(file, children, seen, notes)?);
                }
                out.push(s);
                continue;
            }
            let [pattern] = s.args() else {
                return Err(ImportError::at(
                    file,
                    s.line,
                    format!("{}: include takes one file name or pattern", s.text()),
                ));
            };
            let mut any = false;
            for (name, top) in named(self.files, pattern) {
                any = true;
                if seen.iter().any(|f| f.as_str() == *name) {
                    continue;
                }
                if seen.len() > MAX_DEPTH {
                    return Err(ImportError::at(
                        file,
                        s.line,
                        format!("{}: includes nested more than {MAX_DEPTH} deep", s.text()),
                    ));
                }
                seen.push((*name).to_owned());
                let mut spliced = self.splice(name, top, seen, notes)?;
                seen.pop();
                for statement in &mut spliced {
                    tag(statement, name);
                }
                out.extend(spliced);
            }
            if !any {
                self.missing(file, s, pattern, notes)?;
            }
        }
        Ok(out)
    }

    /// An include inside the block that names no file given: refused in
    /// an imported block, noted in another.
    fn missing(
        &self,
        file: &str,
        include: &Statement,
        pattern: &str,
        notes: &mut Vec<Note>,
    ) -> Result<(), ImportError> {
        let block = self.section.text();
        if !IMPORTED.contains(&self.section.name()) {
            notes.push(Note::new(
                &Origin::new(file, include.line),
                format!(
                    "{} (inside {block}): not followed; pass the included files to import too",
                    include.text()
                ),
            ));
            return Ok(());
        }
        let block_at = if file == self.section_file {
            format!("line {}", self.section.line)
        } else {
            Origin::new(self.section_file, self.section.line).to_string()
        };
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
        Err(ImportError::at(
            file,
            include.line,
            format!(
                "{}: inside {block} ({block_at}), and no file given is the one it names: the block's contents are unknown, so it cannot be imported faithfully; pass the included file too{hint}",
                include.text()
            ),
        ))
    }
}

/// Marks `statement` and what it holds as written in `file` (what is
/// already marked came from a file included further down).
fn tag(statement: &mut Statement, file: &str) {
    if statement.file.is_none() {
        statement.file = Some(file.to_owned());
    }
    if let Some(children) = &mut statement.block {
        for child in children {
            tag(child, file);
        }
    }
}
