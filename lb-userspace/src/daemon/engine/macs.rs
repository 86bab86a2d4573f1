//! Backends' MAC addresses for DSR at L2, from the neighbour table.

use std::{net::IpAddr, time::Duration};

use tracing::{info, warn};

use super::Engine;
use crate::model::Model;

/// How long start-up waits for backends' MACs before going on without them.
pub(super) const INITIAL_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long adding a backend at run time waits for its MAC.
const RUNTIME_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

impl Engine {
    /// Looks backends' MACs up again; applies what changed.
    pub(crate) async fn refresh_macs(&mut self) {
        let model = self.model.clone();
        let before = self.macs.clone();
        self.resolve_macs(&model, Duration::ZERO).await;
        if self.macs != before {
            match self.commit(model) {
                Ok(report) => info!(?report, "backend MACs changed; maps updated"),
                Err(error) => warn!(%error, "updating the maps after a MAC change failed"),
            }
        }
    }

    /// Resolves the MACs of `model`'s backends that have none configured,
    /// waiting up to `timeout` for new ones. A MAC that vanished from the
    /// neighbour table is kept until another shows up.
    pub(crate) async fn resolve_macs(&mut self, model: &Model, timeout: Duration) {
        // Only DSR at L2 sends to a backend's MAC; routed modes use the FIB.
        let wanted: Vec<IpAddr> = model
            .vips
            .values()
            .filter(|v| v.config.forwarding == lb_common::Mode::DsrL2)
            .flat_map(|v| v.backends.values())
            .filter(|b| b.config.mac.is_none())
            .map(|b| b.config.address)
            .collect();
        match self
            .netlink
            .resolve(self.interface.index, &wanted, timeout)
            .await
        {
            Ok(found) => self.macs.extend(found),
            Err(error) => warn!(%error, "reading the neighbour table failed"),
        }
        if timeout > Duration::ZERO {
            for address in wanted.iter().filter(|a| !self.macs.contains_key(a)) {
                warn!(%address, "backend MAC unknown (no neighbour entry): it takes no traffic until it resolves");
            }
        }
    }

    /// Waits briefly for the MACs of backends just added.
    pub(crate) async fn resolve_new(&mut self, model: &Model) {
        self.resolve_macs(model, RUNTIME_RESOLVE_TIMEOUT).await;
    }

    /// The MAC frames to `address` go to, if known.
    pub(crate) fn mac_of(&self, address: IpAddr) -> Option<[u8; 6]> {
        self.macs.get(&address).copied()
    }
}
