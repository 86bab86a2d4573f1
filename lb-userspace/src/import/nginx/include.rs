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

/// Whether the file named `name` is one `pattern` includes: its file name
/// matches the pattern's (with `*`), and its directory's name the
/// pattern's, when both have one (`/etc/nginx/stream.d/*.conf` takes
/// `stream.d/dns.conf` wherever it was copied to).
pub(super) fn matches(pattern: &str, name: &str) -> bool {
    let split = |p: &str| -> (Option<String>, String) {
        let path = std::path::Path::new(p);
        (
            path.parent()
                .and_then(|d| d.file_name())
                .map(|d| d.to_string_lossy().into_owned()),
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    };
    let (pattern_dir, pattern_file) = split(pattern);
    let (dir, file) = split(name);
    let dir_ok = match (pattern_dir, dir) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    dir_ok && glob(&pattern_file, &file)
}

/// `*` and `?` wildcards, as nginx's include takes them.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
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
