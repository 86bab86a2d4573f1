use std::net::{Ipv6Addr, SocketAddrV6};

use tokio::net::TcpListener;

use super::*;
use crate::health::{
    probe::{
        probe,
        tests::{http_target, TIMEOUT},
        CheckKind, Outcome,
    },
    testing::{serve, Behavior},
};

#[tokio::test]
async fn http_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let result = probe(&http_target(address, "/", None), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Refused));
}

#[tokio::test]
async fn http_success_sends_path_and_host() {
    let mut server = serve(Behavior::Status).await;
    let target = http_target(server.addr, "/healthz?full=1", None);
    let result = probe(&target, TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);

    let request = server.requests.recv().await.unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        request.starts_with("GET /healthz?full=1 HTTP/1.1\r\n"),
        "{request}"
    );
    // Not port 80: the Host names the port too.
    let host = format!("\r\nhost: 127.0.0.1:{}\r\n", server.addr.port());
    assert!(lower.contains(&host), "{request}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{request}");
    assert!(
        lower.contains("\r\nuser-agent: lbd-health-check\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn http_custom_host_and_relative_path() {
    let mut server = serve(Behavior::Status).await;
    let target = http_target(server.addr, "status", Some("api.example"));
    assert_eq!(probe(&target, TIMEOUT).await.outcome, Outcome::Success);
    let request = server.requests.recv().await.unwrap();
    assert!(request.starts_with("GET /status HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("\r\nhost: api.example\r\n"),
        "{request}"
    );
}

#[tokio::test]
async fn http_503_is_status_failure() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
    assert_eq!(
        result.outcome,
        Outcome::Failure(FailureReason::HttpStatus {
            got: 503,
            expected: 200
        })
    );
}

#[tokio::test]
async fn http_expecting_other_status() {
    let server = serve(Behavior::Status).await;
    server.set_healthy(false);
    let target = ProbeTarget {
        tls: false,
        through: None,
        address: server.addr,
        kind: CheckKind::Http {
            path: "/".into(),
            host: None,
            expect_status: 503,
            expect_body: None,
        },
    };
    assert_eq!(probe(&target, TIMEOUT).await.outcome, Outcome::Success);
}

#[tokio::test]
async fn http_silent_server_times_out() {
    let server = serve(Behavior::Silent).await;
    let timeout = Duration::from_millis(200);
    let result = probe(&http_target(server.addr, "/", None), timeout).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
    assert!(result.latency >= timeout, "{:?}", result.latency);
    assert!(result.latency < timeout * 4, "{:?}", result.latency);
}

#[tokio::test]
async fn http_big_body_is_not_read_to_the_end() {
    // 64 MiB announced, 1 MiB sent, then the server stalls: reading the
    // body to its end would time out.
    let server = serve(Behavior::Huge).await;
    let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);
}

#[tokio::test]
async fn http_status_decides_though_the_body_stalls() {
    // The status has come; a body that never ends is no timeout.
    let server = serve(Behavior::Stalled).await;
    let result = probe(&http_target(server.addr, "/", None), TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);
    assert!(result.latency < TIMEOUT, "{:?}", result.latency);
}

#[tokio::test]
async fn http_garbage_answer_is_http_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
    });
    let result = probe(&http_target(address, "/", None), TIMEOUT).await;
    match result.outcome {
        Outcome::Failure(FailureReason::Http(text)) => assert!(!text.is_empty()),
        other => panic!("expected an HTTP failure, got {other:?}"),
    }
}

#[tokio::test]
async fn http_invalid_host_is_http_failure() {
    let server = serve(Behavior::Status).await;
    let target = http_target(server.addr, "/", Some("bad\nhost"));
    let result = probe(&target, TIMEOUT).await;
    assert!(
        matches!(result.outcome, Outcome::Failure(FailureReason::Http(ref t)) if t.starts_with("invalid request")),
        "{result:?}"
    );
    assert_eq!(server.connections(), 0);
}

#[test]
fn default_host_brackets_ipv6_and_names_a_port_other_than_80() {
    assert_eq!(default_host("10.1.2.3:80".parse().unwrap()), "10.1.2.3");
    assert_eq!(
        default_host("10.1.2.3:8080".parse().unwrap()),
        "10.1.2.3:8080"
    );
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 3));
    assert_eq!(default_host(v6), "[::1]");
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6432, 0, 3));
    assert_eq!(default_host(v6), "[::1]:6432");
}
