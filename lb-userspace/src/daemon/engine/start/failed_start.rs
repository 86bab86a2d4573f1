//! A start that fails: a node found without a data plane put back as it
//! was, and the VRRP instances stepped down (as for a node that lost its
//! hook), so a service manager's retries neither adopt nor resume.

use super::fresh_node::remove_fresh_dataplane;
use crate::{
    daemon::engine::Engine,
    vrrp::driver::{wait_for_notifies, NOTIFY_GRACE},
};

impl Engine {
    /// Puts a node this lbd found without a data plane back as it was,
    /// after its start failed once the data plane was loaded (the fill,
    /// the attach, a VRRP socket that would not open): the program
    /// detached and its pins removed, forwarding and `accept_local` as
    /// they were, so a service manager's retries do not leave a program
    /// forwarding for no lbd, nor pins the next start would adopt (it
    /// would take the node for one with a data plane, and leave it on
    /// when it failed).
    pub(super) fn undo_fresh_start(&mut self) {
        self.replication = None;
        self.checker.retain(|_| false);
        self.detach_hc_encap();
        self.restore_accept_local();
        self.restore_forwarding();
        remove_fresh_dataplane(&mut self.dataplane);
    }

    /// Steps down from every VRRP instance, `why` said in the log: for a
    /// start of lbd that fails after [`Self::start`] returned (which may
    /// have resumed mastership, see [`Self::fail_start`]), or a node that
    /// lost its interface: priority 0, so the backup takes over now, the
    /// addresses released and "stopped" recorded, so the next lbd (of a
    /// restart loop, or started again on the interface) does not resume.
    /// The "stopped" notify commands are kept (see `stepped_down`): they
    /// run on with lbd, and its exit waits for them.
    pub(crate) async fn step_down(&mut self, why: &str) {
        for instance in std::mem::take(&mut self.vrrp) {
            tracing::warn!(vrid = instance.config().vrid, "{why}; stepping down");
            self.stepped_down.push(instance.notifies());
            instance.stop().await;
        }
    }

    /// A start of lbd that failed after [`Self::start`] returned (the
    /// metrics listener, the privilege drop): steps down from VRRP (see
    /// [`Self::step_down`]) and lets the "stopped" commands finish, since
    /// lbd exits next; on a node this lbd found without a data plane, also
    /// detaches the program and removes its pins, as a start that fails
    /// inside [`Self::start`] does, so a service manager's retries do not
    /// adopt a program that forwards for no lbd.
    pub(crate) async fn fail_start(&mut self, why: &str) {
        self.step_down(why).await;
        let notifies = std::mem::take(&mut self.stepped_down);
        wait_for_notifies(&notifies, NOTIFY_GRACE).await;
        if self.fresh_start {
            self.undo_fresh_start();
        }
    }
}
