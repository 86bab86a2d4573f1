//! Which Established BGP sessions export lbd's addresses, told apart
//! from BIRD taking the set.

use super::*;

/// BIRD takes lbd's set and runs its protocols, but its only BGP
/// session is Active (a mistyped neighbour or AS): in sync, yet the
/// address is exported by no Established session, and the status
/// says so; once the session is up and exports it, the next status
/// check counts it.
#[tokio::test]
async fn an_address_no_established_session_exports_is_told_apart_from_in_sync() {
    let scratch = Scratch::new("exports");
    let config = scratch.config();
    let t0 = Instant::now();
    let mut announcer = Announcer::new(config.clone(), false, false, t0);
    let mut outcomes = announcer.take_outcomes().unwrap();
    assert_eq!(
        announcer.status().sessions,
        None,
        "unknown before BIRD is asked"
    );
    let bird = ServingBird::start(&config.bird_socket, bird_with_session(false));
    exchange(&mut announcer, &mut outcomes, plan(true), t0).await;
    let status = announcer.status();
    assert!(status.in_sync, "{status:?}");
    assert_eq!(
        status.exporting,
        [AddressExports {
            address: A.parse().unwrap(),
            sessions: 0
        }],
        "{status:?}"
    );
    let sessions = status.sessions.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(!sessions[0].established);
    assert!(sessions[0].info.starts_with("Active"), "{sessions:?}");
    bird.stop();

    // The session comes up: the next status check sees A exported.
    let bird = ServingBird::start(&config.bird_socket, bird_with_session(true));
    let t1 = t0 + PROBE_INTERVAL;
    exchange(&mut announcer, &mut outcomes, plan(true), t1).await;
    assert_eq!(bird.commands()[0], "show status");
    let status = announcer.status();
    assert_eq!(status.exporting[0].sessions, 1, "{status:?}");
    assert_eq!(
        status.sessions.unwrap()[0].exports,
        [A.parse::<IpAddr>().unwrap()]
    );
    bird.stop();

    // BIRD gone: what its sessions export is unknown, not 0 or 1.
    let t2 = t1 + PROBE_INTERVAL;
    exchange(&mut announcer, &mut outcomes, plan(true), t2).await;
    let status = announcer.status();
    assert!(!status.in_sync);
    assert_eq!(status.sessions, None, "{status:?}");
    assert!(status.exporting.is_empty(), "{status:?}");
}
