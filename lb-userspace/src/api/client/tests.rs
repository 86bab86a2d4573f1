use std::io;

use tokio::net::UnixStream;

use crate::test_scratch::ScratchDir;

use super::{
    connect::{retry_while_backlog_full, BACKLOG_WAIT},
    *,
};

#[test]
fn segment_encoding() {
    assert_eq!(segment("198.18.0.100:80:tcp"), "198.18.0.100%3A80%3Atcp");
    assert_eq!(
        segment("[2001:db8::1]:80:tcp"),
        "%5B2001%3Adb8%3A%3A1%5D%3A80%3Atcp"
    );
    assert_eq!(segment("a/b c%+é"), "a%2Fb%20c%25%2B%C3%A9");
    assert_eq!(segment("Az09-._~"), "Az09-._~");
    assert_eq!(
        api_path(&["vips", "2001:db8::1", "backends"]),
        "/v1/vips/2001%3Adb8%3A%3A1/backends"
    );
    assert_eq!(api_path(&[]), "/v1");
}

#[test]
fn exit_codes() {
    let api = |status| {
        ClientError::Api(ApiError {
            status,
            code: "x".into(),
            message: "y".into(),
        })
        .exit_code()
    };
    assert_eq!(
        [api(400), api(404), api(409), api(413), api(500), api(503)],
        [2, 3, 4, 2, 1, 5]
    );
    // lbd's engine ended mid-change: the change may be applied, as
    // when lbd does not answer it (8), not a failure that changed
    // nothing (1).
    let maybe_applied = ClientError::Api(ApiError {
        status: 500,
        code: "maybe_applied".into(),
        message: "it may be applied".into(),
    });
    assert_eq!(maybe_applied.exit_code(), 8);
    let path = PathBuf::from("/run/lbd/lbd.sock");
    assert_eq!(
        ClientError::NotRunning { path: path.clone() }.exit_code(),
        5
    );
    // A permission or a path that is no socket does not mend by
    // waiting: not 5 ("try again later") but 2, as a path no socket
    // can have.
    assert_eq!(
        ClientError::PermissionDenied { path: path.clone() }.exit_code(),
        2
    );
    assert_eq!(
        ClientError::NotASocket {
            path: path.clone(),
            what: "a regular file"
        }
        .exit_code(),
        2
    );
    let timeout = ClientError::Timeout {
        path: path.clone(),
        after: Duration::from_secs(1),
    };
    assert_eq!(timeout.exit_code(), 5);
    let change = ClientError::ChangeTimeout {
        path,
        after: Duration::from_secs(1),
    };
    assert_eq!(change.exit_code(), 8);
    assert_eq!(ClientError::Protocol("x".into()).exit_code(), 1);
}

#[test]
fn bad_paths_are_refused_before_connecting() {
    let r = build_request(Method::Get, "v1/status", &[], None);
    assert!(matches!(r, Err(ClientError::Protocol(_))));
    let r = build_request(Method::Get, "/v1/a b", &[], None);
    assert!(matches!(r, Err(ClientError::Protocol(_))));
}

#[tokio::test]
async fn a_change_lbd_does_not_answer_in_time_may_have_been_applied() {
    let dir = ScratchDir::new("api-client-slow");
    let path = dir.join("lbd.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    // Reads requests and never answers (a busy engine).
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = Client::new(&path, Duration::from_millis(200));
    let change = client
        .call(Method::Post, "/v1/reload", &[], None)
        .await
        .unwrap_err();
    assert_eq!(change.exit_code(), 8, "{change}");
    assert!(
        change.to_string().contains("may have been applied"),
        "{change}"
    );
    let look = client
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert_eq!(look.exit_code(), 5, "{look}");
    // A dry run changes nothing; `dry_run=false` is a change as lbd reads
    // it (`route::query_options`), so it may have been applied.
    let dry = client
        .call(Method::Post, "/v1/reload", &[("dry_run", "true")], None)
        .await
        .unwrap_err();
    assert_eq!(dry.exit_code(), 5, "{dry}");
    let not_dry = client
        .call(Method::Post, "/v1/reload", &[("dry_run", "false")], None)
        .await
        .unwrap_err();
    assert_eq!(not_dry.exit_code(), 8, "{not_dry}");
    server.abort();
}

/// lbd closing the connection after reading a change, before its
/// answer (an lbd that crashed mid-change): it may be applied (exit 8,
/// saying so), not a protocol error (exit 1); a look (or a dry run)
/// cut off the same way changed nothing: lbd is unavailable for now
/// (exit 5, try again later), not a garbled answer (exit 1).
#[tokio::test]
async fn a_change_whose_connection_drops_before_the_answer_may_have_been_applied() {
    use tokio::io::AsyncReadExt as _;
    let dir = ScratchDir::new("api-client-cut");
    let path = dir.join("lbd.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    // Reads each request's head, then closes without answering.
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            drop(stream);
        }
    });
    let client = Client::new(&path, Duration::from_secs(5));
    let change = client
        .call(Method::Post, "/v1/reload", &[], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&change, ClientError::ChangeCutOff { .. }),
        "{change:?}"
    );
    assert_eq!(change.exit_code(), 8, "{change}");
    assert!(
        change.to_string().contains("may have been applied"),
        "{change}"
    );
    let dry_run = client
        .call(Method::Post, "/v1/reload", &[("dry_run", "true")], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&dry_run, ClientError::Dropped { .. }),
        "{dry_run:?}"
    );
    assert_eq!(dry_run.exit_code(), 5, "{dry_run}");
    let look = client
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(&look, ClientError::Dropped { .. }), "{look:?}");
    assert_eq!(look.exit_code(), 5, "{look}");
    assert!(
        look.to_string().contains("without answering")
            && look.to_string().contains("nothing was done"),
        "{look}"
    );
    server.abort();
}

#[tokio::test]
async fn not_running_when_no_socket() {
    let path = std::env::temp_dir().join(format!(
        "lbd-api-client-{}-missing/lbd.sock",
        std::process::id()
    ));
    let client = Client::new(&path, Duration::from_secs(1));
    let err = client
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::NotRunning { .. }), "{err:?}");
    assert_eq!(err.exit_code(), ClientError::EXIT_UNAVAILABLE);
    // lbd may run on another socket: the message says how to point
    // lbctl (and `systemctl reload`) at it.
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("no admin socket at {}:", path.display()))
            && message.contains("lbd is not running, or its config's admin_socket is elsewhere")
            && message.contains("--socket")
            && message.contains("LBCTL_SOCKET")
            && message.contains("Environment=LBCTL_SOCKET="),
        "{message}"
    );

    // A socket file nobody listens on (lbd killed or crashed): not
    // "no admin socket".
    let dir = ScratchDir::new("api-client-stale");
    let path = dir.join("lbd.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let err = Client::new(&path, Duration::from_secs(1))
        .call(Method::Get, "/v1/status", &[], None)
        .await
        .unwrap_err();
    assert!(matches!(&err, ClientError::NotListening { .. }), "{err:?}");
    assert_eq!(err.exit_code(), ClientError::EXIT_UNAVAILABLE);
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "{} exists but nothing listens on it",
            path.display()
        )) && message.contains("killed or crashed")
            && !message.contains("no admin socket"),
        "{message}"
    );
}

#[tokio::test]
async fn a_path_that_is_not_a_socket_is_named_so() {
    let dir = ScratchDir::new("api-client-not-a-socket");
    std::fs::create_dir_all(dir.join("a-directory")).unwrap();
    std::fs::write(dir.join("a-file"), "precious").unwrap();
    for (name, what) in [("a-file", "a regular file"), ("a-directory", "a directory")] {
        let path = dir.join(name);
        let err = Client::new(&path, Duration::from_secs(1))
            .call(Method::Get, "/v1/status", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(&err, ClientError::NotASocket { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&format!(
                "{} is not a socket (it is {what})",
                path.display()
            )) && !message.contains("nothing listens"),
            "{message}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("a-file")).unwrap(),
        "precious"
    );
}

/// A listener on a socket in a fresh directory named after `tag`,
/// with the smallest backlog, full with connections nobody accepted:
/// the next non-blocking connect gets EAGAIN (returned). Gives the
/// directory, the socket's path, the listener and the queued
/// connections.
async fn full_backlog(
    tag: &str,
) -> (
    ScratchDir,
    std::path::PathBuf,
    std::os::unix::net::UnixListener,
    Vec<UnixStream>,
    io::Error,
) {
    let dir = ScratchDir::new(&format!("api-client-{tag}"));
    let path = dir.join("lbd.sock");
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    socket.listen(0).unwrap();
    let mut queued = Vec::new();
    let full = loop {
        match UnixStream::connect(&path).await {
            Ok(stream) => queued.push(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break e,
            Err(e) => panic!("connecting: {e}"),
        }
        assert!(queued.len() < 16, "the backlog does not fill");
    };
    (dir, path, socket.into(), queued, full)
}

#[tokio::test]
async fn a_full_listen_backlog_is_waited_for() {
    let (_dir, path, listener, queued, full) = full_backlog("backlog").await;
    // Given up at once, that is lbd "busy"...
    let client = Client::new(&path, Duration::from_secs(5));
    assert!(matches!(
        client.connect_error(full),
        ClientError::Busy { .. }
    ));
    // ...but a backlog that frees within the wait is waited for: the
    // server accepts the queued connections a moment later.
    let waiting = queued.len();
    let accepting = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        (0..=waiting)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<_>>()
    });
    let stream = retry_while_backlog_full(BACKLOG_WAIT, || UnixStream::connect(&path))
        .await
        .expect("connected once the backlog had room");
    drop((stream, queued));
    drop(accepting.join().unwrap());
    // Nobody ever accepting: the wait ends with WouldBlock.
    let started = std::time::Instant::now();
    let attempts = std::cell::Cell::new(0);
    let err = retry_while_backlog_full(Duration::from_millis(300), || {
        attempts.set(attempts.get() + 1);
        std::future::ready(Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(attempts.get() > 1, "tried again");
}

/// A change whose `--api-timeout` ends while lbctl still waits for
/// room in a full listen backlog was never sent: lbd is busy (exit 5),
/// not "it may have been applied" (exit 8).
#[tokio::test]
async fn a_change_never_sent_for_a_full_backlog_is_busy_not_maybe_applied() {
    // Nobody ever accepts: every further connect gets EAGAIN.
    let (_dir, path, listener, queued, _) = full_backlog("unsent").await;
    // Shorter than the backlog wait: the timeout ends the connect.
    let timeout = Duration::from_millis(300);
    assert!(timeout < BACKLOG_WAIT);
    let client = Client::new(&path, timeout);
    let started = std::time::Instant::now();
    let change = client
        .call(Method::Post, "/v1/reload", &[], None)
        .await
        .unwrap_err();
    assert!(started.elapsed() < BACKLOG_WAIT, "{:?}", started.elapsed());
    assert!(matches!(&change, ClientError::Busy { .. }), "{change:?}");
    assert_eq!(
        change.exit_code(),
        ClientError::EXIT_UNAVAILABLE,
        "{change}"
    );
    assert!(
        !change.to_string().contains("may have been applied"),
        "{change}"
    );
    drop((queued, listener));
}

/// The stage an exchange reached decides its timeout's outcome.
#[test]
fn a_timeout_says_maybe_applied_only_for_a_change_sent() {
    let client = Client::new("/run/lbd/lbd.sock", Duration::from_secs(1));
    for stage in [
        Stage::Connecting,
        Stage::BacklogFull,
        Stage::Connected,
        Stage::Sent,
    ] {
        assert_eq!(Stage::from_u8(stage as u8), stage);
        let change = client.timed_out(stage, true);
        let look = client.timed_out(stage, false);
        assert_eq!(look.exit_code(), 5, "{stage:?}: {look}");
        let expected = if stage == Stage::Sent { 8 } else { 5 };
        assert_eq!(change.exit_code(), expected, "{stage:?}: {change}");
    }
    assert!(matches!(
        client.timed_out(Stage::BacklogFull, true),
        ClientError::Busy { .. }
    ));
}

/// A socket path no socket can have (longer than `sun_path`, or
/// under something that is no directory) is bad usage, exit 2, naming
/// the path: not "lbd not reachable, try again later" (exit 5), which
/// a script would retry for ever.
#[tokio::test]
async fn a_socket_path_no_socket_can_have_is_bad_usage() {
    let long = format!("/{}", "a".repeat(200));
    let err = Client::new(&long, Duration::from_secs(1))
        .status()
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), ClientError::EXIT_USAGE, "{err:?}");
    assert!(
        err.to_string().contains(&long) && err.to_string().contains("--socket"),
        "{err}"
    );
    let dir = ScratchDir::new("api-client-not-a-dir");
    std::fs::write(dir.join("file"), "").unwrap();
    let under_a_file = dir.join("file").join("lbd.sock");
    let err = Client::new(&under_a_file, Duration::from_secs(1))
        .status()
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), ClientError::EXIT_USAGE, "{err:?}");
}

/// A 404 for an endpoint lbd does not have (a newer lbctl against an
/// older lbd) is a request lbd refused, exit 2, whether it says so
/// with its own code or (an lbd from before that code) only in its
/// message; exit 3 stays for a VIP, backend, rule or limit that does
/// not exist.
#[test]
fn no_such_endpoint_is_not_no_such_object() {
    let api = |code: &str, message: &str| {
        ClientError::Api(ApiError {
            status: 404,
            code: code.into(),
            message: message.into(),
        })
        .exit_code()
    };
    assert_eq!(api("no_endpoint", "no such endpoint: GET /v1/node"), 2);
    assert_eq!(api("not_found", "no such endpoint: GET /v1/node"), 2);
    assert_eq!(api("not_found", "no VIP 198.18.0.100:80/tcp"), 3);
    assert_eq!(api("not_found", "no backend 198.18.0.11 in VIP x"), 3);
}

#[test]
fn permission_denied_names_the_admin_group() {
    let message = ClientError::PermissionDenied {
        path: "/run/lbd/lbd.sock".into(),
    }
    .to_string();
    assert!(
        message.contains("root") && message.contains("admin_socket_group"),
        "{message}"
    );
}
