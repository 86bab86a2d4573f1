//! Connecting to lbd's socket: a full listen backlog waited for a while,
//! and a failed connect sorted into what the user should do about it.

use std::{io, path::Path, time::Duration};

use super::{Client, ClientError};

/// How long a connect is retried while the socket's listen backlog is
/// full (a non-blocking connect then fails with `EAGAIN` rather than
/// waiting): lbd takes newcomers as its connections give way, so a full
/// backlog is a short wait, not a refusal.
pub(super) const BACKLOG_WAIT: Duration = Duration::from_secs(2);
/// The first pause between those retries; it doubles up to
/// [`MAX_BACKLOG_PAUSE`].
const FIRST_BACKLOG_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between those retries.
const MAX_BACKLOG_PAUSE: Duration = Duration::from_millis(200);

impl Client {
    /// Sorts a connect error into what the user should do about it.
    pub(super) fn connect_error(&self, source: io::Error) -> ClientError {
        let path = self.path.clone();
        match source.kind() {
            io::ErrorKind::NotFound => ClientError::NotRunning { path },
            // A file is there: a socket nobody listens on, or (Linux
            // refuses those the same way) something else.
            io::ErrorKind::ConnectionRefused => match not_a_socket(&path) {
                Some(what) => ClientError::NotASocket { path, what },
                None => ClientError::NotListening { path },
            },
            // Still full after the retries.
            io::ErrorKind::WouldBlock => ClientError::Busy {
                path,
                after: BACKLOG_WAIT,
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { path },
            // Too long for a socket address, or a name too long, or under
            // a file or a symlink loop: no socket can be there.
            io::ErrorKind::InvalidInput
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => ClientError::BadSocketPath { path, source },
            _ if source.raw_os_error() == Some(libc::ELOOP) => {
                ClientError::BadSocketPath { path, source }
            }
            _ => ClientError::Connect { path, source },
        }
    }
}

/// What is at `path` when it is not a socket ("a regular file", "a
/// directory", ...); `None` for a socket, or when it cannot be told.
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(if kind.is_socket() {
        return None;
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "neither a socket nor a regular file"
    })
}

/// `connect()`, tried again (pauses doubling from [`FIRST_BACKLOG_PAUSE`]
/// to [`MAX_BACKLOG_PAUSE`]) while it fails with `WouldBlock` (`EAGAIN`:
/// the listen backlog is full), for up to `wait`; then its last error.
pub(super) async fn retry_while_backlog_full<T, F>(
    wait: Duration,
    mut connect: impl FnMut() -> F,
) -> io::Result<T>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = FIRST_BACKLOG_PAUSE;
    loop {
        match connect().await {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() + pause <= deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKLOG_PAUSE);
            }
            result => return result,
        }
    }
}
