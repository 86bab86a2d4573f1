//! keepalived's reconciliation of `nopreempt`, `preempt_delay`,
//! `state MASTER` and priority 255, done once the instance is read, so
//! that lbd preempts where keepalived did.

use crate::import::model::{Note, Sourced, Vrrp};

/// keepalived's own reconciliation of preemption (vrrp.c,
/// vrrp_complete_instance), with a note on each reset: priority 255
/// clears nopreempt; `state MASTER` (written, or derived from priority
/// 255 without a state) clears nopreempt and preempt_delay; nopreempt
/// clears preempt_delay. Carried over as written, a node keepalived let
/// preempt did not (a pair copied from one block, `state MASTER` and
/// `nopreempt` on node 1, never took its VIP back).
pub(super) fn reconcile_preemption(vrrp: &mut Vrrp) {
    let owner = vrrp
        .priority
        .as_ref()
        .filter(|p| p.value == u8::MAX)
        .cloned();
    if let Some(p) = &owner {
        clear_nopreempt(vrrp, &format!("priority 255 ({})", p.origin));
    }
    let master = match (&vrrp.state, &owner) {
        (Some(state), _) if state.value == "MASTER" => {
            Some(format!("state MASTER ({})", state.origin))
        }
        (None, Some(p)) => Some(format!(
            "priority 255 ({}), its start state MASTER then",
            p.origin
        )),
        _ => None,
    };
    if let Some(why) = &master {
        clear_nopreempt(vrrp, why);
        if let Some(delay) = vrrp.preempt_delay.take() {
            vrrp.notes.push(Note::new(
                &delay.origin,
                format!(
                    "{}: keepalived clears it with {why}: not carried over",
                    delay.what
                ),
            ));
        }
    }
    if let (Some(was), Some(delay)) = (nopreempt(vrrp), vrrp.preempt_delay.clone()) {
        vrrp.preempt_delay = None;
        vrrp.notes.push(Note::new(
            &delay.origin,
            format!(
                "{}: keepalived clears it with nopreempt ({}): not carried over",
                delay.what, was.origin
            ),
        ));
    }
}

/// The instance's `nopreempt`, if written (and not cleared).
fn nopreempt(vrrp: &Vrrp) -> Option<Sourced<bool>> {
    vrrp.preempt.as_ref().filter(|p| !p.value).cloned()
}

/// Clears the instance's `nopreempt`, as keepalived does with `why`,
/// with a note: written as preempt = true.
fn clear_nopreempt(vrrp: &mut Vrrp, why: &str) {
    let Some(was) = nopreempt(vrrp) else {
        return;
    };
    vrrp.notes.push(Note::new(
        &was.origin,
        format!(
            "{}: keepalived clears it with {why}, so this node preempts: written as preempt = true",
            was.what
        ),
    ));
    vrrp.preempt = Some(Sourced::new(
        true,
        &was.origin,
        format!("{}, cleared by keepalived with {why}", was.what),
    ));
}
