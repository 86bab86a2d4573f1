//! Reading a configuration: the size limit, the TOML parse (with integers
//! too large for TOML quoted so that validation can name their field and
//! range) and the check into a [`Config`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
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
        let file = open_regular(path).map_err(io_error)?;
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

/// Opens the config file at `path` for reading, refusing anything but a
/// regular file (a link to one is fine) with an error that says what it
/// is: a FIFO would block the open, and then the read, until a writer
/// came, holding up lbd's engine loop on a reload, or its start; a device
/// or a directory holds no configuration. Opened without blocking, then
/// looked at through the open file, so what is read is what was checked.
fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_scratch::ScratchDir;

    /// A config path that is a FIFO with no writer is refused at once,
    /// saying what it is, rather than blocking the load (and, on a
    /// reload, lbd's engine loop) until a writer comes; so are a
    /// directory and a device. A regular file, and a link to one, load.
    #[test]
    fn only_a_regular_file_is_read() {
        let dir = ScratchDir::new("config-load-kinds");
        let fifo = dir.join("lbd.toml");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let (done, result) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = done.send(Config::load(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        let started = Instant::now();
        let loaded = result.recv_timeout(Duration::from_secs(5));
        let Ok(loaded) = loaded else {
            // Unblock the reader before failing, so the test ends.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("loading a FIFO blocked");
        };
        let message = loaded.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(message.contains("FIFO"), "{message}");
        assert!(message.contains(&fifo.display().to_string()), "{message}");

        for (path, what) in [
            (dir.path().to_path_buf(), "a directory"),
            ("/dev/null".into(), "a character device"),
        ] {
            let message = Config::load(&path).unwrap_err().to_string();
            assert!(message.contains(what), "{message}");
        }

        let file = dir.join("real.toml");
        std::fs::write(&file, "interface = \"eth0\"\n").unwrap();
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for path in [&file, &link] {
            assert_eq!(Config::load(path).unwrap().interface, "eth0");
        }
    }
}
