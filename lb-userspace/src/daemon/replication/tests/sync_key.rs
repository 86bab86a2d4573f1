//! The sync key file: warned of when others may read it, and a reload's
//! note when it changed on disk.

use super::*;
use crate::daemon::replication::sync_key::{key_file_exposure, key_file_note, read_key};

/// A key file others may read is warned of, naming it, its mode and the
/// fix; one only its owner reads is not.
#[test]
fn a_sync_key_file_others_may_read_is_warned_of() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = ScratchDir::new("key-mode");
    let path = dir.join("sync.key");
    std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warning = key_file_exposure(&path).expect("0644 is warned of");
    assert!(
        warning.contains("sync.key") && warning.contains("0644") && warning.contains("chmod 600"),
        "{warning}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(key_file_exposure(&path), None);
}

/// A key rotated in place is read only at the next start: a reload says
/// so (the config's path is unchanged, so nothing else would).
#[test]
fn a_reload_tells_of_a_sync_key_file_that_changed() {
    let dir = ScratchDir::new("key-note");
    let path = dir.join("sync.key");
    let running = b"0123456789abcdef0123".to_vec();
    std::fs::write(&path, b"0123456789abcdef0123\n").unwrap();
    assert_eq!(key_file_note(&path, &running, read_key(&path)), None);
    std::fs::write(&path, b"fedcba9876543210fedc\n").unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("rotated");
    assert!(
        note.contains("sync.key changed") && note.contains("restart"),
        "{note}"
    );
    std::fs::write(&path, b"short").unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("too short");
    assert!(
        note.contains("at least 16") && note.contains("keeps the key"),
        "{note}"
    );
    std::fs::remove_file(&path).unwrap();
    let note = key_file_note(&path, &running, read_key(&path)).expect("gone");
    assert!(note.contains("reading sync key"), "{note}");
}
