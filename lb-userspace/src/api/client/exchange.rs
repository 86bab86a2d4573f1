//! One HTTP/1.1 exchange on a fresh connection to lbd's socket: connect,
//! send, read the whole answer; and what a connection that ended
//! unanswered means.

use std::{
    io,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::{
    connect::{retry_while_backlog_full, BACKLOG_WAIT},
    stage::{NotingWrites, Stage},
    Client, ClientError,
};

/// Largest response body read, in bytes: generous for status dumps, but bounded.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

impl Client {
    /// What a failed exchange (`error`, hyper's) means: lbd closing or
    /// resetting the connection before any answer came is
    /// [`ClientError::Dropped`] (lbd unavailable for now, as across a
    /// restart), anything else a garbled exchange.
    fn exchange_error(&self, error: &hyper::Error) -> ClientError {
        if unanswered(error) {
            ClientError::Dropped {
                path: self.path.clone(),
                why: error.to_string(),
            }
        } else {
            ClientError::Protocol(error.to_string())
        }
    }

    /// Connects, sends `request`, and reads the status and whole body,
    /// noting in `stage` how far it got.
    pub(super) async fn exchange(
        &self,
        request: hyper::Request<Full<Bytes>>,
        stage: &Arc<AtomicU8>,
    ) -> Result<(hyper::StatusCode, Bytes), ClientError> {
        let stream = retry_while_backlog_full(BACKLOG_WAIT, || async {
            let connected = UnixStream::connect(&self.path).await;
            if matches!(&connected, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
                stage.store(Stage::BacklogFull as u8, Ordering::SeqCst);
            }
            connected
        })
        .await
        .map_err(|e| self.connect_error(e))?;
        stage.store(Stage::Connected as u8, Ordering::SeqCst);
        let stream = NotingWrites {
            stream,
            stage: Arc::clone(stage),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.exchange_error(&e))?;
        let exchange = async move {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| self.exchange_error(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Protocol(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        // The connection is driven here rather than spawned, so that it ends
        // with the call (and with the timeout).
        let mut exchange = std::pin::pin!(exchange);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            result = exchange.as_mut() => result,
            result = connection.as_mut() => match result {
                // Closed cleanly: the exchange has its answer or its error.
                Ok(()) => exchange.await,
                Err(e) => Err(self.exchange_error(&e)),
            },
        }
    }
}

/// Whether hyper's `error` says the connection ended (closed, or reset
/// by lbd) before an answer's head came, rather than an answer that came
/// garbled: hyper's "connection closed before message completed", or
/// an `ECONNRESET`/`EPIPE`/`ECONNABORTED` underneath.
fn unanswered(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(io_error) = inner.downcast_ref::<io::Error>() {
            return matches!(
                io_error.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::UnexpectedEof
            );
        }
        source = inner.source();
    }
    false
}
