//! The note before a drain's wait on a node that is not the VRRP master
//! of the VIP's address: the flows it counts are not the master's.

use lb_userspace::{
    api::client::Client,
    vip_id::VipId,
    vrrp::{driver::InstanceStatus, State},
};

use crate::output;

/// Before `--wait` (or `backend wait`) watches a drain: a note when this
/// node is not the VRRP master of the VIP's address, as the status says
/// (one look; nothing is noted when it cannot be had). A backup forwards
/// none of the VIP's traffic, so the flows it counts are not the
/// master's: the wait that matters is the master's. On stderr (see
/// [`output::warning`]); returned for the `--json` outcome line's
/// `warnings`.
pub(super) async fn vrrp_note(client: &Client, vip: VipId) -> Option<String> {
    let status = client.status().await.ok()?;
    let note = not_master_note(&status.vrrp, vip)?;
    output::note(&note);
    Some(note)
}

/// The note of [`vrrp_note`] for `vip` given the node's VRRP `instances`
/// (None: no instance moves its address, or the one that does is master).
pub(super) fn not_master_note(instances: &[InstanceStatus], vip: VipId) -> Option<String> {
    let instance = instances
        .iter()
        .find(|i| i.addresses.contains(&vip.address))?;
    if instance.state == State::Master {
        return None;
    }
    let master = instance
        .master
        .map_or(String::new(), |m| format!(", master {m}"));
    Some(format!(
        "this node is not the VRRP master of {vip}'s address (vrid {} is {}{master}): it forwards none of the VIP's traffic now, so the flows counted here are not the master's: wait on the master (the drain reaches it over the sync channel when both share backend states; drain there too when the answer named it as not taking them)",
        instance.vrid, instance.state
    ))
}
