//! Which stops leave the program attached.

use std::time::Duration;

use super::*;

/// A stop for good whose withdrawal found BIRD not running (nothing
/// listens on its control socket) detaches the program, as
/// `lbd --cleanup` does: BIRD's sessions went with it. One that BIRD
/// refused, or did not answer, keeps a pinned program attached; a
/// restart always does.
#[tokio::test]
async fn a_stop_for_good_detaches_when_bird_is_not_running_as_cleanup_does() {
    let dir = crate::test_scratch::ScratchDir::new("engine-keep");
    let config = crate::config::BgpConfig {
        bird_socket: dir.join("bird.ctl"),
        routes_file: dir.join("vips.conf"),
        protocol: "lbd_vips".into(),
        addresses: crate::config::Announced::EveryVip,
        startup_wait: Duration::from_secs(10),
        node_state_file: dir.join("node.state"),
    };
    let not_running = crate::bgp::announcer::withdraw(&config).await.unwrap_err();
    assert!(
        !keeps_program(Stop::Clean, true, Some(&not_running)),
        "{not_running:#}"
    );
    let unanswered = anyhow::anyhow!("BIRD did not answer in time");
    assert!(keeps_program(Stop::Clean, true, Some(&unanswered)));
    assert!(!keeps_program(Stop::Clean, false, Some(&unanswered)));
    assert!(!keeps_program(Stop::Clean, true, None));
    assert!(keeps_program(Stop::Restart, true, None));
    assert!(keeps_program(Stop::Restart, true, Some(&not_running)));
}
