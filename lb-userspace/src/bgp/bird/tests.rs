use std::path::Path;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
};

use super::*;
use crate::{bgp::sessions, test_scratch::ScratchDir};

/// A scripted peer on a real Unix socket: greets, reads one command,
/// answers with `reply`.
async fn peer(
    reply: &'static str,
) -> (
    ScratchDir,
    std::path::PathBuf,
    tokio::task::JoinHandle<String>,
) {
    let dir = ScratchDir::new("bird");
    let path = dir.join("bird.ctl");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let command = lines.next_line().await.unwrap().unwrap();
        write.write_all(reply.as_bytes()).await.unwrap();
        command
    });
    (dir, path, task)
}

#[tokio::test]
async fn configure_succeeds_on_a_success_code_and_fails_with_birds_message() {
    let (_dir, path, task) =
        peer("0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n").await;
    let reply = configure(&path).await.unwrap();
    assert_eq!(reply.code, 3);
    assert_eq!(task.await.unwrap(), "configure");

    let (_dir, path, _task) =
        peer("0002-Reading configuration from /etc/bird/bird.conf\n8002 /run/lbd-bgp/vips.conf:2:3 syntax error, unexpected CF_SYM_UNDEFINED\n").await;
    let error = configure(&path).await.unwrap_err().to_string();
    assert!(
        error.contains("8002") && error.contains("vips.conf:2:3"),
        "{error}"
    );
}

#[tokio::test]
async fn no_bird_is_an_error_naming_the_socket() {
    let error = configure(Path::new("/nonexistent/bird.ctl"))
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("/nonexistent/bird.ctl"),
        "{error:#}"
    );
}

/// Only a socket nobody listens on says BIRD is not running (a cleanup
/// may then detach the program); a BIRD that answers with an error
/// may still announce what it read last.
#[tokio::test]
async fn not_running_is_told_from_a_refusal() {
    let missing = configure(Path::new("/nonexistent/bird.ctl"))
        .await
        .unwrap_err();
    assert!(is_not_running(&missing), "{missing:#}");
    // The socket file a crashed BIRD leaves: connections refused.
    let dir = ScratchDir::new("bird");
    let left = dir.join("bird.ctl");
    drop(std::os::unix::net::UnixListener::bind(&left).unwrap());
    let refused = configure(&left).await.unwrap_err();
    assert!(is_not_running(&refused), "{refused:#}");
    assert!(
        is_not_running(&refused.context("withdrawing")),
        "still told once wrapped"
    );
    let (_dir, path, _task) = peer("8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
    let error = configure(&path).await.unwrap_err();
    assert!(!is_not_running(&error), "{error:#}");
}

#[tokio::test]
async fn a_probe_asks_for_the_status_and_fails_on_an_error() {
    let (_dir, path, task) =
        peer("1000-BIRD 2.0.12\n1011-Router ID is 198.18.0.2\n Hostname is lb\n0013 Daemon is up and running\n").await;
    assert!(probe(&path, &[]).await.unwrap().missing.is_empty());
    assert_eq!(task.await.unwrap(), "show status");
    let (_dir, path, _task) = peer("9001 Unknown command\n").await;
    let error = probe(&path, &[]).await.unwrap_err();
    assert!(format!("{error:#}").contains("9001"), "{error:#}");
    assert!(is_not_running(
        &probe(Path::new("/nonexistent/bird.ctl"), &[])
            .await
            .unwrap_err()
    ));
}

/// Over the socket: a greeting with no end fails the configure, and
/// lbd hangs up long before the peer has sent it all.
#[tokio::test]
async fn an_endless_greeting_fails_the_configure_quickly() {
    let dir = ScratchDir::new("bird");
    let path = dir.join("bird.ctl");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut sent = 0usize;
        let chunk = vec![b'x'; 64 << 10];
        if stream.write_all(b"0001 ").await.is_err() {
            return sent;
        }
        while sent < 64 << 20 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let error = configure(&path).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("BIRD sent a line longer than"),
        "{error:#}"
    );
    let sent = task.await.unwrap();
    assert!(sent < 64 << 20, "the whole line was read: {sent} bytes");
}

/// A scripted peer that answers every command on one connection with
/// `answer(command)`; the task returns the commands.
async fn scripted(
    answer: fn(&str) -> &'static str,
) -> (
    ScratchDir,
    std::path::PathBuf,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let dir = ScratchDir::new("bird");
    let path = dir.join("bird.ctl");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
        let mut lines = BufReader::new(read).lines();
        let mut commands = Vec::new();
        while let Ok(Some(command)) = lines.next_line().await {
            let _ = write.write_all(answer(&command).as_bytes()).await;
            commands.push(command);
        }
        commands
    });
    (dir, path, task)
}

/// BIRD 2.0.12's answers, as read from a real one.
fn bird_running_only_lbd_vips4(command: &str) -> &'static str {
    match command {
        "configure" => "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
        "show status" => "1000-BIRD 2.0.12\n1011-Router ID is 198.18.0.2\n0013 Daemon is up and running\n",
        "show protocols \"lbd_vips4\"" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     07:35:47.183  \n0000 \n",
        "show protocols \"broken\"" => "9001 syntax error, unexpected CF_SYM_UNDEFINED\n",
        _ => "8003 No protocols match\n",
    }
}

/// A refused configure is told from a BIRD that is not running; then
/// lbd's protocols are disabled (BIRD 2.0.12's answers), and a
/// protocol BIRD has none of fails the toggle.
#[tokio::test]
async fn a_refused_configure_is_told_and_protocols_are_toggled_without_a_parse() {
    let (_dir, path, _task) = peer("8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
    let refused = configure(&path).await.unwrap_err();
    assert!(is_refused(&refused), "{refused:#}");
    assert!(
        is_refused(&refused.context("withdrawing")),
        "still told once wrapped"
    );
    let missing = configure(Path::new("/nonexistent/bird.ctl"))
        .await
        .unwrap_err();
    assert!(!is_refused(&missing), "{missing:#}");

    let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
    let (_dir, path, task) = scripted(|command| match command {
        "disable \"lbd_vips4\"" => "0009-lbd_vips4: disabled\n0000 \n",
        "disable \"lbd_vips6\"" => "0008-lbd_vips6: already disabled\n0000 \n",
        _ => "8003 No protocols match\n",
    })
    .await;
    let toggled = toggle(&path, &protocols, Toggle::Disable).await;
    assert_eq!(toggled.done, protocols);
    toggled.into_result().unwrap();
    assert_eq!(
        task.await.unwrap(),
        ["disable \"lbd_vips4\"", "disable \"lbd_vips6\""]
    );
    let (_dir, path, _task) = scripted(|_| "8003 No protocols match\n").await;
    let toggled = toggle(&path, &protocols, Toggle::Enable).await;
    assert!(toggled.done.is_empty());
    let error = toggled.into_result().unwrap_err();
    assert!(
        format!("{error:#}").contains("enable \"lbd_vips4\"")
            && format!("{error:#}").contains("8003"),
        "{error:#}"
    );
}

/// After the reconfigure (and the status), BIRD is asked for each
/// protocol on the same connection: the ones it has none of come back.
#[tokio::test]
async fn the_protocols_bird_does_not_run_are_found_after_a_configure_and_a_probe() {
    let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
    let (_dir, path, task) = scripted(bird_running_only_lbd_vips4).await;
    let checked = configure_checked(&path, &protocols).await.unwrap();
    assert_eq!(checked.missing, ["lbd_vips6"]);
    assert_eq!(
        task.await.unwrap(),
        [
            "configure",
            "show protocols \"lbd_vips4\"",
            "show protocols \"lbd_vips6\"",
            "show protocols"
        ]
    );
    let (_dir, path, task) = scripted(bird_running_only_lbd_vips4).await;
    let checked = probe(&path, &protocols).await.unwrap();
    assert_eq!(checked.missing, ["lbd_vips6"]);
    assert_eq!(task.await.unwrap()[0], "show status");
    // Another error is an error, not a missing protocol.
    let (_dir, path, _task) = scripted(bird_running_only_lbd_vips4).await;
    let error = configure_checked(&path, &["broken".to_owned()])
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("9001"), "{error:#}");
    // A refused reconfigure asks nothing more.
    let (_dir, path, task) = scripted(|_| "8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
    assert!(configure_checked(&path, &protocols).await.is_err());
    assert_eq!(task.await.unwrap(), ["configure"]);
}

/// Debian bird2 2.0.12's answers on a node with four BGP sessions
/// (see `sessions::tests::SHOW_PROTOCOLS`): only `good_v4` exports
/// lbd's routes; `badfilter_v4` is Established with an export filter
/// that names no protocol of lbd's; `wrongas_v4` (a mistyped AS) and
/// `noneighbor_v4` are not Established. As captured from a real one.
fn bird_with_sessions(command: &str) -> &'static str {
    match command {
        "configure" => "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
        "show status" => "1000-BIRD 2.0.12\n1011-Router ID is 10.77.0.2\n0013 Daemon is up and running\n",
        "show protocols \"lbd_vips4\"" | "show protocols \"lbd_vips6\"" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n0000 \n",
        "show protocols" => crate::bgp::sessions::tests::SHOW_PROTOCOLS,
        "show route exported 'good_v4' protocol 'lbd_vips4'" => crate::bgp::sessions::tests::GOOD_EXPORTS,
        "show route exported 'noneighbor_v4' protocol 'lbd_vips4'" | "show route exported 'wrongas_v4' protocol 'lbd_vips4'" => "9001 No valid tables\n",
        command if command.starts_with("show route exported '") => "0000 \n",
        _ => "9001 syntax error\n",
    }
}

/// After a configure and after a probe, BIRD's BGP sessions are read:
/// which are Established, and which of lbd's addresses each exports;
/// only Established sessions are asked for their routes.
#[tokio::test]
async fn which_sessions_export_lbds_routes_is_read_after_a_configure_and_a_probe() {
    let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
    let a: std::net::IpAddr = "198.18.0.100".parse().unwrap();
    let b: std::net::IpAddr = "198.18.0.101".parse().unwrap();
    for configure in [true, false] {
        let (_dir, path, task) = scripted(bird_with_sessions).await;
        let checked = if configure {
            configure_checked(&path, &protocols).await.unwrap()
        } else {
            probe(&path, &protocols).await.unwrap()
        };
        assert!(checked.missing.is_empty());
        let sessions = checked.sessions.unwrap();
        let summary: Vec<(&str, bool, Vec<std::net::IpAddr>)> = sessions
            .iter()
            .map(|s| (s.name.as_str(), s.established, s.exports.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("good_v4", true, vec![a, b]),
                ("badfilter_v4", true, vec![]),
                ("wrongas_v4", false, vec![]),
                ("noneighbor_v4", false, vec![]),
            ]
        );
        assert_eq!(sessions::exporting(&sessions, a), 1);
        let asked = task.await.unwrap();
        assert_eq!(
            asked[3..],
            [
                "show protocols",
                "show route exported 'good_v4' protocol 'lbd_vips4'",
                "show route exported 'good_v4' protocol 'lbd_vips6'",
                "show route exported 'badfilter_v4' protocol 'lbd_vips4'",
                "show route exported 'badfilter_v4' protocol 'lbd_vips6'",
            ]
        );
    }
    // A session that went down since it was listed exports nothing;
    // another error is told, and the check itself still succeeds.
    let (_dir, path, _task) = scripted(|command| match command {
        "show route exported 'good_v4' protocol 'lbd_vips4'" => "9001 No valid tables\n",
        "show route exported 'badfilter_v4' protocol 'lbd_vips4'" => "8001 Something odd\n",
        command => bird_with_sessions(command),
    })
    .await;
    let checked = probe(&path, &protocols).await.unwrap();
    let error = checked.sessions.unwrap_err();
    assert!(
        error.contains("8001") && error.contains("badfilter_v4"),
        "{error}"
    );
}

/// A protocol BIRD refuses to disable does not stop the next, and
/// the ones it disabled are told: each of them withdraws.
#[tokio::test]
async fn each_protocol_bird_toggled_is_told_when_another_fails() {
    let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
    let (_dir, path, task) = scripted(|command| match command {
        "disable \"lbd_vips6\"" => "0009-lbd_vips6: disabled\n0000 \n",
        _ => "8003 No protocols match\n",
    })
    .await;
    let toggled = toggle(&path, &protocols, Toggle::Disable).await;
    assert_eq!(toggled.done, ["lbd_vips6"]);
    let error = format!("{:#}", toggled.error.unwrap());
    assert!(
        error.contains("disable \"lbd_vips4\"") && error.contains("8003"),
        "{error}"
    );
    assert_eq!(
        task.await.unwrap(),
        ["disable \"lbd_vips4\"", "disable \"lbd_vips6\""]
    );
    // The other way round: the first disabled, the second refused.
    let (_dir, path, _task) = scripted(|command| match command {
        "disable \"lbd_vips4\"" => "0009-lbd_vips4: disabled\n0000 \n",
        _ => "8003 No protocols match\n",
    })
    .await;
    let toggled = toggle(&path, &protocols, Toggle::Disable).await;
    assert_eq!(toggled.done, ["lbd_vips4"]);
    assert!(toggled.error.is_some());
}
