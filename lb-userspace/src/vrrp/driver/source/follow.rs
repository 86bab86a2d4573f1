//! Following the advert source in the driver: when a failed send looks
//! again, and what a look at the interface's addresses does (switch the
//! socket's source, or tell the machine it is gone or back).

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{
    check::{check_source, SourceCheck},
    kind::SourceKind,
    no_source::no_source_message,
};
use crate::{
    netlink::InterfaceAddress,
    vrrp::{
        driver::{
            looks::{newer_look, AddressRead},
            Driver,
        },
        machine::PREEMPT_SYNC_HOLD,
        Family, State,
    },
};

/// Whether a failed send may be the source's fault (no longer an address
/// of the node): Linux says EINVAL (IPv6, or an IPv4 source it refuses),
/// EADDRNOTAVAIL or ENETUNREACH (IPv4: the source is not local). Those
/// look again at once rather than at the next periodic check.
pub(in crate::vrrp::driver) fn source_may_be_stale(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// The shortest time between two looks at the source prompted by failed
/// sends: adverts may go every 10 ms, and a send that keeps failing for
/// another reason (an unreachable unicast peer) must not dump the
/// interface's addresses each time.
pub(super) const SOURCE_RECHECK_MIN: Duration = Duration::from_millis(100);

/// Whether a failed send at `now` may look at the source again, the last
/// look having been at `last` (see [`SOURCE_RECHECK_MIN`]).
pub(in crate::vrrp::driver) fn source_recheck_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= SOURCE_RECHECK_MIN)
}

impl Driver {
    /// Looks again at the address adverts go from, at once (after a
    /// failed send; see [`Self::on_addresses_read`]); whether it moved.
    pub(in crate::vrrp::driver) async fn follow_source(&mut self) -> bool {
        let read = self.looks.read_addresses(self.interface.index).await;
        let current = self.socket.local();
        self.on_addresses_read(read);
        self.socket.local() != current
    }

    /// Takes a look at the interface's addresses: the advert source
    /// ([`Self::follow_present_source`]); the addresses, if they were read
    /// and no later look was taken before (see [`newer_look`]). A failure
    /// to look is left to the next check.
    pub(in crate::vrrp::driver) fn on_addresses_read(
        &mut self,
        read: AddressRead,
    ) -> Option<Vec<InterfaceAddress>> {
        if !newer_look(&mut self.addresses_read_from, read.started) {
            return None;
        }
        match read.present {
            Ok(present) => {
                self.follow_present_source(&present);
                Some(present)
            }
            Err(error) => {
                debug!(
                    vrid = self.config.vrid,
                    error = format!("{error:#}"),
                    "reading the interface's addresses for the VRRP source failed"
                );
                None
            }
        }
    }

    /// Checks the address adverts go from against `present`, the
    /// interface's addresses (see [`check_source`]) and, if it moved,
    /// sends from the new one from now on; whether it moved.
    fn follow_present_source(&mut self, present: &[InterfaceAddress]) -> bool {
        let current = self.socket.local();
        let kind = SourceKind::of_instance(Family::of(&current), &self.config);
        match check_source(current, present, kind, &self.never) {
            SourceCheck::Keep => {
                self.source_returned();
                false
            }
            SourceCheck::Switch(next) => {
                if let Err(error) = self.socket.set_local(next) {
                    warn!(vrid = self.config.vrid, %current, %next, %error, "VRRP: cannot send from the interface's new address");
                    return false;
                }
                self.machine.set_primary_address(next);
                self.source_returned();
                info!(
                    vrid = self.config.vrid,
                    interface = %self.interface.name,
                    from = %current,
                    to = %next,
                    "VRRP: the interface's address changed; adverts now go from the new one"
                );
                self.publish();
                true
            }
            SourceCheck::Gone => {
                if !self.machine.source_is_gone() {
                    let meaning = match self.machine.state() {
                        State::Master => "this master announces nothing meanwhile, and gives up mastership and the VIPs (keepalived's FAULT) as soon as it hears the peer take over, or once the peer may have",
                        State::Backup => "this backup does not take over meanwhile: the pair has no standby if the master fails",
                        State::Initialize => "the instance is not running",
                    };
                    warn!(
                        vrid = self.config.vrid,
                        interface = %self.interface.name,
                        address = %current,
                        state = %self.machine.state(),
                        missing = no_source_message(&self.interface.name, present, kind, &self.never),
                        "VRRP: the address adverts go from is gone from the interface, with none to replace it; adverts fail (IPv6: leave from the old address) until one is back; {meaning}"
                    );
                    self.machine.source_gone(Instant::now());
                    self.publish();
                }
                false
            }
        }
    }

    /// A look found an address to send adverts from: if none was found
    /// before, the machine hears of it (see [`Machine::source_back`](crate::vrrp::Machine::source_back)).
    fn source_returned(&mut self) {
        let Some(since) = self.machine.source_gone_since() else {
            return;
        };
        let now = Instant::now();
        info!(
            vrid = self.config.vrid,
            interface = %self.interface.name,
            gone_ms = u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
            state = %self.machine.state(),
            "VRRP: the interface has an address to send adverts from again"
        );
        if self.machine.source_back(now) {
            info!(
                vrid = self.config.vrid,
                hold_s = PREEMPT_SYNC_HOLD.as_secs(),
                "VRRP: this node gave up mastership for want of a source; preemption waits for the peer's connection table, so its connections are not cut"
            );
            self.source_hold_began = true;
        }
        self.publish();
    }
}
