//! What the unit tests of the ownership modules share.

use std::path::PathBuf;

use super::lock::OwnerRecord;

pub(super) fn owner() -> OwnerRecord {
    OwnerRecord {
        pid: 1234,
        config: PathBuf::from("/etc/lbd/lbd.toml"),
    }
}
