//! What the unit tests of the record's modules share.

use std::path::PathBuf;

use super::{record_path, write, Held, HeldBgp, HeldSetting};
use crate::test_scratch::ScratchDir;

pub(super) fn held(interface: &str, addresses: &[&str], routes: Option<&str>) -> Held {
    Held {
        config: PathBuf::from("/etc/lbd/lbd.toml"),
        pid: 42,
        boot_id: "b".into(),
        started: None,
        admin_socket: PathBuf::from("/run/lbd/lbd.sock"),
        pin_dir: Some(PathBuf::from("/sys/fs/bpf/lbd")),
        interface: interface.into(),
        attach_tc: false,
        addresses: addresses
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect(),
        bgp: routes.map(|r| HeldBgp {
            bird_socket: PathBuf::from("/run/bird/bird.ctl"),
            routes_file: PathBuf::from(r),
            protocol: "lbd_vips".into(),
        }),
        forwarding: Vec::new(),
    }
}

pub(super) fn setting(path: &str, was: &str) -> HeldSetting {
    HeldSetting {
        path: PathBuf::from(path),
        was: was.into(),
    }
}

/// A directory of this test's, removed when dropped.
pub(super) struct Scratch(pub(super) ScratchDir);

impl Scratch {
    pub(super) fn new(tag: &str) -> Self {
        Self(ScratchDir::new(&format!("held-{tag}")))
    }

    /// Writes `record` as the record of admin socket `<dir>/<stem>.sock`,
    /// last written `age_s` seconds ago.
    pub(super) fn record(&self, stem: &str, record: &Held, age_s: u64) -> PathBuf {
        let mut record = record.clone();
        record.admin_socket = self.0.join(format!("{stem}.sock"));
        let path = record_path(&record.admin_socket).expect("path");
        write(&path, &record).expect("write");
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(when))
            .expect("mtime");
        path
    }
}
