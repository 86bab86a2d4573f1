use tokio::net::TcpListener;

use super::*;
use crate::health::probe::{probe, tests::TIMEOUT, CheckKind, Outcome};

#[tokio::test]
async fn tcp_success() {
    // The kernel completes the handshake from the backlog: no accept.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = ProbeTarget {
        tls: false,
        through: None,
        address: listener.local_addr().unwrap(),
        kind: CheckKind::Tcp,
    };
    let result = probe(&target, TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Success);
    assert!(result.latency < TIMEOUT);
}

#[tokio::test]
async fn tcp_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let target = ProbeTarget {
        tls: false,
        through: None,
        address,
        kind: CheckKind::Tcp,
    };
    let result = probe(&target, TIMEOUT).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Refused));
}

#[test]
fn a_shortage_on_this_node_is_not_the_backends_failure() {
    for error in [
        io::Error::from(io::ErrorKind::AddrInUse),
        io::Error::from(io::ErrorKind::AddrNotAvailable),
        io::Error::from_raw_os_error(libc::EMFILE),
        io::Error::from_raw_os_error(libc::ENOBUFS),
    ] {
        let reason = classify(&error);
        assert!(
            matches!(reason, FailureReason::Local(_)),
            "{error}: {reason:?}"
        );
        assert_eq!(reason.label(), "local");
    }
}

#[test]
fn classify_io_errors() {
    let e = |k| io::Error::from(k);
    assert_eq!(
        classify(&e(io::ErrorKind::ConnectionRefused)),
        FailureReason::Refused
    );
    assert_eq!(
        classify(&e(io::ErrorKind::HostUnreachable)),
        FailureReason::Unreachable
    );
    assert_eq!(
        classify(&e(io::ErrorKind::NetworkUnreachable)),
        FailureReason::Unreachable
    );
    assert_eq!(
        classify(&e(io::ErrorKind::TimedOut)),
        FailureReason::Timeout
    );
    assert_eq!(classify(&e(io::ErrorKind::BrokenPipe)).label(), "io");
}
