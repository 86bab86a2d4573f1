//! `expect_body`: the body decides with the status, read within the
//! check's deadline, searched across frames, and no further than 16 KiB.
//! Each test's server writes its answer in pieces, with a pause longer
//! than the drain grace between them, so each piece is its own frame.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use super::*;
use crate::health::probe::{probe, tests::TIMEOUT, CheckKind, Outcome};

/// The pause between pieces: past [`DRAIN_GRACE`], so a body read only
/// in the grace would miss what follows.
const PAUSE: Duration = Duration::from_millis(120);

/// A server that answers one request with `pieces`, pausing between
/// them, then closes.
async fn serve_pieces(pieces: Vec<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(PAUSE).await;
            }
            if stream.write_all(piece).await.is_err() {
                return;
            }
            let _ = stream.flush().await;
        }
        let _ = stream.shutdown().await;
    });
    address
}

/// An answer of `status` whose body, of `length` bytes, comes in `body`'s
/// pieces (the head goes with the first).
fn sized(status: &str, length: usize, body: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = body.iter().map(|p| p.to_vec()).collect();
    let head =
        format!("HTTP/1.1 {status}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n");
    pieces[0].splice(0..0, head.into_bytes());
    pieces
}

/// A check of `address` by GET / wanting 200 and `text` in the body.
fn target_for(address: SocketAddr, text: &str) -> ProbeTarget {
    ProbeTarget {
        tls: false,
        through: None,
        address,
        kind: CheckKind::Http {
            path: "/".into(),
            host: None,
            expect_status: 200,
            expect_body: Some(text.to_owned()),
        },
    }
}

/// Probes `address` by GET / wanting 200 and `text` in the body.
async fn probe_for(address: SocketAddr, text: &str) -> Outcome {
    probe(&target_for(address, text), TIMEOUT).await.outcome
}

fn lacks(text: &str) -> Outcome {
    Outcome::Failure(FailureReason::HttpBody {
        expected: text.to_owned(),
    })
}

#[tokio::test]
async fn a_body_with_the_text_passes_and_one_without_fails() {
    let body = b"{\"status\": \"OK\"}";
    let address = serve_pieces(sized("200 OK", body.len(), &[body])).await;
    assert_eq!(
        probe_for(address, "\"status\": \"OK\"").await,
        Outcome::Success
    );
    let body = b"{\"status\": \"DEGRADED\"}";
    let address = serve_pieces(sized("200 OK", body.len(), &[body])).await;
    assert_eq!(
        probe_for(address, "\"status\": \"OK\"").await,
        lacks("\"status\": \"OK\"")
    );
}

#[tokio::test]
async fn text_split_between_writes_is_found_after_the_drain_grace() {
    // "ready" comes as "rea" then, after a pause past the drain grace,
    // "dy": neither frame holds it alone.
    let pieces = sized("200 OK", 14, &[b"state: rea", b"dy\r\n"]);
    let address = serve_pieces(pieces).await;
    assert_eq!(probe_for(address, "ready").await, Outcome::Success);
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_are_read() {
    let chunked = vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nstatu\r\n".to_vec(),
        b"6\r\ns: OK\n\r\n0\r\n\r\n".to_vec(),
    ];
    let address = serve_pieces(chunked).await;
    assert_eq!(probe_for(address, "status: OK").await, Outcome::Success);
    let chunked = vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nstatu\r\n".to_vec(),
        b"8\r\ns: DOWN\n\r\n0\r\n\r\n".to_vec(),
    ];
    let address = serve_pieces(chunked).await;
    assert_eq!(probe_for(address, "status: OK").await, lacks("status: OK"));
    // No length: the body ends with the connection.
    let until_close = vec![
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall".to_vec(),
        b" good".to_vec(),
    ];
    let address = serve_pieces(until_close).await;
    assert_eq!(probe_for(address, "all good").await, Outcome::Success);
}

#[tokio::test]
async fn text_past_the_first_16_kib_is_not_looked_for() {
    // The text ends exactly at byte 16384: found.
    let mut filler = vec![b'x'; MAX_DRAIN - 2];
    let address = serve_pieces(sized("200 OK", MAX_DRAIN, &[&filler, b"OK"])).await;
    assert_eq!(probe_for(address, "OK").await, Outcome::Success);
    // One byte later it is cut off, though the server sends it.
    filler.push(b'x');
    let address = serve_pieces(sized("200 OK", MAX_DRAIN + 1, &[&filler, b"OK"])).await;
    assert_eq!(probe_for(address, "OK").await, lacks("OK"));
}

#[tokio::test]
async fn a_wrong_status_fails_on_the_status_whatever_the_body() {
    let body = b"status: OK";
    let address = serve_pieces(sized("503 Service Unavailable", body.len(), &[body])).await;
    assert_eq!(
        probe_for(address, "status: OK").await,
        Outcome::Failure(FailureReason::HttpStatus {
            got: 503,
            expected: 200
        })
    );
}

#[tokio::test]
async fn a_body_that_stalls_before_the_text_times_out() {
    // 100 bytes announced, 4 sent, then nothing until the check's
    // deadline: the check's own timeout, not the drain grace, ends it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nwait")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let timeout = Duration::from_millis(300);
    let result = probe(&target_for(address, "OK"), timeout).await;
    assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
    assert!(result.latency >= timeout, "{:?}", result.latency);
}

#[test]
fn contains_finds_a_text_anywhere_and_no_longer_one() {
    assert!(contains(b"abc", b"bc"));
    assert!(contains(b"abc", b"abc"));
    assert!(!contains(b"abc", b"abcd"));
    assert!(!contains(b"", b"a"));
    assert!(!contains(b"ab c", b"abc"));
}
