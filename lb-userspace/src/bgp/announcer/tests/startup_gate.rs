//! The start-up gate as the announcer drives and shows it.

use super::*;
use crate::bgp::announce::{Gate, Opened, PeerDumps, DUMP_PROGRESS_WINDOW};

#[test]
fn the_gate_opens_at_once_only_when_the_previous_routes_were_kept() {
    let scratch = Scratch::new("gate");
    let config = scratch.config();
    let now = Instant::now();
    let startup = |adopted| {
        Announcer::new(config.clone(), adopted, true, now)
            .status()
            .startup
    };
    assert_eq!(
        startup(true),
        StartupStatus::Waiting,
        "no routes file: the routes were not kept"
    );
    routes_file::write(
        &config.routes_file,
        &routes_file::render("lbd_vips", &BTreeSet::new()),
    )
    .unwrap();
    assert_eq!(
        startup(true),
        StartupStatus::Waiting,
        "withdrawn by the stop: wait for the peers"
    );
    let kept: BTreeSet<IpAddr> = [A.parse().unwrap()].into();
    routes_file::write(&config.routes_file, &routes_file::render("lbd_vips", &kept)).unwrap();
    assert_eq!(
        startup(true),
        StartupStatus::Kept,
        "a restart that kept its routes"
    );
    assert_eq!(
        Announcer::new(config.clone(), true, true, now).gate(),
        Gate::Only(&kept),
        "only the kept routes' addresses go through at once"
    );
    assert_eq!(
        startup(false),
        StartupStatus::Waiting,
        "a fresh node waits whatever the file says"
    );
}

/// The driver feeds the gate where the peers' dumps stand: a fresh
/// node whose peer's dump is still arriving when the start-up wait
/// passes stays `waiting` (announcing nothing), and once that dump
/// stops arriving the status says why the gate opened
/// (`dump-stalled`); a peer that sent nothing opens it at the wait.
#[test]
fn a_dump_arriving_at_the_wait_holds_the_announcement_until_it_stalls() {
    use crate::bgp::announce::DumpProgress;
    let scratch = Scratch::new("dump-gate");
    let config = scratch.config();
    let wait = config.startup_wait;
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let peer = |progress| PeerDumps(vec![("198.18.2.12:7946".to_owned(), progress)]);
    let none = BTreeSet::new();

    let mut announcer = Announcer::new(config.clone(), false, true, t0);
    let last_frame = t0 + wait - ms(200);
    let arriving = peer(DumpProgress::Arriving(last_frame));
    announcer.update_startup(&arriving, &none, t0 + wait);
    assert_eq!(announcer.status().startup, StartupStatus::Waiting);
    assert_eq!(announcer.gate(), Gate::Closed);
    assert!(!announcer.started());
    announcer.update_startup(&arriving, &none, last_frame + DUMP_PROGRESS_WINDOW);
    assert_eq!(
        announcer.status().startup,
        StartupStatus::Open(Opened::DumpStalled)
    );
    assert!(announcer.started());

    let mut announcer = Announcer::new(config, false, true, t0);
    announcer.update_startup(&peer(DumpProgress::Nothing), &none, t0 + wait);
    assert_eq!(
        announcer.status().startup,
        StartupStatus::Open(Opened::WaitElapsed),
        "a peer that sends nothing does not hold the gate"
    );
}
