//! The pick of the advert source at an instance's start, and the socket
//! that sends from it: both wait a while for duplicate address detection
//! on an interface just brought up.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tracing::debug;

use super::{
    eligibility::{pick_source, waits_for_dad},
    kind::SourceKind,
    no_source::no_source_message,
};
use crate::{
    netlink::{Interface, Netlink},
    vrrp::{addresses, net::VrrpSocket},
};

/// Opens the socket; an IPv6 link-local address still in duplicate
/// address detection (an interface just brought up) cannot be bound yet,
/// so that is retried for a few seconds. `present`: `local` is on the
/// interface (not a `unicast_src_ip` still to come).
pub(in crate::vrrp::driver) async fn open_socket(
    interface: &Interface,
    local: IpAddr,
    present: bool,
) -> anyhow::Result<VrrpSocket> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        match VrrpSocket::open(&interface.name, interface.index, local, present) {
            Ok(socket) => return Ok(socket),
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrNotAvailable
                    && Instant::now() < deadline =>
            {
                debug!(%local, "source address not usable yet (duplicate address detection); retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("opening the VRRP socket on {} from {local}", interface.name)
                })
            }
        }
    }
}

/// How long [`source_address`] waits at start for duplicate address
/// detection to end on the only addresses an instance could send from
/// (an interface just brought up): as long as [`open_socket`] waits.
const DAD_WAIT: Duration = Duration::from_secs(5);

/// The address an instance of `kind` sends from (see [`SourceKind`]),
/// none of `never`. Waits up to [`DAD_WAIT`] while the only candidates
/// are still tentative (see [`waits_for_dad`]); with none, the inner
/// error ([`no_source_message`]) names the interface, what is missing and
/// why each of its addresses of the family was passed over. The outer
/// one: the addresses could not be read.
pub(in crate::vrrp::driver) async fn source_address(
    netlink: &Netlink,
    interface: &Interface,
    kind: SourceKind,
    never: &[IpAddr],
) -> anyhow::Result<Result<IpAddr, String>> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        let addresses = addresses::bounded(
            format!("listing the addresses of {}", interface.name),
            netlink.addresses(interface.index),
        )
        .await?;
        if let Some(source) = pick_source(&addresses, kind, never) {
            return Ok(Ok(source));
        }
        if waits_for_dad(&addresses, kind, never) && Instant::now() < deadline {
            debug!(interface = %interface.name, "the only {} is still tentative (duplicate address detection); waiting", kind.what());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Ok(Err(no_source_message(
            &interface.name,
            &addresses,
            kind,
            never,
        )));
    }
}
