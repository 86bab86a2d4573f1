//! The admin socket's file: never taken over from a live server, a stale
//! one replaced, the new one given its mode and group before it appears at
//! its path, and removed on the way out only if it is still this server's.

use std::{
    fs::Permissions,
    io,
    os::{
        fd::OwnedFd,
        unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::{io_error, ServeOptions, ServerError, PROBE_TIMEOUT};

/// The socket file at its final path; dropping it removes the file, but only if
/// it is still the one this server created.
#[derive(Debug)]
pub(super) struct SocketFile {
    pub(super) path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                match std::fs::remove_file(&self.path) {
                    Ok(()) => debug!(path = %self.path.display(), "admin socket removed"),
                    Err(e) => {
                        warn!(path = %self.path.display(), error = %e, "removing the admin socket");
                    }
                }
            }
            Ok(_) => {
                let path = self.path.display();
                info!(%path, "admin socket was replaced by another; leaving it");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %self.path.display(), error = %e, "checking the admin socket"),
        }
    }
}

/// Checks what is at `path`: nothing (`false`), a stale socket nobody answers on
/// (`true`), or an error for a live server or anything that is not a socket.
pub(super) async fn check_existing(path: &Path) -> Result<bool, ServerError> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ServerError::Probe {
                path: path.to_owned(),
                source,
            })
        }
    }
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(_)) => Err(ServerError::AlreadyRunning {
            path: path.to_owned(),
        }),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(true),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Ok(Err(source)) => Err(ServerError::Probe {
            path: path.to_owned(),
            source,
        }),
        Err(_) => Err(ServerError::Probe {
            path: path.to_owned(),
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {PROBE_TIMEOUT:?}"),
            ),
        }),
    }
}

/// Removes the socket at `path` if it is stale (nobody listens on it),
/// for `lbd --cleanup`: `true` if it was removed, `false` if there was
/// none (or another took its place meanwhile); an error, and the file
/// left alone, for a live server or anything that is not a socket.
pub(super) async fn remove_if_stale(path: &Path) -> Result<bool, ServerError> {
    let probed = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("checking", path)(e)),
    };
    if !check_existing(path).await? {
        return Ok(false);
    }
    // Only the file found stale: not a socket an lbd started meanwhile.
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.dev() == probed.dev() && meta.ino() == probed.ino() => {
            tokio::fs::remove_file(path)
                .await
                .map_err(io_error("removing", path))?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("checking", path)(e)),
    }
}

/// Removes `path` if it is a socket; an error if it is anything else.
pub(super) async fn remove_socket_file(path: &Path) -> Result<(), ServerError> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => tokio::fs::remove_file(path)
            .await
            .map_err(io_error("removing", path)),
        Ok(_) => Err(ServerError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("checking", path)(e)),
    }
}

/// Gives the freshly bound socket at `temporary` its mode and group and moves it
/// to `path`, over a stale socket if there is one.
pub(super) async fn install(
    temporary: &Path,
    path: &Path,
    options: &ServeOptions,
) -> Result<SocketFile, ServerError> {
    tokio::fs::set_permissions(temporary, Permissions::from_mode(options.mode))
        .await
        .map_err(io_error("setting the mode of", temporary))?;
    if let Some(gid) = options.group {
        std::os::unix::fs::chown(temporary, None, Some(gid))
            .map_err(io_error("changing the group of", temporary))?;
    }
    let meta = tokio::fs::symlink_metadata(temporary)
        .await
        .map_err(io_error("checking", temporary))?;
    tokio::fs::rename(temporary, path)
        .await
        .map_err(io_error("moving the admin socket to", path))?;
    Ok(SocketFile {
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// How many connections may wait to be accepted (the kernel caps it at
/// `net.core.somaxconn`); the server's own slots limit what it serves.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds a stream socket at `temporary` without listening on it: until
/// [`start_listening`], a connect is refused, so nobody the umask let in
/// before [`install`] set the mode and group gets a queued connection.
pub(super) fn bind_unlistened(temporary: &Path) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(temporary)?)?;
    Ok(socket)
}

/// Starts listening on a socket [`bind_unlistened`] bound, for tokio.
pub(super) fn start_listening(socket: Socket) -> io::Result<UnixListener> {
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(OwnedFd::from(
        socket,
    )))
}
