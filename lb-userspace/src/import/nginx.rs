//! nginx.conf (or a conf.d file): `upstream` blocks in `http` or `stream`
//! give the backends; a `server` block whose `proxy_pass` names an
//! upstream (or an address) gives where it listens, and its `allow`/`deny`
//! rules who may connect (without its own, those of the `http` or
//! `stream` block around it, which an included file's server blocks also
//! inherit). nginx's passive health accounting (`max_fails`,
//! `fail_timeout`) becomes active checks, because lbd sees packets, not
//! failed requests. The files of one setup are read together: a server
//! block may use an upstream of another file, and a file that nginx.conf
//! includes inside `stream { }` is read as stream content.

mod include;
mod listen;
mod server;
mod upstream;
mod walk;

use std::time::Duration;

use super::blocks::{self, Dialect};
use super::model::{Note, Service, Setup};
use super::ImportError;

use include::{block_included, gather_includes, includes_of, infer};
use server::{Proxy, Target};
use walk::{walk, Level};

/// Where a block sits: `http` upstreams default to port 80; `stream`
/// ones must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Http,
    Stream,
}

/// A time as nginx writes it (`30s`, `1m30s`, `500ms`; a bare number is
/// seconds).
pub(super) fn time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => {
                // (A crafted sum past Duration's range is no time.)
                total = total.checked_add(Duration::from_millis(n))?;
                rest = &rest[unit_len..];
                continue;
            }
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(n.checked_mul(seconds)?))?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// What the files of a setup hold, gathered before upstreams and server
/// blocks are matched.
#[derive(Debug, Default)]
struct Collected {
    upstreams: Vec<(Context, Service)>,
    proxies: Vec<Proxy>,
}

/// Reads the nginx files `sources` (name, text) of one setup into `setup`.
pub(super) fn parse(sources: &[(&str, &str)], setup: &mut Setup) -> Result<(), ImportError> {
    let mut parsed = Vec::new();
    for (file, text) in sources {
        parsed.push((*file, blocks::parse(file, text, Dialect::Nginx)?));
    }
    let (unread, mains) = crate::import::pattern::unread(&parsed, |top| {
        top.iter()
            .any(|s| s.block.is_some() && matches!(s.name(), "http" | "stream" | "events"))
    });
    let mut includes = Vec::new();
    for (file, top) in &parsed {
        gather_includes(file, top, &parsed, &mut includes)?;
    }
    // An included file's own includes are in its includer's level.
    let mut expanded = vec![false; parsed.len()];
    loop {
        let mut more = false;
        for ((file, top), expanded) in parsed.iter().zip(expanded.iter_mut()) {
            if *expanded {
                continue;
            }
            let Some(include) = includes.iter().find(|i| i.names(file)) else {
                continue;
            };
            *expanded = true;
            more = true;
            let nested = includes_of(file, top, include.context, &include.rules);
            includes.extend(nested);
        }
        if !more {
            break;
        }
    }
    // A file an upstream or server block includes is read there.
    let in_blocks = block_included(&parsed);
    let mut collected = Collected::default();
    for (file, top) in parsed
        .iter()
        .filter(|(f, _)| !in_blocks.contains(f) && !unread.contains(f))
    {
        // An included file is its includer's block's content: its server
        // blocks inherit that block's rules (which hold its own).
        let (context, level) = match includes.iter().find(|i| i.names(file)) {
            Some(include) => (
                include.context,
                Level {
                    files: &parsed,
                    inherited: include.rules.clone(),
                    enclosed: true,
                },
            ),
            None => (
                infer(file, top, setup),
                Level {
                    files: &parsed,
                    inherited: Vec::new(),
                    enclosed: false,
                },
            ),
        };
        walk(file, top, context, &level, &mut collected, setup)?;
    }
    if let Some(file) = unread.first() {
        return Err(crate::import::pattern::unread_error(file, &mains, "nginx"));
    }
    match_upstreams(collected, setup);
    Ok(())
}

/// Upstreams and server blocks matched: one service per server block
/// (its listens and rules with its upstream's servers), and one for each
/// upstream no server block uses (`--vip` places it).
fn match_upstreams(collected: Collected, setup: &mut Setup) {
    let Collected { upstreams, proxies } = collected;
    let mut used = vec![false; upstreams.len()];
    for proxy in proxies {
        let mut service = match proxy.target {
            Target::Upstream(name) => {
                let found = upstreams.iter().enumerate().find(|(_, (context, u))| {
                    *context == proxy.context
                        && u.name.strip_prefix("upstream ") == Some(name.as_str())
                });
                let Some((index, (_, upstream))) = found else {
                    setup.notes.extend(proxy.notes);
                    setup.notes.push(Note::new(
                        &proxy.origin,
                        format!("WARNING: proxy_pass {name}: no upstream {name} in the files given and not an address (lbd balances to addresses): this server block is not imported; pass the file with the upstream too"),
                    ));
                    continue;
                };
                used[index] = true;
                upstream.clone()
            }
            Target::Address(backend) => Service {
                name: format!("server block at {}", proxy.origin),
                origin: proxy.origin.clone(),
                listens: Vec::new(),
                backends: vec![*backend],
                forwarding: None,
                affinity: Vec::new(),
                acl: Vec::new(),
                passive: None,
                all_backups: None,
                idle_timeout: None,
                notes: Vec::new(),
            },
        };
        service.listens = proxy.listens;
        service.acl = proxy.acl;
        service.notes.extend(proxy.notes);
        setup.services.push(service);
    }
    for ((_, service), used) in upstreams.into_iter().zip(used) {
        if !used {
            setup.services.push(service);
        }
    }
}
