//! Which of the files given an `include` names, for nginx and keepalived
//! alike: the import reads only the files on its command line, copied
//! anywhere, so a pattern is matched by its file name and the name of its
//! directory, not by its whole path.

use std::path::Path;

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
