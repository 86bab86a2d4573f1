//! How a running lbd keeps its record current (the `forwarding` originals
//! it switched, the announcement a stop withdrew) and what it asks of it;
//! apart from the file itself (`record_file`).

use std::path::Path;

use anyhow::Context as _;
use tracing::warn;

use super::{read, record_path, write, Held, HeldSetting};

/// The `forwarding` originals a new record keeps: every one of the
/// previous record (the first lbd's original survives restarts), then the
/// new ones, one per setting.
pub(crate) fn carry_forwarding(previous: &[HeldSetting], next: &[HeldSetting]) -> Vec<HeldSetting> {
    let mut kept = previous.to_vec();
    for setting in next {
        if !kept.iter().any(|k| k.path == setting.path) {
            kept.push(setting.clone());
        }
    }
    kept
}

/// Takes the BGP announcement out of the record of the lbd whose admin
/// socket is `admin_socket`: a stop for good withdrew it, and a later
/// offline action must not empty the routes file again (another lbd may
/// use it by then).
pub(crate) fn forget_announcement(admin_socket: &Path) {
    update_record(admin_socket, |held| ((), held.bgp.take().is_some()));
}

/// Whether the record of the lbd whose admin socket is `admin_socket`
/// says it ran at tc on `interface` with `pin_dir = "off"`: the only sign
/// that a cls_bpf filter running lbd's tc program there (it outlives a
/// killed lbd, and nothing of it is pinned) is that lbd's, so this one's
/// to replace. Read while this lbd holds the record's lock (see
/// `ownership::claim`): its lbd is gone.
pub(crate) fn ran_unpinned_tc_on(admin_socket: &Path, interface: &str) -> bool {
    record_path(admin_socket)
        .and_then(|path| read(&path))
        .is_some_and(|held| held.interface == interface && held.attach_tc && held.pin_dir.is_none())
}

/// The original value recorded for interface setting `setting`
/// (`forwarding`, `accept_local`) by the
/// lbd whose admin socket is `admin_socket` (or one before it).
pub(crate) fn recorded_original(admin_socket: &Path, setting: &Path) -> Option<String> {
    let held = read(&record_path(admin_socket)?)?;
    held.forwarding
        .into_iter()
        .find(|s| s.path == setting)
        .map(|s| s.was)
}

/// Records that `setting` was `was` before lbd switched it on (kept if a
/// value is recorded already: that is the older original).
pub(crate) fn record_original(
    admin_socket: &Path,
    setting: &Path,
    was: &str,
) -> anyhow::Result<()> {
    let path = record_path(admin_socket).context("the admin socket names no file")?;
    let mut held = read(&path).with_context(|| format!("no record at {}", path.display()))?;
    let new = [HeldSetting {
        path: setting.to_owned(),
        was: was.to_owned(),
    }];
    let kept = carry_forwarding(&held.forwarding, &new);
    if kept == held.forwarding {
        return Ok(());
    }
    held.forwarding = kept;
    write(&path, &held)
}

/// Drops `setting` from the record of the lbd whose admin socket is
/// `admin_socket`: lbd put it back itself while running (`accept_local`
/// once no check goes through the tunnel), so a later stop or cleanup must
/// not write the old value over one set since.
pub(crate) fn forget_original(admin_socket: &Path, setting: &Path) {
    update_record(admin_socket, |held| {
        let before = held.forwarding.len();
        held.forwarding.retain(|s| s.path != setting);
        ((), held.forwarding.len() != before)
    });
}

/// Takes the recorded forwarding originals out of the record of the lbd
/// whose admin socket is `admin_socket` (they are being restored: a later
/// lbd must not restore them again over a value set since).
pub(crate) fn take_originals(admin_socket: &Path) -> Vec<HeldSetting> {
    update_record(admin_socket, |held| {
        let taken = std::mem::take(&mut held.forwarding);
        let changed = !taken.is_empty();
        (taken, changed)
    })
}

/// Lets `change` edit the record of the lbd whose admin socket is
/// `admin_socket` and writes it back when `change` says it changed it (a
/// failed write is logged: the caller goes on either way); what `change`
/// answers, or the default when there is no record to read.
fn update_record<T: Default>(
    admin_socket: &Path,
    change: impl FnOnce(&mut Held) -> (T, bool),
) -> T {
    let Some(path) = record_path(admin_socket) else {
        return T::default();
    };
    let Some(mut held) = read(&path) else {
        return T::default();
    };
    let (answer, changed) = change(&mut held);
    if changed {
        if let Err(error) = write(&path, &held) {
            warn!(error = %format!("{error:#}"), "updating the record of what lbd holds failed");
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::test_support::{held, setting};
    use super::*;
    use crate::ownership::held::{boot_id, find};
    use crate::test_scratch::ScratchDir;

    #[test]
    fn the_first_original_survives_restarts() {
        let first = vec![setting("/p/eth0/forwarding", "0")];
        // A restarted lbd finds "1" (the first switched it on) and would
        // record nothing; the record keeps "0".
        assert_eq!(carry_forwarding(&first, &[]), first);
        assert_eq!(
            carry_forwarding(&first, &[setting("/p/eth0/forwarding", "1")]),
            first
        );
        let both = carry_forwarding(&first, &[setting("/p/eth1/forwarding", "0")]);
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn a_record_is_found_by_its_config_and_updated_in_place() {
        let scratch = ScratchDir::new("held");
        let dir = scratch.path().to_path_buf();
        let mut record = held("eth0", &["198.18.0.100"], None);
        record.boot_id = boot_id();
        record.admin_socket = dir.join("lbd.sock");
        let path = record_path(&record.admin_socket).expect("path");
        write(&path, &record).expect("write");
        let mut other = record.clone();
        other.config = PathBuf::from("/etc/lbd/other.toml");
        write(&dir.join("lbd-other.held.json"), &other).expect("write");
        std::fs::write(dir.join("junk.held.json"), "junk").expect("write");
        let found = find(
            Path::new("/etc/lbd/lbd.toml"),
            &[PathBuf::from("/nonexistent"), dir.clone()],
        );
        assert_eq!(found, Some((path.clone(), record.clone())));
        assert_eq!(
            find(Path::new("/etc/lbd/none.toml"), std::slice::from_ref(&dir)),
            None
        );

        let setting = Path::new("/proc/sys/net/ipv4/conf/eth0/forwarding");
        record_original(&record.admin_socket, setting, "0").expect("record");
        // A later lbd sees "1" and must not replace the original.
        record_original(&record.admin_socket, setting, "1").expect("record");
        assert_eq!(
            recorded_original(&record.admin_socket, setting).as_deref(),
            Some("0")
        );
        let taken = take_originals(&record.admin_socket);
        assert_eq!(
            taken,
            vec![HeldSetting {
                path: setting.to_owned(),
                was: "0".into()
            }]
        );
        assert_eq!(recorded_original(&record.admin_socket, setting), None);
    }
}
