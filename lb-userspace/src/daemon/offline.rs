//! `lbd --cleanup` and `lbd --release-vips`: what an lbd that no longer
//! runs held (its record, else the config), released with no lbd running.

use std::{path::Path, time::Duration};

use tracing::{info, warn};

use super::engine;
use crate::config::Config;

/// What `lbd --cleanup` and `lbd --release-vips` do, with no lbd running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// Remove the VRRP addresses the lbd that ran may have held from its
    /// interface (the systemd unit runs this after every stop, so a node
    /// that stays down never answers ARP for a VIP the peer now holds),
    /// and withdraw its BGP announcements unless it stopped for a restart.
    ReleaseVips,
    /// Remove the VIP addresses, withdraw the BGP announcements, detach
    /// the program, remove every pin and a stale admin socket, and put
    /// back the `forwarding` settings lbd switched on. A withdrawal BIRD
    /// did not take, BIRD running, keeps the program, its pins and the
    /// `forwarding` settings (see [`offline`]).
    Cleanup,
}

/// Runs an offline action for the lbd started with the config at `path`:
/// on what that lbd recorded it held (see `ownership::held`), so an edit
/// of the file since changes nothing; on what `config` says if it left no
/// record. The record is the one at the config's admin socket, else (the
/// admin socket edited since) the newest naming this config file (see
/// `held::find`). `config` is None when the file could not be read: the
/// record is then looked for (see `held::search_dirs`), and without one
/// nothing is done. Refused while an lbd owns that data plane (its locks,
/// see `ownership`), whatever admin socket the config names. A routes
/// file a running lbd uses now is not emptied (see
/// `held::lock_routes_file`).
pub async fn offline(path: &Path, config: Option<&Config>, action: Offline) -> anyhow::Result<()> {
    use crate::ownership::held::{self, Source};
    let record = match config {
        Some(config) => held::record_path(&config.admin_socket)
            .and_then(|p| held::read(&p))
            .or_else(|| {
                let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
                let dirs = held::search_dirs_of(Some(&config.admin_socket), runtime.as_deref());
                let (found, record) = held::find(path, &dirs)?;
                info!(record = %found.display(), "no record at the config's admin socket: using the newest record of the lbd started with this config");
                Some(record)
            }),
        None => {
            let text = std::fs::read_to_string(path).ok();
            let runtime = std::env::var("RUNTIME_DIRECTORY").ok();
            let dirs = held::search_dirs(text.as_deref(), runtime.as_deref());
            let found = held::find(path, &dirs);
            if found.is_none() {
                anyhow::bail!(
                    "the config was not read, and no record of what the lbd started with {} held was found in {}: nothing released",
                    path.display(),
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
            found.map(|(_, record)| record)
        }
    };
    let Some((plan, source)) = held::offline_plan(record.as_ref(), config.map(|c| (c, path)))
    else {
        anyhow::bail!("nothing to release: no config and no record");
    };
    match source {
        Source::Record if config.is_none() => info!(
            interface = %plan.interface, pid = plan.pid,
            "the config was not read: releasing what the lbd that ran recorded it held"
        ),
        Source::Record => info!(
            interface = %plan.interface, pid = plan.pid,
            "releasing what the lbd that ran recorded it held (not what the config says now)"
        ),
        Source::Config => info!(
            interface = %plan.interface,
            "no record of what the lbd that ran held: releasing what the config says"
        ),
    }
    let purpose = match action {
        Offline::Cleanup => crate::ownership::Purpose::Cleanup,
        Offline::ReleaseVips => crate::ownership::Purpose::ReleaseVips,
    };
    let also = config.map(|c| c.interface.as_str());
    let _ownership = crate::ownership::claim_offline(&plan, also, path, purpose)?;
    // Also an lbd that takes no locks (an older version, during an upgrade).
    if lbd_answers(&plan.admin_socket).await {
        anyhow::bail!(
            "lbd is running (it answers on {}); stop it first",
            plan.admin_socket.display()
        );
    }
    // BGP first: a node that stays down must stop attracting traffic. A
    // BIRD that is down or refuses must not keep the addresses on the
    // interface: the rest is done, and the BGP error returned at the end.
    // The program goes only if BIRD no longer announces the node: it took
    // the withdrawal, or it is not running (nothing listens on its control
    // socket: its sessions went with it, and it reads the emptied routes
    // file when it starts). A BIRD that refused or did not answer may
    // still announce it, and the routers still send it flows, which only
    // the program forwards: it stays attached and pinned, as after a stop
    // for good that BIRD refused (see `Engine::shutdown`).
    let bgp = match &plan.bgp {
        None => Ok(()),
        Some(bgp) => match held::lock_routes_file(bgp, path) {
            Err(error) => Err(error),
            // A running lbd announces through that file now: warned.
            Ok(None) => Ok(()),
            Ok(Some(_free)) => match action {
                Offline::ReleaseVips => {
                    engine::node::withdraw_unless_restarting(&plan.admin_socket, bgp).await
                }
                Offline::Cleanup => crate::bgp::announcer::withdraw_routes(bgp).await,
            },
        },
    };
    // (With `pin_dir = "off"` nothing of the program outlived lbd: there
    // is nothing to keep forwarding.)
    let keep_dataplane = action == Offline::Cleanup
        && plan.pin_dir.is_some()
        && bgp
            .as_ref()
            .is_err_and(|error| !crate::bgp::bird::is_not_running(error));
    if let Err(error) = &bgp {
        let anyway = match (action, keep_dataplane) {
            (Offline::ReleaseVips, _) => "removing the addresses anyway",
            (Offline::Cleanup, false) => "BIRD is not running: removing the addresses and pins anyway",
            (Offline::Cleanup, true) => "BIRD may still announce this node: removing the addresses, but keeping the program attached and its pins",
        };
        warn!(error = %format!("{error:#}"), "withdrawing the BGP announcements failed; {anyway}");
    }
    let local = release_locally(&plan, action, keep_dataplane).await;
    if let (Offline::Cleanup, Some(config)) = (action, config) {
        // A cleanup is a stop for good: the runtime changes a restart
        // would keep are forgotten, the next start is from the file (see
        // `engine::running_state`). Found by the config's own settings.
        engine::running_state::forget(config);
    }
    if action == Offline::Cleanup && bgp.is_ok() && local.is_ok() {
        // Nothing is held any more.
        if let Some(record) = held::record_path(&plan.admin_socket) {
            let _ = std::fs::remove_file(record);
        }
    }
    let bird = plan
        .bgp
        .as_ref()
        .map(|b| b.bird_socket.display().to_string())
        .unwrap_or_default();
    match (bgp, local) {
        (Ok(()), local) => local,
        (Err(error), local) if keep_dataplane => {
            let error = error.context(format!(
                "withdrawing the BGP announcements through BIRD (control socket {bird}) failed, and BIRD may still run and announce this node, so the routers may still send it flows: the program is left attached and its pins in place to forward them (the VIP addresses were removed). Fix what the error names (BIRD's configuration: `birdc configure` must succeed; its control socket; or the routes file lbd writes), or stop BIRD, then run `lbd --cleanup` again"
            ));
            match local {
                Ok(()) => Err(error),
                Err(local) => Err(local.context(format!("{error:#}; and the rest failed"))),
            }
        }
        (Err(error), Ok(())) => {
            Err(error.context("withdrawing the BGP announcements through BIRD (the rest was done)"))
        }
        (Err(error), Err(local)) => Err(local.context(format!(
            "withdrawing the BGP announcements through BIRD failed too: {error:#}"
        ))),
    }
}

/// The offline action's own part: the VRRP addresses off the interface
/// and, for a cleanup, a stale admin socket, the VRRP state files, every
/// pin, lbd's cls_bpf filters and the `forwarding` settings. An interface
/// that no longer exists took its addresses and filters with it: the rest
/// is done.
///
/// With `keep_dataplane` (BIRD may still announce the node), a cleanup
/// leaves the pins, the filters and the `forwarding` settings: the program
/// must go on forwarding what the routers still send.
async fn release_locally(
    plan: &crate::ownership::held::Held,
    action: Offline,
    keep_dataplane: bool,
) -> anyhow::Result<()> {
    let netlink = crate::netlink::Netlink::connect()?;
    let interface = match netlink.interface(&plan.interface).await {
        Ok(interface) => Some(interface),
        Err(crate::netlink::NetlinkError::NoSuchInterface(_)) => {
            warn!(
                interface = %plan.interface,
                "interface {} no longer exists: its VIP addresses and tc filters went with it; nothing to remove there (the tc filters left on `lo` for it still go)",
                plan.interface
            );
            None
        }
        Err(error) => return Err(error.into()),
    };
    if interface.is_some() {
        crate::ownership::held::remove_addresses(&netlink, &plan.interface, &plan.addresses)
            .await?;
    }
    if action == Offline::Cleanup {
        // The admin socket an lbd that was killed or crashed left (nobody
        // listens on it; a live one or a file that is not a socket stays).
        match crate::api::server::remove_stale_socket(&plan.admin_socket).await {
            Ok(true) => info!(socket = %plan.admin_socket.display(), "stale admin socket removed"),
            Ok(false) => {}
            Err(error) => warn!(%error, "admin socket left in place"),
        }
        // The VRRP state files (named after the admin socket): a release
        // keeps them (a restart may follow and resume mastership); a
        // cleanup forgets them.
        remove_vrrp_state_files(&plan.admin_socket);
        if keep_dataplane {
            info!("the program stays attached, its pins, tc filters and `forwarding` settings in place, while BIRD may announce this node");
            return Ok(());
        }
        if let Some(dir) = &plan.pin_dir {
            let pins = crate::pinning::PinDir::new(dir);
            let removed = pins.remove_all()?;
            info!(dir = %dir.display(), removed = removed.len(), "pinned links (XDP or tc) and maps removed");
        }
        // What cannot be pinned: the clsact + cls_bpf filters of an lbd
        // with `attach = "tc"` on a kernel without tcx, which outlive it.
        // Those on `lo` (checks through a tunnel) outlive the interface
        // too: with it gone, the ones whose interface no longer exists.
        match &interface {
            Some(interface) => {
                crate::ownership::cls_bpf::remove_left_filters(
                    &interface.name,
                    interface.index,
                    None,
                )
                .await?;
            }
            None => {
                crate::ownership::cls_bpf::remove_orphan_hc_filters().await?;
            }
        }
        crate::ownership::held::restore(&plan.forwarding);
    }
    Ok(())
}

/// Removes the VRRP state files of the lbd whose admin socket is
/// `admin_socket` (`<stem>.vrrp-<vrid>-<family>.state` beside it, see
/// `engine::start::vrrp_resume::vrrp_state_file`), whatever instances its config has now.
fn remove_vrrp_state_files(admin_socket: &Path) {
    let (Some(dir), Some(stem)) = (admin_socket.parent(), admin_socket.file_stem()) else {
        return;
    };
    let prefix = format!("{}.vrrp-", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".state") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether an lbd answers on the admin socket (its API status).
async fn lbd_answers(socket: &Path) -> bool {
    let client = crate::api::client::Client::new(socket, Duration::from_secs(1));
    client.status().await.is_ok()
}
