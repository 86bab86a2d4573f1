//! `lbctl config import`: an existing keepalived + HAProxy or nginx setup
//! read and written as an equivalent lbd.toml, so the people who run those
//! today can move in an afternoon.
//!
//! One module per source format turns its text into the common
//! [`model`] (services, VRRP instances, notes, every value with its file
//! and line); [`join`] puts the files of one setup together (HAProxy's
//! `bind *:80` plus keepalived's `virtual_ipaddress` give a VIP) and
//! decides what lbd does with each value; [`mod@write`] renders the result
//! with a comment beside each key saying where it came from and a note
//! wherever something could not be carried over. The text is loaded with
//! [`Config::from_toml_str`] before it is handed out, so what import gives
//! is what `lbctl config check` accepts. Input that cannot be parsed is
//! refused with its file, line and reason; nothing is written then.

mod acl;
mod blocks;
mod detect;
mod haproxy;
mod join;
mod keepalived;
mod model;
mod nginx;
mod pattern;
mod write;

#[cfg(test)]
mod tests;

use std::{fmt, net::IpAddr, str::FromStr};

use crate::config::{Config, Protocol};

pub use detect::Format;

/// One input file: its name (for messages and provenance comments) and
/// text.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as named on the command line.
    pub name: String,
    /// Its contents.
    pub text: String,
}

/// A VIP given on the command line (`--vip ADDRESS[:PORT][/PROTOCOL]`),
/// for sources that name no address (a wildcard bind without keepalived)
/// or no port either (an nginx upstream alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipArg {
    /// The VIP's address.
    pub address: IpAddr,
    /// Its port, when given.
    pub port: Option<u16>,
    /// Its protocol, when given.
    pub protocol: Option<Protocol>,
}

impl FromStr for VipArg {
    type Err = String;

    /// `198.18.0.100:80/tcp`, `[2001:2::100]:80/tcp`, `198.18.0.100`,
    /// `198.18.0.100:53/udp`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not ADDRESS[:PORT][/PROTOCOL] (e.g. 198.18.0.100:80/tcp, [2001:2::100]:443/tcp)")
        };
        let (rest, protocol) = match text.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Some(Protocol::Tcp)),
            Some((rest, "udp")) => (rest, Some(Protocol::Udp)),
            Some(_) => return Err(bad()),
            None => (text, None),
        };
        if let Ok(address) = rest.parse::<IpAddr>() {
            return Ok(Self {
                address,
                port: None,
                protocol,
            });
        }
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let address: IpAddr = unbracketed(host).parse().map_err(|_| bad())?;
        let port = port_number(port).ok_or_else(bad)?;
        Ok(Self {
            address,
            port: Some(port),
            protocol,
        })
    }
}

/// What the operator adds on the command line to what the sources say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Read every file as this format instead of recognising it.
    pub format: Option<Format>,
    /// VIPs for services whose sources name none.
    pub vips: Vec<VipArg>,
    /// The interface lbd attaches to (else keepalived's `interface`).
    pub interface: Option<String>,
    /// Forwarding mode of every VIP (else IPVS's lb_kind, or dsr-l2 when
    /// backends listen on the VIP's port, nat when they do not).
    pub forwarding: Option<lb_common::Mode>,
    /// NAT addresses for NAT-mode VIPs (`[nat] source_ipv4/6`), at most
    /// one per family: a dual-stack setup gives one of each.
    pub nat_source: Vec<IpAddr>,
}

/// The imported configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// lbd.toml, with provenance comments and notes.
    pub text: String,
    /// The same, loaded: what lbd will run.
    pub config: Config,
    /// Notes on what could not be carried over (also in `text`), one a
    /// line as `file:line: text`, for the terminal.
    pub notes: Vec<String>,
}

/// Why a setup could not be imported: the file, the line when the
/// problem is on one, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The file, as named on the command line (empty: the command line).
    pub file: String,
    /// 1-based line, when the problem is on one.
    pub line: Option<usize>,
    /// What is wrong and, where there is one, what to do.
    pub reason: String,
}

impl ImportError {
    pub(crate) fn at(file: &str, line: usize, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: Some(line),
            reason: reason.into(),
        }
    }

    pub(crate) fn at_origin(origin: &model::Origin, reason: impl Into<String>) -> Self {
        Self::at(&origin.file, origin.line, reason)
    }

    /// A problem of the whole setup or of the command line.
    pub(crate) fn setup(reason: impl Into<String>) -> Self {
        Self {
            file: String::new(),
            line: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => f.write_str(&self.reason),
            (false, Some(line)) => write!(f, "{}:{line}: {}", self.file, self.reason),
            (false, None) => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for ImportError {}

/// Most ports one range of ports (nginx `listen 5060-5062`, HAProxy
/// `bind :8000-8003`) becomes: lbd has a VIP per port.
pub(crate) const MAX_PORT_RANGE: usize = 64;

/// Why a port part (`80`, `8000-8003`) gives no ports.
pub(crate) enum PortRangeError {
    /// Not a port, nor a rising range of ports.
    Invalid,
    /// A range of this many ports, more than [`MAX_PORT_RANGE`].
    TooMany(u32),
}

/// The ports of a bind's or listen's port part: one, or a range
/// (`8000-8003`) of at most [`MAX_PORT_RANGE`], each a VIP of its own.
/// One reading for HAProxy and nginx, each naming its own directive.
pub(crate) fn port_range(port: &str) -> Result<Vec<u16>, PortRangeError> {
    let (low, high) = match port.split_once('-') {
        Some((low, high)) => (port_number(low), port_number(high)),
        None => (port_number(port), port_number(port)),
    };
    let (Some(low), Some(high)) = (low, high) else {
        return Err(PortRangeError::Invalid);
    };
    if low > high {
        return Err(PortRangeError::Invalid);
    }
    if usize::from(high - low) >= MAX_PORT_RANGE {
        return Err(PortRangeError::TooMany(u32::from(high - low) + 1));
    }
    Ok((low..=high).collect())
}

/// A port as every source format writes it: 1..=65535.
pub(crate) fn port_number(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A host without the brackets an IPv6 address wears beside a port
/// (`[2001:2::1]:80`).
pub(crate) fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// An address written alone, bare or bracketed (`2001:2::11`,
/// `[2001:2::11]`), tried before a host is split from its port at the last
/// ':', which would cut a bracketed IPv6 address without a port.
pub(crate) fn whole_address(text: &str) -> Option<IpAddr> {
    text.parse().ok().or_else(|| {
        text.strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
            .map(IpAddr::V6)
    })
}

/// Reads `sources` (one setup: e.g. haproxy.cfg and keepalived.conf of
/// one node) and writes the lbd configuration that does the same. A
/// keepalived conditional line (`@ID ...`) is refused: see
/// [`import_with_config_id`].
pub fn import(sources: &[Source], options: &Options) -> Result<Imported, ImportError> {
    import_with_config_id(sources, options, None)
}

/// [`import`] as the keepalived of config id `config_id` (its
/// `-i`/`--config-id`, else its short host name) reads its files: a
/// conditional line `@ID ...` applies where ID is it, `@^ID ...` where it
/// is not, as keepalived decides (one file then serves both nodes, e.g.
/// `@lb1 priority 150` and `@lb2 priority 100`). With None such a line is
/// refused at its line, never dropped: which apply depends on the node.
/// A separate entry point, not a field of [`Options`], so that callers
/// building `Options` field by field keep compiling.
pub fn import_with_config_id(
    sources: &[Source],
    options: &Options,
    config_id: Option<&str>,
) -> Result<Imported, ImportError> {
    if sources.is_empty() {
        return Err(ImportError::setup("no file to import"));
    }
    let mut setup = model::Setup::default();
    let mut formats = Vec::new();
    for source in sources {
        let format = match options.format {
            Some(format) => format,
            None => detect::detect(&source.text).ok_or_else(|| ImportError {
                file: source.name.clone(),
                line: None,
                reason: "not recognised as HAProxy, keepalived or nginx configuration: name the format with --format".to_owned(),
            })?,
        };
        formats.push((source.name.as_str(), format));
    }
    let of_format = |wanted: Format| -> Vec<(&str, &str)> {
        sources
            .iter()
            .zip(&formats)
            .filter(|(_, (_, format))| *format == wanted)
            .map(|(source, _)| (source.name.as_str(), source.text.as_str()))
            .collect()
    };
    // keepalived files are one configuration: a track_script may use a
    // vrrp_script of another file given, an include name another file.
    let keepalived = keepalived::Keepalived::read(&of_format(Format::Keepalived), config_id)?;
    let mut nth_keepalived = 0;
    for (source, (_, format)) in sources.iter().zip(&formats) {
        match format {
            Format::Haproxy => haproxy::parse(&source.name, &source.text, &mut setup)?,
            Format::Keepalived => {
                keepalived.parse(nth_keepalived, &mut setup)?;
                nth_keepalived += 1;
            }
            Format::Nginx => {}
        }
    }
    // nginx files are read together: a server block may proxy to an
    // upstream of another file, a file may be included in `stream { }`.
    let nginx_sources = of_format(Format::Nginx);
    if !nginx_sources.is_empty() {
        nginx::parse(&nginx_sources, &mut setup)?;
    }
    let document = join::join(&setup, options, &formats)?;
    let text = write::render(&document);
    let config = Config::from_toml_str(&text, "imported configuration")
        .map_err(|e| refused_by_lbd(&text, &e))?;
    Ok(Imported {
        text,
        config,
        notes: document.all_notes(),
    })
}

/// Most generated lines quoted in [`refused_by_lbd`].
const QUOTED_LINES: usize = 6;

/// The error for a generated configuration lbd's own loading refuses (a
/// defect of the import): its location is in text the operator never saw,
/// so the generated lines there are quoted, up to the first that carries
/// a provenance comment (`# haproxy.cfg:12 (...)`), which names the source
/// line it came from.
fn refused_by_lbd(text: &str, error: &crate::config::ConfigError) -> ImportError {
    let mut reason = format!("the imported configuration is not one lbd accepts: {error}");
    let at = error.location().and_then(|l| l.position).map(|p| p.line);
    if let Some(line) = at.filter(|l| *l >= 1) {
        let mut quoted: Vec<&str> = Vec::new();
        for generated in text.lines().skip(line - 1).take(QUOTED_LINES) {
            let generated = generated.trim();
            if !quoted.is_empty() && generated.starts_with('[') {
                break;
            }
            quoted.push(generated);
            if generated.contains("  # ") {
                break;
            }
        }
        if !quoted.is_empty() {
            reason.push_str(&format!("; generated there: `{}`", quoted.join("` / `")));
        }
    }
    ImportError::setup(reason)
}
