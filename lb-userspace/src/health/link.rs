//! Whether an interface can carry traffic now, asked of the kernel at the
//! moment a check fails: lbd's own look at its interface comes once a
//! second, and a link taken down fails checks at once (its routes go, a
//! connect meets ENETUNREACH), so fast checks would count a second of
//! failures against every backend before that look. And the interface a
//! failed check left by, from the kernel's route to its target: checks to
//! backends behind another interface than lbd's own leave by that one.

use std::{future::Future, net::IpAddr, os::fd::AsRawFd, pin::Pin, sync::Arc};

use anyhow::Context as _;

use crate::netlink::{Egress, Netlink};

/// What [`EgressLookup`] gives: the interface the route leaves by (None:
/// the kernel has no route), or why it could not be asked.
pub(crate) type EgressFuture = Pin<Box<dyn Future<Output = anyhow::Result<Option<Egress>>> + Send>>;

/// Finds the interface a check to an address, with a mark (0: none),
/// leaves by. The kernel's routing in lbd ([`kernel_egress`]); tests
/// inject their own, so the decision is tested without links to flap.
pub(crate) type EgressLookup = Arc<dyn Fn(IpAddr, u32) -> EgressFuture + Send + Sync>;

/// The kernel's answer, over one routing netlink connection opened at the
/// first failed check (on the checks' runtime; a checker that never sees
/// a failure opens none) and shared by every check after it.
pub(crate) fn kernel_egress() -> EgressLookup {
    let netlink: Arc<tokio::sync::OnceCell<Netlink>> = Arc::default();
    Arc::new(move |destination, mark| {
        let netlink = netlink.clone();
        Box::pin(async move {
            let netlink = netlink
                .get_or_try_init(|| async { Netlink::connect() })
                .await
                .context("opening the netlink socket for route lookups")?;
            netlink
                .egress(destination, mark)
                .await
                .with_context(|| format!("finding the interface checks to {destination} leave by"))
        })
    })
}

/// Whether interface `name` is up and running (`IFF_UP` and
/// `IFF_RUNNING`: administratively up, with its carrier) in lbd's network
/// namespace; None when the kernel cannot be asked (no socket to spare,
/// no such interface, a name too long): the caller then goes by what it
/// knew.
pub(crate) fn running(name: &str) -> Option<bool> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return None;
    }
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::DGRAM, None).ok()?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value (an empty
    // name, no flags).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = libc::c_char::from_ne_bytes([*byte]);
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name of `request`
    // (zeroed past it) and writes its flags into it; both live across
    // the call, and the descriptor is the open socket's.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
    if rc != 0 {
        return None;
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the union holds the flags.
    let flags = libc::c_int::from(unsafe { request.ifr_ifru.ifru_flags });
    Some(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_runs_and_a_missing_interface_is_not_known() {
        assert_eq!(running("lo"), Some(true));
        assert_eq!(running("lbd-no-such0"), None);
        assert_eq!(running(""), None);
        assert_eq!(running("a-name-longer-than-ifnamsiz"), None);
    }
}
