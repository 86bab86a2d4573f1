//! Reading a configuration: the size limit, the TOML parse (with integers
//! too large for TOML quoted so that validation can name their field and
//! range) and the check into a [`Config`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::{
    checker::Checker, error::position, raw, raw::RawConfig, Config, ConfigError, Location,
    MAX_CONFIG_BYTES,
};

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
        let mut checker = Checker {
            text,
            source_name,
            oversized: BTreeMap::new(),
        };
        // An integer too large for TOML (i64) stops the parser with a bare
        // "number too large"; quote it (keeping every offset) and parse
        // again, so validation can name its field and range.
        let mut patched = text.to_owned();
        let raw: RawConfig = loop {
            raw::clear_error_path();
            match toml::from_str(&patched) {
                Ok(raw) => break raw,
                Err(e) => match oversized_integer(&patched, &e) {
                    Some((start, end)) if checker.oversized.len() < MAX_OVERSIZED_INTEGERS => {
                        let literal = patched[start..end].to_owned();
                        let inner = &literal[1..literal.len() - 1];
                        patched.replace_range(start..end, &format!("\"{inner}\""));
                        checker.oversized.insert(start, literal);
                    }
                    _ => return Err(checker.parse_error(&e)),
                },
            }
        };
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

/// Most too-large integers one text may have before its parse error is given
/// as is (each costs a parse).
const MAX_OVERSIZED_INTEGERS: usize = 16;

/// The byte range of the integer literal a "number too large/small" error
/// of the TOML parser is about, if that is the error (and the literal has
/// room for two quotes).
fn oversized_integer(text: &str, error: &toml::de::Error) -> Option<(usize, usize)> {
    let message = error.message();
    if !message.starts_with("number too large") && !message.starts_with("number too small") {
        return None;
    }
    let start = error.span()?.start;
    let rest = text.get(start..)?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-')))
        .unwrap_or(rest.len());
    (len >= 2).then_some((start, start + len))
}
