//! Why a configuration could not be loaded, and where: every error names
//! the source, the line and column of the offending value and the field.

use std::fmt;
use std::path::PathBuf;

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
    /// The text is larger than [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES), so it was not parsed.
    #[error(
        "{source_name}: configuration is {size} bytes, larger than the limit of {limit} bytes"
    )]
    TooLarge {
        /// Name of the configuration source.
        source_name: String,
        /// Size of the text in bytes (for a file, at least this).
        size: u64,
        /// The limit, [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES).
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

/// Converts a byte offset into a 1-based line and character column.
pub(super) fn position(text: &[u8], offset: usize) -> Position {
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
