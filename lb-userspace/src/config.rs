//! The configuration of `lbd`: a TOML file, parsed and validated into plain values.
//!
//! `lbd` is the daemon of an eBPF/XDP layer-4 load balancer in direct server return
//! mode. Everything it needs to know about the node (which interface to attach to,
//! how to attach, how large the connection table is) and about the services it
//! balances (virtual IPs and their backends) comes from one TOML file, read by
//! [`Config::load`] or [`Config::from_toml_str`].
//!
//! # Format
//!
//! ```toml
//! # Interface the XDP program attaches to (required).
//! interface = "eth0"
//! # "auto" (default): native (driver) mode, falling back to generic with a warning; "native"; "generic".
//! xdp_mode = "auto"
//! # Connection table size (flows), default 262144, range 1024..=16777216.
//! conntrack_size = 262144
//!
//! [[vip]]
//! address = "198.18.0.100"        # IPv4 or IPv6 (required)
//! port = 80                       # 1..=65535 (required)
//! protocol = "tcp"                # "tcp" (default) or "udp"
//! table_size = 65537              # Maglev table size, a prime, 3..=65537, default 65537
//!
//!   [[vip.backend]]
//!   address = "198.18.0.11"       # required; same family as the VIP
//!   mac = "02:00:00:00:00:11"     # optional; when absent lbd resolves it from the neighbour table
//!   weight = 100                  # 0..=10000, default 100 (0 = takes no new flows)
//! ```
//!
//! A file with no `[[vip]]` at all is valid: a node may start empty and be given
//! services later.
//!
//! # Rules
//!
//! Unknown fields are rejected (a misspelt key is an error, never silently ignored).
//! Beyond the ranges above:
//!
//! - `interface` is a Linux interface name: 1 to 15 bytes, no `/`, `:`, whitespace
//!   or control characters, and neither `.` nor `..`.
//! - VIP and backend addresses are neither unspecified (`0.0.0.0`, `::`) nor multicast.
//! - Two VIPs may not share address, port and protocol.
//! - A backend has the same address family as its VIP, is not the VIP's own address,
//!   and appears at most once per VIP.
//! - A MAC is written `aa:bb:cc:dd:ee:ff` (hex, any case) and is neither multicast
//!   (low bit of the first octet) nor all zero.
//! - At most [`MAX_VIPS`] VIPs, [`MAX_BACKENDS_PER_VIP`] backends per VIP, and
//!   [`MAX_CONFIG_BYTES`] bytes of text (checked before parsing).
//!
//! # Errors
//!
//! Every error names where it is: the source name, the 1-based line and column of the
//! offending value (or of the table that lacks a required key), and the path of the
//! field, for example
//!
//! ```text
//! lbd.toml:12:12: vip[0].backend[2].weight: 20000 is out of range 0..=10000
//! lbd.toml:3:1: unknown field `interfce`, expected one of `interface`, `xdp_mode`, `conntrack_size`, `vip`
//! lbd.toml:7:11: vip[1].address: "198.18.0.300" is not an IPv4 or IPv6 address
//! ```
//!
//! Validation stops at the first error found.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

/// Most VIPs one node serves; bounds the size of the BPF maps `lbd` creates.
pub const MAX_VIPS: usize = 256;

/// Most backends one VIP may have; bounds the backend maps and Maglev build time.
pub const MAX_BACKENDS_PER_VIP: usize = 1000;

/// Largest configuration text accepted, in bytes, checked before parsing so that a
/// wrong path (a log file, a device) cannot make `lbd` parse gigabytes.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// Longest Linux interface name in bytes (`IFNAMSIZ` minus the terminating NUL).
pub const MAX_INTERFACE_NAME_BYTES: usize = 15;

/// Connection table size used when `conntrack_size` is absent.
pub const DEFAULT_CONNTRACK_SIZE: u32 = 262_144;

/// Smallest `conntrack_size` accepted: below this the table thrashes on any real load.
pub const MIN_CONNTRACK_SIZE: u32 = 1024;

/// Largest `conntrack_size` accepted: keeps the map's kernel memory reasonable.
pub const MAX_CONNTRACK_SIZE: u32 = 16_777_216;

/// Maglev table size used when `table_size` is absent (the largest allowed prime).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Smallest Maglev table size accepted (the smallest odd prime).
pub const MIN_TABLE_SIZE: u32 = 3;

/// Largest Maglev table size accepted; bounds the per-VIP lookup map.
pub const MAX_TABLE_SIZE: u32 = 65_537;

/// Backend weight used when `weight` is absent.
pub const DEFAULT_WEIGHT: u32 = 100;

/// Largest backend weight accepted.
pub const MAX_WEIGHT: u32 = 10_000;

/// The whole, validated configuration of one `lbd` node.
///
/// A plain value (no spans, no raw TOML) so that callers can compare the running
/// configuration with a newly loaded one and apply only the difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Network interface the XDP program attaches to, e.g. `eth0`.
    pub interface: String,
    /// How the XDP program is attached to `interface`.
    pub xdp_mode: XdpMode,
    /// Number of flows the connection table holds.
    pub conntrack_size: u32,
    /// Services balanced by this node, in file order; possibly empty.
    pub vips: Vec<VipConfig>,
}

/// How the XDP program is attached, because not every driver supports native XDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only; attaching fails if the driver lacks XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
}

impl fmt::Display for XdpMode {
    /// Writes the mode as spelt in the configuration file, for logs and messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// Transport protocol of a VIP, because a service is identified by address, port and
/// protocol together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    #[default]
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number (6 or 17), as the BPF program matches it in packet headers.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    /// Writes `tcp` or `udp`, as spelt in the configuration file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One balanced service (virtual IP, port, protocol) and the backends behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    /// The virtual IP clients connect to; neither unspecified nor multicast.
    pub address: IpAddr,
    /// Destination port of the service, 1..=65535.
    pub port: u16,
    /// Transport protocol of the service.
    pub protocol: Protocol,
    /// Maglev lookup table size: a prime in 3..=65537.
    pub table_size: u32,
    /// Real servers, in file order; same address family as `address`, no duplicates.
    pub backends: Vec<BackendConfig>,
}

/// One real server behind a VIP; packets reach it unchanged at L3 (direct server return).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// Address of the real server, same family as its VIP.
    pub address: IpAddr,
    /// Next-hop MAC address; `None` means `lbd` resolves it from the neighbour table.
    pub mac: Option<[u8; 6]>,
    /// Share of new flows, 0..=10000; 0 drains the backend (it takes no new flows).
    pub weight: u32,
}

/// A line and column in the configuration text, so that an error can be found quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column in characters (not bytes), starting at 1.
    pub column: usize,
}

/// Where an error is: the configuration's source name and, when known, the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Name of the configuration source, usually its path.
    pub source_name: String,
    /// Line and column in the source; `None` only if the TOML parser gave no span.
    pub position: Option<Position>,
}

impl fmt::Display for Location {
    /// Writes `name:line:column`, the form editors and terminals recognise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}", self.source_name, p.line, p.column),
            None => f.write_str(&self.source_name),
        }
    }
}

/// Why a configuration could not be loaded; its `Display` is meant for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be opened or read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Io {
        /// Path of the file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is larger than [`MAX_CONFIG_BYTES`], so it was not parsed.
    #[error(
        "{source_name}: configuration is {size} bytes, larger than the limit of {limit} bytes"
    )]
    TooLarge {
        /// Name of the configuration source.
        source_name: String,
        /// Size of the text in bytes (for a file, at least this).
        size: u64,
        /// The limit, [`MAX_CONFIG_BYTES`].
        limit: usize,
    },
    /// The text is not UTF-8 or not TOML, or does not have the shape of an `lbd`
    /// configuration (unknown field, a table where an array of tables belongs, ...).
    #[error("{location}: {message}")]
    Parse {
        /// Where the parser stopped.
        location: Location,
        /// What the parser reported.
        message: String,
    },
    /// A value is well-formed TOML but breaks a rule of the configuration.
    #[error("{location}: {field}: {message}")]
    Invalid {
        /// The offending value, or the table missing a required field.
        location: Location,
        /// Path of the field, e.g. `vip[0].backend[2].weight`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// Where in the text the error is, when it concerns the text rather than reading it.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Parse { location, .. } | ConfigError::Invalid { location, .. } => {
                Some(location)
            }
            ConfigError::Io { .. } | ConfigError::TooLarge { .. } => None,
        }
    }
}

impl Config {
    /// Parses and validates configuration text; `source_name` (usually the path) is
    /// only used to label errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                source_name: source_name.to_owned(),
                size: text.len() as u64,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let checker = Checker { text, source_name };
        let raw: RawConfig = toml::from_str(text).map_err(|e| checker.parse_error(&e))?;
        checker.config(&raw)
    }

    /// Reads the file at `path` (at most [`MAX_CONFIG_BYTES`] of it) and parses it with
    /// [`Config::from_toml_str`], labelling errors with the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_error = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let source_name = path.display().to_string();
        let file = File::open(path).map_err(io_error)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to tell "exactly at the limit" from "over it",
        // without ever holding more than that in memory.
        (&file)
            .take(MAX_CONFIG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            let size = file
                .metadata()
                .map(|m| m.len())
                .unwrap_or(0)
                .max(bytes.len() as u64);
            return Err(ConfigError::TooLarge {
                source_name,
                size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                return Err(ConfigError::Parse {
                    location: Location {
                        source_name,
                        position: Some(position(e.as_bytes(), offset)),
                    },
                    message: "invalid UTF-8".to_owned(),
                });
            }
        };
        Config::from_toml_str(&text, &source_name)
    }
}

/// Converts a byte offset into a 1-based line and character column.
fn position(text: &[u8], offset: usize) -> Position {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before
        .get(line_start..)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80) // count characters, not UTF-8 continuation bytes
        .count()
        + 1;
    Position { line, column }
}

// ---------------------------------------------------------------------------------
// Raw, unvalidated form. Leaf values are kept as spanned `toml::Value`s so that type
// errors too are reported by this module, with the field path and position; serde
// only checks the shape (known keys, arrays of tables).

/// The document as parsed, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of lbd settings")]
struct RawConfig {
    interface: Option<Spanned<Value>>,
    xdp_mode: Option<Spanned<Value>>,
    conntrack_size: Option<Spanned<Value>>,
    #[serde(default)]
    vip: TableArray<RawVip>,
}

/// One `[[vip]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip]] table")]
struct RawVip {
    address: Option<Spanned<Value>>,
    port: Option<Spanned<Value>>,
    protocol: Option<Spanned<Value>>,
    table_size: Option<Spanned<Value>>,
    #[serde(default)]
    backend: TableArray<RawBackend>,
}

/// One `[[vip.backend]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip.backend]] table")]
struct RawBackend {
    address: Option<Spanned<Value>>,
    mac: Option<Spanned<Value>>,
    weight: Option<Spanned<Value>>,
}

/// Names an array of tables in serde's "expected ..." messages.
trait TableName {
    /// The key as written in a `[[...]]` header.
    const NAME: &'static str;
}

impl TableName for RawVip {
    const NAME: &'static str = "vip";
}

impl TableName for RawBackend {
    const NAME: &'static str = "vip.backend";
}

/// An array of tables, each with its span, whose type errors name the array
/// ("expected an array of [[vip]] tables") rather than "a sequence".
struct TableArray<T>(Vec<Spanned<T>>);

impl<T> Default for TableArray<T> {
    fn default() -> Self {
        TableArray(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for TableArray<T>
where
    T: Deserialize<'de> + TableName,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);

        impl<'de, T> Visitor<'de> for ArrayVisitor<T>
        where
            T: Deserialize<'de> + TableName,
        {
            type Value = TableArray<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of [[{}]] tables", T::NAME)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TableArray(items))
            }
        }

        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

// ---------------------------------------------------------------------------------
// Validation.

/// Validates raw values against the text they came from, to label errors.
struct Checker<'a> {
    text: &'a str,
    source_name: &'a str,
}

impl Checker<'_> {
    fn location(&self, offset: usize) -> Location {
        Location {
            source_name: self.source_name.to_owned(),
            position: Some(position(self.text.as_bytes(), offset)),
        }
    }

    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Parse {
            location: Location {
                source_name: self.source_name.to_owned(),
                position: e
                    .span()
                    .map(|span| position(self.text.as_bytes(), span.start)),
            },
            message,
        }
    }

    fn invalid(&self, offset: usize, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(offset),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn bad_value(
        &self,
        value: &Spanned<Value>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid(value.span().start, field, message)
    }

    fn wrong_type(&self, value: &Spanned<Value>, field: &str, expected: &str) -> ConfigError {
        let found = value.get_ref().type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        self.bad_value(
            value,
            field,
            format!("expected {expected}, found {article} {found}"),
        )
    }

    /// A required field, or an error at `table_offset` (the table that lacks it).
    fn required<'v>(
        &self,
        value: &'v Option<Spanned<Value>>,
        table_offset: usize,
        field: &str,
    ) -> Result<&'v Spanned<Value>, ConfigError> {
        value
            .as_ref()
            .ok_or_else(|| self.invalid(table_offset, field, "required field is missing"))
    }

    fn string<'v>(&self, value: &'v Spanned<Value>, field: &str) -> Result<&'v str, ConfigError> {
        match value.get_ref() {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type(value, field, "a string")),
        }
    }

    /// One of `choices`, given as (spelling, value) pairs.
    fn choice<T: Copy>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let s = self.string(value, field)?;
        match choices.iter().find(|(name, _)| *name == s) {
            Some(&(_, choice)) => Ok(choice),
            None => {
                let names = choices
                    .iter()
                    .map(|(name, _)| format!("{name:?}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(self.bad_value(value, field, format!("{s:?} is not one of {names}")))
            }
        }
    }

    fn integer<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
    {
        let Value::Integer(n) = *value.get_ref() else {
            return Err(self.wrong_type(value, field, "an integer"));
        };
        let out_of_range = || {
            self.bad_value(
                value,
                field,
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            )
        };
        if n < (*range.start()).into() || n > (*range.end()).into() {
            return Err(out_of_range());
        }
        T::try_from(n).map_err(|_| out_of_range())
    }

    /// A unicast, specified IP address.
    fn address(&self, value: &Spanned<Value>, field: &str) -> Result<IpAddr, ConfigError> {
        let s = self.string(value, field)?;
        let address: IpAddr = s.parse().map_err(|_| {
            self.bad_value(
                value,
                field,
                format!("{s:?} is not an IPv4 or IPv6 address"),
            )
        })?;
        if address.is_unspecified() {
            return Err(self.bad_value(
                value,
                field,
                format!("{address} is the unspecified address"),
            ));
        }
        if address.is_multicast() {
            return Err(self.bad_value(value, field, format!("{address} is a multicast address")));
        }
        Ok(address)
    }

    fn mac(&self, value: &Spanned<Value>, field: &str) -> Result<[u8; 6], ConfigError> {
        let s = self.string(value, field)?;
        let mac = parse_mac(s).ok_or_else(|| {
            self.bad_value(
                value,
                field,
                format!("{s:?} is not a MAC address of the form aa:bb:cc:dd:ee:ff"),
            )
        })?;
        if mac[0] & 1 != 0 {
            return Err(self.bad_value(
                value,
                field,
                format!("{s:?} is a multicast MAC address (low bit of the first octet set)"),
            ));
        }
        if mac == [0; 6] {
            return Err(self.bad_value(value, field, format!("{s:?} is the all-zero MAC address")));
        }
        Ok(mac)
    }

    fn interface(&self, value: &Spanned<Value>) -> Result<String, ConfigError> {
        const FIELD: &str = "interface";
        let name = self.string(value, FIELD)?;
        if name.is_empty() {
            return Err(self.bad_value(value, FIELD, "must not be empty"));
        }
        if name.len() > MAX_INTERFACE_NAME_BYTES {
            return Err(self.bad_value(
                value,
                FIELD,
                format!(
                    "{name:?} is {} bytes long; interface names are at most {MAX_INTERFACE_NAME_BYTES} bytes",
                    name.len()
                ),
            ));
        }
        if name == "." || name == ".." {
            return Err(self.bad_value(value, FIELD, format!("{name:?} is not an interface name")));
        }
        // The characters Linux's dev_valid_name() refuses, plus control characters.
        if let Some(c) = name
            .chars()
            .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(self.bad_value(
                value,
                FIELD,
                format!("{name:?} contains {c:?}, which is not allowed in interface names"),
            ));
        }
        Ok(name.to_owned())
    }

    fn config(&self, raw: &RawConfig) -> Result<Config, ConfigError> {
        let interface = self.interface(self.required(&raw.interface, 0, "interface")?)?;
        let xdp_mode = match &raw.xdp_mode {
            None => XdpMode::default(),
            Some(value) => self.choice(
                value,
                "xdp_mode",
                &[
                    ("auto", XdpMode::Auto),
                    ("native", XdpMode::Native),
                    ("generic", XdpMode::Generic),
                ],
            )?,
        };
        let conntrack_size = match &raw.conntrack_size {
            None => DEFAULT_CONNTRACK_SIZE,
            Some(value) => self.integer(
                value,
                "conntrack_size",
                MIN_CONNTRACK_SIZE..=MAX_CONNTRACK_SIZE,
            )?,
        };

        if let Some(extra) = raw.vip.0.get(MAX_VIPS) {
            return Err(self.invalid(
                extra.span().start,
                &format!("vip[{MAX_VIPS}]"),
                format!("too many VIPs; at most {MAX_VIPS} are allowed"),
            ));
        }
        let mut vips: Vec<VipConfig> = Vec::with_capacity(raw.vip.0.len());
        let mut seen: HashMap<(IpAddr, u16, Protocol), usize> = HashMap::new();
        for (index, raw_vip) in raw.vip.0.iter().enumerate() {
            let vip = self.vip(index, raw_vip)?;
            let key = (vip.address, vip.port, vip.protocol);
            if let Some(first) = seen.get(&key) {
                return Err(self.invalid(
                    raw_vip.span().start,
                    &format!("vip[{index}]"),
                    format!(
                        "duplicates vip[{first}]: same address {}, port {} and protocol {}",
                        vip.address, vip.port, vip.protocol
                    ),
                ));
            }
            seen.insert(key, index);
            vips.push(vip);
        }

        Ok(Config {
            interface,
            xdp_mode,
            conntrack_size,
            vips,
        })
    }

    fn vip(&self, index: usize, raw: &Spanned<RawVip>) -> Result<VipConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref();
        let field = |name: &str| format!("vip[{index}].{name}");

        let name = field("address");
        let address = self.address(self.required(&raw.address, table, &name)?, &name)?;

        let name = field("port");
        let port = self.integer(self.required(&raw.port, table, &name)?, &name, 1..=u16::MAX)?;

        let protocol = match &raw.protocol {
            None => Protocol::default(),
            Some(value) => self.choice(
                value,
                &field("protocol"),
                &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            )?,
        };

        let table_size = match &raw.table_size {
            None => DEFAULT_TABLE_SIZE,
            Some(value) => {
                let name = field("table_size");
                let size = self.integer(value, &name, MIN_TABLE_SIZE..=MAX_TABLE_SIZE)?;
                if !is_prime(size) {
                    return Err(self.bad_value(value, &name, not_prime_message(size)));
                }
                size
            }
        };

        if let Some(extra) = raw.backend.0.get(MAX_BACKENDS_PER_VIP) {
            return Err(self.invalid(
                extra.span().start,
                &field(&format!("backend[{MAX_BACKENDS_PER_VIP}]")),
                format!("too many backends; at most {MAX_BACKENDS_PER_VIP} per VIP are allowed"),
            ));
        }
        let mut backends = Vec::with_capacity(raw.backend.0.len());
        let mut seen: HashMap<IpAddr, usize> = HashMap::new();
        for (b, raw_backend) in raw.backend.0.iter().enumerate() {
            let table = raw_backend.span().start;
            let raw_backend = raw_backend.get_ref();
            let backend_field = |name: &str| format!("vip[{index}].backend[{b}].{name}");

            let name = backend_field("address");
            let value = self.required(&raw_backend.address, table, &name)?;
            let backend_address = self.address(value, &name)?;
            if backend_address.is_ipv4() != address.is_ipv4() {
                let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(self.bad_value(
                    value,
                    &name,
                    format!(
                        "{backend_address} is {} but the VIP {address} is {}",
                        family(backend_address),
                        family(address)
                    ),
                ));
            }
            if backend_address == address {
                return Err(self.bad_value(
                    value,
                    &name,
                    format!("{backend_address} is the VIP's own address"),
                ));
            }
            if let Some(first) = seen.get(&backend_address) {
                return Err(self.bad_value(
                    value,
                    &name,
                    format!("{backend_address} is already vip[{index}].backend[{first}]"),
                ));
            }
            seen.insert(backend_address, b);

            let mac = match &raw_backend.mac {
                None => None,
                Some(value) => Some(self.mac(value, &backend_field("mac"))?),
            };
            let weight = match &raw_backend.weight {
                None => DEFAULT_WEIGHT,
                Some(value) => self.integer(value, &backend_field("weight"), 0..=MAX_WEIGHT)?,
            };
            backends.push(BackendConfig {
                address: backend_address,
                mac,
                weight,
            });
        }

        // Maglev gives every backend with a weight at least one slot.
        let weighted = backends.iter().filter(|b| b.weight > 0).count();
        if weighted > table_size as usize {
            let message = format!(
                "{weighted} backends with a weight do not fit a Maglev table of {table_size} slots; use a larger prime"
            );
            return Err(match &raw.table_size {
                Some(value) => self.bad_value(value, &field("table_size"), message),
                None => self.invalid(table, &field("table_size"), message),
            });
        }

        Ok(VipConfig {
            address,
            port,
            protocol,
            table_size,
            backends,
        })
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (exactly two hex digits per octet, any case).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for octet in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *octet = u8::from_str_radix(part, 16).ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(mac),
    }
}

/// Trial division; table sizes are at most 65537, so this is at most ~128 divisions.
fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    (2u64..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// Says that `size` is not prime and suggests the nearest allowed primes.
fn not_prime_message(size: u32) -> String {
    let below = (MIN_TABLE_SIZE..size).rev().find(|&n| is_prime(n));
    let above = (size.saturating_add(1)..=MAX_TABLE_SIZE).find(|&n| is_prime(n));
    let nearest = [below, above]
        .into_iter()
        .flatten()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    format!("{size} is not a prime (Maglev needs a prime table size); nearest: {nearest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const EXAMPLE: &str = r#"# Interface the XDP program attaches to (required).
interface = "eth0"
# "auto" (default): native (driver) mode, falling back to generic with a warning; "native"; "generic".
xdp_mode = "auto"
# Connection table size (flows), default 262144, range 1024..=16777216.
conntrack_size = 262144

[[vip]]
address = "198.18.0.100"        # IPv4 or IPv6 (required)
port = 80                       # 1..=65535 (required)
protocol = "tcp"                # "tcp" (default) or "udp"
table_size = 65537              # Maglev table size, a prime, 3..=65537, default 65537

  [[vip.backend]]
  address = "198.18.0.11"       # required; same family as the VIP
  mac = "02:00:00:00:00:11"     # optional; when absent lbd resolves it from the neighbour table
  weight = 100                  # 0..=10000, default 100 (0 = takes no new flows)
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "lbd.toml")
    }

    /// The error text for `text`, failing the test if it parses.
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Asserts that `text` fails with a message starting with `prefix` and containing `detail`.
    fn assert_error(text: &str, prefix: &str, detail: &str) {
        let message = error(text);
        assert!(
            message.starts_with(prefix),
            "error {message:?} does not start with {prefix:?}"
        );
        assert!(
            message.contains(detail),
            "error {message:?} does not contain {detail:?}"
        );
    }

    /// A valid document with one IPv4 VIP; `vip_extra` and `backend_extra` are
    /// appended to the VIP (line 4) and backend (line 8) tables.
    fn doc(vip_extra: &str, backend_extra: &str) -> String {
        format!(
            "interface = \"eth0\"\n\
             [[vip]]\n\
             address = \"198.18.0.100\"\n\
             port = 80\n\
             {vip_extra}\n\
             [[vip.backend]]\n\
             address = \"198.18.0.11\"\n\
             {backend_extra}\n"
        )
    }

    #[test]
    fn example_parses_to_expected_values() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(
            config,
            Config {
                interface: "eth0".into(),
                xdp_mode: XdpMode::Auto,
                conntrack_size: 262_144,
                vips: vec![VipConfig {
                    address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
                    port: 80,
                    protocol: Protocol::Tcp,
                    table_size: 65_537,
                    backends: vec![BackendConfig {
                        address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)),
                        mac: Some([0x02, 0, 0, 0, 0, 0x11]),
                        weight: 100,
                    }],
                }],
            }
        );
    }

    #[test]
    fn defaults_apply() {
        let config = parse(&doc("", "")).unwrap();
        assert_eq!(config.xdp_mode, XdpMode::Auto);
        assert_eq!(config.conntrack_size, DEFAULT_CONNTRACK_SIZE);
        let vip = &config.vips[0];
        assert_eq!(vip.protocol, Protocol::Tcp);
        assert_eq!(vip.table_size, DEFAULT_TABLE_SIZE);
        assert_eq!(vip.backends[0].mac, None);
        assert_eq!(vip.backends[0].weight, DEFAULT_WEIGHT);
    }

    #[test]
    fn zero_vips_and_zero_backends_are_allowed() {
        let config = parse("interface = \"eth0\"\n").unwrap();
        assert!(config.vips.is_empty());
        let config =
            parse("interface = \"eth0\"\n[[vip]]\naddress = \"::1\"\nport = 53\n").unwrap();
        assert!(config.vips[0].backends.is_empty());
    }

    #[test]
    fn ipv6_and_udp_and_other_values_parse() {
        let config = parse(
            "interface = \"ens3f0\"\nxdp_mode = \"generic\"\nconntrack_size = 1024\n\
             [[vip]]\naddress = \"2001:db8::100\"\nport = 65535\nprotocol = \"udp\"\ntable_size = 3\n\
             [[vip.backend]]\naddress = \"2001:db8::11\"\nmac = \"0A:bC:00:00:00:FF\"\nweight = 0\n\
             [[vip.backend]]\naddress = \"2001:db8::12\"\nweight = 10000\n",
        )
        .unwrap();
        assert_eq!(config.interface, "ens3f0");
        assert_eq!(config.xdp_mode, XdpMode::Generic);
        assert_eq!(config.conntrack_size, 1024);
        let vip = &config.vips[0];
        assert_eq!(vip.address, "2001:db8::100".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (vip.port, vip.protocol, vip.table_size),
            (65535, Protocol::Udp, 3)
        );
        assert_eq!(vip.backends[0].mac, Some([0x0a, 0xbc, 0, 0, 0, 0xff]));
        assert_eq!(vip.backends[0].weight, 0);
        assert_eq!(vip.backends[1].weight, MAX_WEIGHT);
    }

    #[test]
    fn protocol_number_and_display() {
        assert_eq!(Protocol::Tcp.number(), 6);
        assert_eq!(Protocol::Udp.number(), 17);
        assert_eq!(Protocol::Tcp.to_string(), "tcp");
        assert_eq!(Protocol::Udp.to_string(), "udp");
        assert_eq!(XdpMode::Native.to_string(), "native");
    }

    #[test]
    fn interface_is_required() {
        assert_error(
            "xdp_mode = \"auto\"\n",
            "lbd.toml:1:1: interface: ",
            "required field is missing",
        );
    }

    #[test]
    fn interface_must_be_a_valid_name() {
        assert_error(
            "interface = \"\"\n",
            "lbd.toml:1:13: interface: ",
            "must not be empty",
        );
        assert_error(
            "\ninterface = \"abcdefghijklmnop\"\n",
            "lbd.toml:2:13: interface: ",
            "is 16 bytes long",
        );
        assert_error(
            "interface = \"eth/0\"\n",
            "lbd.toml:1:13: interface: ",
            "contains '/'",
        );
        assert_error(
            "interface = \"eth 0\"\n",
            "lbd.toml:1:13: interface: ",
            "contains ' '",
        );
        assert_error(
            "interface = \"eth\\t0\"\n",
            "lbd.toml:1:13: interface: ",
            "contains '\\t'",
        );
        assert_error(
            "interface = \"eth0:1\"\n",
            "lbd.toml:1:13: interface: ",
            "contains ':'",
        );
        assert_error(
            "interface = \"..\"\n",
            "lbd.toml:1:13: interface: ",
            "not an interface name",
        );
        assert_error(
            "interface = 5\n",
            "lbd.toml:1:13: interface: ",
            "expected a string, found an integer",
        );
        assert_eq!(
            parse("interface = \"abcdefghijklmno\"\n")
                .unwrap()
                .interface
                .len(),
            15
        );
    }

    #[test]
    fn xdp_mode_must_be_known() {
        assert_error(
            "interface = \"eth0\"\nxdp_mode = \"turbo\"\n",
            "lbd.toml:2:12: xdp_mode: ",
            r#""turbo" is not one of "auto", "native", "generic""#,
        );
        assert_error(
            "interface = \"eth0\"\nxdp_mode = true\n",
            "lbd.toml:2:12: xdp_mode: ",
            "expected a string, found a boolean",
        );
        for (name, mode) in [
            ("auto", XdpMode::Auto),
            ("native", XdpMode::Native),
            ("generic", XdpMode::Generic),
        ] {
            let text = format!("interface = \"eth0\"\nxdp_mode = \"{name}\"\n");
            assert_eq!(parse(&text).unwrap().xdp_mode, mode);
        }
    }

    #[test]
    fn conntrack_size_must_be_in_range() {
        assert_error(
            "interface = \"eth0\"\nconntrack_size = 1023\n",
            "lbd.toml:2:18: conntrack_size: ",
            "1023 is out of range 1024..=16777216",
        );
        assert_error(
            "interface = \"eth0\"\nconntrack_size = 16777217\n",
            "lbd.toml:2:18: conntrack_size: ",
            "out of range",
        );
        assert_error(
            "interface = \"eth0\"\nconntrack_size = -1\n",
            "lbd.toml:2:18: conntrack_size: ",
            "out of range",
        );
        assert_error(
            "interface = \"eth0\"\nconntrack_size = 1.5\n",
            "lbd.toml:2:18: conntrack_size: ",
            "expected an integer, found a float",
        );
        let text = "interface = \"eth0\"\nconntrack_size = 16777216\n";
        assert_eq!(parse(text).unwrap().conntrack_size, MAX_CONNTRACK_SIZE);
    }

    #[test]
    fn vip_address_must_parse() {
        let text = "interface = \"eth0\"\n\
                    [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                    [[vip]]\nport = 80\naddress = \"198.18.0.300\"\n";
        assert_error(
            text,
            "lbd.toml:7:11: vip[1].address: ",
            r#""198.18.0.300" is not an IPv4 or IPv6 address"#,
        );
    }

    #[test]
    fn vip_address_is_required() {
        assert_error(
            "interface = \"eth0\"\n\n[[vip]]\nport = 80\n",
            "lbd.toml:3:1: vip[0].address: ",
            "required field is missing",
        );
    }

    #[test]
    fn vip_address_must_not_be_unspecified_or_multicast() {
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
        ];
        for (address, detail) in cases {
            let text =
                format!("interface = \"eth0\"\n[[vip]]\naddress = \"{address}\"\nport = 80\n");
            assert_error(&text, "lbd.toml:3:11: vip[0].address: ", detail);
        }
    }

    #[test]
    fn port_must_be_in_range_and_present() {
        let text =
            |port: &str| format!("interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.1\"\n{port}\n");
        assert_error(
            &text("port = 0"),
            "lbd.toml:4:8: vip[0].port: ",
            "0 is out of range 1..=65535",
        );
        assert_error(
            &text("port = 65536"),
            "lbd.toml:4:8: vip[0].port: ",
            "65536 is out of range",
        );
        assert_error(
            &text("port = \"80\""),
            "lbd.toml:4:8: vip[0].port: ",
            "expected an integer",
        );
        assert_error(
            &text(""),
            "lbd.toml:2:1: vip[0].port: ",
            "required field is missing",
        );
    }

    #[test]
    fn protocol_must_be_tcp_or_udp() {
        assert_error(
            &doc("protocol = \"icmp\"", ""),
            "lbd.toml:5:12: vip[0].protocol: ",
            r#""icmp" is not one of "tcp", "udp""#,
        );
        assert_error(
            &doc("protocol = \"TCP\"", ""),
            "lbd.toml:5:12: vip[0].protocol: ",
            "not one of",
        );
        assert_eq!(
            parse(&doc("protocol = \"udp\"", "")).unwrap().vips[0].protocol,
            Protocol::Udp
        );
    }

    #[test]
    fn table_size_must_be_a_prime_in_range() {
        assert_error(
            &doc("table_size = 65536", ""),
            "lbd.toml:5:14: vip[0].table_size: ",
            "65536 is not a prime (Maglev needs a prime table size); nearest: 65521 or 65537",
        );
        assert_error(
            &doc("table_size = 4", ""),
            "lbd.toml:5:14: vip[0].table_size: ",
            "nearest: 3 or 5",
        );
        assert_error(
            &doc("table_size = 2", ""),
            "lbd.toml:5:14: vip[0].table_size: ",
            "2 is out of range 3..=65537",
        );
        assert_error(
            &doc("table_size = 65539", ""),
            "lbd.toml:5:14: vip[0].table_size: ",
            "out of range",
        );
        assert_eq!(
            parse(&doc("table_size = 251", "")).unwrap().vips[0].table_size,
            251
        );
    }

    #[test]
    fn table_size_must_hold_every_weighted_backend() {
        let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 3\n\
                    [[vip.backend]]\naddress = \"198.18.0.11\"\n[[vip.backend]]\naddress = \"198.18.0.12\"\n\
                    [[vip.backend]]\naddress = \"198.18.0.13\"\n[[vip.backend]]\naddress = \"198.18.0.14\"\n";
        assert_error(
            text,
            "lbd.toml:5:14: vip[0].table_size: ",
            "4 backends with a weight do not fit a Maglev table of 3 slots",
        );
        let drained = text.replace("\"198.18.0.14\"\n", "\"198.18.0.14\"\nweight = 0\n");
        assert_eq!(parse(&drained).unwrap().vips[0].backends.len(), 4);
    }

    #[test]
    fn duplicate_vip_is_rejected_at_the_second() {
        let text = "interface = \"eth0\"\n\
                    [[vip]]\naddress = \"2001:db8::1\"\nport = 80\n\
                    [[vip]]\naddress = \"2001:db8::1\"\nport = 80\nprotocol = \"udp\"\n\
                    [[vip]]\naddress = \"2001:db8::1\"\nport = 81\n\
                    \n  [[vip]]\naddress = \"2001:DB8:0::1\"\nport = 80\nprotocol = \"tcp\"\n";
        assert_error(
            text,
            "lbd.toml:13:3: vip[3]: ",
            "duplicates vip[0]: same address 2001:db8::1, port 80 and protocol tcp",
        );
        // Without the last one, differing port or protocol is fine.
        let cut = text.find("\n  [[vip]]").unwrap();
        assert_eq!(parse(&text[..cut]).unwrap().vips.len(), 3);
    }

    #[test]
    fn backend_family_must_match_the_vip() {
        assert_error(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"2001:db8::11\"\n",
            "lbd.toml:6:11: vip[0].backend[0].address: ",
            "2001:db8::11 is IPv6 but the VIP 198.18.0.100 is IPv4",
        );
    }

    #[test]
    fn backend_address_must_be_valid() {
        let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                    [[vip.backend]]\naddress = \"{}\"\n";
        for (address, detail) in [
            ("198.18.0.1.1", "is not an IPv4 or IPv6 address"),
            ("0.0.0.0", "unspecified"),
            ("239.1.1.1", "multicast"),
            ("198.18.0.100", "is the VIP's own address"),
        ] {
            assert_error(
                &text.replace("{}", address),
                "lbd.toml:6:11: vip[0].backend[0].address: ",
                detail,
            );
        }
        assert_error(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\nweight = 1\n",
            "lbd.toml:5:1: vip[0].backend[0].address: ",
            "required field is missing",
        );
    }

    #[test]
    fn duplicate_backend_is_rejected() {
        let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                    [[vip.backend]]\naddress = \"198.18.0.11\"\n\
                    [[vip.backend]]\naddress = \"198.18.0.12\"\n\
                    [[vip.backend]]\n  address = \"198.18.0.11\"\n";
        assert_error(
            text,
            "lbd.toml:10:13: vip[0].backend[2].address: ",
            "198.18.0.11 is already vip[0].backend[0]",
        );
    }

    #[test]
    fn mac_must_be_well_formed_unicast_and_non_zero() {
        for bad in [
            "02:00:00:00:00:1",
            "02:00:00:00:00:111",
            "02-00-00-00-00-11",
            "02:00:00:00:00",
            "02:00:00:00:00:11:22",
            "02:00:00:00:00:1g",
            "02:00:00:00:00:+1",
            "",
        ] {
            assert_error(
                &doc("", &format!("mac = \"{bad}\"")),
                "lbd.toml:8:7: vip[0].backend[0].mac: ",
                "is not a MAC address of the form aa:bb:cc:dd:ee:ff",
            );
        }
        assert_error(
            &doc("", "mac = \"01:00:5E:00:00:01\""),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "multicast",
        );
        assert_error(
            &doc("", "mac = \"ff:ff:ff:ff:ff:ff\""),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "multicast",
        );
        assert_error(
            &doc("", "mac = \"00:00:00:00:00:00\""),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "all-zero",
        );
        assert_error(
            &doc("", "mac = 2"),
            "lbd.toml:8:7: vip[0].backend[0].mac: ",
            "expected a string",
        );
        let config = parse(&doc("", "mac = \"AA:bb:Cc:00:01:ff\"")).unwrap();
        assert_eq!(
            config.vips[0].backends[0].mac,
            Some([0xaa, 0xbb, 0xcc, 0, 1, 0xff])
        );
    }

    #[test]
    fn weight_must_be_in_range() {
        assert_error(
            &doc("", "  weight = 20000"),
            "lbd.toml:8:12: vip[0].backend[0].weight: ",
            "20000 is out of range 0..=10000",
        );
        assert_error(
            &doc("", "weight = -1"),
            "lbd.toml:8:10: vip[0].backend[0].weight: ",
            "out of range",
        );
        assert_eq!(
            parse(&doc("", "weight = 0")).unwrap().vips[0].backends[0].weight,
            0
        );
    }

    #[test]
    fn error_points_at_the_right_backend_of_the_right_vip() {
        let mut text = String::from("interface = \"eth0\"\n");
        for v in 0..2 {
            text.push_str(&format!(
                "[[vip]]\naddress = \"198.18.0.{}\"\nport = 80\n",
                100 + v
            ));
            for b in 0..3 {
                let weight = if (v, b) == (1, 2) { 20000 } else { 1 };
                text.push_str(&format!(
                    "  [[vip.backend]]\n  address = \"198.18.1.{b}\"\n  weight = {weight}\n"
                ));
            }
        }
        // Line 1 interface; each VIP takes 3 + 3 * 3 = 12 lines; vip[1] starts at line 14;
        // its backend[2] starts at line 14 + 3 + 6 = 23, weight on line 25.
        assert_error(
            &text,
            "lbd.toml:25:12: vip[1].backend[2].weight: ",
            "20000 is out of range",
        );
    }

    #[test]
    fn too_many_vips_are_rejected() {
        let vips = |n: usize| {
            let mut text = String::from("interface = \"eth0\"\n");
            for i in 0..n {
                text.push_str(&format!(
                    "[[vip]]\naddress = \"10.{}.{}.1\"\nport = 80\n",
                    i / 256,
                    i % 256
                ));
            }
            text
        };
        assert_eq!(parse(&vips(MAX_VIPS)).unwrap().vips.len(), MAX_VIPS);
        let line = 2 + 3 * MAX_VIPS;
        assert_error(
            &vips(MAX_VIPS + 1),
            &format!("lbd.toml:{line}:1: vip[256]: "),
            "too many VIPs; at most 256",
        );
    }

    #[test]
    fn too_many_backends_are_rejected() {
        let backends = |n: usize| {
            let mut text =
                String::from("interface = \"eth0\"\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80\n");
            for i in 0..n {
                text.push_str(&format!(
                    "[[vip.backend]]\naddress = \"10.1.{}.{}\"\n",
                    i / 256,
                    i % 256
                ));
            }
            text
        };
        assert_eq!(
            parse(&backends(MAX_BACKENDS_PER_VIP)).unwrap().vips[0]
                .backends
                .len(),
            MAX_BACKENDS_PER_VIP
        );
        let line = 5 + 2 * MAX_BACKENDS_PER_VIP;
        assert_error(
            &backends(MAX_BACKENDS_PER_VIP + 1),
            &format!("lbd.toml:{line}:1: vip[0].backend[1000]: "),
            "too many backends; at most 1000",
        );
    }

    #[test]
    fn oversized_text_is_rejected_before_parsing() {
        // Not even valid TOML: the size check must come first.
        let text = "=".repeat(MAX_CONFIG_BYTES + 1);
        let e = parse(&text).unwrap_err();
        assert!(
            matches!(e, ConfigError::TooLarge { size, .. } if size == MAX_CONFIG_BYTES as u64 + 1)
        );
        assert_eq!(
            e.to_string(),
            "lbd.toml: configuration is 4194305 bytes, larger than the limit of 4194304 bytes"
        );
        // Exactly at the limit is parsed.
        let mut text = String::from("interface = \"eth0\"\n#");
        text.push_str(&"x".repeat(MAX_CONFIG_BYTES - text.len()));
        assert_eq!(parse(&text).unwrap().interface, "eth0");
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        assert_error(
            "# lbd\n\ninterfce = \"eth0\"\n",
            "lbd.toml:3:1: unknown field `interfce`, expected one of ",
            "`interface`, `xdp_mode`, `conntrack_size`, `vip`",
        );
        assert_error(
            &doc("prot = 80", ""),
            "lbd.toml:5:1: unknown field `prot`",
            "`table_size`",
        );
        assert_error(
            &doc("", "  wieght = 1"),
            "lbd.toml:8:3: unknown field `wieght`",
            "`weight`",
        );
        assert_error(
            "interface = \"eth0\"\n[[vip]]\n[[vip.backends]]\naddress = \"10.0.0.1\"\n",
            "lbd.toml:3:7: unknown field `backends`",
            "`backend`",
        );
    }

    #[test]
    fn wrong_table_shape_names_the_table() {
        assert_error(
            "interface = \"eth0\"\nvip = 5\n",
            "lbd.toml:2:7: ",
            "expected an array of [[vip]] tables",
        );
        assert_error(
            "interface = \"eth0\"\n[vip]\naddress = \"10.0.0.1\"\n",
            "lbd.toml:2:1: ",
            "expected an array of [[vip]] tables",
        );
        assert_error(
            "interface = \"eth0\"\nvip = [1]\n",
            "lbd.toml:2:8: ",
            "expected a [[vip]] table",
        );
        assert_error(
            "interface = \"eth0\"\n[[vip]]\nbackend = \"x\"\n",
            "lbd.toml:3:11: ",
            "expected an array of [[vip.backend]] tables",
        );
    }

    #[test]
    fn inline_tables_work_and_are_located() {
        let text = "interface = \"eth0\"\n\
                    vip = [{ address = \"10.0.0.1\", port = 80, backend = [{ address = \"10.0.0.1\" }] }]\n";
        assert_error(
            text,
            "lbd.toml:2:66: vip[0].backend[0].address: ",
            "VIP's own address",
        );
    }

    #[test]
    fn syntax_error_reports_its_line() {
        let e = parse("interface = \"eth0\"\n\n[[vip]\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        let position = e.location().and_then(|l| l.position).unwrap();
        assert_eq!(position.line, 3, "{e}");
        assert!(e.to_string().starts_with("lbd.toml:3:"), "{e}");

        assert_error(
            "interface = \"eth0\n",
            "lbd.toml:1:",
            "invalid basic string",
        );
        assert_error(
            "interface = \"eth0\"\ninterface = \"eth1\"\n",
            "lbd.toml:2:1: ",
            "duplicate key `interface`",
        );
    }

    #[test]
    fn parse_messages_are_one_line() {
        let message = error("interface = \n");
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.starts_with("lbd.toml:1:"), "{message:?}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            position("ab\nüx".as_bytes(), 5),
            Position { line: 2, column: 2 }
        );
        assert_eq!(position(b"", 7), Position { line: 1, column: 1 });
        assert_error(
            "interface = \"eth0\" # ü\nvip = [{ address = \"é\" }]\n",
            "lbd.toml:2:20: vip[0].address: ",
            "\"é\" is not an IPv4 or IPv6 address",
        );
        assert_error(
            "interface = \"eth0\"\nvip = [{ port = \"ü\", address = \"x\" }]\n",
            "lbd.toml:2:",
            "vip[0].address",
        );
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("lbd-config-test-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let good = TempFile::new("good.toml", EXAMPLE.as_bytes());
        assert_eq!(Config::load(&good.0).unwrap(), parse(EXAMPLE).unwrap());

        let bad = TempFile::new("bad.toml", b"interface = \"eth0\"\nconntrack_size = 1\n");
        let message = Config::load(&bad.0).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{}:2:18: conntrack_size: ", bad.0.display())),
            "{message}"
        );

        let missing = std::env::temp_dir().join("lbd-config-test-does-not-exist.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn load_rejects_oversized_and_non_utf8_files() {
        let big = TempFile::new("big.toml", &vec![b'#'; MAX_CONFIG_BYTES + 10]);
        let e = Config::load(&big.0).unwrap_err();
        assert!(
            matches!(e, ConfigError::TooLarge { size, .. } if size == MAX_CONFIG_BYTES as u64 + 10),
            "{e:?}"
        );

        let latin1 = TempFile::new("latin1.toml", b"interface = \"eth0\"\n# caf\xe9\n");
        let message = Config::load(&latin1.0).unwrap_err().to_string();
        assert_eq!(
            message,
            format!("{}:2:6: invalid UTF-8", latin1.0.display())
        );
    }
}
