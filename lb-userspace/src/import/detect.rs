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
];
const NGINX: &[&str] = &["upstream", "stream", "http", "events", "server"];

/// The format of `text`, from the first word of its first line that is
/// neither blank nor a comment and is one of a format's keywords; None if
/// no line is.
pub(crate) fn detect(text: &str) -> Option<Format> {
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with('!') {
            continue;
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
        if HAPROXY.contains(&word.as_str()) && !opens_block {
            return Some(Format::Haproxy);
        }
    }
    None
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
        assert_eq!(detect("[[vip]]\naddress = \"198.18.0.1\"\n"), None);
        assert_eq!(detect(""), None);
    }
}
