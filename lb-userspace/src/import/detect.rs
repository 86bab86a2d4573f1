//! Which format a file is, from its content: operators name their files
//! freely (`lb.cfg`, `conf.d/app.conf`), so the name says little. The
//! first words of its statements do: each format's section keywords are
//! its own.

use std::fmt;

/// A source format `lbctl config import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// haproxy.cfg: `global`, `defaults`, `frontend`, `backend`, `listen`.
    Haproxy,
    /// keepalived.conf: `vrrp_instance`, `virtual_server`.
    Keepalived,
    /// nginx.conf or a conf.d file: `upstream`, `stream`, `http`, `server`.
    Nginx,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Haproxy => "haproxy",
            Format::Keepalived => "keepalived",
            Format::Nginx => "nginx",
        })
    }
}

/// Words that open a section or block in only one of the formats.
const HAPROXY: &[&str] = &["global", "defaults", "frontend", "backend", "listen"];
const KEEPALIVED: &[&str] = &[
    "vrrp_instance",
    "virtual_server",
    "global_defs",
    "vrrp_script",
    "vrrp_sync_group",
    "virtual_server_group",
    // What a file included inside a block starts with.
    "real_server",
    "virtual_ipaddress",
    "TCP_CHECK",
    "HTTP_GET",
    "SSL_GET",
    "MISC_CHECK",
];
const NGINX: &[&str] = &["upstream", "stream", "http", "events", "server"];

/// The format of `text`, from the first word of its first line that is
/// neither blank nor a comment and is one of a format's keywords; with no
/// such line, nginx when its first statement ends with `;` (a file an
/// nginx block includes: `server 198.18.0.11:80;`, `listen 443 ssl;`,
/// which neither other format writes); else None.
pub(crate) fn detect(text: &str) -> Option<Format> {
    let mut first_statement: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        if first_statement.is_none() && !line.is_empty() {
            first_statement = Some(line);
        }
        let word: String = line
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '{' && *c != ';')
            .collect();
        let opens_block = line[word.len()..].contains('{');
        if KEEPALIVED.contains(&word.as_str()) {
            return Some(Format::Keepalived);
        }
        // `server` opens a block in nginx only; HAProxy's takes an address.
        if NGINX.contains(&word.as_str()) && opens_block {
            return Some(Format::Nginx);
        }
        // nginx's `listen 443 ssl;` is not HAProxy's `listen NAME`.
        if HAPROXY.contains(&word.as_str()) && !opens_block && !ends_statement(line) {
            return Some(Format::Haproxy);
        }
    }
    first_statement
        .filter(|line| ends_statement(line))
        .map(|_| Format::Nginx)
}

/// Whether `line` (its comment aside) ends with `;`, as nginx's
/// statements do and neither other format's.
fn ends_statement(line: &str) -> bool {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim_end()
        .ends_with(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_told_by_its_section_words() {
        assert_eq!(
            detect("# lb\nglobal\n  daemon\nfrontend web\n  bind *:80\n"),
            Some(Format::Haproxy)
        );
        assert_eq!(
            detect("! Configuration File for keepalived\nglobal_defs {\n}\n"),
            Some(Format::Keepalived)
        );
        assert_eq!(
            detect("upstream app {\n  server 198.18.0.11;\n}\n"),
            Some(Format::Nginx)
        );
        assert_eq!(
            detect("# conf.d\nserver {\n listen 80;\n}\n"),
            Some(Format::Nginx)
        );
        // A file an nginx block includes (`upstream app { include
        // app-servers.conf; }`) has statements ended with `;` and no block.
        assert_eq!(
            detect("# app servers\nserver 198.18.0.11:80 weight=2;\n"),
            Some(Format::Nginx)
        );
        assert_eq!(
            detect("listen 443 ssl; # TLS\nssl_certificate /etc/ssl/a.pem;\n"),
            Some(Format::Nginx)
        );
        assert_eq!(detect("[[vip]]\naddress = \"198.18.0.1\"\n"), None);
        assert_eq!(detect(""), None);
    }
}
