//! A BIRD refusing its own config: withdrawing by disabling lbd's
//! protocols, and what ends the refusal.

use super::*;

/// A BIRD whose bird.conf broke refuses every configure, so a
/// withdrawal cannot be read: lbd disables its protocol of the family
/// withdrawn (no parse needed), which withdraws, and the status says
/// BIRD refuses its config. With nothing wanted (a drain), BIRD
/// announces what lbd wants. A refused announcement disables nothing.
/// Once bird.conf parses again the next configure is taken, and the
/// protocol is enabled again.
#[tokio::test]
async fn a_withdrawal_bird_cannot_read_disables_the_familys_protocol() {
    let scratch = Scratch::new("refused");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = ServingBird::start(&config.bird_socket, taking_bird);
    announcer.apply(plan(true), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(bird.commands(), then_protocols("configure"));
    assert!(announcer.status().in_sync);
    bird.stop();

    // bird.conf broke; the VIP is withdrawn (a drain, say).
    let bird = ServingBird::start(&config.bird_socket, refusing_bird);
    announcer.apply(plan(false), t0);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t0);
    assert_eq!(
        bird.commands(),
        ["configure", "disable \"lbd_vips4\""],
        "only IPv4's protocol lost an address"
    );
    let status = announcer.status();
    assert!(
        status
            .bird_config_error
            .as_deref()
            .is_some_and(|e| e.contains("syntax error")),
        "{status:?}"
    );
    assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("withdrawn by disabling lbd_vips4")),
        "{status:?}"
    );
    assert!(
        status.in_sync,
        "BIRD announces nothing of lbd's: {status:?}"
    );
    assert_eq!(status.failures, 1);

    // Announcing again cannot be read either; nothing is disabled.
    let t1 = t0 + Duration::from_millis(1);
    announcer.apply(plan(true), t1);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t1);
    assert_eq!(bird.commands(), ["configure"]);
    let status = announcer.status();
    assert!(!status.in_sync, "the VIP is not announced: {status:?}");
    assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
    bird.stop();

    // bird.conf mended: lbd's retry is taken, and enables the protocol.
    let bird = ServingBird::start(&config.bird_socket, taking_bird);
    let t2 = t1 + RETRY_MAX;
    announcer.apply(plan(true), t2);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, t2);
    let mut expected = then_protocols("configure");
    expected.push("enable \"lbd_vips4\"".to_owned());
    assert_eq!(bird.commands(), expected);
    let status = announcer.status();
    assert!(status.in_sync, "{status:?}");
    assert_eq!(status.bird_config_error, None, "{status:?}");
    assert!(status.disabled.is_empty(), "{status:?}");
    bird.stop();
}

/// A stop's withdrawal (also the unit's stop path and a cleanup, from
/// the record) that BIRD cannot read disables both of lbd's protocols
/// instead: the routes are withdrawn, and the stop goes on. If BIRD
/// refuses that too, the withdrawal fails.
#[tokio::test]
async fn a_stop_bird_cannot_read_withdraws_by_disabling() {
    let scratch = Scratch::new("stoprefused");
    let config = scratch.config();
    let bird = ServingBird::start(&config.bird_socket, refusing_bird);
    withdraw(&config).await.unwrap();
    assert_eq!(
        bird.commands(),
        [
            "configure",
            "disable \"lbd_vips4\"",
            "disable \"lbd_vips6\""
        ]
    );
    assert!(!routes(&config).contains("route "));
    bird.stop();

    let bird = ServingBird::start(&config.bird_socket, |command| {
        if command == "configure" {
            refusing_bird(command)
        } else {
            "8003 No protocols match\n".to_owned()
        }
    });
    let error = format!("{:#}", withdraw(&config).await.unwrap_err());
    assert!(
        error.contains("syntax error") && error.contains("8003"),
        "{error}"
    );
    bird.stop();
}

/// With bird.conf broken (on every node alike, from config
/// management), one VIP of a family losing its backends must not
/// disable the family's protocol: that would withdraw every other
/// VIP of it, from every node. The withdrawal fails instead (BIRD
/// still announces that VIP, and says so); only a family left with
/// nothing to announce is disabled.
#[tokio::test]
async fn a_refused_withdrawal_of_part_of_a_family_disables_nothing() {
    let scratch = Scratch::new("partial");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = ServingBird::start(&config.bird_socket, taking_bird);
    let both = plan_of(&[(A, true), (B, true)]);
    exchange(&mut announcer, &mut outcomes, both, t0).await;
    assert!(announcer.status().in_sync);
    bird.stop();

    let bird = ServingBird::start(&config.bird_socket, refusing_bird);
    let one = plan_of(&[(A, true), (B, false)]);
    exchange(&mut announcer, &mut outcomes, one, t0).await;
    assert_eq!(bird.commands(), ["configure"], "{A} stays announced");
    let status = announcer.status();
    assert!(status.disabled.is_empty(), "{status:?}");
    assert!(status.bird_config_error.is_some(), "{status:?}");
    assert!(!status.in_sync, "BIRD still announces {B}: {status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("syntax error") && e.contains(B)),
        "{status:?}"
    );

    // Nothing of IPv4 left to announce: now its protocol is disabled.
    let t1 = t0 + RETRY_MAX;
    let none = plan_of(&[(A, false), (B, false)]);
    exchange(&mut announcer, &mut outcomes, none, t1).await;
    assert_eq!(bird.commands(), ["configure", "disable \"lbd_vips4\""]);
    let status = announcer.status();
    assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
    assert!(status.in_sync, "{status:?}");
    bird.stop();
}

/// A drain with bird.conf broken where BIRD disables one protocol and
/// refuses the other: the one it disabled is recorded (status, and
/// enabled again later), and the other's failure is reported.
#[tokio::test]
async fn a_protocol_disabled_is_recorded_when_disabling_another_fails() {
    let scratch = Scratch::new("halfdisabled");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    let bird = ServingBird::start(&config.bird_socket, taking_bird);
    let both = plan_of(&[(A, true), (A6, true)]);
    exchange(&mut announcer, &mut outcomes, both, t0).await;
    assert!(announcer.status().in_sync);
    bird.stop();

    let bird = ServingBird::start(&config.bird_socket, |command| {
        if command == "disable \"lbd_vips6\"" {
            "8003 No protocols match\n".to_owned()
        } else {
            refusing_bird(command)
        }
    });
    let none = plan_of(&[(A, false), (A6, false)]);
    exchange(&mut announcer, &mut outcomes, none, t0).await;
    assert_eq!(
        bird.commands(),
        [
            "configure",
            "disable \"lbd_vips4\"",
            "disable \"lbd_vips6\""
        ]
    );
    let status = announcer.status();
    assert_eq!(status.disabled, ["lbd_vips4"], "{status:?}");
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("withdrawn by disabling lbd_vips4")
            && error.contains("disable \"lbd_vips6\"")
            && error.contains("8003"),
        "{error}"
    );
    assert!(!status.in_sync, "BIRD may still announce {A6}");
    bird.stop();
}

/// Once BIRD takes its config again, the status no longer says it
/// refuses it, nor that a protocol is disabled (the configure
/// restarted it), even when what follows the configure fails: the
/// enable, or the check that BIRD includes the routes file.
#[tokio::test]
async fn a_configure_bird_takes_ends_the_refusal_whatever_follows() {
    for (tag, answer) in [
        (
            "enablefails",
            (|command: &str| {
                if command.starts_with("enable") {
                    "9001 syntax error\n".to_owned()
                } else {
                    taking_bird(command)
                }
            }) as fn(&str) -> String,
        ),
        ("notincluded", |command: &str| {
            if command.starts_with("show protocols") {
                "8003 No protocols match\n".to_owned()
            } else {
                taking_bird(command)
            }
        }),
    ] {
        let scratch = Scratch::new(tag);
        let config = scratch.config();
        let t0 = Instant::now();
        let mut announcer = Announcer::new(config.clone(), false, false, t0);
        let mut outcomes = announcer.take_outcomes().unwrap();
        let bird = ServingBird::start(&config.bird_socket, taking_bird);
        exchange(&mut announcer, &mut outcomes, plan(true), t0).await;
        bird.stop();
        let bird = ServingBird::start(&config.bird_socket, refusing_bird);
        exchange(&mut announcer, &mut outcomes, plan(false), t0).await;
        assert_eq!(announcer.status().disabled, ["lbd_vips4"]);
        bird.stop();

        let bird = ServingBird::start(&config.bird_socket, answer);
        let t1 = t0 + RETRY_MAX;
        exchange(&mut announcer, &mut outcomes, plan(true), t1).await;
        assert_eq!(bird.commands()[0], "configure", "{tag}");
        let status = announcer.status();
        assert_eq!(status.bird_config_error, None, "{tag}: {status:?}");
        assert!(status.disabled.is_empty(), "{tag}: {status:?}");
        assert!(!status.in_sync, "{tag}: {status:?}");
        assert!(status.last_error.is_some(), "{tag}: {status:?}");
        bird.stop();
    }
}
