//! A failed exchange: what is sent again, and when.

use super::*;

#[tokio::test]
async fn after_a_failure_a_changed_set_is_written_and_sent_at_once() {
    let scratch = Scratch::new("backoff");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    // No BIRD: the announcement fails and backs off.
    announcer.apply(plan(true), t0);
    assert!(routes(&config).contains(&format!("route {A}/32")));
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(announcer.status().failures, 1);
    // The same set again, within the backoff: held back.
    announcer.apply(plan(true), t0 + Duration::from_millis(10));
    assert!(outcomes.try_recv().is_err());
    assert!(announcer.in_flight.is_none());
    // The VIP loses its backends: withdrawn at once, backoff or not.
    announcer.apply(plan(false), t0 + Duration::from_millis(20));
    assert!(
        !routes(&config).contains("route "),
        "the file is rewritten for a changed set: {}",
        routes(&config)
    );
    let outcome = outcomes.recv().await.unwrap();
    assert!(outcome.set.is_empty());
    announcer.on_outcome(outcome, t0 + Duration::from_millis(20));
    assert_eq!(announcer.status().failures, 2);
}

/// A failed exchange leaves what BIRD announces unknown (the file holds
/// the set that failed, which a restarted BIRD reads): wanting the set
/// applied before it again is written and sent, not taken as done.
#[tokio::test]
async fn after_a_failure_the_set_applied_before_is_sent_again() {
    let scratch = Scratch::new("unknown");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = bird_answering(&config.bird_socket, "0003 Reconfigured\n");
    announcer.apply(plan(true), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    bird.await.unwrap();
    assert!(announcer.status().in_sync);
    // BIRD is gone: the withdrawal is written, and fails.
    announcer.apply(plan(false), t0);
    assert!(!routes(&config).contains("route "));
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(announcer.status().failures, 1);
    // The VIP is back: the file says so again, and BIRD is asked.
    announcer.apply(plan(true), t0);
    assert!(
        routes(&config).contains(&format!("route {A}/32")),
        "the file still withdraws: {}",
        routes(&config)
    );
    assert!(
        !announcer.status().in_sync,
        "not in sync until BIRD answers"
    );
    let outcome = outcomes.recv().await.unwrap();
    assert!(outcome.result.is_err(), "sent to BIRD (still gone)");
}
