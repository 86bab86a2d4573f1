//! What a start does with the record of the lbd that ran before: finds it
//! (or takes over one of its config under another admin socket), undoes
//! what the new config no longer holds, and writes this lbd's record.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use tracing::{info, warn};

use super::{
    read, record_file::find_all, record_path, record_updates::carry_forwarding, remove_addresses,
    restore, search_dirs_of, undo_on_node::withdraw_recorded, write, Held, HeldBgp, HeldSetting,
};
use crate::config::Config;

/// What a start undoes of a previous lbd's record (see [`at_start`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StartRelease {
    /// The previous lbd's addresses the new one will not hold, and the
    /// interface they are on.
    pub addresses: Option<(String, Vec<IpAddr>)>,
    /// The interface whose cls_bpf filters a previous tc lbd may have left
    /// (another interface than the new lbd's, which sweeps its own).
    pub tc_filters_on: Option<String>,
    /// A BGP announcement no longer made through this routes file.
    pub bgp: Option<HeldBgp>,
    /// The settings lbd switched on for the previous interface
    /// (`forwarding`, `accept_local`), with their originals, when the new
    /// lbd is on another one: put back at this start, as nothing routes
    /// through that interface for lbd any more (kept in the record, they
    /// would stay on until a stop for good, which would then write them
    /// over whatever was set since).
    pub settings: Vec<HeldSetting>,
}

impl StartRelease {
    /// Whether there is nothing to undo.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a start with `next` undoes of `previous`: the previous addresses
/// on another interface, or no longer listed; the previous interface's
/// cls_bpf filters and the settings lbd switched on for it, if it was
/// another interface; the previous BGP announcement if the new lbd
/// announces nothing, or through another routes file (BIRD would keep the
/// old file's routes).
pub(crate) fn at_start(previous: &Held, next: &Held) -> StartRelease {
    let moved = previous.interface != next.interface;
    let addresses: Vec<IpAddr> = previous
        .addresses
        .iter()
        .filter(|a| moved || !next.addresses.contains(a))
        .copied()
        .collect();
    let bgp = previous.bgp.as_ref().filter(|old| {
        next.bgp
            .as_ref()
            .is_none_or(|new| new.routes_file != old.routes_file)
    });
    StartRelease {
        addresses: (!addresses.is_empty()).then(|| (previous.interface.clone(), addresses)),
        // Any lbd may have left cls_bpf filters without tcx: `tc_lb` on
        // the ingress (attach = "tc"), `tc_hc_encap` on the egress
        // (checks through a tunnel, at either hook).
        tc_filters_on: moved.then(|| previous.interface.clone()),
        bgp: bgp.cloned(),
        settings: if moved {
            previous
                .forwarding
                .iter()
                .filter(|s| setting_of(s, &previous.interface))
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Whether `setting` is one of interface `interface`'s
/// (`/proc/sys/net/<family>/conf/<interface>/<name>`).
fn setting_of(setting: &HeldSetting, interface: &str) -> bool {
    setting
        .path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|name| name == interface)
}

/// Writes the record of what this lbd (started with `config` from
/// `config_path`) may hold, after undoing what a previous lbd's record
/// holds that this one will not (see [`at_start`]). Called once this lbd
/// owns the data plane, the lock of its record included (see
/// `ownership::claim`). The previous record is the one at this admin
/// socket; without one (`admin_socket` edited), the newest naming this
/// config elsewhere whose lbd is gone, which is taken over (removed, with
/// older ones naming this config). Failures are logged: without a record
/// the offline actions fall back to the config file.
pub(crate) async fn on_start(config: &Config, config_path: &Path) -> Option<Held> {
    let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
    let dirs = search_dirs_of(Some(&config.admin_socket), runtime.as_deref());
    on_start_in(config, config_path, &dirs).await
}

/// [`on_start`], looking for records of other admin sockets in `dirs`.
/// Returns the previous lbd's record as it was found (None: none of
/// this boot), which names the lbd that ran last.
async fn on_start_in(config: &Config, config_path: &Path, dirs: &[PathBuf]) -> Option<Held> {
    let path = record_path(&config.admin_socket)?;
    let mut next = Held::of(config, config_path);
    let (previous, taken_over, _locks) = previous_record(&path, config_path, dirs);
    let found = previous.clone();
    if let Some(mut previous) = previous {
        let release = at_start(&previous, &next);
        if !release.is_empty() {
            let done = undo_at_start(config, config_path, &release).await;
            // Put back (or left to the lbd that runs there now): no longer
            // this lbd's to restore.
            previous.forwarding.retain(|s| !done.contains(&s.path));
        }
        next.forwarding = carry_forwarding(&previous.forwarding, &next.forwarding);
    }
    match write(&path, &next) {
        Ok(()) => {
            info!(path = %path.display(), "recorded what this lbd holds, for the stop path and --cleanup");
            for old in taken_over {
                if let Err(error) = std::fs::remove_file(&old) {
                    warn!(path = %old.display(), %error, "removing a record this lbd took over failed");
                }
            }
        }
        Err(error) => {
            warn!(error = %format!("{error:#}"), "recording what this lbd holds failed: lbd --release-vips and --cleanup will go by the config file")
        }
    }
    found
}

/// The record a start at `path` (this lbd's record) takes over: the one
/// at `path`; else the newest in `dirs` naming `config_path` whose lbd is
/// gone (its lock is free). Returns it, the records to remove once this
/// lbd's is written (that one and older ones naming the config), and
/// their locks, held meanwhile. A record whose lock another process holds
/// is a running lbd's: left to it.
fn previous_record(
    path: &Path,
    config_path: &Path,
    dirs: &[PathBuf],
) -> (
    Option<Held>,
    Vec<PathBuf>,
    Vec<crate::ownership::lock::Lock>,
) {
    if let Some(own) = read(path) {
        return (Some(own), Vec::new(), Vec::new());
    }
    let mut previous = None;
    let mut taken_over = Vec::new();
    let mut locks = Vec::new();
    for (other, held) in find_all(config_path, dirs) {
        if other == path {
            continue;
        }
        match crate::ownership::try_record_lock(&other, config_path) {
            Ok(Some(lock)) => {
                if previous.is_none() {
                    info!(record = %other.display(), admin_socket = %held.admin_socket.display(), "taking over the record of the lbd that ran with this config and another admin socket");
                    previous = Some(held);
                } else {
                    info!(record = %other.display(), "an older record of this config is removed");
                }
                locks.push(lock);
                taken_over.push(other);
            }
            Ok(None) => {
                info!(record = %other.display(), pid = held.pid, "a record naming this config belongs to a running lbd: left to it");
            }
            Err(error) => {
                warn!(record = %other.display(), error = %format!("{error:#}"), "cannot lock a record naming this config: left");
            }
        }
    }
    (previous, taken_over, locks)
}

/// Undoes what a previous lbd held that this one will not: its routes
/// unless a running lbd now uses its routes file; its addresses, filters
/// and settings unless a running lbd owns the previous interface.
/// Returns the settings of `release` no longer this lbd's to restore:
/// put back (under the previous interface's lock), or left to the lbd
/// that owns that interface now (this lbd must not write over them
/// later); none when that could not be told.
async fn undo_at_start(
    config: &Config,
    config_path: &Path,
    release: &StartRelease,
) -> Vec<PathBuf> {
    if let Some(bgp) = &release.bgp {
        info!(routes_file = %bgp.routes_file.display(), "BGP: the previous lbd announced through a routes file this lbd does not use; withdrawing its routes");
        if let Err(error) = withdraw_recorded(bgp, config_path).await {
            warn!(error = %format!("{error:#}"), routes_file = %bgp.routes_file.display(), "BGP: withdrawing the previous lbd's routes failed; empty that file and `birdc configure` by hand");
        }
    }
    let other_interface = release
        .addresses
        .as_ref()
        .map(|(name, _)| name)
        .or(release.tc_filters_on.as_ref())
        .filter(|name| **name != config.interface);
    let settings: Vec<PathBuf> = release.settings.iter().map(|s| s.path.clone()).collect();
    // Another lbd may run on the previous interface now (the previous
    // one is gone: this lbd holds its record's lock): its lock says.
    let _lock = match other_interface {
        Some(name) => match crate::ownership::try_interface_lock(config, config_path, name) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => {
                warn!(interface = %name, "the previous lbd's interface is owned by a running lbd: its addresses, filters and settings (forwarding, accept_local) are left to it");
                return settings;
            }
            Err(error) => {
                warn!(interface = %name, error = %format!("{error:#}"), "cannot lock the previous lbd's interface: its addresses, filters and settings are left");
                return Vec::new();
            }
        },
        None => None,
    };
    if !release.settings.is_empty() {
        info!("the previous lbd's interface is not this one's: the settings it switched on there are put back");
        restore(&release.settings);
    }
    let netlink = match crate::netlink::Netlink::connect() {
        Ok(netlink) => netlink,
        Err(error) => {
            warn!(%error, "cannot undo the previous lbd's addresses");
            return settings;
        }
    };
    if let Some((name, addresses)) = &release.addresses {
        if let Err(error) = remove_addresses(&netlink, name, addresses).await {
            warn!(error = %format!("{error:#}"), interface = %name, "removing the previous lbd's VIP addresses failed");
        }
    }
    if let Some(name) = &release.tc_filters_on {
        if let Ok(interface) = netlink.interface(name).await {
            if let Err(error) = crate::ownership::cls_bpf::remove_left_filters(
                &interface.name,
                interface.index,
                None,
            )
            .await
            {
                warn!(error = %format!("{error:#}"), interface = %name, "removing the tc filters the previous lbd left failed");
            }
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{held, setting, Scratch};
    use super::*;
    use crate::ownership::held::boot_id;

    #[test]
    fn an_unchanged_restart_undoes_nothing() {
        let record = held("eth0", &["198.18.0.100"], Some("/run/lbd-bgp/vips.conf"));
        assert!(at_start(&record, &record.clone()).is_empty());
    }

    #[test]
    fn a_new_interface_takes_every_old_address_and_the_old_filters() {
        let mut old = held("eth0", &["198.18.0.100", "198.18.0.101"], None);
        old.attach_tc = true;
        let new = held("eth1", &["198.18.0.100"], None);
        let release = at_start(&old, &new);
        assert_eq!(
            release.addresses,
            Some(("eth0".to_owned(), old.addresses.clone()))
        );
        assert_eq!(release.tc_filters_on.as_deref(), Some("eth0"));
        // An XDP lbd with checks through a tunnel leaves tc_hc_encap's
        // egress filters without tcx.
        old.attach_tc = false;
        assert_eq!(at_start(&old, &new).tc_filters_on.as_deref(), Some("eth0"));
        // The same interface: its own sweep takes them.
        assert_eq!(at_start(&old, &old).tc_filters_on, None);
    }

    /// Moved to another interface, the settings lbd switched on for the
    /// old one go back (the old interface's only); on the same interface
    /// they stay.
    #[test]
    fn a_new_interface_puts_back_the_old_ones_settings() {
        let mut old = held("eth0", &[], None);
        old.forwarding = vec![
            setting("/proc/sys/net/ipv4/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv6/conf/eth0/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth0/accept_local", "0"),
            setting("/proc/sys/net/ipv4/conf/eth1/forwarding", "0"),
            setting("/proc/sys/net/ipv4/conf/eth00/forwarding", "0"),
        ];
        let release = at_start(&old, &held("eth1", &[], None));
        assert_eq!(release.settings, old.forwarding[..3].to_vec());
        assert!(!release.is_empty());
        assert_eq!(at_start(&old, &old.clone()).settings, Vec::new());
        assert!(at_start(&old, &old.clone()).is_empty());
    }

    #[test]
    fn only_addresses_no_longer_listed_go_on_the_same_interface() {
        let old = held("eth0", &["198.18.0.100", "198.18.0.101"], None);
        let new = held("eth0", &["198.18.0.101", "198.18.0.102"], None);
        assert_eq!(
            at_start(&old, &new).addresses,
            Some((
                "eth0".to_owned(),
                vec!["198.18.0.100".parse().expect("address")]
            ))
        );
    }

    #[test]
    fn bgp_removed_or_moved_withdraws_the_old_routes_file() {
        let old = held("eth0", &[], Some("/run/lbd-bgp/vips.conf"));
        let none = held("eth0", &[], None);
        let moved = held("eth0", &[], Some("/run/lbd-bgp/other.conf"));
        assert_eq!(at_start(&old, &none).bgp, old.bgp);
        assert_eq!(at_start(&old, &moved).bgp, old.bgp);
        assert_eq!(at_start(&old, &old.clone()).bgp, None);
        assert_eq!(at_start(&none, &old).bgp, None, "nothing announced before");
    }

    fn config_at(scratch: &Scratch, stem: &str) -> Config {
        let text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n",
            scratch.0.join(format!("{stem}.sock")).display()
        );
        Config::from_toml_str(&text, "lbd.toml").expect("config")
    }

    /// `admin_socket` edited across a restart: the new lbd takes over the
    /// newest record naming its config (the first lbd's forwarding
    /// original survives) and removes the older ones, but not a running
    /// lbd's (its record's lock is held).
    #[tokio::test]
    async fn a_start_takes_over_the_record_of_its_config_under_another_admin_socket() {
        let scratch = Scratch::new("takeover");
        let config_path = scratch.0.join("lbd.toml");
        let mut record = held("eth0", &[], None);
        record.boot_id = boot_id();
        record.config = config_path.clone();
        let forwarding = "/proc/sys/net/ipv4/conf/eth0/forwarding";
        record.forwarding = vec![setting(forwarding, "0")];
        let newest = scratch.record("old", &record, 10);
        let mut older_record = record.clone();
        older_record.forwarding = vec![setting(forwarding, "2")];
        let older = scratch.record("older", &older_record, 3600);
        let mut running = record.clone();
        running.forwarding = vec![setting(forwarding, "3")];
        let running_path = scratch.record("running", &running, 0);
        let me = crate::ownership::lock::OwnerRecord {
            pid: 4242,
            config: config_path.clone(),
        };
        let crate::ownership::lock::Attempt::Held(running_lock) =
            crate::ownership::lock::lock_file(
                &crate::ownership::bgp_file_lock_path(&running_path),
                &me,
            )
            .expect("lock")
        else {
            panic!("the running lbd's record lock was taken");
        };

        let config = config_at(&scratch, "new");
        on_start_in(&config, &config_path, &[scratch.0.path().to_path_buf()]).await;
        let mine = read(&record_path(&config.admin_socket).expect("path")).expect("written");
        assert_eq!(mine.admin_socket, config.admin_socket);
        assert_eq!(
            mine.forwarding, record.forwarding,
            "the newest free record's"
        );
        assert!(!newest.exists(), "taken over");
        assert!(!older.exists(), "an older one removed");
        assert!(running_path.exists(), "a running lbd's is left");
        assert_eq!(
            read(&running_path),
            Some({
                let mut r = running.clone();
                r.admin_socket = scratch.0.join("running.sock");
                r
            })
        );
        drop(running_lock);
    }
}
