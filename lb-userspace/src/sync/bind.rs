//! Binding a TCP listener (the sync listener, the metrics listener) to an
//! address that may not be usable yet: right after an interface comes up
//! an IPv6 address stays tentative for 1–2 s of duplicate address
//! detection, and binding it fails with EADDRNOTAVAIL. That failure is
//! retried for a few seconds, as the VRRP socket's open is, instead of
//! failing lbd's start (undone, restarted by systemd). Every other bind
//! failure (a port already taken, most of all) still fails at once.
//! It lives here, with the sync listener, and the metrics listener
//! borrows it.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, time::Instant};
use tracing::info;

/// How long a bind waits for its address to become usable: duplicate
/// address detection takes about 1 s (one probe, `retrans_timer` 1 s),
/// up to a few with `dad_transmits` raised.
pub(crate) const ADDRESS_WAIT: Duration = Duration::from_secs(5);
/// Pause between two binds while the address is not usable.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What to do after a bind failed with `kind`, `waited` after the first
/// try: bind again only while the address may still be in duplicate
/// address detection and the wait `limit` is not over.
fn bind_again(kind: io::ErrorKind, waited: Duration, limit: Duration) -> bool {
    kind == io::ErrorKind::AddrNotAvailable && waited < limit
}

/// A listener on `address`, waiting up to [`ADDRESS_WAIT`] while the
/// address is not usable yet (see the module's doc); `what` names the
/// listener in the one log line that says so.
pub(crate) async fn bind_listener(address: SocketAddr, what: &str) -> io::Result<TcpListener> {
    bind_listener_within(address, what, ADDRESS_WAIT).await
}

/// [`bind_listener`], waiting at most `limit`.
async fn bind_listener_within(
    address: SocketAddr,
    what: &str,
    limit: Duration,
) -> io::Result<TcpListener> {
    let start = Instant::now();
    let mut logged = false;
    loop {
        let error = match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(error) => error,
        };
        let waited = start.elapsed();
        if !bind_again(error.kind(), waited, limit) {
            if error.kind() == io::ErrorKind::AddrNotAvailable && logged {
                return Err(io::Error::new(
                    error.kind(),
                    format!("{error} (waited {limit:?} for {address}: it is not on this host, or is still tentative)"),
                ));
            }
            return Err(error);
        }
        if !logged {
            info!(%address, listener = what, "the listen address is not usable yet (an IPv6 address still tentative in duplicate address detection, or not added yet): binding again for up to {limit:?}");
            logged = true;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only "address not available" (a tentative IPv6 address) is
    /// retried, and only within the wait: a taken port fails at once
    /// (labs rely on a start failing then).
    #[test]
    fn only_an_unusable_address_is_bound_again_within_the_wait() {
        let limit = Duration::from_secs(5);
        let early = Duration::from_millis(300);
        assert!(bind_again(io::ErrorKind::AddrNotAvailable, early, limit));
        assert!(!bind_again(io::ErrorKind::AddrNotAvailable, limit, limit));
        for other in [
            io::ErrorKind::AddrInUse,
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::InvalidInput,
        ] {
            assert!(!bind_again(other, early, limit), "{other:?}");
            assert!(!bind_again(other, Duration::ZERO, limit), "{other:?}");
        }
    }

    /// An address this host does not hold fails after the wait, the
    /// error naming it; a taken port fails at once.
    #[tokio::test]
    async fn an_unusable_address_fails_after_the_wait_and_a_taken_port_at_once() {
        // TEST-NET-1: on no interface here.
        let absent: SocketAddr = "192.0.2.1:7946".parse().unwrap();
        let limit = Duration::from_millis(300);
        let start = std::time::Instant::now();
        let error = bind_listener_within(absent, "test", limit)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(start.elapsed() >= limit, "{:?}", start.elapsed());
        assert!(error.to_string().contains("192.0.2.1:7946"), "{error}");

        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap();
        let start = std::time::Instant::now();
        let error = bind_listener(address, "test").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(bind_listener("127.0.0.1:0".parse().unwrap(), "test")
            .await
            .is_ok());
    }
}
