//! The record file's format: its JSON (version, writer, the hash of the
//! config file it is based on, the served sections), read leniently and
//! written, and the SHA-256 that names a config file's bytes.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::warn;

use super::Writer;
use crate::config::Config;

/// The file format's version: a file of another is not restored (1:
/// the whole configuration, no writer).
pub(super) const VERSION: u32 = 2;

/// The keys of the record's JSON this build reads (others are left out
/// with a warning).
const KEYS: [&str; 4] = ["version", "writer", "base_sha256", "config"];

/// The record's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct RecordFile {
    pub(super) version: u32,
    /// The lbd that wrote it (None: not said, an older build's).
    #[serde(default)]
    pub(super) writer: Option<Writer>,
    /// SHA-256 (hex) of the bytes of the config file the running state
    /// is based on (None: it could not be read then, and the record is
    /// never restored).
    pub(super) base_sha256: Option<String>,
    /// The running configuration's served sections (`[[vip]]`,
    /// `[[acl]]`, `[[limit]]`), as `lbctl config dump` writes them.
    pub(super) config: String,
}

/// SHA-256 (hex) of `bytes` (also how `backends_writer` names the
/// backend state file's bytes).
pub(in crate::daemon::engine) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash of the config file at `path`, provided it still holds
/// `loaded` (what lbd read from it): None when it cannot be read or was
/// changed since (a record then based on it never matches).
pub(super) fn file_hash(path: &Path, loaded: &Config) -> Option<String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            warn!(%error, file = %path.display(), "reading the config file to record what the running configuration is based on failed: runtime changes made from now on are not kept by a restart");
            return None;
        }
    };
    let text = std::str::from_utf8(&bytes).ok()?;
    let same =
        Config::from_toml_str(text, &path.display().to_string()).is_ok_and(|read| read == *loaded);
    if !same {
        warn!(file = %path.display(), "the config file changed while lbd read it: runtime changes made from now on are not kept by a restart (reload to base them on the file as it is)");
        return None;
    }
    Some(sha256_hex(&bytes))
}

/// The record at `path`: None when there is none; with it, the keys of
/// its JSON this build does not know (left out).
pub(super) fn read(path: &Path) -> anyhow::Result<Option<(RecordFile, Vec<String>)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("reading it"),
    };
    decode(&text).map(Some)
}

/// A record's `text`, with the keys of its JSON this build does not know.
pub(super) fn decode(text: &str) -> anyhow::Result<(RecordFile, Vec<String>)> {
    let value: serde_json::Value =
        serde_json::from_str(text).context("not a running-state file")?;
    let ignored = value
        .as_object()
        .map(|object| {
            object
                .keys()
                .filter(|key| !KEYS.contains(&key.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let found: RecordFile = serde_json::from_value(value).context("not a running-state file")?;
    Ok((found, ignored))
}

/// The record's text for the running configuration `config` (its served
/// sections), based on the config file of hash `base_hash`, written by
/// `writer`.
pub(super) fn encode(writer: &Writer, base_hash: Option<&str>, config: String) -> String {
    let file = RecordFile {
        version: VERSION,
        writer: Some(writer.clone()),
        base_sha256: base_hash.map(str::to_owned),
        config,
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}
