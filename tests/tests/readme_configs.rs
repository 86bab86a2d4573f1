//! README's complete lbd configurations (its ```toml blocks with an
//! `interface =` line: the reference under "Configuration (TOML)", the
//! per-mode examples, `lbctl config import`'s output) are files lbd
//! accepts: each is loaded with the loader `lbctl config check` and lbd
//! use. The reference once paired a DSR VIP with NAT-only keys, and a
//! reader who copied it got a refusal. No root needed.

use lb_userspace::config::{self, Config};

/// README's ```toml blocks: the line of each opening fence (1-based) and
/// the text up to its closing fence.
fn toml_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (index, line) in readme.lines().enumerate() {
        let fence = line.trim_start();
        match open.as_mut() {
            None if fence == "```toml" => open = Some((index + 1, String::new())),
            None => {}
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "README: a ```toml block is not closed");
    blocks
}

#[test]
fn every_complete_lbd_config_in_the_readme_is_accepted() {
    let readme = include_str!("../../README.md");
    let configs: Vec<(usize, String)> = toml_blocks(readme)
        .into_iter()
        .filter(|(_, text)| text.lines().any(|l| l.starts_with("interface =")))
        .collect();
    // The reference, the dsr-l2, NAT and GUE examples, the import's output.
    assert!(
        configs.len() >= 5,
        "README's lbd configs not found: {} blocks",
        configs.len()
    );
    let mut refused = Vec::new();
    for (fence, text) in &configs {
        // Blank lines in front keep the loader's line numbers README's.
        let padded = format!("{}{text}", "\n".repeat(*fence));
        match Config::from_toml_str(&padded, "README.md") {
            Ok(config) => {
                for warning in config::warnings(&config) {
                    eprintln!("README.md block at line {fence}: warning: {warning}");
                }
            }
            Err(error) => refused.push(format!("block at line {fence}: {error}")),
        }
    }
    assert!(
        refused.is_empty(),
        "README's configs lbd refuses:\n{}",
        refused.join("\n")
    );
}

/// What a fragment (a block without `interface =`: `[[acl]]`, `[[vrrp]]`,
/// `[bgp]`, `[sync]`) is checked with: the interface, and the VIP its
/// examples name (198.18.0.100:80/tcp).
const FRAGMENT_VIP: &str = "
[[vip]]
address = \"198.18.0.100\"
port = 80
  [[vip.backend]]
  address = \"198.18.0.11\"
";

/// `line` without its comment and surrounding blanks: a table header as
/// written (`[[vrrp]]   # one per address family` is `[[vrrp]]`).
fn table_header(line: &str) -> &str {
    line.split('#').next().unwrap_or_default().trim()
}

/// The tables README's config fragments show, each in one fragment at
/// least.
const FRAGMENT_TABLES: [&str; 4] = ["[[acl]]", "[[vrrp]]", "[bgp]", "[sync]"];

#[test]
fn every_config_fragment_in_the_readme_is_accepted_beside_its_vip() {
    let readme = include_str!("../../README.md");
    let fragments: Vec<(usize, String)> = toml_blocks(readme)
        .into_iter()
        .filter(|(_, text)| !text.lines().any(|l| l.starts_with("interface =")))
        .collect();
    // One fragment at least of each kind the README shows: a change to
    // its fences would otherwise leave nothing to check.
    for table in FRAGMENT_TABLES {
        assert!(
            fragments
                .iter()
                .any(|(_, text)| text.lines().any(|l| table_header(l) == table)),
            "no README config fragment with {table}: {} fragments found",
            fragments.len()
        );
    }
    let mut refused = Vec::new();
    for (fence, text) in &fragments {
        // The interface on line 1 and blank lines to the fence keep the
        // loader's line numbers README's.
        let file = format!(
            "interface = \"eth0\"{}{text}{FRAGMENT_VIP}",
            "\n".repeat(*fence)
        );
        if let Err(error) = Config::from_toml_str(&file, "README.md") {
            refused.push(format!("block at line {fence}: {error}"));
        }
    }
    assert!(
        refused.is_empty(),
        "README's config fragments lbd refuses:\n{}",
        refused.join("\n")
    );
}

#[test]
fn blocks_are_found_with_their_lines() {
    let text = "a\n```toml\nx = 1\n```\n```sh\ny\n```\n  ```toml\n  z = 2\n  ```\n";
    assert_eq!(
        toml_blocks(text),
        vec![(2, "x = 1\n".to_owned()), (8, "  z = 2\n".to_owned())]
    );
}
