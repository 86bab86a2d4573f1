//! VRRP at start-up: which instances resume mastership before the load,
//! their demotion or stop when the start turns out otherwise, their state
//! files, and the start of the rest once the data plane serves.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use tokio::sync::mpsc;
use tracing::warn;

use super::super::Engine;
use crate::{
    config::{Config, VrrpConfig},
    daemon::replication::Replication,
    dataplane::LeftHook,
    netlink::{Interface, Netlink},
    vrrp::driver::{wait_for_notifies, Instance, Prepared, NOTIFY_GRACE},
};

impl Engine {
    /// Starts replication and the VRRP instances in `vrrp_starts` that do
    /// not run yet, and keeps them all in `self.vrrp`.
    pub(super) async fn start_vrrp(
        &mut self,
        vrrp_starts: &mut [VrrpStart],
        node_id: &str,
        sync_rx: &mut Option<mpsc::Receiver<crate::sync::ReceivedBatch>>,
    ) -> anyhow::Result<()> {
        for (vrrp, start) in self.config.vrrp.clone().into_iter().zip(vrrp_starts) {
            if self.replication.is_none() {
                if let Some((replication, rx)) = Replication::start_pair(&vrrp, node_id).await? {
                    self.replication = Some(replication);
                    *sync_rx = Some(rx);
                }
            }
            let instance = match std::mem::replace(start, VrrpStart::Taken) {
                VrrpStart::Resumed(instance) => *instance,
                VrrpStart::Later(prepared, state_file) => {
                    Instance::start(
                        *prepared,
                        &self.interface,
                        self.netlink.clone(),
                        state_file,
                        false,
                        // Replication with the peer: preempt only once its
                        // flows are here (any instance may carry it).
                        self.config.vrrp.iter().any(|v| v.sync_peer.is_some()),
                    )
                    .await?
                }
                VrrpStart::Taken => continue,
            };
            self.vrrp.push(instance);
        }
        Ok(())
    }
}

/// Whether VRRP instance `vrrp` resumes mastership at this start: its state
/// file says this node was master moments ago (see [`Instance::resumes`]),
/// a pinned data plane is there to adopt (`adoptable`, see
/// [`pinned_dataplane_fits`](super::vip_sizing::pinned_dataplane_fits)), and the interface runs the program the
/// last lbd left forwarding on it (`left`, see `dataplane::left_hook`).
/// Without a data plane to adopt (`pin_dir = "off"`, the pins gone or not
/// fitting), the previous program and its flows went: resumed, this node
/// would hold the VIPs with an empty data plane while the peer, about to
/// take over, holds the replicated flows (NAT'd ones too). Without the
/// program running (the interface re-created meanwhile, its link
/// detached), the VIPs would be this node's, and local, with no program
/// in front of them until this start attaches: the kernel would reset
/// every connection, established ones too. Either way it starts as the
/// protocol says, as backup, as after a crash.
pub(super) fn resumes_mastership(
    vrrp: &VrrpConfig,
    state_file: Option<&Path>,
    adoptable: bool,
    left: &LeftHook,
) -> bool {
    if !Instance::resumes(vrrp, state_file) {
        return false;
    }
    if !adoptable {
        warn!(
            vrid = vrrp.vrid,
            "VRRP: was master until moments ago, but there is no pinned data plane to adopt (pin_dir is off, or its pins are gone or do not fit, e.g. another release's layout): not resuming mastership, the peer takes over"
        );
        return false;
    }
    if !left.runs() {
        warn!(
            vrid = vrrp.vrid,
            why = %left,
            "VRRP: was master until moments ago, but the interface does not run the program the last lbd left forwarding: not resuming mastership; the instance starts once this lbd's program runs, as backup (the peer takes over)"
        );
        return false;
    }
    true
}

/// The instances that resumed mastership before a load that adopted no
/// pinned data plane after all (a pinned map's layout changed): they step
/// down (priority 0, so the peer, which holds the replicated flows, takes
/// over after its skew time; "stopped" recorded) and start again later as
/// the protocol says, as [`resumes_mastership`] would have decided. Their
/// "stopped" notify commands end before the instances start again, which
/// keeps the commands in order.
pub(super) async fn demote_resumed(
    vrrp_starts: &mut [VrrpStart],
    config: &Config,
    interface: &Interface,
    netlink: &Netlink,
) -> anyhow::Result<()> {
    let mut notifies = Vec::new();
    let mut configs = Vec::new();
    for start in vrrp_starts.iter_mut() {
        if !matches!(start, VrrpStart::Resumed(_)) {
            continue;
        }
        if let VrrpStart::Resumed(instance) = std::mem::replace(start, VrrpStart::Taken) {
            warn!(
                vrid = instance.config().vrid,
                "resumed VRRP mastership, but the pinned data plane was not adopted (it starts empty): stepping down"
            );
            notifies.push(instance.notifies());
            configs.push((instance.config().clone(), start));
            instance.stop().await;
        }
    }
    wait_for_notifies(&notifies, NOTIFY_GRACE).await;
    for (vrrp, start) in configs {
        let state_file = vrrp_state_file(config, &vrrp);
        let prepared = Instance::prepare(vrrp, config, interface, netlink).await?;
        *start = VrrpStart::Later(Box::new(prepared), state_file);
    }
    Ok(())
}

/// Stops the instances that resumed mastership before a start that failed:
/// priority 0, so the backup takes over now, and "stopped" recorded, so
/// the next lbd does not resume.
pub(super) async fn stop_resumed(vrrp_starts: &mut [VrrpStart]) {
    let mut notifies = Vec::new();
    for start in vrrp_starts {
        if let VrrpStart::Resumed(instance) = std::mem::replace(start, VrrpStart::Taken) {
            tracing::warn!(
                vrid = instance.config().vrid,
                "start-up failed after resuming VRRP mastership; stepping down"
            );
            notifies.push(instance.notifies());
            instance.stop().await;
        }
    }
    // lbd exits next: the "stopped" commands are let finish.
    wait_for_notifies(&notifies, NOTIFY_GRACE).await;
}

/// A configured VRRP instance at start-up: started at once because it
/// resumes mastership, or still to start (once the data plane serves),
/// with its state file.
pub(super) enum VrrpStart {
    /// Started before the data plane loaded.
    Resumed(Box<Instance>),
    /// Checked, to start last.
    Later(Box<Prepared>, Option<PathBuf>),
    /// Taken: kept by the engine, or stopped.
    Taken,
}

/// Where a VRRP instance records its state for the next lbd: beside the
/// admin socket (a tmpfs such as /run/lbd, gone at reboot), e.g.
/// `/run/lbd/lbd.vrrp-51-v4.state`.
pub(crate) fn vrrp_state_file(
    config: &Config,
    vrrp: &crate::config::VrrpConfig,
) -> Option<PathBuf> {
    let family = match vrrp.addresses.first() {
        Some(IpAddr::V6(_)) => "v6",
        _ => "v4",
    };
    // Named after the admin socket too: one per lbd even where several
    // share a directory.
    let stem = config.admin_socket.file_stem()?.to_string_lossy();
    config
        .admin_socket
        .parent()
        .map(|dir| dir.join(format!("{stem}.vrrp-{}-{family}.state", vrrp.vrid)))
}

#[cfg(test)]
mod resume_tests {
    use super::super::vip_sizing::{pinned_dataplane_fits, pinned_vip_capacity};
    use super::*;
    use crate::test_scratch::ScratchDir;

    /// A config with one VRRP instance (VRID 51, 1 s adverts) whose admin
    /// socket is in `dir`, and `pin_dir` (None: "off").
    fn config(dir: &Path, pin_dir: Option<PathBuf>) -> Config {
        let mut config = Config::from_toml_str(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vrrp]]\nvrid = 51\npriority = 150\nadvert_interval_ms = 1000\n\
             addresses = [\"198.18.0.100\"]\n",
            "lbd.toml",
        )
        .unwrap();
        config.admin_socket = dir.join("lbd.sock");
        config.pin_dir = pin_dir;
        config
    }

    /// The state file says master moments ago (the lbd before was master
    /// and stopped for a restart), but with `pin_dir = "off"` no data
    /// plane outlived it: the next lbd does not resume mastership (the
    /// peer is about to take over with the replicated flows), nor with a
    /// pin directory that holds nothing. The same record with a data
    /// plane to adopt resumes.
    #[test]
    fn no_pinned_data_plane_no_resumed_mastership() {
        let dir = ScratchDir::new("resume");
        let off = config(dir.path(), None);
        let vrrp = &off.vrrp[0];
        let state_file = vrrp_state_file(&off, vrrp).unwrap();
        let now = crate::clock::monotonic_ns();
        std::fs::write(
            &state_file,
            format!("restarting {} 100\n", now - 500_000_000),
        )
        .unwrap();
        assert!(Instance::resumes(vrrp, Some(&state_file)), "a fresh record");

        let fits = |config: &Config| {
            pinned_dataplane_fits(config, pinned_vip_capacity(config).expect("read"))
        };
        let runs = LeftHook::Runs(crate::dataplane::LeftAt::Xdp);
        assert!(!fits(&off));
        assert!(!resumes_mastership(
            vrrp,
            Some(&state_file),
            fits(&off),
            &runs
        ));
        let empty = config(dir.path(), Some(dir.join("pins")));
        assert!(!fits(&empty));
        assert!(!resumes_mastership(
            vrrp,
            Some(&state_file),
            fits(&empty),
            &runs
        ));
        assert!(
            !pinned_dataplane_fits(&off, Some(64)),
            "pin_dir off: nothing to adopt"
        );
        assert!(
            pinned_dataplane_fits(&empty, Some(64)),
            "a capacity that holds the file's VIP"
        );
        assert!(resumes_mastership(vrrp, Some(&state_file), true, &runs));
    }

    /// A fresh restart record and pins that fit, but the interface does
    /// not run the program the last lbd left forwarding: re-created
    /// meanwhile (its pinned link died with the old device), the link
    /// detached, or lbd's program shadowed at tc. The next lbd does not
    /// resume (it would take the VIPs with no program in front of them
    /// until its attach), and says why. Before, the pins alone decided.
    #[test]
    fn a_pinned_program_the_interface_does_not_run_is_no_resumed_mastership() {
        let dir = ScratchDir::new("resume-hook");
        let pinned = config(dir.path(), Some(dir.join("pins")));
        let vrrp = &pinned.vrrp[0];
        let state_file = vrrp_state_file(&pinned, vrrp).unwrap();
        let now = crate::clock::monotonic_ns();
        std::fs::write(
            &state_file,
            format!("restarting {} 100\n", now - 500_000_000),
        )
        .unwrap();
        assert!(pinned_dataplane_fits(&pinned, Some(64)));
        let not_running = [
            LeftHook::Stale {
                hook: crate::config::Attach::Xdp,
                program: 7,
            },
            LeftHook::Stale {
                hook: crate::config::Attach::Tc,
                program: 8,
            },
            LeftHook::Shadowed { by: 30 },
            LeftHook::Nothing,
            LeftHook::Unknown("EPERM".to_owned()),
        ];
        for left in not_running {
            let mut resumed = true;
            let logs = crate::test_logs::logs_of(|| {
                resumed = resumes_mastership(vrrp, Some(&state_file), true, &left);
            });
            assert!(!resumed, "{left:?}");
            assert!(logs.contains("not resuming"), "{logs}");
        }
        for at in [
            crate::dataplane::LeftAt::Xdp,
            crate::dataplane::LeftAt::Tcx,
            crate::dataplane::LeftAt::ClsBpf,
        ] {
            assert!(resumes_mastership(
                vrrp,
                Some(&state_file),
                true,
                &LeftHook::Runs(at)
            ));
        }
    }
}
