//! `run`'s periodic check of the VIPs for being local: a change is
//! logged once, not at every look.

use std::time::Instant;

use lb_decap::{
    config::Vip,
    local::{self, Change, VipWatch},
};
use tracing::{debug, info, warn};

/// The periodic check of the VIPs (when due): a VIP that stopped being
/// local is warned about once, one local again noted.
pub(super) fn recheck_vips(watch: &mut VipWatch, vips: &[Vip]) {
    let now = Instant::now();
    if !watch.due(now) {
        return;
    }
    let missing = match local::not_local(vips) {
        Ok(missing) => missing,
        Err(error) => {
            debug!(
                error = format!("{error:#}"),
                "could not check whether the VIPs are local"
            );
            watch.missing().clone()
        }
    };
    for change in watch.update(missing, now) {
        match change {
            Change::Lost(address) => warn!("{}", local::warning(address)),
            Change::Back(address) => info!(%address, "VIP is local again"),
        }
    }
}
