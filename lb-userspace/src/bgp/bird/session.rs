//! One connection to BIRD's control socket, greeted, with its commands
//! asked one after another, and the timeout that bounds a connection's
//! exchanges.

use std::{path::Path, time::Duration};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixStream,
    },
};

use super::{
    failures::NotRunning,
    reply::{read_reply, read_reply_into, Reply},
};

/// How long one exchange with BIRD may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// `work` (one connection's exchanges), bounded by [`EXCHANGE_TIMEOUT`].
pub(super) async fn timed<T>(
    socket: &Path,
    command: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .with_context(|| {
            format!(
                "BIRD at {} did not answer {command:?} within {EXCHANGE_TIMEOUT:?}",
                socket.display()
            )
        })?
}

/// One connection to BIRD's control socket, greeted; commands are asked
/// one after another.
pub(super) struct Session {
    reader: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Session {
    /// Connects and reads BIRD's greeting.
    pub(super) async fn open(socket: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(socket).await.map_err(|error| {
            use std::io::ErrorKind::{ConnectionRefused, NotFound};
            if matches!(error.kind(), NotFound | ConnectionRefused) {
                return anyhow::Error::new(NotRunning {
                    socket: socket.to_owned(),
                    error,
                });
            }
            anyhow::Error::new(error).context(format!(
                "connecting to BIRD's control socket {}",
                socket.display()
            ))
        })?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let greeting = read_reply(&mut reader)
            .await
            .context("reading BIRD's greeting")?;
        if greeting.code != 1 {
            bail!(
                "unexpected greeting from BIRD ({}): {}",
                greeting.code,
                greeting.text
            );
        }
        Ok(Self { reader, write })
    }

    /// Sends one command and reads its reply.
    pub(super) async fn ask(&mut self, command: &str) -> anyhow::Result<Reply> {
        self.send(command).await?;
        read_reply(&mut self.reader)
            .await
            .with_context(|| format!("reading BIRD's reply to {command:?}"))
    }

    /// Sends one command and reads its reply, with every line's text (a
    /// listing: `show protocols`, `show route`).
    pub(super) async fn ask_listing(
        &mut self,
        command: &str,
    ) -> anyhow::Result<(Reply, Vec<String>)> {
        self.send(command).await?;
        let mut lines = Vec::new();
        let reply = read_reply_into(&mut self.reader, Some(&mut lines))
            .await
            .with_context(|| format!("reading BIRD's reply to {command:?}"))?;
        Ok((reply, lines))
    }

    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("writing to BIRD's control socket")
    }
}
