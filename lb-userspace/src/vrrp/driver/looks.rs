//! The driver's looks at its interface (addresses and link), injectable
//! for tests, and the periodic look that runs beside the loop's other
//! arms: apart so that how the interface is read, and which answer is
//! taken, is one thing to read.

use std::{future::Future, pin::Pin, sync::Arc, time::Instant};

use super::{link::carrier_changes, Driver};
use crate::{
    netlink::{Interface, InterfaceAddress, LinkState, Netlink},
    vrrp::addresses,
};

/// What a look at the interface's addresses gives (see [`Looks`]).
type AddressesFuture = Pin<Box<dyn Future<Output = anyhow::Result<Vec<InterfaceAddress>>> + Send>>;

/// What a look at the interface's link gives (see [`Looks`]); `None`: no
/// interface has that index any more.
type LinkFuture = Pin<Box<dyn Future<Output = anyhow::Result<Option<LinkState>>> + Send>>;

/// How a driver reads its interface (by index): its addresses and its
/// link. The kernel's, over the VRRP thread's netlink connection
/// ([`Looks::kernel`]); tests inject their own (a look that never
/// answers, a MAC that changes), as health's `EgressLookup`, so the
/// driver's timing is tested without netlink to stall.
#[derive(Clone)]
pub(crate) struct Looks {
    /// The interface's addresses.
    pub(super) addresses: Arc<dyn Fn(u32) -> AddressesFuture + Send + Sync>,
    /// The interface's link (up, MAC).
    pub(super) link: Arc<dyn Fn(u32) -> LinkFuture + Send + Sync>,
}

impl Looks {
    /// The kernel's answers, over `netlink`.
    pub(super) fn kernel(netlink: &Netlink) -> Self {
        let (for_addresses, for_link) = (netlink.clone(), netlink.clone());
        Self {
            addresses: Arc::new(move |index| {
                let netlink = for_addresses.clone();
                Box::pin(async move { Ok(netlink.addresses(index).await?) })
            }),
            link: Arc::new(move |index| {
                let netlink = for_link.clone();
                Box::pin(async move { Ok(netlink.link_state(index).await?) })
            }),
        }
    }
}

impl Looks {
    /// A look at interface `index`'s addresses, begun now and given up
    /// after [`addresses::NETLINK_LIMIT`] (an error, as a failed look).
    /// Owns what it needs: it can run while the driver serves its advert
    /// timer and socket (see [`Driver::run`]).
    pub(super) fn read_addresses(
        &self,
        index: u32,
    ) -> impl Future<Output = AddressRead> + Send + 'static {
        let (started, look) = (Instant::now(), (self.addresses)(index));
        async move {
            AddressRead {
                started,
                present: addresses::bounded(
                    format!("listing the addresses of interface {index}"),
                    look,
                )
                .await,
            }
        }
    }

    /// A look at `interface`'s link, begun now and given up after
    /// [`addresses::NETLINK_LIMIT`], with its carrier counter read as the
    /// answer comes (see [`LinkWatch::saw_counting`](super::link::LinkWatch::saw_counting)).
    pub(super) fn read_link(
        &self,
        interface: &Interface,
    ) -> impl Future<Output = LinkRead> + Send + 'static {
        let (started, look, interface) = (
            Instant::now(),
            (self.link)(interface.index),
            interface.clone(),
        );
        async move {
            let state = addresses::bounded(
                format!("reading the link of interface {}", interface.name),
                look,
            )
            .await;
            LinkRead {
                started,
                state,
                carrier: carrier_changes(&interface),
            }
        }
    }
}

/// What a look at the interface's addresses found.
pub(super) struct AddressRead {
    /// When it began (see [`newer_look`]).
    pub(super) started: Instant,
    /// The addresses, or why they could not be read.
    pub(super) present: anyhow::Result<Vec<InterfaceAddress>>,
}

/// What a look at the interface's link found.
pub(super) struct LinkRead {
    /// When it began (see [`newer_look`]).
    pub(super) started: Instant,
    /// The link (`None`: no interface has its index), or why it could not
    /// be read.
    pub(super) state: anyhow::Result<Option<LinkState>>,
    /// The carrier counter as the answer came (see [`carrier_changes`]).
    pub(super) carrier: Option<u64>,
}

/// The periodic look (every [`ADDRESS_CHECK`](super::ADDRESS_CHECK)) at the addresses and the
/// link, both asked at once.
pub(super) struct PeriodicLook {
    /// The addresses.
    pub(super) addresses: AddressRead,
    /// The link.
    pub(super) link: LinkRead,
}

/// A periodic look in flight (see [`Driver::run`]).
pub(super) type PeriodicLookFuture = Pin<Box<dyn Future<Output = PeriodicLook> + Send>>;

/// The periodic look in `slot` once it answers; never while there is
/// none. For a `select!` arm: the look makes progress whenever the loop
/// waits, and the other arms are served meanwhile.
pub(super) async fn periodic_look_done(slot: &mut Option<PeriodicLookFuture>) -> PeriodicLook {
    match slot {
        Some(look) => look.await,
        None => std::future::pending().await,
    }
}

/// Whether the answer of a look begun at `started` is to be taken: no
/// look begun later was taken already (`last`, updated). A periodic look
/// runs beside the looks the advert timer and failed sends make at once,
/// and may answer after them: its older view (a link up since seen down,
/// a source since moved) must not undo theirs.
pub(super) fn newer_look(last: &mut Option<Instant>, started: Instant) -> bool {
    if last.is_some_and(|last| started < last) {
        return false;
    }
    *last = Some(started);
    true
}

impl Driver {
    /// The periodic look at the interface, to run beside the loop's other
    /// arms (see [`Self::run`]).
    pub(super) fn periodic_look(&self) -> PeriodicLookFuture {
        let addresses = self.looks.read_addresses(self.interface.index);
        let link = self.looks.read_link(&self.interface);
        Box::pin(async move {
            let (addresses, link) = tokio::join!(addresses, link);
            PeriodicLook { addresses, link }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::driver::ADDRESS_CHECK;

    /// The answer of a look begun before one already taken is stale.
    #[test]
    fn an_older_look_answering_late_is_not_taken() {
        let t0 = Instant::now();
        let mut last = None;
        assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
        assert!(!newer_look(&mut last, t0), "begun earlier, answered later");
        assert!(newer_look(&mut last, t0 + ADDRESS_CHECK));
        assert!(newer_look(&mut last, t0 + 2 * ADDRESS_CHECK));
    }
}
