//! VRRP tracking: what this node can serve sets its instances' priority;
//! and the watch on the interface and the hook lbd serves through, as the
//! kernel has them. An interface that is deleted (a bond or VLAN rebuilt,
//! a NIC's driver reloaded) or moved out of lbd's network namespace takes
//! the hook with it: lbd then counts as detached and down (BGP withdraws at
//! once), steps down from VRRP, and exits once an interface of the
//! configured name is back and up, so that its service manager starts it
//! again, which attaches to that interface and adopts the pinned maps. The
//! same when the hook is detached under a live interface, or, at tc, when
//! another tool's program is put ahead of lbd's (it would pass packets on
//! before lbd sees them). While the hook is lost, the status and metrics
//! say so (`attached`, `lbd_dataplane_attached`), and the wait is logged
//! at warn once a minute.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use tracing::{error, info, warn};

use super::Engine;
use crate::{
    config::AllDown,
    daemon::replication::Roles,
    dataplane::{HookSeen, Hooked, IngressFilter},
    mac::Mac,
    netlink::{Interface, NetlinkError},
    vrrp::driver::Instance,
};

/// Least time between two logs of the same lasting trouble with the
/// interface: it is looked at every second.
const LINK_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What one look at the interface lbd attached to found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// It exists still: whether it can carry traffic, and what the
    /// kernel runs at lbd's hook there (None: cannot tell).
    Present {
        /// Up with its carrier.
        up: bool,
        /// lbd's program still attached there, and reached first.
        hook: Option<HookSeen>,
    },
    /// No interface has its index any more (the kernel answered ENODEV):
    /// deleted, re-created under another index, or moved to another
    /// network namespace. Its XDP or tc link went with it.
    Gone,
}

/// How lbd lost its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The interface went (see [`Look::Gone`]).
    InterfaceGone,
    /// The interface is there, but the kernel no longer runs lbd's program
    /// on it (its link was detached by something else).
    Detached,
    /// lbd's program is attached at tc, but program `by`, another tool's,
    /// runs ahead of it and may pass every packet on before lbd sees it:
    /// as good as detached (see `dataplane::HookSeen::Shadowed`).
    Shadowed {
        /// The id of the program ahead.
        by: u32,
    },
}

/// What a look means for the node: still serving through its hook (up or
/// not), or the hook lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// The hook runs (or nothing says otherwise); the link is `up` or not.
    Serving {
        /// Up with its carrier.
        up: bool,
    },
    /// The hook is gone: the node cannot serve, whatever `up` says.
    Lost {
        /// How.
        how: Lost,
        /// Up with its carrier (false when the interface is gone).
        up: bool,
    },
}

/// What `look` means: an interface that is gone is down and its hook
/// lost; a hook the kernel no longer runs is lost.
pub(crate) fn judge(look: Look) -> Judgement {
    match look {
        Look::Gone => Judgement::Lost {
            how: Lost::InterfaceGone,
            up: false,
        },
        Look::Present {
            up,
            hook: Some(HookSeen::Absent),
        } => Judgement::Lost {
            how: Lost::Detached,
            up,
        },
        Look::Present {
            up,
            hook: Some(HookSeen::Shadowed { by }),
        } => Judgement::Lost {
            how: Lost::Shadowed { by },
            up,
        },
        Look::Present { up, .. } => Judgement::Serving { up },
    }
}

/// Why lbd exits once it lost its hook on `was` and an interface of that
/// name is found again as `found`, `up` or not: None while it is not up
/// (then the restart would find it unusable, or without its addresses
/// yet).
pub(crate) fn restart_reason(
    how: Lost,
    was: &Interface,
    found: &Interface,
    up: bool,
) -> Option<String> {
    if !up {
        return None;
    }
    let what = match how {
        Lost::InterfaceGone => format!(
            "interface {} went away (deleted, or moved out of lbd's network namespace; it was index {}) and is back as index {}",
            was.name, was.index, found.index
        ),
        Lost::Detached => format!(
            "lbd's program was detached from interface {} (index {}) by something else",
            was.name, found.index
        ),
        Lost::Shadowed { by } => format!(
            "program id {by} was put ahead of lbd's at the tc ingress of interface {} (index {}), where it bypasses lbd; lbd detached its own",
            was.name, found.index
        ),
    };
    Some(format!(
        "{what}: lbd exits so that its service manager starts it again (systemd: Restart=on-failure), which attaches the program to the interface and adopts the pinned maps and connection table"
    ))
}

/// The interface watch's state between housekeeping ticks.
#[derive(Debug, Default)]
pub(crate) struct LinkWatch {
    /// How and since when the hook is lost (None: attached).
    lost: Option<(Lost, Instant)>,
    /// When a lasting trouble was last logged.
    logged: Option<Instant>,
}

impl LinkWatch {
    /// How and since when the hook is lost (None: attached).
    pub(crate) fn lost(&self) -> Option<(Lost, Instant)> {
        self.lost
    }

    /// Whether a lasting trouble may be logged at `now` (once per
    /// [`LINK_LOG_INTERVAL`]); if so, counts it as logged.
    fn may_log(&mut self, now: Instant) -> bool {
        if self
            .logged
            .is_some_and(|at| now.saturating_duration_since(at) < LINK_LOG_INTERVAL)
        {
            return false;
        }
        self.logged = Some(now);
        true
    }
}

impl Engine {
    /// Sets each VRRP instance's priority from what this node can serve:
    /// less when the program is not attached, and for each of the
    /// instance's VIPs that has no healthy backend. The link's weight
    /// (`track_interface`) is the instance's own: it looks at the link
    /// twice as often, and must give the weight back before the advert it
    /// sends when the link returns, not a tick later (see
    /// `vrrp::driver::Instance::set_priority`).
    pub(crate) fn track(&self) {
        for instance in &self.vrrp {
            let config = instance.config();
            if config.priority == 255 {
                continue; // the address owner's priority is fixed
            }
            let mut lost: u32 = 0;
            if !self.dataplane.is_attached() {
                lost += u32::from(config.track_dataplane);
            }
            let unserved = self
                .model
                .vips
                .iter()
                .filter(|(id, vip)| {
                    config.addresses.contains(&id.address)
                        && vip.config.on_all_down == AllDown::Drop
                        && (vip.all_down() || vip.backends.is_empty())
                })
                .count();
            lost += u32::try_from(unserved)
                .unwrap_or(u32::MAX)
                .saturating_mul(config.track_no_backend.into());
            let effective = u32::from(config.priority)
                .saturating_sub(lost)
                .clamp(1, 254);
            instance.set_priority(u8::try_from(effective).unwrap_or(1));
        }
    }

    /// Whether this node should serve: master of some instance, or no
    /// VRRP at all. A node whose instances stepped down because it lost
    /// its interface is master of nothing.
    pub(crate) fn is_master(&self) -> bool {
        if self.vrrp.is_empty() {
            return self.config.vrrp.is_empty();
        }
        self.vrrp.iter().any(Instance::is_master)
    }

    /// This node's replication role per VIP: master or backup of the
    /// instance that moves it (dual stack may have the two families'
    /// masters on different nodes).
    pub(crate) fn replication_roles(&self) -> Roles {
        Roles::new(
            self.vrrp
                .iter()
                .map(|i| (i.config().addresses.as_slice(), i.is_master())),
            self.is_master(),
        )
    }

    /// Checks the interface's link, and that the kernel still runs lbd's
    /// hook on it (every housekeeping tick). Once the hook is lost, looks
    /// for an interface of the configured name instead, and returns the
    /// error lbd exits with once that one is up (see the module's doc).
    pub(crate) async fn check_link(&mut self) -> Option<anyhow::Error> {
        let now = Instant::now();
        if let Some((how, _)) = self.link_watch.lost {
            return self.look_for_interface(how, now).await;
        }
        let (look, mac) = match self.netlink.link_state(self.interface.index).await {
            Ok(None) => (Look::Gone, None),
            Ok(Some(state)) => {
                let cls_bpf = self.cls_bpf_programs(now).await;
                let hook = self.dataplane.hook_in_place(
                    self.interface.index,
                    state.xdp.map(|(program, _)| program),
                    cls_bpf.as_deref(),
                );
                (Look::Present { up: state.up, hook }, state.mac)
            }
            Err(error) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %self.interface.name, %error, "reading the interface's link state failed (logged at most once a minute)");
                }
                return None;
            }
        };
        match judge(look) {
            Judgement::Serving { up } => {
                let changed = up != self.interface_up;
                if changed {
                    warn!(interface = %self.interface.name, up, "interface link changed");
                }
                self.set_interface_up(up);
                if changed && up {
                    self.link_came_up();
                }
                self.follow_mac(mac, now);
            }
            Judgement::Lost { how, up } => {
                self.set_interface_up(up);
                self.lose_hook(how, now).await;
            }
        }
        None
    }

    /// Records whether the interface is up (at each look), for the status
    /// and the health checks (VRRP's instances look at the link
    /// themselves, see [`Self::track`]): while it is down, the failures
    /// of checks whose route leaves by it (or whose route went with it) are
    /// this node's and count against no backend (a flap of the balancer's
    /// own link would otherwise take every backend down). Checks to
    /// backends behind another interface go by that one's state, asked of
    /// the kernel at each failure.
    fn set_interface_up(&mut self, up: bool) {
        if up != self.interface_up {
            if up {
                info!(interface = %self.interface.name, "health check failures count against backends again");
            } else {
                warn!(interface = %self.interface.name, "interface down: health check failures count against no backend until it is up");
            }
        }
        self.interface_up = up;
        self.checker.set_link(if up {
            crate::health::Link::Up {
                interface: self.interface.name.clone(),
            }
        } else {
            crate::health::Link::Down {
                interface: self.interface.name.clone(),
            }
        });
    }

    /// The link came back up: every instance hears of it, so a master
    /// that kept mastership through the outage announces its addresses
    /// again (the other node may have taken them meanwhile, and step down
    /// on our next advert without announcing anything; see
    /// `Machine::link_up`). Their own checks of the link usually saw it
    /// first; this covers an outage they missed. Tracking's priority goes
    /// first, so the advert carries it (the link's weight the instances
    /// give back themselves).
    fn link_came_up(&self) {
        self.track();
        for instance in &self.vrrp {
            instance.link_up();
        }
    }

    /// The cls_bpf filters on chain 0 of the interface's ingress, when
    /// lbd's hook is one (attached without tcx): whether it is still
    /// there, and runs first. None otherwise, or when the dump fails
    /// (logged at most once a minute).
    async fn cls_bpf_programs(&mut self, now: Instant) -> Option<Vec<IngressFilter>> {
        if self.hooked != Hooked::TcClsBpf {
            return None;
        }
        match self
            .netlink
            .cls_bpf_ingress_programs(self.interface.index)
            .await
        {
            Ok(programs) => Some(programs),
            Err(error) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %self.interface.name, %error, "listing the interface's tc filters failed (logged at most once a minute)");
                }
                None
            }
        }
    }

    /// Follows the interface's MAC, `seen` now, into the data plane: a
    /// frame is balanced only when addressed to it (`LbConfig::iface_mac`),
    /// so a MAC changed under lbd (a bond's `fail_over_mac`, `ip link set
    /// address`) would otherwise pass every VIP's packet up unbalanced.
    /// A failed write is logged and tried again on the next tick.
    /// Once written, the VRRP instances hear of it: a master announces
    /// its addresses with the new MAC only then, so no client is sent to
    /// a MAC the data plane passes up the stack (see
    /// `vrrp::driver::mac::MacChange`).
    fn follow_mac(&mut self, seen: Option<[u8; 6]>, now: Instant) {
        let Some(mac) = crate::netlink::mac_to_follow(self.interface.mac, seen) else {
            return;
        };
        let (old, new) = (Mac(self.interface.mac), Mac(mac));
        match self.dataplane.set_iface_mac(mac) {
            Ok(()) => {
                warn!(interface = %self.interface.name, %old, %new, "the interface's MAC changed: the data plane now balances frames addressed to the new one");
                self.interface.mac = mac;
                for instance in &self.vrrp {
                    instance.data_plane_mac(mac);
                }
            }
            Err(error) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %self.interface.name, %old, %new, %error, "the interface's MAC changed, and writing it to the data plane failed: VIP packets addressed to the new MAC are passed up unbalanced until it is written (tried every second; logged at most once a minute)");
                }
            }
        }
    }

    /// The hook is lost: lbd counts as detached from now on (BGP
    /// withdraws at the loop's next announce), steps down from VRRP (its
    /// sockets are bound to the interface; "stopped" is recorded, so the
    /// next lbd does not resume), and waits for the interface.
    async fn lose_hook(&mut self, how: Lost, now: Instant) {
        let (name, index) = (self.interface.name.clone(), self.interface.index);
        match how {
            Lost::InterfaceGone => {
                error!(interface = %name, index, "the interface is gone (deleted, or moved to another network namespace), and the program's link with it: withdrawing from BGP and stepping down from VRRP; lbd exits once an interface named {name} is back and up, for its service manager to start it again on it")
            }
            Lost::Detached => {
                error!(interface = %name, index, "lbd's program no longer runs on the interface (its link was detached by something else): withdrawing from BGP and stepping down from VRRP; lbd exits once the interface is up, for its service manager to start it again")
            }
            Lost::Shadowed { by } => {
                let program =
                    crate::ownership::program_name(by).unwrap_or_else(|| "no name".to_owned());
                error!(interface = %name, index, foreign_program = by, %program, "program id {by} ({program}) runs ahead of lbd's at the interface's tc ingress (another tool attached it first in the chain): every packet it passes on bypasses lbd; detaching lbd's, withdrawing from BGP and stepping down from VRRP; lbd exits once the interface is up, for its service manager to start it again (which refuses to start while a foreign tc program is there: `bpftool net show dev {name}` lists it)")
            }
        }
        self.dataplane.forget_hook();
        self.link_watch.lost = Some((how, now));
        // The first "still waiting" comes a while after this.
        self.link_watch.logged = Some(now);
        self.step_down("the interface's hook is lost").await;
        self.track();
    }

    /// While the hook is lost: the interface by its name. Returns the
    /// error to exit with once it is there and up.
    async fn look_for_interface(&mut self, how: Lost, now: Instant) -> Option<anyhow::Error> {
        let name = self.interface.name.clone();
        let found = match self.netlink.interface(&name).await {
            Ok(found) => found,
            Err(NetlinkError::NoSuchInterface(_)) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %name, "lbd's hook is lost and the interface is not there: nothing is balanced here; still waiting for it to come back (logged once a minute)");
                }
                return None;
            }
            Err(error) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %name, %error, "looking for the interface failed (logged at most once a minute)");
                }
                return None;
            }
        };
        let up = match self.netlink.link_state(found.index).await {
            Ok(state) => state.is_some_and(|s| s.up),
            Err(error) => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %name, %error, "reading the interface's link state failed (logged at most once a minute)");
                }
                return None;
            }
        };
        match restart_reason(how, &self.interface, &found, up) {
            Some(reason) => Some(anyhow!(reason)),
            None => {
                if self.link_watch.may_log(now) {
                    warn!(interface = %name, index = found.index, "lbd's hook is lost and the interface is back but not up yet: nothing is balanced here; waiting (logged once a minute)");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(index: u32) -> Interface {
        Interface {
            name: "eth0".to_owned(),
            index,
            mac: [2, 0, 0, 0, 0, 1],
        }
    }

    #[test]
    fn a_gone_interface_is_down_and_its_hook_lost() {
        assert_eq!(
            judge(Look::Gone),
            Judgement::Lost {
                how: Lost::InterfaceGone,
                up: false
            }
        );
    }

    #[test]
    fn a_hook_the_kernel_no_longer_runs_is_lost_even_on_a_live_link() {
        assert_eq!(
            judge(Look::Present {
                up: true,
                hook: Some(HookSeen::Absent)
            }),
            Judgement::Lost {
                how: Lost::Detached,
                up: true
            }
        );
        for hook in [Some(HookSeen::Runs), None] {
            for up in [true, false] {
                assert_eq!(
                    judge(Look::Present { up, hook }),
                    Judgement::Serving { up },
                    "{hook:?} {up}"
                );
            }
        }
    }

    /// A program another tool put ahead of lbd's at tc takes lbd out of
    /// the packet path as a detach does: the hook counts as lost, naming
    /// that program, and lbd exits for a restart once the link is up.
    #[test]
    fn a_hook_shadowed_by_a_program_ahead_is_lost() {
        assert_eq!(
            judge(Look::Present {
                up: true,
                hook: Some(HookSeen::Shadowed { by: 77 })
            }),
            Judgement::Lost {
                how: Lost::Shadowed { by: 77 },
                up: true
            }
        );
        let was = interface(5);
        let reason = restart_reason(Lost::Shadowed { by: 77 }, &was, &was, true)
            .expect("shadowed, interface up");
        assert!(
            reason.contains("program id 77 was put ahead of lbd's"),
            "{reason}"
        );
    }

    #[test]
    fn lbd_exits_for_a_restart_only_once_the_interface_is_back_and_up() {
        let was = interface(5);
        assert_eq!(
            restart_reason(Lost::InterfaceGone, &was, &interface(9), false),
            None
        );
        let reason =
            restart_reason(Lost::InterfaceGone, &was, &interface(9), true).expect("back and up");
        assert!(
            reason.starts_with("interface eth0 went away (deleted, or moved out of lbd's network namespace; it was index 5) and is back as index 9: lbd exits"),
            "{reason}"
        );
        assert!(reason.contains("Restart=on-failure"), "{reason}");
        let reason =
            restart_reason(Lost::Detached, &was, &was, true).expect("detached, interface up");
        assert!(reason.contains("detached from interface eth0"), "{reason}");
    }

    #[test]
    fn lasting_troubles_are_logged_once_a_minute() {
        let mut watch = LinkWatch::default();
        let start = Instant::now();
        assert!(watch.may_log(start));
        assert!(!watch.may_log(start + Duration::from_secs(1)));
        assert!(!watch.may_log(start + Duration::from_secs(59)));
        assert!(watch.may_log(start + LINK_LOG_INTERVAL));
    }

    /// The kernel answers a lookup of an index no interface has with
    /// ENODEV: that is an interface gone, not a failed lookup.
    #[tokio::test]
    async fn an_index_no_interface_has_reads_as_gone() {
        let netlink = crate::netlink::Netlink::connect().expect("a routing netlink socket");
        let index = 0x7fff_fff0;
        assert_eq!(netlink.link_state(index).await.expect("no error"), None);
        assert_eq!(netlink.xdp_program(index).await.expect("no error"), None);
        // The loopback interface is there, and up.
        let lo = netlink.link_state(1).await.expect("lo").expect("lo exists");
        assert!(lo.up, "{lo:?}");
    }
}
