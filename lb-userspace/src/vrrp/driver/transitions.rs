//! What a change of state does, in order ([`transition_steps`]): the
//! record, the addresses, the notify. Apart so the order is in one place.

use crate::vrrp::Action;

use super::record::Recorded;

/// One thing a change of state does (see [`transition_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Writes this state to the state file.
    Record(Recorded),
    /// Adds the addresses and announces them.
    TakeAddresses,
    /// Stops announcing and removes the addresses.
    ReleaseAddresses,
    /// Queues the notify command for this state.
    Notify(&'static str),
}

/// What `action` does, in order, if it is a change of state (`None`
/// otherwise). A step-down records its new state before it releases the
/// addresses: the release awaits netlink (dumps and a delete per
/// address), and a restart that aborts it meanwhile ([`Instance::abandon`](super::instance::Instance::abandon))
/// must find no master record, or the next lbd would resume, addresses
/// and announcements included, a mastership this node just lost.
pub(super) fn transition_steps(action: Action) -> Option<&'static [Step]> {
    match action {
        Action::BecomeMaster => Some(&[Step::TakeAddresses, Step::Notify("master")]),
        Action::BecomeBackup => Some(&[
            Step::Record(Recorded::Backup),
            Step::ReleaseAddresses,
            Step::Notify("backup"),
        ]),
        Action::BecomeInitialize => Some(&[
            Step::Record(Recorded::Stopped),
            Step::ReleaseAddresses,
            Step::Notify("stopped"),
        ]),
        Action::SendAdvert { .. } | Action::Reannounce | Action::Reclaim | Action::Refresh => None,
    }
}
