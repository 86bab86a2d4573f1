//! Start-up: load (or adopt) the data plane, fill it from the config,
//! attach it, then start replication and VRRP, in the order that keeps a
//! restarting master's VIPs and flows.
//!
//! This file holds the start's first step (the records a previous lbd
//! left, and the VRRP instances that resume mastership); `load_and_attach`
//! the data plane's part, `serve` the rest once it is attached, and
//! `failed_start` what a start that fails puts back.

mod adopted_health;
mod failed_start;
mod fresh_node;
mod load_and_attach;
mod serve;
mod vip_sizing;
mod vrrp_resume;

pub(super) use adopted_health::seed_health;
use vip_sizing::*;
use vrrp_resume::*;

use std::path::Path;

use super::{admin_state, running_state, Engine, EngineEvents};
use crate::{
    config::Config, dataplane::LeftHook, netlink::Netlink, pinning::PinDir, vrrp::driver::Instance,
};

impl Engine {
    /// Loads the data plane, fills it from `config` and attaches it.
    /// Returns the engine and the stream of health transitions.
    /// `previous`: the lbd that ran before this one, as its record of what
    /// it held names it (None: no record of this boot).
    pub(crate) async fn start(
        config_path: &Path,
        config: Config,
        previous: Option<running_state::Writer>,
    ) -> anyhow::Result<(Self, EngineEvents)> {
        // Generic XDP with NAT or tunnelled VIPs is refused before
        // anything is touched (see `dataplane::hook_choice`); `auto`
        // decides at the attach.
        // The runtime changes a previous lbd recorded (VIPs, backends and
        // guards changed through the API), kept while the config file is
        // the one they were made on: the start serves them, so a backend
        // added at run time keeps its flows (see `running_state`).
        // Only the record the lbd that ran last wrote: another build that
        // keeps none may have run since (see `running_state`).
        let (config, running) =
            running_state::RunningRecord::load(config_path, config, previous.as_ref());
        // The backends' drains and maintenance a previous lbd recorded,
        // before anything is touched: a file that cannot be trusted
        // stops the start here (see `admin_state`).
        let admin = admin_state::AdminRecord::load(&config, previous.as_ref())?;
        // The maps a previous start staged and did not pin under their
        // names (it stopped between its program swap and that), pinned or
        // removed before the pins decide the VIP capacity and the resume:
        // both read this one capacity.
        let pinned_vips = pinned_vip_capacity(&config)?;
        let netlink = Netlink::connect()?;
        let interface = netlink.interface(&config.interface).await?;
        // A restart that resumes mastership speaks first: the backup's
        // master-down timer has run since the last lbd's last advert, and
        // the rest of the start (the verifier, neighbour resolution) may
        // take longer than what is left of it. The pinned program forwards
        // meanwhile. Instances that do not resume start last, once the data
        // plane serves: they may become master.
        // If the start fails after that, the resumed instances step down
        // (priority 0, addresses released, state "stopped"): the backup
        // takes over at once, and a restart loop does not resume a node
        // that cannot serve, resetting the backup's timer each time.
        // Every instance's start-up checks (its addresses are not the
        // interface's own, the interface has an address to speak from) run
        // here, before anything is loaded or attached: a refused instance
        // leaves a fresh node as it was found.
        // A resume also needs the interface to run the program the last
        // lbd left forwarding, not only its pins: a device re-created
        // meanwhile (a new index) or a link detached runs none, and the
        // VIPs taken now would meet no program until the attach.
        let mut vrrp_starts = Vec::with_capacity(config.vrrp.len());
        let adoptable = pinned_dataplane_fits(&config, pinned_vips);
        let left = match &config.pin_dir {
            Some(dir) if adoptable && !config.vrrp.is_empty() => {
                crate::dataplane::left_hook(&PinDir::new(dir), &interface, &netlink).await
            }
            _ => LeftHook::Nothing,
        };
        for vrrp in &config.vrrp {
            let state_file = vrrp_state_file(&config, vrrp);
            let resumes = resumes_mastership(vrrp, state_file.as_deref(), adoptable, &left);
            let started = match Instance::prepare(vrrp.clone(), &config, &interface, &netlink).await
            {
                Ok(prepared) if resumes => Instance::start(
                    prepared,
                    &interface,
                    netlink.clone(),
                    state_file,
                    true,
                    false,
                )
                .await
                .map(|instance| VrrpStart::Resumed(Box::new(instance))),
                Ok(prepared) => Ok(VrrpStart::Later(Box::new(prepared), state_file)),
                Err(error) => Err(error),
            };
            match started {
                Ok(start) => vrrp_starts.push(start),
                Err(error) => {
                    stop_resumed(&mut vrrp_starts).await;
                    return Err(error);
                }
            }
        }
        let started = Self::start_serving(
            config_path,
            config,
            (admin, running),
            netlink,
            interface,
            pinned_vips,
            &mut vrrp_starts,
        )
        .await;
        if started.is_err() {
            stop_resumed(&mut vrrp_starts).await;
        }
        started
    }
}
