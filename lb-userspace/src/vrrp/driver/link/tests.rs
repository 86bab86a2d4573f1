//! The link watch and the link's weight, and what the machine makes of
//! what they tell.

use super::*;
use crate::{
    config::VrrpConfig,
    vrrp::{
        driver::{
            settings_of,
            tests::{ip, vrrp_config},
            ADDRESS_CHECK,
        },
        Machine,
    },
};

/// The checks tell the machine of an outage once, from the last time
/// they saw the link up, and of its end once; tracking telling of the
/// end first leaves the checks nothing to tell.
#[test]
fn the_link_watch_reports_an_outage_from_the_last_look_up() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw(true, t0), None);
    let up = t0 + ADDRESS_CHECK;
    assert_eq!(watch.saw(true, up), None);
    assert_eq!(
        watch.saw(false, up + ADDRESS_CHECK),
        Some(LinkChange::Down(up))
    );
    assert_eq!(watch.saw(false, up + 2 * ADDRESS_CHECK), None);
    assert_eq!(
        watch.saw(true, up + 3 * ADDRESS_CHECK),
        Some(LinkChange::Up)
    );
    assert_eq!(watch.saw(true, up + 4 * ADDRESS_CHECK), None);
    // Down, then tracking tells of the end before a check sees it.
    let later = up + 10 * ADDRESS_CHECK;
    assert_eq!(
        watch.saw(false, later),
        Some(LinkChange::Down(up + 4 * ADDRESS_CHECK))
    );
    watch.came_up(later + ADDRESS_CHECK, None);
    assert_eq!(watch.saw(true, later + 2 * ADDRESS_CHECK), None);
    // Down from the start: from the first look.
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw(false, t0), Some(LinkChange::Down(t0)));
}

/// Looks that cannot read the link (netlink failing) end an outage a
/// check saw after three of them over at least 1 s: the backup, which
/// runs no timer while its link is down, runs one again. A look that
/// works starts the count afresh; without an outage nothing changes.
#[test]
fn failed_looks_at_the_link_end_an_outage() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    let mut m = Machine::new(
        settings_of(&vrrp_config(100, "198.18.0.10")),
        ip("198.18.0.2"),
    );
    m.startup(t0);
    assert_eq!(m.state(), State::Backup);
    let Some(LinkChange::Down(since)) = watch.saw(false, t0 + ADDRESS_CHECK) else {
        panic!("the outage is seen");
    };
    m.link_down(since);
    assert_eq!(m.next_deadline(), None);
    // Two failed looks, one that works (down still), two more: no end.
    let t1 = t0 + 2 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t1), None);
    assert_eq!(watch.failed(t1 + ADDRESS_CHECK), None);
    assert_eq!(watch.saw(false, t1 + 2 * ADDRESS_CHECK), None);
    let t2 = t1 + 3 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t2), None);
    assert_eq!(watch.failed(t2 + ADDRESS_CHECK), None);
    // Three looks but 0.9 s: not yet.
    assert_eq!(watch.failed(t2 + Duration::from_millis(900)), None);
    // 1 s: the outage counts as over, once; the timer runs again.
    let t3 = t2 + 2 * ADDRESS_CHECK;
    assert_eq!(watch.failed(t3), Some(LinkChange::Up));
    assert!(!watch.down);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
    assert_eq!(m.link_up(t3, 100), []);
    assert_eq!(m.next_deadline(), Some(t3 + m.master_down_interval()));
    assert_eq!(watch.failed(t3 + ADDRESS_CHECK), None);
    // Seen down again: from the last time a check saw it up.
    assert_eq!(
        watch.saw(false, t3 + 2 * ADDRESS_CHECK),
        Some(LinkChange::Down(t0))
    );
    // Failing looks with the link up change nothing.
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    for k in 1..10_u32 {
        assert_eq!(watch.failed(t0 + ADDRESS_CHECK * k), None);
    }
    assert!(!watch.down);
}

/// The link's weight is the driver's, off while its checks see the
/// link down and back as they see it up, so the link-up advert carries
/// the priority tracking gives (tracking leaves the link out): with
/// the defaults (100, `track_interface` 100) 1 while down, 100 at once
/// on the link's return. Never below 1; the owner's 255 is fixed.
#[test]
fn the_link_weight_follows_the_driver_checks() {
    assert_eq!(with_link_weight(100, 100, 100, true), 1);
    assert_eq!(with_link_weight(100, 100, 100, false), 100);
    assert_eq!(with_link_weight(150, 90, 50, true), 40);
    assert_eq!(with_link_weight(150, 90, 0, true), 90);
    assert_eq!(with_link_weight(150, 1, 50, true), 1);
    assert_eq!(with_link_weight(255, 255, 100, true), 255);
    // As tracking computed it with the link in, before: the weights
    // summed, then held to 1.
    for (tracked, weight) in [(100_u8, 100_u8), (60, 30), (5, 10), (254, 0)] {
        let summed = u32::from(tracked)
            .saturating_sub(u32::from(weight))
            .clamp(1, 254);
        assert_eq!(
            u32::from(with_link_weight(200, tracked, weight, true)),
            summed
        );
    }
    // The watch's view at each step of an outage.
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    watch.saw(true, t0);
    watch.saw(false, t0 + ADDRESS_CHECK);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 1);
    watch.saw(true, t0 + 2 * ADDRESS_CHECK);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
    watch.saw(false, t0 + 3 * ADDRESS_CHECK);
    watch.came_up(t0 + 4 * ADDRESS_CHECK, None);
    assert_eq!(with_link_weight(100, 100, 100, watch.down), 100);
}

/// A carrier flap between two looks (the link down for less than the
/// 0.5 s between them, so no look saw it down) moves the carrier
/// counter: the next look tells the machine of an outage from the
/// last look that saw the link steady, and a master advertises and
/// announces its addresses again (the peer may have taken over
/// meanwhile and step down silently on our next advert).
#[test]
fn a_carrier_flap_between_two_looks_is_reclaimed() {
    let t0 = Instant::now();
    let mut watch = LinkWatch::default();
    assert_eq!(watch.saw_counting(true, Some(4), t0), None);
    let look = t0 + ADDRESS_CHECK;
    assert_eq!(watch.saw_counting(true, Some(4), look), None);
    // Before each master advert: unchanged, steady up to then.
    let advert = look + Duration::from_millis(100);
    assert!(!watch.carrier_moved(Some(4), advert));
    // Down and up again, 400 ms, between two adverts and two looks.
    let next_advert = advert + Duration::from_millis(500);
    assert!(watch.carrier_moved(Some(6), next_advert));
    let change = watch.saw_counting(true, Some(6), next_advert);
    assert_eq!(change, Some(LinkChange::Flapped(advert)));
    assert_eq!(watch.saw_counting(true, Some(6), next_advert), None);
    assert!(!watch.carrier_moved(Some(6), next_advert));
    // The machine: a master at 100 ms adverts reclaims.
    let config = VrrpConfig {
        advert_interval: Duration::from_millis(100),
        ..vrrp_config(255, "198.18.0.10")
    };
    let mut m = Machine::new(settings_of(&config), ip("198.18.0.2"));
    m.startup(t0);
    assert_eq!(m.state(), State::Master);
    let Some(LinkChange::Flapped(since)) = change else {
        panic!("the flap is seen");
    };
    m.link_down(since);
    let actions = m.link_up(next_advert, 255);
    assert!(actions.contains(&Action::Reclaim), "{actions:?}");
    // No counter (not readable): no flap is made up.
    let mut watch = LinkWatch::default();
    watch.saw_counting(true, Some(4), t0);
    assert_eq!(watch.saw_counting(true, None, look), None);
    assert!(!watch.carrier_moved(Some(9), look));
    assert_eq!(watch.saw_counting(true, Some(9), look), None);
    // A flap a look sees down is the outage it is, not a flap too.
    assert_eq!(
        watch.saw_counting(false, Some(10), look + ADDRESS_CHECK),
        Some(LinkChange::Down(look))
    );
    assert_eq!(
        watch.saw_counting(true, Some(11), look + 2 * ADDRESS_CHECK),
        Some(LinkChange::Up)
    );
}

/// The carrier counter is read from sysfs for the interface of that
/// name and index only (a renamed or re-created interface is not
/// ours).
#[test]
fn the_carrier_counter_is_read_for_our_interface_only() {
    let lo = Interface {
        name: "lo".to_owned(),
        index: 1,
        mac: [0; 6],
    };
    if Path::new("/sys/class/net/lo/carrier_changes").exists() {
        assert!(carrier_changes(&lo).is_some());
    }
    let other = Interface { index: 0, ..lo };
    assert_eq!(carrier_changes(&other), None);
    let missing = Interface {
        name: "no-such-if0".to_owned(),
        index: 1,
        mac: [0; 6],
    };
    assert_eq!(carrier_changes(&missing), None);
}
