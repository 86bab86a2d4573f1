//! When the sender's reconnect backoff resets: only after a session stayed
//! healthy for a silence period.
use super::*;

#[test]
fn only_a_session_healthy_for_a_silence_period_resets_the_reconnect_backoff() {
    let timing = fast();
    let ms = Duration::from_millis;
    let mut backoff = Backoff::new(timing);
    assert_eq!(backoff.after(None), (ms(20), false));
    assert_eq!(backoff.after(None), (ms(40), true));
    // Sessions cut right after their handshake (a listener refusing
    // them), or whose writes never got through (one timing out after a
    // silence period): healthy for less, the delay still grows.
    assert_eq!(backoff.after(Some(ms(1))), (ms(80), true));
    assert_eq!(backoff.after(Some(timing.silence - ms(1))), (ms(100), true));
    assert_eq!(backoff.after(Some(Duration::ZERO)), (ms(100), true));
    // One healthy for a silence period starts over.
    assert_eq!(backoff.after(Some(timing.silence)), (ms(20), false));
    assert_eq!(backoff.after(Some(ms(1))), (ms(40), true));
}

/// A backup too slow to drain its receive queue: each session's writes
/// stall and time out after a silence period, so every session lasts
/// that long. None resets the backoff (the storm it would make: a
/// reconnect `backoff_min` after each timeout, and the whole table dumped
/// again each time): the delay between them doubles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_whose_writes_time_out_never_reset_the_reconnect_backoff() {
    let timing = Timing {
        silence: Duration::from_millis(300),
        backoff_min: Duration::from_millis(150),
        backoff_max: Duration::from_secs(10),
        ..fast()
    };
    // A receive queue of one, never read: the listener stops reading
    // each session after its first frame (its heartbeats go on).
    let (tx, _stuck) = mpsc::channel(1);
    let listener = listen_with(
        local(),
        Sources::Any,
        config("lb-b", KEY),
        tx,
        Arc::new(SyncStats::new()),
        timing,
    )
    .await
    .unwrap();
    let stats = Arc::new(SyncStats::new());
    let sender = Sender::start_with(
        listener.local_addr(),
        config("lb-a", KEY),
        stats.clone(),
        timing,
    )
    .unwrap();
    // More than the sockets' buffers hold: put back after each failed
    // write, it stalls every session.
    sender.send((0..300_000).map(record).collect(), false);
    let mut sessions = sender.sessions();
    let mut starts = Vec::new();
    for n in 1..=4 {
        timeout(LIMIT, sessions.wait_for(|&got| got >= n))
            .await
            .expect("session in time")
            .expect("sender alive");
        starts.push(Instant::now());
    }
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Each session lasts its write's timeout, then the delays are 1, 2
    // and 4 times the first: the third gap is at least `silence + 4 ×
    // backoff_min` (reset after each session, `silence + backoff_min`).
    // Asking for 2 × leaves room for the time a session's start takes
    // to be seen here on a loaded machine.
    let third = gaps[2];
    assert!(
        third >= timing.silence + timing.backoff_min * 2,
        "the fourth session came {third:?} after the third (gaps {gaps:?})"
    );
    assert!(stats.snapshot().timeouts >= 3, "{:?}", stats.snapshot());
}
