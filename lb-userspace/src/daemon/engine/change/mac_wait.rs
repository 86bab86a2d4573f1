//! The MACs a change brings: the short wait for backends whose MAC is not
//! known, and what follows if it finds none (a refusal when a serving VIP
//! would stop serving, else warnings; a dry run's placeholder).

use crate::{
    daemon::engine::{macs, Engine},
    model::Model,
};

impl Engine {
    /// The backends `next` brings whose MAC is neither configured nor
    /// known (see `macs::brought_unresolved`): only those make a change
    /// wait.
    pub(super) fn brought_unresolved(&self, next: &Model) -> Vec<std::net::IpAddr> {
        macs::brought_unresolved(&self.model, next, |a| self.mac_of(a).is_some())
    }

    /// Waits briefly for the MACs of the backends `next` brings, if any.
    pub(super) async fn wait_for_brought_macs(&mut self, next: &Model) {
        let brought = self.brought_unresolved(next);
        if !brought.is_empty() {
            self.resolve_new(&brought).await;
        }
    }

    /// After [`Self::wait_for_brought_macs`] (or, in a dry run, without
    /// it): the answer's warnings for the backends `next` brings to
    /// DSR-L2 whose MAC is still not known, or why the change is refused
    /// (it would take a VIP that serves now out of service, see
    /// [`mac_refusal`]). A dry run is never refused here: it cannot know
    /// what the wait finds, and its warnings say so. On a refusal the
    /// MACs the wait found for the change are dropped again, so the
    /// engine is as it was.
    pub(super) fn macs_after_wait(
        &mut self,
        next: &Model,
        dry_run: bool,
    ) -> Result<Vec<String>, String> {
        let vips = macs::unresolved_vips(&self.model, next, &|a| self.mac_of(a));
        if !dry_run {
            if let Some(why) = mac_refusal(&vips) {
                self.forget_unwanted_macs();
                return Err(why);
            }
        }
        Ok(mac_warnings(&vips, !dry_run))
    }
}

/// The MAC a dry run assumes for a backend whose MAC is not known yet.
pub(super) const PLACEHOLDER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// How long a change waits for the MACs it brings, for its messages.
fn mac_wait_text() -> String {
    format!("{} s", macs::RUNTIME_RESOLVE_TIMEOUT.as_secs_f64())
}

/// Why a change is refused after its MAC wait (see
/// `macs::unresolved_vips`): it takes a VIP that serves now out of
/// service, as no backend of it has a MAC DSR-L2 could send to. The
/// VIPs and their backends named, with what to do.
pub(super) fn mac_refusal(vips: &[macs::UnresolvedVip]) -> Option<String> {
    let refusals: Vec<String> = vips
        .iter()
        .filter(|v| v.stops_serving)
        .map(|v| {
            let backends: Vec<String> = v.unresolved.iter().map(|a| a.to_string()).collect();
            let what_to_do = match v.was {
                Some(was) if was != lb_common::Mode::DsrL2 => format!(
                    "keep the VIP's current mode ({}) or fix the backends",
                    was.name()
                ),
                _ => "keep the backends' `mac` or fix the backends".to_owned(),
            };
            format!(
                "VIP {}: forwarding = \"dsr-l2\" sends to its backends' MACs, and none of its backends has one: no neighbour entry for {} after waiting {} (dsr-l2 needs backends on this node's L2 segment, or their `mac` set), so the VIP, which takes packets now, would take none; {what_to_do}",
                v.vip,
                backends.join(", "),
                mac_wait_text()
            )
        })
        .collect();
    (!refusals.is_empty()).then(|| refusals.join("; "))
}

/// The answer's warnings for the backends a change brings to DSR-L2
/// without a known MAC (see `macs::unresolved_vips`): one per backend,
/// saying what it takes and what happens to its tracked flows. `waited`:
/// after the change's wait; a dry run cannot wait, so its warnings say
/// what happens if the MAC does not resolve.
pub(super) fn mac_warnings(vips: &[macs::UnresolvedVip], waited: bool) -> Vec<String> {
    let wait = mac_wait_text();
    let mut warnings = Vec::new();
    for v in vips {
        for address in &v.unresolved {
            let tracked = v.tracked.contains(address);
            let of = format!("backend {address} of VIP {}", v.vip);
            let warning = if waited {
                let flows = if tracked {
                    "dsr-l2 sends it nothing, and its tracked flows are rehashed to the VIP's backends whose MAC is known, until it resolves"
                } else {
                    "dsr-l2 sends it nothing until it resolves"
                };
                format!("{of}: no MAC after waiting {wait} (no neighbour entry: dsr-l2 needs backends on this node's L2 segment): {flows}")
            } else {
                let flows = if tracked {
                    ", and its tracked flows are rehashed to the VIP's backends whose MAC is known,"
                } else {
                    ""
                };
                let refused = if v.stops_serving {
                    "; no backend of the VIP has a MAC yet: if none resolves, the change is refused"
                } else {
                    ""
                };
                format!("{of}: MAC not known yet (no neighbour entry; dsr-l2 needs backends on this node's L2 segment): the change waits up to {wait} for it, and the plan assumes it resolves; if it does not, dsr-l2 sends it nothing{flows} until it resolves{refused}")
            };
            warnings.push(warning);
        }
    }
    warnings
}
