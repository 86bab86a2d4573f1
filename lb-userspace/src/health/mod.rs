//! Backend health checks for lbd: HAProxy-style `inter`/`fastinter`/
//! `rise`/`fall` semantics, split into a pure state machine ([`machine`]),
//! the network probes ([`probe`](mod@probe)) and the tokio tasks that run
//! them and report state changes ([`driver`]). This file only wires the
//! parts together (plus test-only servers).

pub(crate) mod driver;
mod link;
pub(crate) mod machine;
mod pgsql;
pub(crate) mod probe;
pub(crate) mod tunnel_socket;

pub(crate) use driver::{HealthChecker, HealthEvent, HealthStatus, Link};
pub(crate) use machine::{CheckSettings, Health};
pub(crate) use probe::{CheckKind, ProbeResult, ProbeTarget};
pub(crate) use tunnel_socket::TunnelPath;

/// Tiny HTTP servers on 127.0.0.1 for the probe and driver tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::{
        net::SocketAddr,
        sync::{
            atomic::{AtomicBool, AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        sync::mpsc,
    };

    /// What the server does with a request.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Behavior {
        /// 200 while `healthy`, else 503.
        Status,
        /// Reads the request and never answers.
        Silent,
        /// 200 with a 64 MiB body of which it sends 1 MiB, then stalls.
        Huge,
        /// 200 announcing a 100-byte body, 2 bytes of it, then stalls with
        /// the connection open (a slow or keep-alive server).
        Stalled,
    }

    /// A running test server.
    pub(crate) struct TestServer {
        pub(crate) addr: SocketAddr,
        pub(crate) healthy: Arc<AtomicBool>,
        pub(crate) connections: Arc<AtomicUsize>,
        pub(crate) requests: mpsc::UnboundedReceiver<String>,
    }

    impl TestServer {
        pub(crate) fn set_healthy(&self, healthy: bool) {
            self.healthy.store(healthy, Ordering::SeqCst);
        }

        pub(crate) fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    /// Starts a server; it lives as long as the test's runtime.
    pub(crate) async fn serve(behavior: Behavior) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, requests) = mpsc::unbounded_channel();
        let (h, c) = (healthy.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let healthy = h.load(Ordering::SeqCst);
                tokio::spawn(answer(stream, behavior, healthy, tx.clone()));
            }
        });
        TestServer {
            addr,
            healthy,
            connections,
            requests,
        }
    }

    async fn answer(
        mut stream: TcpStream,
        behavior: Behavior,
        healthy: bool,
        requests: mpsc::UnboundedSender<String>,
    ) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = requests.send(String::from_utf8_lossy(&head).into_owned());
        match behavior {
            Behavior::Status => {
                let response: &[u8] = if healthy {
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                } else {
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nsick"
                };
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            }
            Behavior::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Behavior::Stalled => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Behavior::Huge => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 67108864\r\n\r\n")
                    .await;
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..16 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}
