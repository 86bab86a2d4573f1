//! A check's TCP connection: the connect (straight, or through the
//! backend's tunnel), how it is closed, and what a socket error says of
//! the backend. A TCP check is the connect alone.

use std::{io, time::Duration};

use tokio::net::TcpStream;

use super::{tls, FailureReason, ProbeTarget};
use crate::health::tunnel_socket::connect_through;

#[cfg(test)]
mod tests;

/// TCP check: the connect is the whole test (with `tls`, the connect and
/// a TLS handshake); the socket is closed at once.
pub(super) async fn tcp(target: &ProbeTarget) -> Result<(), FailureReason> {
    let stream = connect(target, Close::Reset).await?;
    if target.tls {
        let peer = target.address.ip();
        tls::handshake(stream, None, peer, tls::Alpn::None)
            .await
            .map(drop)
    } else {
        drop(stream);
        Ok(())
    }
}

/// How a check's connection ends when it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// With a reset, as HAProxy closes its checks: a check leaves no
    /// TIME_WAIT behind, so thousands of backends checked every few
    /// seconds hold no ports.
    Reset,
    /// The usual way (a FIN once nothing is left unread), for servers that
    /// log a reset as an error (PostgreSQL does, for every check).
    Graceful,
}

/// Connects (through the tunnel when the target says so), with errors
/// classified; `close` says how the connection ends when dropped.
pub(super) async fn connect(
    target: &ProbeTarget,
    close: Close,
) -> Result<TcpStream, FailureReason> {
    let stream = match &target.through {
        None => TcpStream::connect(target.address).await,
        Some(path) => connect_through(target.address, path).await,
    }
    .map_err(|e| classify(&e))?;
    if close == Close::Reset {
        // A zero linger never blocks the drop (tokio warns of a nonzero
        // one); a socket that takes no linger option still closes, the
        // usual way.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    Ok(stream)
}

/// Maps a socket error to a failure reason. A shortage on this node
/// (ports, descriptors, buffers, memory) is `Local`: the check did not
/// run, and says nothing of the backend.
fn classify(e: &io::Error) -> FailureReason {
    let local = matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable | io::ErrorKind::OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    if local {
        return FailureReason::Local(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => FailureReason::Refused,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            FailureReason::Unreachable
        }
        io::ErrorKind::TimedOut => FailureReason::Timeout,
        _ => FailureReason::Io(e.to_string()),
    }
}
