//! What a running lbd holds on the node, recorded for whoever undoes it
//! after lbd is gone. The offline actions (`lbd --release-vips`, the
//! systemd unit's stop path, and `lbd --cleanup`) must undo what the lbd
//! that ran held, not what the config file says now: the file may have
//! been edited (another interface, other VRRP addresses, another routes
//! file, `[bgp]` gone) or broken since. So lbd records, beside its admin
//! socket (`/run/lbd/lbd.held.json` by default, on a tmpfs, so a reboot,
//! which takes all of it away, takes the record too), its interface and
//! hook, the VRRP addresses it may put on that interface, its BGP
//! announcement's BIRD socket, routes file and protocol stem, and the
//! original values of the `forwarding` settings it switched on (kept
//! across restarts, so the first lbd's original is what a clean stop puts
//! back). The record is written when lbd claims the data plane and
//! rewritten atomically when it changes. A start that finds a previous
//! record first undoes what the new config no longer holds (addresses on
//! another interface or no longer listed, a routes file no longer used, a
//! cls_bpf filter on another interface, and the settings switched on for
//! another interface, which leave the record). The record is locked with the
//! data plane (see `ownership`): whoever reads it to undo what it holds
//! owns it, so no running lbd's holdings are undone. A routes file is
//! emptied from a record only while no running lbd holds its lock (it may
//! announce through it now). When the config's admin socket has no record
//! (`admin_socket` was edited) the newest record naming the same config
//! file stands in, and a start takes it over.

mod record_file;
mod record_updates;
#[cfg(test)]
mod test_support;
mod undo_on_node;
mod undo_previous;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::config::{Attach, BgpConfig, Config};
pub(crate) use record_file::{
    boot_id, find, process_started, read, record_path, search_dirs, search_dirs_of, write,
};
pub(crate) use record_updates::{
    forget_announcement, forget_original, ran_unpinned_tc_on, record_original, recorded_original,
    take_originals,
};
pub(crate) use undo_on_node::{lock_routes_file, remove_addresses, restore};
pub(crate) use undo_previous::on_start;

/// What an lbd holds (or may hold) on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    /// The config file lbd was started with (absolute): how an offline
    /// action whose config cannot be read finds the record.
    pub config: PathBuf,
    /// lbd's pid (for the log).
    pub pid: u32,
    /// The boot the record was written in.
    #[serde(default)]
    pub boot_id: String,
    /// When lbd started (clock ticks after boot, `/proc/self/stat`): with
    /// `pid` and `boot_id` it names one process, so a record of state an
    /// lbd kept (the running-state record) can tell whether its writer
    /// was the lbd that ran last (None: not known, or an older build's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// lbd's admin socket (an offline action checks no lbd answers there;
    /// the VRRP state files and the restart marker are named after it).
    pub admin_socket: PathBuf,
    /// Where the data plane is pinned (None: `pin_dir = "off"`).
    pub pin_dir: Option<PathBuf>,
    /// The interface lbd attaches to and puts its VRRP addresses on.
    pub interface: String,
    /// Whether lbd attaches with tc (a cls_bpf filter may outlive it on a
    /// kernel without tcx).
    pub attach_tc: bool,
    /// The VRRP addresses lbd may put on `interface`.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// The BGP announcement (None: no `[bgp]`).
    pub bgp: Option<HeldBgp>,
    /// `forwarding` settings lbd switched on, with their original values.
    #[serde(default)]
    pub forwarding: Vec<HeldSetting>,
}

/// Where an lbd's BGP announcement lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldBgp {
    /// BIRD's control socket.
    pub bird_socket: PathBuf,
    /// The routes file BIRD includes.
    pub routes_file: PathBuf,
    /// The protocols' name stem.
    pub protocol: String,
}

impl From<&BgpConfig> for HeldBgp {
    fn from(bgp: &BgpConfig) -> Self {
        Self {
            bird_socket: bgp.bird_socket.clone(),
            routes_file: bgp.routes_file.clone(),
            protocol: bgp.protocol.clone(),
        }
    }
}

/// A kernel setting lbd changed, with the value it had before the first
/// lbd changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldSetting {
    /// The setting's file (`/proc/sys/net/ipv4/conf/eth0/forwarding`).
    pub path: PathBuf,
    /// Its original value.
    pub was: String,
}

impl Held {
    /// What an lbd started with `config` (from `config_path`) may hold,
    /// with no setting changed yet.
    pub(crate) fn of(config: &Config, config_path: &Path) -> Self {
        let mut addresses: Vec<IpAddr> = Vec::new();
        for address in config.vrrp.iter().flat_map(|v| &v.addresses) {
            if !addresses.contains(address) {
                addresses.push(*address);
            }
        }
        Self {
            config: std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_owned()),
            pid: std::process::id(),
            boot_id: boot_id(),
            started: process_started(),
            admin_socket: config.admin_socket.clone(),
            pin_dir: config.pin_dir.clone(),
            interface: config.interface.clone(),
            attach_tc: config.attach == Attach::Tc,
            addresses,
            bgp: config.bgp.as_ref().map(HeldBgp::from),
            forwarding: Vec::new(),
        }
    }

    /// The record as stored (JSON). Fails only on a path that is not
    /// UTF-8 (JSON cannot hold it), which a config read from TOML never
    /// names: an error then, rather than a record that says nothing.
    pub(crate) fn encode(&self) -> Result<String, serde_json::Error> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Reads a stored record. A `forwarding` setting that is not an
    /// interface's switch lbd changes, to a small integer (see
    /// [`refused_setting`]), is left out with a warning naming it: the
    /// offline actions write these values as root.
    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        let mut held: Self = serde_json::from_str(text)?;
        held.forwarding.retain(|setting| match refused_setting(setting) {
            None => true,
            Some(why) => {
                warn!(setting = %setting.path.display(), value = %setting.was, "the record of what lbd held names a setting lbd never changes ({why}): left out, never written");
                false
            }
        });
        Ok(held)
    }
}

/// The settings lbd switches on for an interface, and records.
const SETTING_NAMES: [&str; 3] = ["forwarding", "accept_local", "accept_ra"];

/// Why `setting` is none lbd records (None: it is one): the path must be
/// `/proc/sys/net/ipv4|ipv6/conf/<interface>/<name>` with a name of
/// [`SETTING_NAMES`], and the value a small integer. Unit tests also use
/// settings under the temporary directory.
fn refused_setting(setting: &HeldSetting) -> Option<&'static str> {
    let in_proc = setting
        .path
        .to_str()
        .and_then(|path| path.strip_prefix("/proc/sys/net/"))
        .is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('/').collect();
            matches!(
                parts.as_slice(),
                [family, "conf", interface, name]
                    if matches!(*family, "ipv4" | "ipv6")
                        && !interface.is_empty()
                        && *interface != "."
                        && *interface != ".."
                        && SETTING_NAMES.contains(name)
            )
        });
    #[cfg(test)]
    let in_proc = in_proc || setting.path.starts_with(std::env::temp_dir());
    if !in_proc {
        return Some("not an interface's forwarding, accept_local or accept_ra");
    }
    if setting.was.trim().parse::<u8>().is_err() {
        return Some("its value is not a small integer");
    }
    None
}

/// Where an offline action's knowledge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The record the lbd that ran left.
    Record,
    /// The config file (no record: an older lbd, or one that never ran).
    Config,
}

/// What an offline action undoes: the record's holdings if there is a
/// record, else what the config says (an lbd that left no record).
/// None when there is neither.
pub(crate) fn offline_plan(
    record: Option<&Held>,
    config: Option<(&Config, &Path)>,
) -> Option<(Held, Source)> {
    match (record, config) {
        (Some(record), _) => Some((record.clone(), Source::Record)),
        (None, Some((config, path))) => Some((Held::of(config, path), Source::Config)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{held, setting};
    use super::*;

    #[test]
    fn a_record_reads_back_what_was_written() {
        let mut record = held(
            "eth0",
            &["198.18.0.100", "2001:2::100"],
            Some("/run/lbd-bgp/vips.conf"),
        );
        record.attach_tc = true;
        record.forwarding = vec![setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0")];
        assert_eq!(
            Held::decode(&record.encode().expect("encode")).expect("decode"),
            record
        );
        record.bgp = None;
        record.pin_dir = None;
        assert_eq!(
            Held::decode(&record.encode().expect("encode")).expect("decode"),
            record
        );
    }

    #[test]
    fn junk_is_no_record() {
        for text in ["", "junk", "{}", "{\"interface\": 3}"] {
            assert!(Held::decode(text).is_err(), "{text:?}");
        }
    }

    /// A recorded setting is written back as root: only an interface's
    /// own `forwarding`, `accept_local` or `accept_ra` under
    /// `/proc/sys/net`, to a small integer, is read; any other is left out
    /// with a warning naming it, and the rest of the record stands.
    #[test]
    fn a_recorded_setting_other_than_an_interface_switch_is_refused() {
        let mut record = held("eth0", &["198.18.0.100"], None);
        let good = vec![
            setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv6/conf/eth0.100/accept_ra", "1"),
            setting("/proc/sys/net/ipv4/conf/all/accept_local", "0"),
        ];
        let bad = vec![
            setting("/etc/passwd", "0"),
            setting("/etc/ld.so.preload", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/rp_filter", "0"),
            setting("/proc/sys/net/ipv4/conf/../../../../../etc/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/x/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf//forwarding", "0"),
            setting("/proc/sys/net/ipv5/conf/eth0/forwarding", "0"),
            setting("proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "/tmp/evil.so"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "1 2"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "100000"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", ""),
        ];
        record.forwarding = good.iter().chain(&bad).cloned().collect();
        let mut decoded = None;
        let logs = crate::test_logs::logs_of(|| {
            decoded = Some(Held::decode(&record.encode().expect("encode")).expect("decode"));
        });
        let decoded = decoded.expect("decoded");
        assert_eq!(decoded.forwarding, good);
        assert_eq!(decoded.interface, "eth0", "the rest stands");
        assert_eq!(logs.matches("WARN").count(), bad.len(), "{logs}");
        assert!(logs.contains("/etc/passwd"), "{logs}");
        assert!(logs.contains("/tmp/evil.so"), "{logs}");
    }

    #[test]
    fn an_offline_action_goes_by_the_record_over_the_config() {
        let text = "interface = \"eth1\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n";
        let config = Config::from_toml_str(text, "lbd.toml").expect("config");
        let record = held("eth0", &["198.18.0.100"], Some("/run/lbd-bgp/vips.conf"));
        let path = Path::new("/etc/lbd/lbd.toml");
        let (plan, source) = offline_plan(Some(&record), Some((&config, path))).expect("plan");
        assert_eq!((plan, source), (record.clone(), Source::Record));
        let (plan, source) = offline_plan(None, Some((&config, path))).expect("plan");
        assert_eq!(source, Source::Config);
        assert_eq!(plan.interface, "eth1");
        assert_eq!(plan.bgp, None);
        let (plan, _) = offline_plan(Some(&record), None).expect("plan");
        assert_eq!(plan, record);
        assert_eq!(offline_plan(None, None), None);
    }
}
