//! The last step of a start, once the program is attached: the hooks and
//! tc filters previous lbds left go, then replication and the VRRP
//! instances that did not resume start.

use tokio::sync::mpsc;

use super::vrrp_resume::VrrpStart;
use crate::{
    daemon::{engine::Engine, replication::Replication},
    dataplane::Hooked,
    vrrp::driver::{wait_for_notifies, Instance, NOTIFY_GRACE},
};

impl Engine {
    /// The rest of [`Self::start_serving`] once the program is attached:
    /// the hooks previous lbds left go, then replication and VRRP start.
    /// Returns the replication's stream of received batches, if any.
    pub(super) async fn serve(
        &mut self,
        vrrp_starts: &mut [VrrpStart],
    ) -> anyhow::Result<Option<mpsc::Receiver<crate::sync::ReceivedBatch>>> {
        let engine = self;
        // A switch of `attach` across a restart: the hook the previous lbd
        // used goes, now that this one runs. The hook this one runs, which
        // is tc where `xdp_mode = "auto"` could not use generic XDP (see
        // `dataplane::hook_choice`): a previous lbd's XDP link goes then.
        engine
            .dataplane
            .remove_other_hook(&engine.interface.name, engine.hooked.attach())?;
        // A change of `interface` across a restart: the links a previous
        // lbd pinned on another interface go, or the program there would
        // go on forwarding with this lbd's maps.
        engine
            .dataplane
            .remove_other_interfaces(&engine.interface.name)?;
        engine.remove_left_tc_filters().await;
        // Only now does no previous lbd's program change the tables this
        // one carries flows over from: their final copy.
        engine.dataplane.finish_adoption();
        let mut sync_rx = None;
        let node_id = crate::daemon::replication::pair_node_id(&hostname(), &engine.interface.name);
        if let Some(settings) = engine.config.sync.clone() {
            let node_id = crate::daemon::replication::mesh_node_id(
                settings.listen,
                &hostname(),
                &engine.interface.name,
            );
            let (replication, rx) = Replication::start_mesh(&settings, &node_id).await?;
            engine.replication = Some(replication);
            sync_rx = Some(rx);
        }
        if let Err(error) = engine.start_vrrp(vrrp_starts, &node_id, &mut sync_rx).await {
            let instances = std::mem::take(&mut engine.vrrp);
            let notifies: Vec<_> = instances.iter().map(Instance::notifies).collect();
            for instance in instances {
                instance.stop().await;
            }
            // lbd exits next: the "stopped" commands are let finish.
            wait_for_notifies(&notifies, NOTIFY_GRACE).await;
            return Err(error);
        }
        engine.track();
        Ok(sync_rx)
    }

    /// Removes the cls_bpf filters a dead lbd left on the interface's
    /// ingress (`attach = "tc"` on a kernel without tcx), now that this
    /// lbd's hook runs; this lbd's own filter, if it attached through
    /// cls_bpf too, stays. A failure is logged: the stale filter only runs
    /// on what this lbd's program lets through.
    async fn remove_left_tc_filters(&mut self) {
        let keep = match self.hooked {
            Hooked::TcClsBpf => self
                .dataplane
                .tc_program()
                .ok()
                .and_then(|program| program.info().ok())
                .map(|info| info.id()),
            Hooked::Xdp(_) | Hooked::Tcx => None,
        };
        if let Err(error) = crate::ownership::cls_bpf::remove_left_filters(
            &self.interface.name,
            self.interface.index,
            keep,
        )
        .await
        {
            tracing::warn!(error = %format!("{error:#}"), "removing the tc filters a previous lbd left failed; `tc filter show dev {} ingress` lists them", self.interface.name);
        }
    }
}

/// The host name, to name this node to its replication peer.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "lbd".to_owned())
}
