//! When the node counts as in sync with BIRD: checks that find BIRD
//! gone, hung or not including the routes file, and exchanges in flight.

use super::*;

/// A stop after the hook was lost awaits `withdraw_all` (see
/// `daemon::stopping::WithdrawFirst::Withdraw`): it empties the routes file and
/// reconfigures BIRD even while the exchange the loop started is still
/// in flight (a slow BIRD), when the loop's own `apply` of the
/// withdrawal returned without writing anything.
#[tokio::test]
async fn a_withdrawal_on_stop_is_sent_while_an_exchange_is_in_flight() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let scratch = Scratch::new("inflight");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let _outcomes = announcer.take_outcomes().unwrap();
    let listener = tokio::net::UnixListener::bind(&config.bird_socket).unwrap();
    // The first connection is answered never (BIRD is slow); the
    // second's commands are answered and returned.
    let (asked, slow_asked) = tokio::sync::oneshot::channel();
    let bird = tokio::spawn(async move {
        let (slow, _) = listener.accept().await.unwrap();
        let (slow_read, mut slow_write) = slow.into_split();
        slow_write
            .write_all(b"0001 BIRD 2.0.12 ready.\n")
            .await
            .unwrap();
        let mut slow_lines = tokio::io::BufReader::new(slow_read).lines();
        let first = slow_lines.next_line().await.unwrap();
        let _ = asked.send(first);
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut commands = Vec::new();
        while let Ok(Some(command)) = lines.next_line().await {
            let _ = write.write_all(b"0003 Reconfigured\n").await;
            commands.push(command);
        }
        drop((slow_lines, slow_write));
        commands
    });
    announcer.apply(plan(true), t0);
    assert_eq!(announcer.in_flight, Some(Exchange::Configure));
    assert_eq!(slow_asked.await.unwrap().as_deref(), Some("configure"));
    // The hook is lost: the loop's withdrawal waits for the exchange.
    announcer.apply(plan(false), t0);
    assert!(routes(&config).contains(&format!("route {A}/32")));
    tokio::time::timeout(Duration::from_secs(5), announcer.withdraw_all())
        .await
        .expect("in time")
        .expect("withdrawn");
    assert!(
        !routes(&config).contains("route "),
        "the file still announces: {}",
        routes(&config)
    );
    assert_eq!(bird.await.unwrap(), ["configure"]);
}

/// A BIRD whose config does not include the routes file takes every
/// reconfigure (`0003 Reconfigured`) and announces nothing of lbd's:
/// asked after the reconfigure, it runs no protocol of the file, so
/// the node is not in sync, and the error says bird.conf must
/// include the file.
#[tokio::test]
async fn a_bird_that_does_not_include_the_routes_file_is_not_in_sync() {
    let scratch = Scratch::new("noinclude");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = fake_bird(&config.bird_socket, |command| {
        if command.starts_with("show protocols") {
            "8003 No protocols match\n".to_owned()
        } else {
            "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n".to_owned()
        }
    });
    announcer.apply(plan(true), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(bird.await.unwrap()[0], "configure");
    let status = announcer.status();
    assert!(
        !status.in_sync,
        "BIRD announces nothing of lbd's: {status:?}"
    );
    assert_eq!(status.applies, 0, "{status:?}");
    assert_eq!(status.failures, 1, "{status:?}");
    let error = status.last_error.unwrap_or_default();
    let file = config.routes_file.display().to_string();
    assert!(
        error.contains(&format!("include \"{file}\";"))
            && error.contains("lbd_vips4")
            && error.contains("bird.conf"),
        "{error}"
    );
}

/// BIRD included the file when it took the set, then its config lost
/// the `include` and it was reconfigured by hand: the status check
/// finds lbd's protocols gone, and the node is no longer in sync.
#[tokio::test]
async fn a_status_check_finds_the_routes_file_no_longer_included() {
    let scratch = Scratch::new("uninclude");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
    announcer.apply(plan(true), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(bird.await.unwrap(), then_protocols("configure"));
    assert!(announcer.status().in_sync);

    let bird = fake_bird(&config.bird_socket, |command| {
        if command.starts_with("show protocols") {
            "8003 No protocols match\n".to_owned()
        } else {
            "1000-BIRD 2.0.12\n0013 Daemon is up and running\n".to_owned()
        }
    });
    let t1 = t0 + PROBE_INTERVAL;
    announcer.apply(plan(true), t1);
    assert_eq!(announcer.in_flight, Some(Exchange::Probe));
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t1);
    assert_eq!(bird.await.unwrap()[0], "show status");
    let status = announcer.status();
    assert!(!status.in_sync, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&config.routes_file.display().to_string())),
        "{status:?}"
    );
}

/// BIRD accepted the set, then crashed: nothing changes in lbd, so no
/// reconfigure would find out. The status check does, every
/// PROBE_INTERVAL: the node is no longer in sync (and the alert on
/// `lbd_bgp_in_sync` can fire), and once BIRD answers again the set
/// is sent again and the node is in sync again.
#[tokio::test]
async fn a_bird_that_went_away_after_accepting_the_set_is_found_out() {
    let scratch = Scratch::new("probe");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
    announcer.apply(plan(true), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(bird.await.unwrap(), then_protocols("configure"));
    assert!(announcer.status().in_sync);

    // BIRD is up: the status check asks it, and the node stays in
    // sync, also while the check runs (it sends BIRD no other set).
    let bird = bird_answering(
        &config.bird_socket,
        "1000-BIRD 2.0.12\n0013 Daemon is up and running\n",
    );
    announcer.apply(plan(true), t0 + PROBE_INTERVAL - Duration::from_millis(1));
    assert!(announcer.in_flight.is_none(), "not before the interval");
    let t1 = t0 + PROBE_INTERVAL;
    announcer.apply(plan(true), t1);
    assert_eq!(announcer.in_flight, Some(Exchange::Probe));
    assert!(announcer.status().in_sync, "a check sends no other set");
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t1);
    assert_eq!(bird.await.unwrap(), then_protocols("show status"));
    assert!(announcer.status().in_sync);
    assert_eq!(announcer.status().applies, 1, "nothing reconfigured");

    // BIRD is gone now (its socket removed): the next check fails.
    let t2 = t1 + PROBE_INTERVAL;
    announcer.apply(plan(true), t2 - Duration::from_millis(1));
    assert!(announcer.in_flight.is_none());
    announcer.apply(plan(true), t2);
    let outcome = outcomes.recv().await.unwrap();
    assert_eq!(outcome.exchange, Exchange::Probe);
    announcer.on_outcome(outcome, t2);
    let status = announcer.status();
    assert!(!status.in_sync, "BIRD crashed: {status:?}");
    assert_eq!(status.failures, 1);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("BIRD is not running")),
        "{status:?}"
    );

    // BIRD is back: after the backoff the set is written and sent
    // again, and the node is in sync once BIRD takes it.
    let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
    announcer.apply(plan(true), t2 + RETRY_MIN);
    assert_eq!(announcer.in_flight, Some(Exchange::Configure));
    assert!(routes(&config).contains(&format!("route {A}/32")));
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t2 + RETRY_MIN);
    assert_eq!(bird.await.unwrap(), then_protocols("configure"));
    let status = announcer.status();
    assert!(status.in_sync, "{status:?}");
    assert_eq!(status.applies, 2);
}

/// A drain right after an undrain: BIRD accepted the withdrawal
/// before, the announcement is on its way, and the plan withdraws
/// again. The set wanted is the one applied, yet BIRD is being told
/// to announce: not in sync until that exchange ends and the
/// withdrawal is sent again.
#[tokio::test]
async fn nothing_is_in_sync_while_bird_is_being_sent_another_set() {
    let scratch = Scratch::new("inflight");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
    announcer.apply(plan(false), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    bird.await.unwrap();
    assert!(announcer.status().in_sync, "the withdrawal was taken");
    let hung = hung_bird(&config.bird_socket);
    announcer.apply(plan(true), t0);
    assert_eq!(
        announcer.in_flight,
        Some(Exchange::Configure),
        "the announcement is on its way"
    );
    announcer.apply(plan(false), t0);
    assert!(announcer.status().announced.is_empty());
    assert!(
        !announcer.status().in_sync,
        "BIRD is being told to announce {A}"
    );
    hung.abort();
}

#[tokio::test]
async fn a_bird_that_never_answers_holds_no_caller_and_one_exchange_runs_at_a_time() {
    let scratch = Scratch::new("hung");
    let config = scratch.config();
    // Accepts and never greets.
    let listener = tokio::net::UnixListener::bind(&config.bird_socket).unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let _outcomes = announcer.take_outcomes().unwrap();
    let started = Instant::now();
    announcer.apply(plan(true), t0);
    announcer.apply(plan(false), t0);
    announcer.apply(plan(true), t0);
    // 2 s: slack for a loaded machine, still far below the 5 s
    // EXCHANGE_TIMEOUT an apply that waited for this BIRD would take.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "apply waited for BIRD: {:?}",
        started.elapsed()
    );
    // The first exchange connects (polled: a loaded machine may be
    // slow to run it); the later applies start no second one.
    let connected = Instant::now();
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            connected.elapsed() < Duration::from_secs(4),
            "no exchange reached BIRD"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one exchange at a time");
    let status = announcer.status();
    assert!(!status.in_sync);
    assert_eq!(status.announced, vec![A.parse::<IpAddr>().unwrap()]);
    server.abort();
}
