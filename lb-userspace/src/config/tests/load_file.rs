//! Loading the config from a file: its name in errors, size and UTF-8 limits.
use super::*;
use crate::test_scratch::ScratchDir;

/// A file in a scratch directory of its own, removed with it when dropped.
struct TempFile(
    PathBuf,
    #[expect(dead_code, reason = "held for its drop, which removes the directory")] ScratchDir,
);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let dir = ScratchDir::new("config");
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        TempFile(path, dir)
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
