//! One accepted connection: its handshake, timed and counted so the
//! slowest give way first, then its authenticated session until it ends.

use std::{net::SocketAddr, sync::Arc};

use tokio::{
    io::BufReader,
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpStream,
    },
};
use tracing::debug;

use super::{
    super::{
        session::{handshake_timed, log_session_end, run_session_with, Delivery, Session, Side},
        slots::{Counted, Progress},
        READ_BUFFER,
    },
    shared::Shared,
};
use crate::sync::SyncError;

/// A connection whose handshake passed, ready for its session.
pub(super) struct Established {
    /// Counted for the handshake; what the session reads adds to a count
    /// nobody reads any more.
    pub(super) rd: BufReader<Counted<OwnedReadHalf>>,
    pub(super) wr: OwnedWriteHalf,
    pub(super) session: Session,
}

/// One accepted connection's handshake: the peer's Hello starting within
/// `timing.first_byte`, the whole handshake within `timing.handshake`.
/// What the peer sends is counted in `progress`, so that the handshakes
/// that have come least far give way first when the slots are full.
pub(super) async fn shake(
    stream: TcpStream,
    peer: SocketAddr,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
) -> (SocketAddr, Result<Established, SyncError>) {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%error, "setting TCP_NODELAY failed");
    }
    let timing = shared.timing;
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER, Counted::new(rd, progress));
    let result = handshake_timed(
        &mut rd,
        &mut wr,
        Side::Backup,
        &shared.config,
        timing,
        Some(timing.first_byte),
    )
    .await
    .map(|session| Established { rd, wr, session });
    (peer, result)
}

/// One authenticated connection's session, until it ends.
pub(super) async fn serve(established: Established, shared: Arc<Shared>) {
    let Established {
        mut rd,
        mut wr,
        session,
    } = established;
    let delivery = Delivery {
        batches: Some(&shared.batches),
        digests: Some(&shared.digests),
        backend_states: Some(&shared.backend_states),
    };
    let result = run_session_with(
        &mut rd,
        &mut wr,
        session,
        delivery,
        None,
        &shared.stats,
        shared.timing,
    )
    .await;
    if let Err(error) = result {
        shared.stats.count_error(&error);
        log_session_end(&error, false);
    }
}
