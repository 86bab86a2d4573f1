//! Which of the files given an `include` names, for nginx and keepalived
//! alike: the import reads only the files on its command line, copied
//! anywhere, so a pattern is matched by its file name and the name of its
//! directory, not by its whole path.

use std::path::Path;

use super::blocks::Statement;
use super::ImportError;

/// Whether the file named `name` is one `pattern` includes: its file name
/// matches the pattern's (with `*`), and its directory's name the
/// pattern's, when both have one (`/etc/nginx/stream.d/*.conf` takes
/// `stream.d/dns.conf` wherever it was copied to).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let split = |p: &str| -> (Option<String>, String) {
        let path = Path::new(p);
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

/// [`matches()`], strictly, for an include inside a block, where a wrong
/// file adds backends or listens: a name given without its directory
/// matches a pattern with a wildcard only when the pattern has no
/// directory either (`nginx.conf` is no file of `upstreams/*.conf`).
pub(crate) fn strictly_matches(pattern: &str, name: &str) -> bool {
    let has_dir = |path: &str| {
        Path::new(path)
            .parent()
            .and_then(|d| d.file_name())
            .is_some()
    };
    let wildcard_in_dir = has_dir(pattern)
        && Path::new(pattern)
            .file_name()
            .is_some_and(|f| f.to_string_lossy().contains(['*', '?']));
    (!wildcard_in_dir || has_dir(name)) && matches(pattern, name)
}

/// `*` and `?` wildcards, as nginx's and keepalived's include take them.
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

/// The files given that the source never reads, with its main files:
/// where some of `files` are main files (`is_main`: keepalived's with
/// `global_defs` or a top-level include, nginx's with `http`, `stream` or
/// `events`), those no include of theirs names, directly or through the
/// files it names (`web.conf.bak` beside `include conf.d/*.conf`, nginx's
/// `sites-available/*` beside `include sites-enabled/*`). Matched as
/// [`matches()`] (leniently): a file a main file may read is never one.
/// The caller skips them and then refuses them with [`unread_error`],
/// after the refusals of includes that name no file given, which say
/// more (a file left off the command line orphans what it includes).
pub(crate) fn unread<'a>(
    files: &[(&'a str, Vec<Statement>)],
    is_main: impl Fn(&[Statement]) -> bool,
) -> (Vec<&'a str>, Vec<&'a str>) {
    /// The include patterns anywhere in `statements`.
    fn patterns<'s>(statements: &'s [Statement], out: &mut Vec<&'s str>) {
        for s in statements {
            if s.name() == "include" && s.block.is_none() {
                out.extend(s.args().first().map(String::as_str));
            }
            patterns(s.children(), out);
        }
    }
    let mains: Vec<&'a str> = files
        .iter()
        .filter(|(_, top)| is_main(top))
        .map(|(name, _)| *name)
        .collect();
    if mains.is_empty() {
        return (Vec::new(), mains);
    }
    let mut reached: Vec<&'a str> = mains.clone();
    let mut read = 0;
    while let Some(&file) = reached.get(read) {
        read += 1;
        let Some((_, top)) = files.iter().find(|(name, _)| *name == file) else {
            continue;
        };
        let mut named = Vec::new();
        patterns(top, &mut named);
        for pattern in named {
            for (name, _) in files {
                if *name != file && !reached.contains(name) && matches(pattern, name) {
                    reached.push(name);
                }
            }
        }
    }
    let unread = files
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !reached.contains(name))
        .collect();
    (unread, mains)
}

/// The refusal of `file`, given but not read by `daemon` (no include of
/// `mains` names it): imported, its services became extra VIPs, or a
/// refusal that pointed elsewhere; a file given that means nothing is
/// refused, as an unused `--vip` is.
pub(crate) fn unread_error(file: &str, mains: &[&str], daemon: &str) -> ImportError {
    ImportError {
        file: file.to_owned(),
        line: None,
        reason: format!(
            "not read by {daemon}: no include of {} (nor of the files those include) names it, so its contents are not part of this setup: leave it off the command line; if {daemon} does read it, give it the name (file and directory) its include matches",
            mains.join(", ")
        ),
    }
}
