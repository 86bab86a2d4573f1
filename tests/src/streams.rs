//! Long-lived streams through a VIP: each downloads the backends' `/slow`
//! (24 KiB at 4 KiB/s, about 6 s) on one connection, so a node failure in
//! the middle of it either breaks the stream or does not.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    thread,
    time::Duration,
};

use anyhow::Context as _;

use crate::lab::{in_netns, HTTP_PORT};

/// Bytes of `/slow`.
pub const SLOW_BYTES: usize = 24 * 1024;

/// One running download.
pub struct SlowStream {
    /// The backend serving it (its `X-Backend` header).
    pub backend: String,
    /// The client's end of the connection (the flow's source).
    pub local: SocketAddr,
    handle: thread::JoinHandle<Result<usize, String>>,
}

impl SlowStream {
    /// Starts a download of `/slow` from `vip` in namespace `netns`;
    /// returns once the response headers arrived.
    pub fn open(netns: &str, vip: IpAddr) -> anyhow::Result<Self> {
        let (stream, head) = in_netns(netns, move || -> anyhow::Result<(TcpStream, String)> {
            let mut stream = TcpStream::connect_timeout(
                &SocketAddr::new(vip, HTTP_PORT),
                Duration::from_secs(5),
            )?;
            // Longer than any failover the lab causes, shorter than a hang.
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(b"GET /slow HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte)?;
                head.push(byte[0]);
            }
            Ok((stream, String::from_utf8_lossy(&head).into_owned()))
        })??;
        let backend = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Backend: "))
            .context("no X-Backend header")?
            .trim()
            .to_owned();
        let local = stream.local_addr()?;
        let handle = thread::spawn(move || {
            let mut stream = stream;
            let mut body = Vec::new();
            stream.read_to_end(&mut body).map_err(|e| e.to_string())?;
            Ok(body.len())
        });
        Ok(Self {
            backend,
            local,
            handle,
        })
    }

    /// Waits for the download to end: Ok when every byte arrived, the
    /// error (or the short length) otherwise.
    pub fn finish(self) -> Result<(), String> {
        match self.handle.join() {
            Ok(Ok(SLOW_BYTES)) => Ok(()),
            Ok(Ok(n)) => Err(format!("{} from {}: {n} bytes", self.local, self.backend)),
            Ok(Err(e)) => Err(format!("{} from {}: {e}", self.local, self.backend)),
            Err(_) => Err(format!("{}: the reader panicked", self.local)),
        }
    }
}
