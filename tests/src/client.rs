//! The lab's HTTP client: bounded bursts of requests from the client
//! namespace, one new TCP connection per request, tallied by who answered.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use crate::lab::{in_netns, HTTP_PORT};

/// What a burst of requests produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Successful responses by body (each backend answers with its name).
    pub by_backend: BTreeMap<String, u64>,
    /// Requests that failed, with the first few errors.
    pub failed: u64,
    /// Up to five error messages.
    pub errors: Vec<String>,
}

impl Tally {
    /// Successful requests.
    pub fn succeeded(&self) -> u64 {
        self.by_backend.values().sum()
    }

    /// Adds what another burst produced (a burst sent in steps).
    pub fn add(&mut self, other: Tally) {
        for (backend, served) in other.by_backend {
            *self.by_backend.entry(backend).or_default() += served;
        }
        self.failed += other.failed;
        let room = 5usize.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
    }
}

/// The URL of `/` on the lab's HTTP port of `address`.
fn url(address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => format!("http://{a}:{HTTP_PORT}/"),
        IpAddr::V6(a) => format!("http://[{a}]:{HTTP_PORT}/"),
    }
}

/// An HTTP client that opens a new connection for every request.
fn one_shot_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Sends `count` GET requests for `/` to `address` from namespace `netns`,
/// each on a new connection, with a 5 s timeout each.
pub fn burst(netns: &str, address: IpAddr, count: u32) -> anyhow::Result<Tally> {
    let url = url(address);
    in_netns(netns, move || {
        let agent = one_shot_agent(Duration::from_secs(5));
        let mut tally = Tally::default();
        for _ in 0..count {
            // No "Connection: close": the client closes first, so its port
            // sits in TIME_WAIT and is not reused for another request of
            // the burst: one request, one connection, one 5-tuple.
            let result = agent
                .get(&url)
                .call()
                .and_then(|mut response| response.body_mut().read_to_string());
            match result {
                Ok(body) => *tally.by_backend.entry(body.trim().to_owned()).or_default() += 1,
                Err(error) => {
                    tally.failed += 1;
                    if tally.errors.len() < 5 {
                        tally.errors.push(error.to_string());
                    }
                }
            }
        }
        tally
    })
}

/// A kept-alive HTTP/1.1 connection to a VIP, for tests that must know
/// that later requests use the same connection (and so the same flow):
/// ureq hides connection reuse, so this speaks just enough HTTP/1.1 (GET,
/// Content-Length bodies) by hand.
pub struct KeepAlive {
    stream: std::net::TcpStream,
    buffer: Vec<u8>,
}

impl KeepAlive {
    /// Opens `count` connections to `address` from namespace `netns`.
    pub fn open(netns: &str, address: IpAddr, count: usize) -> anyhow::Result<Vec<KeepAlive>> {
        let target = std::net::SocketAddr::new(address, HTTP_PORT);
        in_netns(netns, move || -> anyhow::Result<Vec<KeepAlive>> {
            (0..count)
                .map(|_| Self::connect_here(target, Duration::from_secs(5)))
                .collect()
        })?
    }

    /// Opens one connection to `target` from the calling thread's
    /// namespace, `timeout` to connect and for each read (the one-shot
    /// clients: one request, then the client closes first).
    pub fn connect_here(
        target: std::net::SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<KeepAlive> {
        let stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            stream,
            buffer: Vec::new(),
        })
    }

    /// Opens one connection to `address` from namespace `netns` with
    /// source port `port`, so the flow's 5-tuple is known in advance.
    /// `port` must lie below the namespace's ephemeral range (32768 and
    /// up by default): an earlier connection of the test may still hold
    /// an ephemeral port in TIME_WAIT, and binding it then fails.
    pub fn open_from_port(netns: &str, address: IpAddr, port: u16) -> anyhow::Result<KeepAlive> {
        use socket2::{Domain, Socket, Type};
        let target = std::net::SocketAddr::new(address, HTTP_PORT);
        in_netns(netns, move || -> anyhow::Result<KeepAlive> {
            let local: std::net::SocketAddr = match address {
                IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
                IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
            };
            let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.bind(&local.into())?;
            socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
            let stream: std::net::TcpStream = socket.into();
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.set_nodelay(true)?;
            Ok(KeepAlive {
                stream,
                buffer: Vec::new(),
            })
        })?
    }

    /// The client's end of the connection (to look its flow up).
    pub fn local(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    /// Sends one GET / and returns the body (the backend's name).
    pub fn request(&mut self) -> anyhow::Result<String> {
        use std::io::Write as _;
        self.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: vip\r\nUser-Agent: lb-tests\r\n\r\n")?;
        let header_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..header_end]).into_owned();
        if !head.starts_with("HTTP/1.1 200") {
            anyhow::bail!("unexpected response: {}", head.lines().next().unwrap_or(""));
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| anyhow::anyhow!("no Content-Length in {head:?}"))?;
        while self.buffer.len() < header_end + length {
            self.fill()?;
        }
        let body = String::from_utf8_lossy(&self.buffer[header_end..header_end + length])
            .trim()
            .to_owned();
        self.buffer.drain(..header_end + length);
        return Ok(body);

        fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
            haystack.windows(needle.len()).position(|w| w == needle)
        }
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        use std::io::Read as _;
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("connection closed by the peer");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// One request's result in a timed run.
#[derive(Debug, Clone)]
pub struct Timed {
    /// When it started, from the start of the run.
    pub at: Duration,
    /// The backend that answered, or the error.
    pub result: Result<String, String>,
}

/// Sends requests for `/` to `address` from `netns`, one new connection
/// each, back to back (10 ms pause after a failure), until `stop` is set
/// or `limit` passes (bounded either way); returns each request's start
/// time and outcome.
pub fn run_until(
    netns: &str,
    address: IpAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    limit: Duration,
) -> anyhow::Result<Vec<Timed>> {
    let url = url(address);
    in_netns(netns, move || {
        let agent = one_shot_agent(Duration::from_secs(2));
        let start = std::time::Instant::now();
        let mut out = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < limit {
            let at = start.elapsed();
            let result = agent
                .get(&url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
                .map(|b| b.trim().to_owned())
                .map_err(|e| e.to_string());
            let failed = result.is_err();
            out.push(Timed { at, result });
            if failed {
                // A client backs off a little before retrying.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        out
    })
}

/// A bounded background load ([`run_until`], one new connection per
/// request) until the flag is set; join the handle for the results.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<anyhow::Result<Vec<Timed>>>,
}

impl Load {
    /// Starts sending to `address` from `netns` (for at most `limit`).
    pub fn start(netns: &str, address: IpAddr, limit: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (netns, flag) = (netns.to_owned(), stop.clone());
        let handle = std::thread::spawn(move || run_until(&netns, address, flag, limit));
        Self { stop, handle }
    }

    /// Stops it and returns every request's outcome.
    pub fn finish(self) -> anyhow::Result<Vec<Timed>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    }
}

/// The failed requests of a run, with when they started.
pub fn failures(results: &[Timed]) -> Vec<String> {
    results
        .iter()
        .filter_map(|t| t.result.clone().err().map(|e| format!("{:?}: {e}", t.at)))
        .collect()
}
