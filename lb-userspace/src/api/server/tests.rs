use std::{
    fmt::Write as _,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    sync::atomic::{AtomicU32, Ordering},
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::oneshot,
    task::JoinHandle,
};

use super::*;
use crate::api::client::{api_path, segment, Client, ClientError};
use crate::api::{request::percent_decode, MAX_REQUEST_BYTES};
use crate::test_scratch::ScratchDir;

/// Echoes the request; a few query keys (`sleep`, `fail`, `status`,
/// `panic`) make it do something else. The server lets only the API's
/// paths through (a path no endpoint has is its 404), so the tests send
/// those, whatever this handler makes of them.
struct Echo;

impl Handler for Echo {
    async fn handle(&self, request: Request) -> Response {
        let query = |key: &str| request.query.get(key).map(String::as_str);
        if let Some(ms) = query("sleep") {
            let ms = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return Response::ok(json!({ "slept_ms": ms }));
        }
        if let Some(status) = query("fail") {
            return Response::error(
                status.parse().unwrap_or(500),
                "test_error",
                format!("failed with {status}"),
            );
        }
        if let Some(status) = query("status") {
            return Response::new(status.parse().unwrap_or(0), "x");
        }
        if query("panic").is_some() {
            panic!("the test handler panics");
        }
        Response::ok(json!({
            "method": request.method.as_str(),
            "path": request.path,
            "query": request.query,
            "body": request.body,
        }))
    }
}

/// A directory of its own under the temp dir, removed at the end.
struct TestDir(ScratchDir);

impl TestDir {
    fn new(name: &str) -> Self {
        Self(ScratchDir::new(&format!("api-{name}")))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("lbd.sock")
    }
}

/// A server running on a task, with its stop button.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn start(path: &Path) -> Running {
    start_with(path, ServeOptions::default()).await
}

async fn start_with(path: &Path, options: ServeOptions) -> Running {
    let server = Server::bind(path, &options).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(Arc::new(Echo), async move {
                let _ = stopped.await;
            })
            .await;
        Ok(())
    });
    Running { stop, task }
}

fn client(path: &Path) -> Client {
    Client::new(path, Duration::from_secs(2))
}

/// Sends raw bytes (a request with `Connection: close`) and reads the
/// whole answer as text.
async fn raw_text(path: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    // The server may close with part of the request unread (ECONNRESET after the answer).
    let result = stream.read_to_end(&mut buf).await;
    assert!(!buf.is_empty(), "no answer: {result:?}");
    String::from_utf8(buf).unwrap()
}

/// Sends raw bytes (a request with `Connection: close`) and reads the status
/// and JSON body of the answer.
async fn raw(path: &Path, request: &[u8]) -> (u16, Value) {
    let text = raw_text(path, request).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.get(9..12).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap()
    };
    (status, body)
}

fn raw_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        write!(head, "{name}: {value}\r\n").unwrap();
    }
    write!(head, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

// On the daemon's kind of runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_ipv6_segments() {
    let dir = TestDir::new("roundtrip");
    let server = start(&dir.socket()).await;
    let client = client(&dir.socket());
    // Paths of the API (the server lets no other through), each with a
    // method it takes, for the echoing handler.
    let vip = "[2001:db8::1]:80:tcp";
    let path = api_path(&["vips", vip, "backends", "2001:db8::11"]);
    let expected_path = json!(["vips", vip, "backends", "2001:db8::11"]);
    let flows = api_path(&["vips", vip, "backends", "2001:db8::11", "flows"]);
    let backends = api_path(&["vips", vip, "backends"]);

    let got = client
        .call(
            Method::Get,
            &flows,
            &[("verbose", "yes"), ("q", "a b&c=d+/é")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        json!({
            "method": "GET",
            "path": ["vips", vip, "backends", "2001:db8::11", "flows"],
            "query": {"verbose": "yes", "q": "a b&c=d+/é"},
            "body": null,
        })
    );

    let body = json!({"weight": 100, "mac": "02:00:00:00:00:11"});
    let got = client
        .call(Method::Post, &backends, &[], Some(&body))
        .await
        .unwrap();
    assert_eq!(got["method"], "POST");
    assert_eq!(got["path"], json!(["vips", vip, "backends"]));
    assert_eq!(got["body"], body);

    let got = client.call(Method::Delete, &path, &[], None).await.unwrap();
    assert_eq!(got["method"], "DELETE");
    assert_eq!(got["path"], expected_path);

    // Typed answers, and a segment with a '/' in it stays one segment.
    #[derive(serde::Deserialize)]
    struct Echoed {
        method: String,
        path: Vec<String>,
    }
    let echoed: Echoed = client
        .call_as(
            Method::Put,
            &api_path(&["vips", "a/b", "backends", "%41", "state"]),
            &[],
            Some(&json!({"x": 1})),
        )
        .await
        .unwrap();
    assert_eq!(echoed.method, "PUT");
    assert_eq!(echoed.path, ["vips", "a/b", "backends", "%41", "state"]);
    server.stop().await;
}

#[tokio::test]
async fn transport_errors() {
    let dir = TestDir::new("errors");
    let path = dir.socket();
    let server = start(&path).await;
    let client = client(&path);

    // Unknown prefix.
    for target in ["/status", "/v2/status", "/v1x", "/"] {
        let err = client
            .call(Method::Get, target, &[], None)
            .await
            .unwrap_err();
        let ClientError::Api(api) = &err else {
            panic!("{target}: {err:?}")
        };
        assert_eq!(
            (api.status, api.code.as_str()),
            (404, "no_endpoint"),
            "{target}"
        );
        // A request lbd refused (this lbctl newer than lbd), not a
        // missing VIP or backend (3).
        assert_eq!(err.exit_code(), 2);
    }

    // A method the path does not take, with Allow listing the ones it
    // does (from the route table); a method the API does not use on a
    // path it does not have is a 404 like any other.
    for (method, target, allow) in [
        ("PATCH", "/v1/status", "GET"),
        ("POST", "/v1/status", "GET"),
        ("GET", "/v1/reload", "POST"),
        ("PATCH", "/v1/reload", "POST"),
        ("PUT", "/v1/vips", "GET, POST"),
        ("PUT", "/v1/vips/198.18.0.100%3A80%2Ftcp", "GET, DELETE"),
    ] {
        let text = raw_text(&path, &raw_request(method, target, &[], b"")).await;
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 405 "),
            "{method} {target}: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("\r\nallow: {}\r\n", allow.to_ascii_lowercase())),
            "{method} {target}: {head}"
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(error_code(&body), "method_not_allowed");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.ends_with(&format!("use {allow}")), "{message}");
    }
    let (status, body) = raw(&path, &raw_request("PATCH", "/v1/nope", &[], b"")).await;
    assert_eq!((status, error_code(&body)), (404, "no_endpoint"));

    // Body not JSON, or not labelled as JSON.
    let json_type = [("Content-Type", "application/json; charset=utf-8")];
    let (status, body) = raw(
        &path,
        &raw_request("POST", "/v1/vips", &json_type, b"{nope"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_json"));
    let (status, body) = raw(&path, &raw_request("POST", "/v1/vips", &[], b"{}")).await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_media_type"));
    let text = [("Content-Type", "text/plain")];
    let (status, _) = raw(&path, &raw_request("POST", "/v1/vips", &text, b"{}")).await;
    assert_eq!(status, 415);
    // No body needs no Content-Type.
    let (status, body) = raw(&path, &raw_request("POST", "/v1/vips", &[], b"")).await;
    assert_eq!((status, &body["body"]), (200, &Value::Null));
    let (status, body) = raw(
        &path,
        &raw_request("POST", "/v1/vips", &json_type, b" [1] "),
    )
    .await;
    assert_eq!((status, &body["body"]), (200, &json!([1])));

    // A path no endpoint has (a typo): 404 before the body is looked at,
    // whatever its type, JSON or size.
    for (headers, body) in [
        (&text[..], &b"{}"[..]),
        (&json_type[..], b"{"),
        (&[][..], b"{}"),
    ] {
        let (status, body) = raw(&path, &raw_request("POST", "/v1/vip", headers, body)).await;
        assert_eq!((status, error_code(&body)), (404, "no_endpoint"), "{body}");
        assert_eq!(body["error"]["message"], "no such endpoint: POST /v1/vip");
    }
    let typo = b"PUT /v1/vip HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n\
        Content-Length: 100000000\r\n\r\n";
    let (status, body) = raw(&path, typo).await;
    assert_eq!((status, error_code(&body)), (404, "no_endpoint"), "{body}");

    // Bad percent-encoding, empty segments, duplicate query keys.
    for target in [
        "/v1/a%zz",
        "/v1/a%4",
        "/v1/%FF",
        "/v1/a//b",
        "/v1/status?a=1&a=2",
        "/v1/status?a=%",
    ] {
        let (status, body) = raw(&path, &raw_request("GET", target, &[], b"")).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_request"),
            "{target}"
        );
    }
    let (status, body) = raw(
        &path,
        &raw_request("GET", "/v1/status/?k+1=v%2B1&flag", &[], b""),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], json!(["status"]));
    assert_eq!(body["query"], json!({"k 1": "v+1", "flag": ""}));

    // Oversized body: declared up front, and sent in full by the client.
    // (Too large to be worth reading: answered at once.)
    let head = b"POST /v1/vips HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n\
        Content-Length: 100000000\r\n\r\n";
    let (status, body) = raw(&path, head).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    let big = json!("x".repeat(MAX_REQUEST_BYTES));
    let err = client
        .call(Method::Post, "/v1/vips", &[], Some(&big))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api(e) if e.status == 413),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 2);
    // Chunked, so only counting finds it too large (with Limited).
    let mut chunked = b"POST /v1/vips HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\
        Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    let chunk = vec![b' '; 600_000];
    for _ in 0..MAX_REQUEST_BYTES / 600_000 + 1 {
        chunked.extend(format!("{:x}\r\n", chunk.len()).bytes());
        chunked.extend(&chunk);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let (status, body) = raw(&path, &chunked).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    // Just under the limit is fine.
    let fits = json!("x".repeat(MAX_REQUEST_BYTES - 2));
    let got = client
        .call(Method::Post, "/v1/vips", &[], Some(&fits))
        .await
        .unwrap();
    assert_eq!(got["body"], fits);

    server.stop().await;
}

#[tokio::test]
async fn handler_errors_reach_the_client() {
    let dir = TestDir::new("handler");
    let server = start(&dir.socket()).await;
    let client = client(&dir.socket());
    for (status, exit) in [(400, 2), (404, 3), (409, 4), (422, 2), (500, 1), (503, 5)] {
        let err = client
            .call(
                Method::Get,
                "/v1/status",
                &[("fail", &status.to_string())],
                None,
            )
            .await
            .unwrap_err();
        let ClientError::Api(api) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(api.status, status);
        assert_eq!(api.code, "test_error");
        assert_eq!(api.message, format!("failed with {status}"));
        assert_eq!(err.exit_code(), exit, "{status}");
    }
    // A panic is a 500, and the server goes on.
    let err = client
        .call(Method::Get, "/v1/status", &[("panic", "")], None)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::Api(e) if e.status == 500 && e.code == "internal"));
    // Invalid status from the handler: 500; 204: no body, Null for the client.
    let err = client
        .call(Method::Get, "/v1/status", &[("status", "42")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api(e) if e.status == 500),
        "{err:?}"
    );
    let got = client
        .call(Method::Get, "/v1/status", &[("status", "204")], None)
        .await
        .unwrap();
    assert_eq!(got, Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn socket_file_lifecycle() {
    let dir = TestDir::new("lifecycle");
    let path = dir.socket();

    // A stale socket (its listener gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = start(&path).await;
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

    // A second server on the live socket is refused, and leaves it working.
    let err = Server::bind(&path, &ServeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServerError::AlreadyRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("another lbd is already listening on {}", path.display())
    );
    client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap();
    // No temporary files left beside it.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);

    server.stop().await;
    assert!(!path.exists(), "socket file left after shutdown");
    let err = client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");

    // A stale socket: nothing listens on it, for the client too.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotListening { .. }), "{err:?}");
    std::fs::remove_file(&path).unwrap();

    // A file that is not a socket is never removed.
    std::fs::write(&path, "precious").unwrap();
    let err = Server::bind(&path, &ServeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServerError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

#[tokio::test]
async fn cleanup_removes_only_a_stale_socket() {
    let dir = TestDir::new("cleanup");
    let path = dir.socket();
    // Nothing there: nothing to do.
    assert!(!remove_stale_socket(&path).await.unwrap());
    // A live server's socket stays, and keeps answering.
    let server = start(&path).await;
    let err = remove_stale_socket(&path).await.unwrap_err();
    assert!(matches!(err, ServerError::AlreadyRunning { .. }), "{err:?}");
    client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap();
    server.stop().await;
    // A stale one (its lbd killed) goes, so lbctl says "not running".
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(remove_stale_socket(&path).await.unwrap());
    assert!(!path.exists());
    let err = client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    // A file that is not a socket is never removed.
    std::fs::write(&path, "precious").unwrap();
    let err = remove_stale_socket(&path).await.unwrap_err();
    assert!(matches!(err, ServerError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// Before its mode and group are set a bound socket refuses connections (a
/// client the umask let in is not queued for the server to serve later);
/// once listening, it accepts them.
#[tokio::test]
async fn the_socket_refuses_connections_until_its_mode_is_set() {
    let dir = TestDir::new("unlistened");
    let path = dir.0.join(".lbd.sock.tmp");
    let unlistened = socket_file::bind_unlistened(&path).unwrap();
    let err = UnixStream::connect(&path).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let listener = socket_file::start_listening(unlistened).unwrap();
    let (client, accepted) = tokio::join!(UnixStream::connect(&path), listener.accept());
    client.unwrap();
    accepted.unwrap();
}

/// The socket is not made in a directory someone other than root (or
/// lbd's own user) may change: there they could replace the live socket
/// with their own (lbctl, run as root, would then talk to them), or swap
/// the temporary socket for a symbolic link between its bind and its
/// chmod/chown (which follow links) and have lbd give the socket's mode
/// and group to any file. Refused before anything is bound, naming the
/// directory; a sticky directory (like /tmp) is fine, as nobody may
/// replace lbd's own entries in it.
#[tokio::test]
async fn a_socket_directory_others_may_change_is_refused() {
    let dir = TestDir::new("unsafe-dir");
    for (mode, refused) in [
        (0o777, true),
        (0o770, true),
        (0o757, true),
        (0o1777, false),
        (0o755, false),
        (0o700, false),
    ] {
        let shared = dir.0.join(format!("d{mode:o}"));
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(mode)).unwrap();
        let path = shared.join("lbd.sock");
        let bound = Server::bind(&path, &ServeOptions::default()).await;
        if refused {
            let err = bound.unwrap_err();
            assert!(
                matches!(err, ServerError::UnsafeDirectory { .. }),
                "{mode:o}: {err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&shared.display().to_string()), "{message}");
            assert!(message.contains(&format!("{mode:04o}")), "{message}");
            assert_eq!(
                std::fs::read_dir(&shared).unwrap().count(),
                0,
                "{mode:o}: left a file"
            );
        } else {
            let server = bound.unwrap_or_else(|e| panic!("{mode:o}: {e}"));
            drop(server);
        }
    }
    // A directory above the socket's counts too.
    let above = dir.0.join("above");
    std::fs::create_dir(&above).unwrap();
    std::fs::create_dir(above.join("run")).unwrap();
    std::fs::set_permissions(&above, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Server::bind(
        &above.join("run").join("lbd.sock"),
        &ServeOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&above.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn mode_and_group_options() {
    let dir = TestDir::new("mode");
    let path = dir.socket();
    let gid = std::fs::metadata(&dir.0).unwrap().gid();
    let server = start_with(
        &path,
        ServeOptions {
            mode: 0o660,
            group: Some(gid),
            ..ServeOptions::default()
        },
    )
    .await;
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);
    assert_eq!(meta.gid(), gid);
    server.stop().await;
    assert!(!path.exists());
}

#[tokio::test]
async fn oversized_heads_are_refused_and_the_connection_closed() {
    let dir = TestDir::new("heads");
    let path = dir.socket();
    let server = start(&path).await;

    // Too many header fields.
    let many: Vec<(String, String)> = (0..MAX_REQUEST_HEADERS)
        .map(|i| (format!("X-Field-{i}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (status, _) = raw(&path, &raw_request("GET", "/v1/status", &many, b"")).await;
    assert_eq!(status, 431);
    // A few are fine (Host, Connection and Content-Length come on top).
    let (status, _) = raw(&path, &raw_request("GET", "/v1/status", &many[..20], b"")).await;
    assert_eq!(status, 200);

    // A head too long in bytes, in one field or in the target.
    let long = "x".repeat(MAX_REQUEST_HEAD_BYTES);
    let (status, _) = raw(
        &path,
        &raw_request("GET", "/v1/status", &[("X-Long", &long)], b""),
    )
    .await;
    assert_eq!(status, 431);
    let target = format!("/v1/{long}");
    let (status, _) = raw(&path, &raw_request("GET", &target, &[], b"")).await;
    assert_eq!(status, 431);
    // The server goes on.
    client(&path)
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let dir = TestDir::new("slow");
    let path = dir.socket();
    let options = ServeOptions {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = start_with(&path, options).await;

    // Connected, and never a byte: closed after the header timeout.
    let started = Instant::now();
    let mut idle = UnixStream::connect(&path).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "an idle connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // Half a head, then nothing: closed, no answer.
    let started = Instant::now();
    let mut slow = UnixStream::connect(&path).await.unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: l\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a slow head kept the connection open");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(!String::from_utf8_lossy(&buf).contains(" 200 "), "{buf:?}");

    // A head in time and a body that stalls: 408 with the JSON error.
    let mut stalled = UnixStream::connect(&path).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/vips HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"a\"",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a stalled body kept the connection open");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains(r#""code":"timeout""#), "{text}");

    // A keep-alive connection that goes quiet after an answer is closed too.
    let mut kept = UnixStream::connect(&path).await.unwrap();
    kept.write_all(b"GET /v1/status HTTP/1.1\r\nHost: l\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stayed open");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200 "));
    server.stop().await;
}

#[tokio::test]
async fn the_head_deadline_is_not_renewed_by_each_byte() {
    let dir = TestDir::new("deadline");
    let path = dir.socket();
    let options = ServeOptions {
        header_timeout: Duration::from_millis(400),
        ..ServeOptions::default()
    };
    let server = start_with(&path, options).await;
    // A byte every 50 ms: never 400 ms without one, but the head as a
    // whole is late.
    let started = Instant::now();
    let mut stream = UnixStream::connect(&path).await.unwrap();
    let head = b"GET /v1/status HTTP/1.1\r\nHost: lbd\r\nX-Slow: ";
    let mut buf = [0u8; 64];
    for n in 0.. {
        let byte = head.get(n).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a head trickled a byte every 50 ms stayed open"
        );
    }
    // Up to 3 s: slack for a loaded machine. A timeout that each byte
    // restarted would never close it (the loop's 5 s above).
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    server.stop().await;
}

/// A client that sends a request head one byte a second and never
/// finishes it; connects again at once when the server closes it.
/// Counts the bytes it got to send.
async fn trickle(path: PathBuf, stop: Arc<std::sync::atomic::AtomicBool>, sent: Arc<AtomicU32>) {
    let head = b"GET /v1/status HTTP/1.1\r\nHost: lbd\r\nX-Slow: ";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = UnixStream::connect(&path).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut n = 0;
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            let byte = head.get(n).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).await.is_err() {
                break;
            }
            n += 1;
            sent.fetch_add(1, Ordering::Relaxed);
            // A second, or until the server closes the connection.
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_in_every_slot_do_not_lock_the_owner_out() {
    let dir = TestDir::new("trickle");
    let path = dir.socket();
    let server = start(&path).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let tricklers: Vec<_> = (0..MAX_CONNECTIONS + 16)
        .map(|_| tokio::spawn(trickle(path.clone(), Arc::clone(&stop), Arc::clone(&sent))))
        .collect();
    // Every slot taken, and more waiting.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = Client::new(&path, Duration::from_secs(2));
    let mut times = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let answer = client.call(Method::Get, "/v1/status", &[], None).await;
        times.push(started.elapsed());
        assert!(answer.is_ok(), "{answer:?} after {times:?}");
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for trickler in tricklers {
        trickler.await.unwrap();
    }
    // They were trickling all along: about a byte a second each.
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 5 * 64, "only {sent} bytes trickled");
    println!("answered in {times:?} while {sent} bytes trickled");
    server.stop().await;
}

#[test]
fn the_largest_valid_request_fits_the_body_limit() {
    use crate::api::schema::{BackendSpec, HealthSpec, VipSpec};
    use crate::config::{
        MAX_HEALTH_EXPECT_BODY_BYTES, MAX_HEALTH_HOST_BYTES, MAX_HEALTH_PATH_BYTES,
        MAX_HEALTH_PGSQL_NAME_BYTES,
    };
    // Every health key at its longest, its text all characters JSON
    // escapes (`"` is allowed in a path and a host).
    let health = HealthSpec {
        check: Some("none".to_owned()),
        port: Some(65_535),
        path: Some(format!("/{}", "\"".repeat(MAX_HEALTH_PATH_BYTES - 1))),
        host: Some("\"".repeat(MAX_HEALTH_HOST_BYTES)),
        expect_status: Some(599),
        expect_body: Some("\"".repeat(MAX_HEALTH_EXPECT_BODY_BYTES)),
        tls: Some(true),
        user: Some("\"".repeat(MAX_HEALTH_PGSQL_NAME_BYTES)),
        database: Some("\"".repeat(MAX_HEALTH_PGSQL_NAME_BYTES)),
        interval_ms: Some(3_600_000),
        fast_interval_ms: Some(3_600_000),
        timeout_ms: Some(3_600_000),
        rise: Some(100),
        fall: Some(100),
        through_tunnel: Some(false),
    };
    let vip_health = health.clone();
    let backends = (0..crate::config::MAX_BACKENDS_PER_VIP)
        .map(|i| BackendSpec {
            address: format!("2001:2:ffff:ffff:ffff:ffff:ffff:{i:x}")
                .parse()
                .unwrap(),
            mac: Some("02:00:00:00:00:11".to_owned()),
            port: Some(65_535),
            weight: Some(10_000),
            backup: true,
            health: Some(health.clone()),
        })
        .collect();
    let spec = VipSpec {
        address: "2001:2:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
        port: 65_535,
        protocol: Some("tcp".to_owned()),
        table_size: Some(65_537),
        on_all_down: Some("keep".to_owned()),
        drain_timeout_s: Some(604_800),
        forwarding: Some("dsr-l2".to_owned()),
        affinity: Some("connection".to_owned()),
        slow_start_s: Some(3_600),
        nat_source: Some("2001:2:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap()),
        health: Some(vip_health),
        backends,
    };
    let body = serde_json::to_vec(&spec).unwrap();
    let size = body.len();
    // A quarter to spare, for fields to come.
    assert!(
        size + size / 4 < MAX_REQUEST_BYTES,
        "{size} bytes: leave room under {MAX_REQUEST_BYTES}"
    );
    // And far within the limit on JSON values.
    let json = Some("application/json");
    let read = parse_request(&head("POST", "/v1/vips", json), &body).expect("read");
    fn values(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(values).sum(),
            Value::Object(fields) => fields.values().map(values).sum(),
            _ => 0,
        }
    }
    let count = values(&read.body);
    assert!((15_000..25_000).contains(&count), "{count} values");
}

#[tokio::test]
async fn client_timeout_fires() {
    let dir = TestDir::new("timeout");
    let server = start(&dir.socket()).await;
    let client = Client::new(dir.socket(), Duration::from_millis(100));
    let started = Instant::now();
    let err = client
        .call(Method::Get, "/v1/status", &[("sleep", "3000")], None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    // Well before the 3 s answer, with slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.exit_code(), 5);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let dir = TestDir::new("drain");
    let path = dir.socket();
    let server = start(&path).await;
    // Waits longer than the request takes.
    let client = Client::new(&path, Duration::from_secs(10));
    let sent = Instant::now();
    let call = tokio::spawn(async move {
        client
            .call(Method::Get, "/v1/status", &[("sleep", "2000")], None)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The request is in flight: its handler cannot finish before
    // `sent` + 2 s, and the stop begins well before that (1 s of slack for
    // a loaded machine).
    let stopping = Instant::now();
    assert!(
        stopping < sent + Duration::from_secs(1) && !call.is_finished(),
        "the request was not in flight when the stop began"
    );
    server.stop().await;
    // The stop waited for it: a stop that cut the request would return
    // about at once, a second or more early.
    assert!(
        Instant::now() >= sent + Duration::from_secs(2),
        "the stop returned {:?} after it began, before the request ended",
        stopping.elapsed()
    );
    assert_eq!(call.await.unwrap().unwrap(), json!({"slept_ms": 2000}));
    assert!(!path.exists());
}

/// A handler that holds every request until released, counting them.
struct Held {
    entered: AtomicU32,
    release: watch::Sender<bool>,
}

impl Handler for Held {
    async fn handle(&self, _request: Request) -> Response {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut released = self.release.subscribe();
        let _ = released.wait_for(|r| *r).await;
        Response::ok(json!({}))
    }
}

/// Clients that send a request and hang up (a monitoring script's short
/// timeout, `lbctl status --watch` retrying) while the engine is slow free
/// their connection slots, but their handlers run on: only so many may be
/// in flight, and past them a request is refused at once, not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_of_hung_up_clients_are_bounded() {
    let dir = TestDir::new("hungup");
    let path = dir.socket();
    let held = Arc::new(Held {
        entered: AtomicU32::new(0),
        release: watch::Sender::new(false),
    });
    let server = Server::bind(&path, &ServeOptions::default()).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(Arc::clone(&held), async move {
        let _ = stopped.await;
    }));
    let request = raw_request("GET", "/v1/status", &[], b"");
    for _ in 0..200 {
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(&request).await.unwrap();
        // Long enough for the request to reach its handler; then gone.
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(10), stream.read_to_end(&mut buf)).await;
    }
    let entered = held.entered.load(Ordering::SeqCst);
    assert!(
        entered <= u32::try_from(MAX_HANDLERS_IN_FLIGHT).unwrap(),
        "{entered} handlers run for 200 hung-up clients"
    );
    // A client that waits is told why, at once.
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), raw(&path, &request))
        .await
        .expect("a busy lbd answers at once");
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "lbd is busy: {MAX_HANDLERS_IN_FLIGHT} requests in flight"
        )),
        "{body}"
    );
    // Released, the handlers end and give their places back.
    held.release.send_replace(true);
    let start = Instant::now();
    loop {
        let (status, body) = raw(&path, &request).await;
        if status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{status} {body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    task.await.unwrap();
}

/// The head of a request as hyper hands it over.
fn head(method: &str, target: &str, content_type: Option<&str>) -> hyper::http::request::Parts {
    let mut builder = hyper::Request::builder().method(method).uri(target);
    if let Some(value) = content_type {
        builder = builder.header(header::CONTENT_TYPE, value);
    }
    builder.body(()).unwrap().into_parts().0
}

#[test]
fn parse_request_is_what_the_server_answers() {
    let json = Some("application/json");
    let ok = parse_request(
        &head("POST", "/v1/vips/a%2Fb/backends?dry_run=true", json),
        b"{\"x\":1}",
    )
    .unwrap();
    assert_eq!(ok.method, Method::Post);
    assert_eq!(ok.path, ["vips", "a/b", "backends"]);
    assert_eq!(ok.query.get("dry_run").map(String::as_str), Some("true"));
    assert_eq!(ok.body, json!({"x": 1}));
    // No body: Null, whatever the content type.
    let ok = parse_request(&head("GET", "/v1/status", None), b"").unwrap();
    assert_eq!((ok.path.len(), &ok.body), (1, &Value::Null));

    let status = |method, target, content_type, body: &[u8]| {
        let answer = parse_request(&head(method, target, content_type), body).unwrap_err();
        (answer.status, error_code(&answer.body).to_owned())
    };
    assert_eq!(
        status("GET", "/v2/x", None, b""),
        (404, "no_endpoint".into())
    );
    assert_eq!(
        status("PATCH", "/v1/x", None, b""),
        (404, "no_endpoint".into())
    );
    assert_eq!(
        status("PATCH", "/v1/reload", None, b""),
        (405, "method_not_allowed".into())
    );
    assert_eq!(
        status("GET", "/v1/reload", None, b""),
        (405, "method_not_allowed".into())
    );
    // A key twice in one object, at any depth, is refused naming it.
    for (body, named) in [
        (&br#"{"state":"drained","state":"enabled"}"#[..], "state"),
        (br#"{"weight":1,"weight":5}"#, "weight"),
        (
            br#"{"address":"198.18.0.100","backends":[{"address":"198.18.0.11"},{"weight":1,"weight":5}]}"#,
            "backends[1].weight",
        ),
        (br#"{"source":{"per_s":1,"per_s":2}}"#, "source.per_s"),
    ] {
        let answer = parse_request(&head("PUT", "/v1/node/state", json), body).unwrap_err();
        assert_eq!((answer.status, error_code(&answer.body)), (400, "bad_request"));
        let message = answer.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{named}: the key ")) && message.contains("more than once"),
            "{message}"
        );
    }
    // A body's cost is linear in its size: a long key over a long array
    // (each element's path once copied the key: 1 MiB × 150,000 elements,
    // minutes of copying) parses at once; more values than any valid
    // request holds are refused naming the limit, not built.
    let key = "k".repeat(1 << 20);
    let zeros = vec!["0"; 150_000].join(",");
    let long = format!(r#"{{"{key}":[{zeros}]}}"#);
    let ok = parse_request(&head("PUT", "/v1/node/state", json), long.as_bytes()).unwrap();
    assert_eq!(ok.body[&key].as_array().map(Vec::len), Some(150_000));
    let duplicate = format!(r#"{{"{key}":[{{"a":1,"a":2}}]}}"#);
    let answer =
        parse_request(&head("PUT", "/v1/node/state", json), duplicate.as_bytes()).unwrap_err();
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{}...[0].a: the key \"a\"", &key[..64])),
        "{}",
        &message[..200.min(message.len())]
    );
    assert!(message.len() < 400, "the key is cut short in the message");
    let many = format!("[{}]", vec!["0"; 250_000].join(","));
    let answer = parse_request(&head("PUT", "/v1/node/state", json), many.as_bytes()).unwrap_err();
    assert_eq!(
        (answer.status, error_code(&answer.body)),
        (400, "bad_request")
    );
    let message = answer.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("more than 200000 JSON values"),
        "{message}"
    );
    // The same key in different objects is fine; JSON that nests too deep
    // is refused, not a stack overflow.
    let ok = parse_request(
        &head("PUT", "/v1/node/state", json),
        br#"{"a":{"x":1},"b":{"x":[{"x":2},{"x":3}]}}"#,
    )
    .unwrap();
    assert_eq!(ok.body["b"]["x"][1]["x"], 3);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        status("PUT", "/v1/node/state", json, deep.as_bytes()),
        (400, "bad_json".into())
    );
    assert_eq!(
        status("GET", "/v1/%zz", None, b""),
        (400, "bad_request".into())
    );
    assert_eq!(
        status("GET", "/v1/status?a=1&a=2", None, b""),
        (400, "bad_request".into())
    );
    assert_eq!(
        status("POST", "/v1/vips", None, b"{}"),
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        status("POST", "/v1/vips", json, b"{"),
        (400, "bad_json".into())
    );
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    assert_eq!(
        status("POST", "/v1/vips", json, &big),
        (413, "payload_too_large".into())
    );
}

/// A path no endpoint has is a 404 "no such endpoint" whatever the
/// method, before its body is read or checked: a typo (`POST /v1/vip`)
/// is named as one, not as a problem of its body. Before, GET, POST, PUT
/// and DELETE on such a path were left to the handler, so the body was
/// checked first (415, 400 `bad_json`, 413); only PATCH was a 404.
#[test]
fn an_unknown_path_is_a_404_before_its_body_is_checked() {
    let json = Some("application/json");
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let bodies: [(Option<&str>, &[u8]); 5] = [
        (Some("text/plain"), b"{}"),
        (json, b"{"),
        (json, &big),
        (json, b"{}"),
        (None, b""),
    ];
    for target in ["/v1/vip", "/v1/vips/198.18.0.100:80/backend", "/v1/"] {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            for (content_type, body) in bodies {
                let answer = parse_request(&head(method, target, content_type), body).unwrap_err();
                assert_eq!(
                    (answer.status, error_code(&answer.body)),
                    (404, "no_endpoint"),
                    "{method} {target} {content_type:?} ({} bytes)",
                    body.len()
                );
                let message = answer.body["error"]["message"].as_str().unwrap();
                assert_eq!(message, format!("no such endpoint: {method} {target}"));
            }
        }
    }
}

/// The order the README gives: first what every request must be (path
/// and query encoding, then the body's size, type and JSON), then what
/// the endpoint asks (path arguments, query parameters, body fields).
#[test]
fn requests_are_checked_transport_first_then_path_arguments_query_and_body() {
    use crate::api::route::Call;
    let json = Some("application/json");
    // What the daemon answers: the server's checks, then the route's.
    let answer = |method, target, content_type, body: &[u8]| {
        let refusal = parse_request(&head(method, target, content_type), body)
            .and_then(|request| Call::decode(&request).map(|_| ()))
            .unwrap_err();
        let message = refusal.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (
            refusal.status,
            error_code(&refusal.body).to_owned(),
            message,
        )
    };
    let bad_vip = "/v1/vips/nope/backends?x=1";
    // A bad VIP and a bad query, with a body that is not JSON, too large,
    // or not labelled as JSON: the body's transport problem is named.
    let (status, code, _) = answer("POST", bad_vip, json, b"{");
    assert_eq!((status, code.as_str()), (400, "bad_json"));
    let big = vec![b' '; MAX_REQUEST_BYTES + 1];
    let (status, code, _) = answer("POST", bad_vip, json, &big);
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let (status, code, _) = answer("POST", bad_vip, None, b"{}");
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    // The query's encoding comes before the body's.
    let (status, _, message) = answer("POST", "/v1/vips/nope/backends?a=1&a=2", json, b"{");
    assert_eq!(status, 400);
    assert!(message.contains("more than once"), "{message}");
    // A body that is JSON: the path's argument, then the query, then the
    // body's fields.
    let (status, _, message) = answer("POST", bad_vip, json, br#"{"address": 1}"#);
    assert_eq!(status, 400);
    assert!(message.contains("nope"), "{message}");
    let (status, _, message) = answer(
        "POST",
        "/v1/vips/198.18.0.100:80/backends?x=1",
        json,
        br#"{"address": 1}"#,
    );
    assert_eq!(status, 400);
    assert!(message.contains("unknown query parameter"), "{message}");
    let (status, _, message) = answer(
        "POST",
        "/v1/vips/198.18.0.100:80/backends",
        json,
        br#"{"address": 1}"#,
    );
    assert_eq!(status, 400);
    assert!(message.contains("address"), "{message}");
}

#[test]
fn decoding_inverts_encoding() {
    for s in [
        "198.18.0.100:80:tcp",
        "[2001:db8::1]:80:tcp",
        "a/b c%+é",
        "",
        "~._-",
    ] {
        assert_eq!(percent_decode(&segment(s), false).as_deref(), Some(s));
        assert_eq!(percent_decode(&segment(s), true).as_deref(), Some(s));
    }
    assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
    assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
    assert_eq!(percent_decode("%e9", false), None); // not UTF-8
    assert_eq!(percent_decode("%C3%A9", false).as_deref(), Some("é"));
    assert_eq!(percent_decode("%", false), None);
    assert_eq!(percent_decode("%+1", false), None);
}
