//! HTTP over plain sockets from the lab's client, reading what the lab's
//! nginx says about each response: which backend served it (`X-Backend`)
//! and whom nginx saw as its peer (`X-Client`, its `$remote_addr` and
//! `$remote_port`). The routed labs' tests (NAT, tunnels) share these:
//! bursts of one-connection requests, kept-alive connections, and long
//! `/slow` streams read on a thread of their own.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context as _};

use crate::lab::{in_netns, HTTP_PORT};

/// Bytes of nginx's `/slow` (24 KiB at 4 KiB/s: a six-second stream).
pub const SLOW_BYTES: usize = 24 * 1024;

/// What one response said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The backend that answered (`X-Backend`).
    pub backend: String,
    /// The peer nginx saw (`X-Client`).
    pub peer: SocketAddr,
    /// The body's length.
    pub body: usize,
}

/// Sends `GET path` (with `extra` header lines, each ending in CRLF) on
/// `stream` and reads one response with a Content-Length body; `buffer`
/// keeps what was read past it.
pub fn exchange_with(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    path: &str,
    extra: &str,
) -> anyhow::Result<Seen> {
    exchange_timed(stream, buffer, path, extra).map(|(seen, _)| seen)
}

/// `exchange_with`, also measuring the longest wait between two reads of
/// the response (the first one counted from the request sent): how long
/// a stream sat still, as across a failover. The one response reader.
fn exchange_timed(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    path: &str,
    extra: &str,
) -> anyhow::Result<(Seen, Duration)> {
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: vip\r\nUser-Agent: lb-tests\r\n{extra}\r\n")
            .as_bytes(),
    )?;
    let (mut longest, mut last) = (Duration::ZERO, Instant::now());
    let mut fill = |stream: &mut TcpStream, buffer: &mut Vec<u8>| -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = loop {
            match stream.read(&mut chunk) {
                // A signal, not the connection: read again, as every
                // client does.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        longest = longest.max(last.elapsed());
        last = Instant::now();
        ensure!(n > 0, "connection closed by the peer");
        buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buffer)?;
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "unexpected response: {}",
        head.lines().next().unwrap_or("")
    );
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no Content-Length in {head:?}"))?;
    let backend = header(&head, "x-backend").ok_or_else(|| anyhow!("no X-Backend"))?;
    let peer = peer_of(&head)?;
    while buffer.len() < end + length {
        fill(stream, buffer)?;
    }
    buffer.drain(..end + length);
    let seen = Seen {
        backend,
        peer,
        body: length,
    };
    Ok((seen, longest))
}

/// `exchange_with` without extra headers.
pub fn exchange(stream: &mut TcpStream, buffer: &mut Vec<u8>, path: &str) -> anyhow::Result<Seen> {
    exchange_with(stream, buffer, path, "")
}

/// Header `name` (case-insensitive) of a response head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// The peer nginx saw, from the `X-Client: ADDRESS PORT` header.
fn peer_of(head: &str) -> anyhow::Result<SocketAddr> {
    let client = header(head, "x-client").ok_or_else(|| anyhow!("no X-Client"))?;
    let (address, port) = client
        .split_once(' ')
        .ok_or_else(|| anyhow!("X-Client {client:?}"))?;
    Ok(SocketAddr::new(
        address.parse().context("X-Client address")?,
        port.parse().context("X-Client port")?,
    ))
}

/// A kept-alive connection through a VIP.
pub struct Conn {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// The first response on it.
    pub first: Seen,
}

impl Conn {
    /// Opens `count` connections from `netns` to `vip` (port 80), each
    /// waiting up to `connect` for its handshake, and sends one request on
    /// each. Fails at the first connection that fails.
    pub fn open(
        netns: &str,
        vip: IpAddr,
        count: usize,
        connect: Duration,
    ) -> anyhow::Result<Vec<Conn>> {
        let to = SocketAddr::new(vip, HTTP_PORT);
        in_netns(netns, move || -> anyhow::Result<Vec<Conn>> {
            (0..count)
                .map(|_| {
                    let mut stream = TcpStream::connect_timeout(&to, connect)?;
                    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                    stream.set_nodelay(true)?;
                    let mut buffer = Vec::new();
                    let first = exchange(&mut stream, &mut buffer, "/")?;
                    Ok(Conn {
                        stream,
                        buffer,
                        first,
                    })
                })
                .collect()
        })?
    }

    /// The connection's own (client-side) port.
    pub fn local_port(&self) -> anyhow::Result<u16> {
        Ok(self.stream.local_addr()?.port())
    }

    /// How long a read on the connection waits (5 s from `open`): longer
    /// for a request that has to outlast TCP's retransmissions while the
    /// path heals.
    pub fn set_read_timeout(&self, timeout: Duration) -> anyhow::Result<()> {
        Ok(self.stream.set_read_timeout(Some(timeout))?)
    }

    /// One more request on the connection.
    pub fn get(&mut self) -> anyhow::Result<Seen> {
        exchange(&mut self.stream, &mut self.buffer, "/")
    }
}

/// Kept-alive connections asking on a thread of their own, each every
/// 100 ms, while a test changes things under them: every answer must come
/// from the connection's first backend and see its first peer (a NAT'd
/// connection keeps its source port).
pub struct Talker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: thread::JoinHandle<(u32, Vec<String>)>,
}

impl Talker {
    /// Starts asking on `conns`.
    pub fn start(mut conns: Vec<Conn>) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut rounds = 0u32;
            let mut errors = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for (i, conn) in conns.iter_mut().enumerate() {
                    match conn.get() {
                        Ok(seen) if seen == conn.first => {}
                        Ok(seen) => {
                            errors.push(format!("conn {i}: {:?} became {seen:?}", conn.first));
                        }
                        Err(e) => errors.push(format!("conn {i} ({:?}): {e:#}", conn.first)),
                    }
                }
                rounds += 1;
                thread::sleep(Duration::from_millis(100));
            }
            (rounds, errors)
        });
        Self { stop, handle }
    }

    /// Stops asking: the rounds asked and every failure (a wrong answer
    /// or an error), empty if none.
    pub fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .join()
            .unwrap_or_else(|_| (0, vec!["the talker thread panicked".to_owned()]))
    }
}

/// What a burst of one-connection requests produced.
#[derive(Debug, Default)]
pub struct Burst {
    /// Responses per backend.
    pub by_backend: BTreeMap<String, u64>,
    /// Every client address nginx saw.
    pub peers: BTreeSet<IpAddr>,
    /// Lowest and highest client port nginx saw.
    pub ports: Option<(u16, u16)>,
    /// Failed requests.
    pub failed: u64,
    /// The first few errors.
    pub errors: Vec<String>,
}

impl Burst {
    /// Responses received.
    pub fn succeeded(&self) -> u64 {
        self.by_backend.values().sum()
    }
}

/// `count` requests from `netns` to `vip`, each on a new connection that
/// the client closes first (so the backend never holds a TIME_WAIT for a
/// NAT port), 5 s timeouts.
pub fn burst(netns: &str, vip: IpAddr, count: u32) -> Burst {
    burst_from(netns, None, vip, count)
}

/// `burst` with every connection from the client's address `from` (one of
/// several on its interface; the kernel's choice when `None`), so a test
/// can tell clients apart by address (client affinity).
pub fn burst_from(netns: &str, from: Option<IpAddr>, vip: IpAddr, count: u32) -> Burst {
    let to = SocketAddr::new(vip, HTTP_PORT);
    let from = from.map(|address| SocketAddr::new(address, 0));
    in_netns(netns, move || {
        let mut out = Burst::default();
        for _ in 0..count {
            let result = (|| -> anyhow::Result<Seen> {
                let mut stream = connect_from(from, to)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                exchange(&mut stream, &mut Vec::new(), "/")
            })();
            match result {
                Ok(seen) => {
                    *out.by_backend.entry(seen.backend).or_default() += 1;
                    out.peers.insert(seen.peer.ip());
                    let port = seen.peer.port();
                    out.ports = Some(
                        out.ports
                            .map_or((port, port), |(lo, hi)| (lo.min(port), hi.max(port))),
                    );
                }
                Err(e) => {
                    out.failed += 1;
                    if out.errors.len() < 5 {
                        out.errors.push(format!("{e:#}"));
                    }
                }
            }
        }
        out
    })
    .expect("thread in the client's namespace")
}

/// A `/slow` stream through a VIP: its backend, the peer nginx saw, and a
/// thread that reads the rest of the body.
pub struct Stream {
    /// The backend serving it.
    pub backend: String,
    /// The peer nginx saw.
    pub peer: SocketAddr,
    /// The client's end.
    pub local: SocketAddr,
    /// The body's length and the longest wait between two reads, or what
    /// went wrong.
    pub handle: thread::JoinHandle<Result<(usize, Duration), String>>,
}

/// Opens a `/slow` stream from `netns` through `vip` (port 80) and starts
/// reading it; panics if the response does not start.
pub fn open_stream(netns: &str, vip: IpAddr) -> Stream {
    try_open_stream(netns, vip).unwrap_or_else(|e| panic!("a /slow stream through {vip}: {e:#}"))
}

/// Opens a `/slow` stream from `netns` through `vip` (port 80) and starts
/// reading it; returns once the response headers arrived.
pub fn try_open_stream(netns: &str, vip: IpAddr) -> anyhow::Result<Stream> {
    try_open_stream_from(netns, None, vip)
}

/// Opens a `/slow` stream from `netns` through `vip` (port 80) from the
/// source address `from` (the kernel's choice when `None`), so a test can
/// pick flows whose Maglev choice it knows; panics if the response does
/// not start.
pub fn open_stream_from(netns: &str, from: SocketAddr, vip: IpAddr) -> Stream {
    try_open_stream_from(netns, Some(from), vip)
        .unwrap_or_else(|e| panic!("a /slow stream from {from} through {vip}: {e:#}"))
}

fn connect_from(from: Option<SocketAddr>, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let timeout = Duration::from_secs(5);
    let Some(from) = from else {
        return Ok(TcpStream::connect_timeout(&to, timeout)?);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(to),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&from.into())
        .with_context(|| format!("binding {from}"))?;
    socket.connect_timeout(&to.into(), timeout)?;
    Ok(socket.into())
}

fn try_open_stream_from(
    netns: &str,
    from: Option<SocketAddr>,
    vip: IpAddr,
) -> anyhow::Result<Stream> {
    let to = SocketAddr::new(vip, HTTP_PORT);
    let (stream, head) = in_netns(netns, move || -> anyhow::Result<(TcpStream, String)> {
        let mut stream = connect_from(from, to)?;
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
    let backend = header(&head, "x-backend").context("no X-Backend header")?;
    let peer = peer_of(&head).context("no X-Client header")?;
    let local = stream.local_addr()?;
    let handle = thread::spawn(move || {
        let mut stream = stream;
        let (mut length, mut longest, mut last) = (0, Duration::ZERO, Instant::now());
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk) {
                // A signal, not the connection: read again, as every
                // client does.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => read.map_err(|e| {
                    format!(
                        "{e} after {length} bytes, {:?} since the last",
                        last.elapsed()
                    )
                })?,
            };
            longest = longest.max(last.elapsed());
            last = Instant::now();
            if n == 0 {
                return Ok((length, longest));
            }
            length += n;
        }
    });
    Ok(Stream {
        backend,
        peer,
        local,
        handle,
    })
}

/// Waits for every stream's download to end: what went wrong with each
/// one that did not run to its end (empty: none was cut).
pub fn cut_streams(streams: Vec<Stream>) -> Vec<String> {
    streams
        .into_iter()
        .filter_map(|s| s.finish().err())
        .collect()
}

impl Stream {
    /// Waits for the download to end: Ok when every byte of `/slow`
    /// arrived, what went wrong (or the short length) otherwise.
    pub fn finish(self) -> Result<(), String> {
        match self.handle.join() {
            Ok(Ok((SLOW_BYTES, _))) => Ok(()),
            Ok(Ok((n, _))) => Err(format!("{} from {}: {n} bytes", self.local, self.backend)),
            Ok(Err(e)) => Err(format!("{} from {}: {e}", self.local, self.backend)),
            Err(_) => Err(format!("{}: the reader panicked", self.local)),
        }
    }
}

/// `/slow` bodies a [`LongStream`] asks for at most (six seconds each)
/// before it gives up waiting for its event: far longer than any test
/// takes to get there, yet a bound on a stream that never sees it.
const MAX_BODIES: usize = 20;

/// A kept-alive connection through a VIP that asks for `/slow` (24 KiB at
/// 4 KiB/s) again and again on a thread of its own until a whole body it
/// asked for after an event (a failover, the client moved to another
/// node) has arrived: it is still flowing when the event comes however
/// long the test took to get there, and a whole request (its ACKs too)
/// then crosses whatever the event changed. The failover and mesh tests
/// share it.
pub struct LongStream {
    /// The answer to its first request (`/`): the backend and the peer
    /// nginx saw, which every later answer must repeat (the flow stayed
    /// where it was; a NAT'd one kept its address and port).
    pub first: Seen,
    /// The client's end, for looking the flow up on the LB nodes.
    pub local: SocketAddr,
    /// The bodies read and the longest wait between two reads (how long
    /// the stream sat still across the event), or what went wrong; a
    /// field, so that a test can still read `first` once it joined.
    pub handle: thread::JoinHandle<Result<(usize, Duration), String>>,
}

impl LongStream {
    /// Opens a connection from `netns` to `vip` (port 80), from `from`
    /// when given (bound with SO_REUSEADDR, so a test can pick flows whose
    /// Maglev choice it knows; the kernel's choice otherwise), asks for
    /// `/`, then streams `/slow` bodies until one asked for once `event`
    /// is set has arrived. `what` names the event in the errors
    /// ("failover", "move"). Panics if the connection fails to open.
    pub fn open(
        netns: &str,
        vip: IpAddr,
        from: Option<SocketAddr>,
        event: &Arc<AtomicBool>,
        what: &'static str,
    ) -> Self {
        let to = SocketAddr::new(vip, HTTP_PORT);
        let (mut stream, mut buffer, first) = in_netns(
            netns,
            move || -> anyhow::Result<(TcpStream, Vec<u8>, Seen)> {
                let mut stream = connect_from(from, to)?;
                // Longer than any failover or move the lab causes (TCP
                // backoff included), shorter than a hang.
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut buffer = Vec::new();
                let first = exchange(&mut stream, &mut buffer, "/")?;
                Ok((stream, buffer, first))
            },
        )
        .and_then(|opened| opened)
        .unwrap_or_else(|e| match from {
            Some(from) => panic!("a kept-alive connection from {from}: {e:#}"),
            None => panic!("a kept-alive connection through {vip}: {e:#}"),
        });
        let local = stream.local_addr().expect("local address");
        let event = Arc::clone(event);
        let want = first.clone();
        let handle = thread::spawn(move || {
            let mut stall = Duration::ZERO;
            for body in 1..=MAX_BODIES {
                let last = event.load(Ordering::SeqCst);
                let asked = Instant::now();
                let (seen, longest) = exchange_timed(&mut stream, &mut buffer, "/slow", "")
                    .map_err(|e| {
                        format!(
                            "body {body} (asked for {} the {what}): {e:#} after {:?}",
                            if last { "after" } else { "before" },
                            asked.elapsed()
                        )
                    })?;
                stall = stall.max(longest);
                if (&seen.backend, seen.peer, seen.body) != (&want.backend, want.peer, SLOW_BYTES) {
                    return Err(format!(
                        "body {body} answered {seen:?}, the connection began with {want:?}"
                    ));
                }
                if last {
                    return Ok((body, stall));
                }
            }
            Err(format!("no {what} within {MAX_BODIES} bodies"))
        });
        Self {
            first,
            local,
            handle,
        }
    }
}
