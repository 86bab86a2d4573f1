//! Which context each file of a setup is read in: a file nginx.conf
//! includes inside `http { }` or `stream { }` is that block's content
//! (matched by file and directory name, as copies land elsewhere), and a
//! file no include names is judged by its server blocks.

use super::Context;
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Setup};

/// An `include` and the context it is in, to read the named files in.
pub(super) struct Include {
    pub(super) pattern: String,
    pub(super) context: Context,
}

/// Includes of `statements` (in `context`: None is nginx's main context).
pub(super) fn gather_includes(
    statements: &[Statement],
    context: Option<Context>,
    out: &mut Vec<Include>,
) {
    for s in statements {
        match (s.name(), &s.block) {
            ("http", Some(children)) => gather_includes(children, Some(Context::Http), out),
            ("stream", Some(children)) => gather_includes(children, Some(Context::Stream), out),
            ("include", None) => {
                if let (Some(context), Some(pattern)) = (context, s.args().first()) {
                    out.push(Include {
                        pattern: pattern.clone(),
                        context,
                    });
                }
            }
            _ => {}
        }
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
