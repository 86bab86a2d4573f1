//! How far an exchange got (connecting, connected, some bytes sent), and
//! what its timeout or failure means at each stage: a change sent may be
//! applied, one never sent was not.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};

use super::{Client, ClientError};

impl Client {
    /// What the `--api-timeout` ending an exchange at `stage` means: a
    /// change whose bytes went out may be applied (lbd finishes it); one
    /// never sent was not, and is reported as lbd unreachable (busy, when
    /// its listen backlog was still full), as a look is.
    pub(super) fn timed_out(&self, stage: Stage, change: bool) -> ClientError {
        let (path, after) = (self.path.clone(), self.timeout);
        match stage {
            Stage::Sent if change => ClientError::ChangeTimeout { path, after },
            Stage::BacklogFull => ClientError::Busy { path, after },
            Stage::Connecting | Stage::Connected | Stage::Sent => {
                ClientError::Timeout { path, after }
            }
        }
    }

    /// What an exchange that failed with `error` at `stage` means: a
    /// change whose bytes went out and whose answer never came whole (the
    /// connection dropped, an answer that could not be read) may be
    /// applied, as when it times out; anything else is `error` itself.
    pub(super) fn cut_off(&self, error: ClientError, stage: Stage, change: bool) -> ClientError {
        match error {
            ClientError::Protocol(why) | ClientError::Dropped { why, .. }
                if change && stage == Stage::Sent =>
            {
                ClientError::ChangeCutOff {
                    path: self.path.clone(),
                    why,
                }
            }
            other => other,
        }
    }
}

/// How far an exchange got, for what its timeout means (see
/// [`Client::timed_out`]); kept in an [`AtomicU8`] the exchange and
/// its stream update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Stage {
    /// Connecting, nothing refused yet.
    Connecting,
    /// A connect found the socket's listen backlog full, and is retried.
    BacklogFull,
    /// Connected; no byte of the request written yet.
    Connected,
    /// Some of the request written: lbd may read it and act on it.
    Sent,
}

impl Stage {
    /// The stage stored as `n`; an unknown value (none is stored) counts
    /// as sent, the outcome that claims least.
    pub(super) fn from_u8(n: u8) -> Self {
        [Self::Connecting, Self::BacklogFull, Self::Connected]
            .into_iter()
            .find(|stage| *stage as u8 == n)
            .unwrap_or(Self::Sent)
    }
}

/// The connection's stream, noting the first byte written to it as
/// [`Stage::Sent`]: from then on a change may reach lbd.
pub(super) struct NotingWrites {
    /// The connection.
    pub(super) stream: UnixStream,
    /// Where the exchange's stage is kept.
    pub(super) stage: Arc<AtomicU8>,
}

impl NotingWrites {
    /// Notes `written` (a write's outcome) as [`Stage::Sent`] when it wrote
    /// a byte.
    fn note(&self, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.stage.store(Stage::Sent as u8, Ordering::SeqCst);
        }
        written
    }
}

impl AsyncRead for NotingWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for NotingWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.note(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.note(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
