//! IPv6 and IPv4 forwarding switched on for routed packets (and `accept_ra`
//! kept at 2 with it), recorded and put back at a stop: apart because it
//! touches the node's sysctls and the record of what lbd holds.

use std::{collections::BTreeSet, path::PathBuf};

use tracing::{debug, info, warn};

use super::{super::Engine, routed_families};

/// A setting lbd changed for forwarding (`forwarding`, IPv6
/// `accept_ra`), to restore at a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ForwardingChange {
    path: PathBuf,
    was: String,
}

/// The per-interface forwarding switch of `ipv6` or IPv4 for `interface`.
pub(crate) fn forwarding_path(ipv6: bool, interface: &str) -> PathBuf {
    let family = if ipv6 { "ipv6" } else { "ipv4" };
    PathBuf::from(format!(
        "/proc/sys/net/{family}/conf/{interface}/forwarding"
    ))
}

/// IPv6 `accept_ra` for `interface`: a forwarding interface ignores
/// router advertisements unless it is 2.
pub(crate) fn accept_ra_path(interface: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv6/conf/{interface}/accept_ra"))
}

/// Makes the `accept_ra` setting at `path` accept router advertisements
/// while forwarding is on: 1 (a host's) becomes 2. Otherwise the kernel
/// deletes the interface's default route learned from them at once when
/// lbd switches forwarding on (`rt6_purge_dflt_routers`, which spares only
/// interfaces with `accept_ra` 2), and does not learn it again from the
/// next advertisement, which a forwarding interface then ignores. Returns
/// the value found and whether it was changed (0 stays: advertisements
/// are not wanted; 2 is already so).
pub(super) fn accept_ra_while_forwarding(path: &std::path::Path) -> anyhow::Result<(String, bool)> {
    use anyhow::Context as _;
    let was = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_owned();
    if was != "1" {
        return Ok((was, false));
    }
    std::fs::write(path, "2").with_context(|| format!("writing 2 to {}", path.display()))?;
    Ok((was, true))
}

/// `RTF_DEFAULT` and `RTF_ADDRCONF` (`include/uapi/linux/ipv6_route.h`):
/// a default route learned from a router advertisement carries both.
const RTF_DEFAULT_OR_ADDRCONF: u32 = 0x0001_0000 | 0x0004_0000;

/// The interfaces that lose their default route learned from router
/// advertisements when any interface's IPv6 `forwarding` is switched on:
/// the kernel then deletes, in every table, each default route flagged
/// `RTF_DEFAULT` or `RTF_ADDRCONF` whose interface's `accept_ra` is not 2
/// (`rt6_purge_dflt_routers`), and it comes back only with the router's
/// next advertisement. `routes` is `/proc/net/ipv6_route` (which lists
/// every table with the kernel's own route flags); `accept_ra` reads an
/// interface's setting (None: unreadable, taken as not 2).
pub(super) fn ra_routes_at_risk(
    routes: &str,
    accept_ra: impl Fn(&str) -> Option<String>,
) -> BTreeSet<String> {
    routes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, dst_len, _, src_len, _, _, _, _, flags, device] = fields[..] else {
                return None;
            };
            let flags = u32::from_str_radix(flags, 16).ok()?;
            let default = dst_len == "00" && src_len == "00";
            (default && flags & RTF_DEFAULT_OR_ADDRCONF != 0).then(|| device.to_owned())
        })
        .filter(|device| accept_ra(device).as_deref() != Some("2"))
        .collect()
}

/// Warns, just before lbd switches IPv6 `forwarding` on for `interface`,
/// about the interfaces whose default route learned from router
/// advertisements the kernel is about to delete (`ra_routes_at_risk`).
/// Called only when lbd writes the setting (it never writes it when it
/// is on already, and a restart finds it on), so once per switch.
fn warn_ra_routes_at_risk(interface: &str) {
    // This thread's namespace (lbd's threads all share one).
    let routes = match std::fs::read_to_string("/proc/thread-self/net/ipv6_route") {
        Ok(routes) => routes,
        Err(error) => {
            debug!(%error, "cannot read the IPv6 routes to look for default routes learned from router advertisements");
            return;
        }
    };
    let read = |device: &str| {
        std::fs::read_to_string(accept_ra_path(device))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    let at_risk = ra_routes_at_risk(&routes, read);
    if at_risk.is_empty() {
        return;
    }
    let names = at_risk.into_iter().collect::<Vec<_>>().join(", ");
    warn!(
        %interface, interfaces = %names,
        "switching IPv6 forwarding on for {interface} makes the kernel delete the default routes learned from router advertisements on {names} (every interface whose accept_ra is not 2), in this network namespace: they come back with each router's next advertisement (up to its MaxRtrAdvInterval, 600 s by default; a router solicitation, e.g. a link bounce, brings it sooner). To keep them, set net.ipv6.conf.<interface>.accept_ra=2 on those interfaces before lbd starts, or switch net.ipv6.conf.{interface}.forwarding=1 on at boot (lbd then leaves it as it is)"
    );
}

/// Whether the interface setting at `path` stays as lbd set it across a
/// restart with nothing pinned (see `restore_forwarding_for_restart`):
/// IPv6 `forwarding` and the `accept_ra` that goes with it.
pub(super) fn kept_across_restarts(path: &std::path::Path) -> bool {
    path.starts_with("/proc/sys/net/ipv6/conf")
        && path
            .file_name()
            .is_some_and(|name| name == "forwarding" || name == "accept_ra")
}

/// Records each of `kept` (IPv6 settings that stay on across an unpinned
/// restart) again for the next lbd, a stop for good or `lbd --cleanup` to
/// put back; those recorded. One that cannot be recorded (its original
/// was taken out of the record) is put back now, as a stop for good
/// would: left on unrecorded, nothing would ever put it back.
pub(super) fn record_or_restore(
    admin_socket: &std::path::Path,
    kept: Vec<crate::ownership::held::HeldSetting>,
) -> Vec<crate::ownership::held::HeldSetting> {
    let (recorded, unrecorded): (Vec<_>, Vec<_>) = kept.into_iter().partition(|setting| {
        crate::ownership::held::record_original(admin_socket, &setting.path, &setting.was)
            .map_err(|error| {
                warn!(setting = %setting.path.display(), error = %format!("{error:#}"), "recording the setting's original value for the next lbd failed: it is put back now (no later stop or lbd --cleanup could)");
            })
            .is_ok()
    });
    crate::ownership::held::restore(&unrecorded);
    recorded
}

impl Engine {
    /// Switches forwarding on for the attached interface, for each family
    /// routed packets are looked up in (see `routed_families`); nothing
    /// when no VIP is routed. Each commit calls it too, after its writes
    /// (a retry of a switch that failed), having switched it on for the
    /// staged change before them (see [`Self::ensure_forwarding_for`]).
    pub(crate) fn ensure_forwarding(&mut self) {
        let families = routed_families(&self.balancer);
        self.ensure_forwarding_for(&families);
    }

    /// [`Self::ensure_forwarding`] for `families` (true: IPv6): those of a
    /// staged change, before its commit makes a routed VIP (or a backend
    /// of another family) live, so no first packet meets a FIB lookup
    /// forwarding refuses.
    pub(crate) fn ensure_forwarding_for(&mut self, families: &BTreeSet<bool>) {
        for ipv6 in families.iter().copied() {
            let path = forwarding_path(ipv6, &self.interface.name);
            if self.nat.forwarding_failed.contains(&path) {
                continue;
            }
            let was = match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().to_owned(),
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot read the interface's forwarding setting; NAT and tunnelled VIPs need it on");
                    self.nat.forwarding_failed.insert(path);
                    continue;
                }
            };
            if was != "0" {
                // On already: by the operator, or by a previous lbd (a
                // restart), whose record keeps the original to restore.
                if !self.nat.forwarding.iter().any(|c| c.path == path) {
                    if let Some(original) =
                        crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
                    {
                        self.nat.forwarding.push(ForwardingChange {
                            path: path.clone(),
                            was: original,
                        });
                    }
                }
                // On for lbd: router advertisements stay accepted (an
                // older lbd left accept_ra at 1). The operator's
                // forwarding leaves accept_ra to the operator too.
                if ipv6 && self.nat.forwarding.iter().any(|c| c.path == path) {
                    self.keep_router_advertisements();
                }
                continue;
            }
            if ipv6 {
                // Before forwarding goes on: no moment ignores them.
                self.keep_router_advertisements();
                warn_ra_routes_at_risk(&self.interface.name);
            }
            match std::fs::write(&path, "1") {
                Ok(()) => {
                    info!(
                        interface = %self.interface.name,
                        setting = %path.display(),
                        "forwarding switched on for the interface: NAT and tunnelled VIPs route through the kernel's FIB (restored at a clean stop)"
                    );
                    // Recorded for the lbds after this one (a restart
                    // finds it on) and for `lbd --cleanup`.
                    if let Err(error) = crate::ownership::held::record_original(
                        &self.config.admin_socket,
                        &path,
                        &was,
                    ) {
                        warn!(setting = %path.display(), error = %format!("{error:#}"), "recording the forwarding setting's original value failed: after a restart a clean stop will not restore it");
                    }
                    if !self.nat.forwarding.iter().any(|c| c.path == path) {
                        self.nat.forwarding.push(ForwardingChange { path, was });
                    }
                }
                Err(error) => {
                    warn!(setting = %path.display(), %error, "cannot switch forwarding on: NAT and tunnelled VIPs' packets are dropped as drop_no_route until it is on");
                    self.nat.forwarding_failed.insert(path);
                }
            }
        }
    }

    /// Keeps IPv6 router advertisements accepted on the attached
    /// interface while lbd has forwarding on there
    /// (`accept_ra_while_forwarding`), recorded and restored at a clean
    /// stop as forwarding is; a previous lbd's change is taken over from
    /// its record.
    fn keep_router_advertisements(&mut self) {
        let path = accept_ra_path(&self.interface.name);
        if self.nat.forwarding_failed.contains(&path)
            || self.nat.forwarding.iter().any(|c| c.path == path)
        {
            return;
        }
        match accept_ra_while_forwarding(&path) {
            Ok((was, true)) => {
                info!(
                    interface = %self.interface.name,
                    setting = %path.display(),
                    "IPv6 router advertisements stay accepted on the interface while forwarding is on (accept_ra 1 -> 2; restored at a clean stop): a default route learned from them stays"
                );
                if let Err(error) =
                    crate::ownership::held::record_original(&self.config.admin_socket, &path, &was)
                {
                    warn!(setting = %path.display(), error = %format!("{error:#}"), "recording accept_ra's original value failed: after a restart a clean stop will not restore it");
                }
                self.nat.forwarding.push(ForwardingChange { path, was });
            }
            Ok((_, false)) => {
                if let Some(original) =
                    crate::ownership::held::recorded_original(&self.config.admin_socket, &path)
                {
                    self.nat.forwarding.push(ForwardingChange {
                        path,
                        was: original,
                    });
                }
            }
            Err(error) => {
                warn!(
                    interface = %self.interface.name,
                    error = %format!("{error:#}"),
                    "cannot keep IPv6 router advertisements accepted while forwarding is on (accept_ra = 2): a default route the interface learned from them is deleted when forwarding goes on, and the interface ignores them from then on"
                );
                self.nat.forwarding_failed.insert(path);
            }
        }
    }

    /// Puts the forwarding settings lbd changed back (a clean stop): this
    /// lbd's, and those the record of what lbd holds kept from the lbds
    /// before it (a restart finds them on and changes nothing itself),
    /// which leave the record.
    pub(crate) fn restore_forwarding(&mut self) {
        let settings = self.take_forwarding_settings();
        crate::ownership::held::restore(&settings);
    }

    /// Puts the forwarding settings lbd changed back at a restart's stop
    /// that leaves no data plane forwarding (`pin_dir = "off"`), but for
    /// IPv6 `forwarding` and `accept_ra`, which stay on and recorded for
    /// the next lbd, a stop for good or `lbd --cleanup` to put back: each
    /// switch of IPv6 forwarding on makes the kernel delete the default
    /// routes learned from router advertisements of every interface whose
    /// `accept_ra` is not 2 (see `ra_routes_at_risk`), so turning it off
    /// would cost that at every restart. Per-interface IPv6 forwarding
    /// routes nothing by itself (the kernel forwards IPv6 only with
    /// `all.forwarding`), unlike IPv4's, which is put back. One whose
    /// record cannot be written again is put back too (`record_or_restore`).
    pub(crate) fn restore_forwarding_for_restart(&mut self) {
        let (kept, restored): (Vec<_>, Vec<_>) = self
            .take_forwarding_settings()
            .into_iter()
            .partition(|s| kept_across_restarts(&s.path));
        crate::ownership::held::restore(&restored);
        let kept = record_or_restore(&self.config.admin_socket, kept);
        if !kept.is_empty() {
            info!(
                interface = %self.interface.name,
                "IPv6 forwarding (and accept_ra) stay as lbd set them across the restart: switching forwarding on again would make the kernel delete other interfaces' default routes learned from router advertisements; a stop for good (SIGINT) or lbd --cleanup puts them back"
            );
        }
    }

    /// The forwarding settings to put back: those the record of what lbd
    /// holds kept from the lbds before this one (taken out of it) and
    /// this lbd's own.
    fn take_forwarding_settings(&mut self) -> Vec<crate::ownership::held::HeldSetting> {
        let mut settings = crate::ownership::held::take_originals(&self.config.admin_socket);
        for change in std::mem::take(&mut self.nat.forwarding) {
            if !settings.iter().any(|s| s.path == change.path) {
                settings.push(crate::ownership::held::HeldSetting {
                    path: change.path,
                    was: change.was,
                });
            }
        }
        settings
    }
}
