//! Where a sender connects ([`Link`]), the TCP connection to the peer
//! (from this node's listen address when given) and the handshake over
//! it: the network side of one attempt, apart from its bookkeeping.

use std::net::SocketAddr;

use tokio::{
    io::BufReader,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpSocket, TcpStream,
    },
    time::timeout,
};
use tracing::debug;

use super::super::{
    session::{handshake_timed, PeerHello, Session, Side},
    Timing, READ_BUFFER,
};
use crate::sync::{SyncConfig, SyncError};

/// Where a sender connects, and from which address.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) peer: SocketAddr,
    /// None: the address the route picks. Bound as given, scope id
    /// included (a link-local address cannot be bound without one).
    pub(super) source: Option<SocketAddr>,
}

/// A TCP connection to `link`, within `timing.connect`.
pub(super) async fn connect_timed(link: Link, timing: Timing) -> Result<TcpStream, SyncError> {
    timeout(timing.connect, connect(link))
        .await
        .map_err(|_| SyncError::Timeout {
            what: "connect",
            after: timing.connect,
        })?
}

/// `stream`'s handshake, offering `offer`; what the backup's Hello said
/// is left in `seen`.
pub(super) async fn shake(
    stream: TcpStream,
    config: &SyncConfig,
    timing: Timing,
    offer: u16,
    seen: &mut Option<PeerHello>,
) -> Result<(BufReader<OwnedReadHalf>, OwnedWriteHalf, Session), SyncError> {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let side = Side::Master { offer, seen };
    let session = handshake_timed(&mut rd, &mut wr, side, config, timing, None).await?;
    Ok((rd, wr, session))
}

/// A TCP connection to `link.peer`, from `link.source` when given.
async fn connect(link: Link) -> Result<TcpStream, SyncError> {
    let Some(source) = link.source else {
        return TcpStream::connect(link.peer)
            .await
            .map_err(|source| SyncError::Io {
                action: "connecting to the sync peer",
                source,
            });
    };
    let socket = match source {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| SyncError::Io {
        action: "opening a socket to the sync peer",
        source,
    })?;
    socket.bind(source).map_err(|source| SyncError::Io {
        action: "binding the sync sender to this node's listen address",
        source,
    })?;
    socket
        .connect(link.peer)
        .await
        .map_err(|source| SyncError::Io {
            action: "connecting to the sync peer",
            source,
        })
}
