//! What a change of state does, step by step and in an order that a
//! restart aborting it midway cannot misread, and the driver carrying the
//! steps out.

use super::{record::Recorded, Driver};
use crate::vrrp::Action;

/// One thing a change of state does (see [`transition_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
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
/// address), and a restart that aborts it meanwhile ([`Instance::abandon`](super::Instance::abandon))
/// must find no master record, or the next lbd would resume, addresses
/// and announcements included, a mastership this node just lost.
fn transition_steps(action: Action) -> Option<&'static [Step]> {
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

impl Driver {
    /// Carries out the steps of the change of state `action` (see
    /// [`transition_steps`]), in order.
    pub(super) async fn transition(&mut self, action: Action) {
        for step in transition_steps(action).unwrap_or_default() {
            match *step {
                Step::Record(state) => self.record_state(state),
                Step::TakeAddresses => self.take_addresses().await,
                Step::ReleaseAddresses => self.release_addresses().await,
                Step::Notify(state) => self.notify(state),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::driver::{
        record::{restart_record, Record},
        tests::SECOND,
    };

    /// A step-down records its new state before it releases the
    /// addresses: the release awaits netlink (dumps and a delete per
    /// address), and a restart that aborts it meanwhile must find no
    /// master record, or the next lbd resumes a mastership just lost.
    #[test]
    fn a_step_down_records_its_state_before_releasing_the_addresses() {
        for action in [Action::BecomeBackup, Action::BecomeInitialize] {
            let steps = transition_steps(action).expect("a transition");
            let release = steps
                .iter()
                .position(|step| *step == Step::ReleaseAddresses)
                .expect("a step-down releases the addresses");
            let recorded = steps[..release]
                .iter()
                .find_map(|step| match step {
                    Step::Record(recorded) => Some(*recorded),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{action:?} records nothing before its release"));
            // What a restart aborting the release then writes: nothing to
            // resume on.
            let record = Record {
                state: recorded,
                at: 100 * SECOND,
                advertised: Some(100),
            };
            assert_eq!(restart_record(Some(record)), None, "{action:?}");
        }
        assert!(transition_steps(Action::BecomeMaster)
            .expect("a transition")
            .contains(&Step::TakeAddresses));
        assert_eq!(transition_steps(Action::Refresh), None);
    }
}
