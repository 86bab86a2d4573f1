//! `tls = true` checks against local servers: a TLS server with a fresh
//! self-signed certificate (which the check must accept unverified), and
//! plain TCP servers that answer no TLS.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
    ServerConfig,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

use super::*;
use crate::health::probe::{probe, tests::http_target, CheckKind, Outcome, ProbeTarget};

const TIMEOUT: Duration = Duration::from_secs(2);

/// What a test TLS server does once its handshake is done.
#[derive(Clone, Copy)]
enum Then {
    /// Closes.
    Close,
    /// Reads a request's head and answers `status` with `body`.
    Answer(u16, &'static str),
}

/// What a test TLS server saw of one connection.
#[derive(Debug)]
struct Seen {
    /// The SNI the client sent.
    sni: Option<String>,
    /// The ALPN protocols offered.
    alpn: Option<Vec<Vec<u8>>>,
    /// The request head read (with [`Then::Answer`]).
    request: String,
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for
/// `cert.example`; each connection's [`Seen`] comes on the channel.
async fn tls_server(then: Then) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let certified = rcgen::generate_simple_self_signed(vec!["cert.example".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // The hello is recorded before the handshake ends: a
                // TCP check resets the connection once it has its answer.
                let lazy = rustls::server::Acceptor::default();
                let Ok(start) = tokio_rustls::LazyConfigAcceptor::new(lazy, stream).await else {
                    return;
                };
                let hello = start.client_hello();
                let mut seen = Seen {
                    sni: hello.server_name().map(str::to_owned),
                    alpn: hello.alpn().map(|a| a.map(<[u8]>::to_vec).collect()),
                    request: String::new(),
                };
                let Ok(mut tls) = start.into_stream(config.clone()).await else {
                    let _ = tx.send(seen);
                    return;
                };
                if let Then::Answer(status, body) = then {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.request = String::from_utf8_lossy(&head).into_owned();
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
                let _ = tx.send(seen);
            });
        }
    });
    (address, rx)
}

/// A plain TCP server that writes `answer` (if any) and closes.
async fn plain_server(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(answer).await;
            // Let the client's hello arrive so the close is orderly.
            let mut buf = [0u8; 512];
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await;
        }
    });
    address
}

fn tcp_tls(address: SocketAddr) -> ProbeTarget {
    ProbeTarget {
        address,
        kind: CheckKind::Tcp,
        through: None,
        tls: true,
    }
}

fn https(address: SocketAddr, host: Option<&str>, expect_body: Option<&str>) -> ProbeTarget {
    let mut target = ProbeTarget {
        tls: true,
        ..http_target(address, "/healthz", host)
    };
    if let CheckKind::Http { expect_body: b, .. } = &mut target.kind {
        *b = expect_body.map(str::to_owned);
    }
    target
}

/// The next connection's [`Seen`], within a few seconds.
async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .expect("the server saw no connection")
        .expect("the server ended")
}

fn label(outcome: &Outcome) -> Option<&'static str> {
    outcome.failure_label()
}

#[tokio::test]
async fn a_tcp_tls_check_passes_once_the_handshake_completes() {
    let (address, mut seen) = tls_server(Then::Close).await;
    let result = probe(&tcp_tls(address), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);
    let seen = next(&mut seen).await;
    // A TCP check offers no ALPN, and an IP target sends no SNI.
    assert_eq!((seen.alpn, seen.sni), (None, None));
}

#[tokio::test]
async fn a_tcp_tls_check_of_a_server_without_tls_fails_by_reason_tls() {
    for answer in [&b"SSH-2.0-OpenSSH_9.6\r\n"[..], b""] {
        let address = plain_server(answer).await;
        let result = probe(&tcp_tls(address), TIMEOUT).await;
        assert_eq!(label(&result.outcome), Some("tls"), "{:?}", result.outcome);
        assert!(
            result.outcome.to_string().starts_with("TLS handshake: "),
            "{}",
            result.outcome
        );
        // The same server passes a plain TCP check.
        let plain = ProbeTarget {
            tls: false,
            ..tcp_tls(address)
        };
        assert_eq!(probe(&plain, TIMEOUT).await.outcome, Outcome::Success);
    }
}

#[tokio::test]
async fn a_tls_check_of_a_closed_port_is_refused_not_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let result = probe(&tcp_tls(address), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Refused));
}

#[tokio::test]
async fn a_tls_check_of_a_silent_server_times_out_within_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // Accepts (the kernel does) and never answers the hello.
    let timeout = Duration::from_millis(200);
    let result = probe(&tcp_tls(address), timeout).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
    assert!(result.latency < timeout * 4, "{:?}", result.latency);
    drop(listener);
}

#[tokio::test]
async fn an_http_tls_check_gets_over_tls_with_alpn_and_sni() {
    let (address, mut seen) = tls_server(Then::Answer(200, "status: OK")).await;
    let result = probe(&https(address, Some("api.example:8443"), None), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);
    let seen = next(&mut seen).await;
    assert_eq!(seen.sni.as_deref(), Some("api.example"));
    assert_eq!(seen.alpn, Some(vec![b"http/1.1".to_vec()]));
    assert!(
        seen.request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{}",
        seen.request
    );
    assert!(
        seen.request
            .to_ascii_lowercase()
            .contains("\r\nhost: api.example:8443\r\n"),
        "{}",
        seen.request
    );
}

#[tokio::test]
async fn an_http_tls_check_sends_no_sni_for_an_ip_host() {
    for host in [
        None,
        Some("127.0.0.1"),
        Some("127.0.0.1:443"),
        Some("[::1]:443"),
    ] {
        let (address, mut seen) = tls_server(Then::Answer(200, "")).await;
        let result = probe(&https(address, host, None), TIMEOUT).await;
        assert_eq!(result.outcome, Outcome::Success, "{host:?}");
        assert_eq!(next(&mut seen).await.sni, None, "{host:?}");
    }
}

#[tokio::test]
async fn an_http_tls_check_judges_status_and_body() {
    let (address, _seen) = tls_server(Then::Answer(200, "status: OK")).await;
    let passes = probe(&https(address, None, Some("status: OK")), TIMEOUT).await;
    assert_eq!(passes.outcome, Outcome::Success);
    let lacks = probe(&https(address, None, Some("ready")), TIMEOUT).await;
    assert_eq!(
        label(&lacks.outcome),
        Some("http_body"),
        "{:?}",
        lacks.outcome
    );

    let (address, _seen) = tls_server(Then::Answer(503, "")).await;
    let result = probe(&https(address, None, None), TIMEOUT).await;
    assert_eq!(
        result.outcome,
        Outcome::Failure(FailureReason::HttpStatus {
            got: 503,
            expected: 200
        })
    );
}

#[tokio::test]
async fn an_http_tls_check_of_a_plain_http_server_fails_by_reason_tls() {
    let address = plain_server(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    let result = probe(&https(address, None, None), TIMEOUT).await;
    assert_eq!(label(&result.outcome), Some("tls"), "{:?}", result.outcome);
}

#[test]
fn sni_is_a_dns_name_without_its_port() {
    let name = |host: &str| sni_name(host).map(|n| n.to_str().into_owned());
    assert_eq!(name("api.example").as_deref(), Some("api.example"));
    assert_eq!(name("api.example:8443").as_deref(), Some("api.example"));
    for host in [
        "10.0.0.1",
        "10.0.0.1:443",
        "[2001:db8::1]:443",
        "[::1]",
        "a b",
        "x:y:z",
    ] {
        assert_eq!(name(host), None, "{host}");
    }
}
