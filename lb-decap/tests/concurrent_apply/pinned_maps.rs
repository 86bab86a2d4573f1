//! After concurrent first starts, or over a live program that does not
//! read the pinned maps (replaced under it, or an older lb-decap's with
//! fewer), exactly one program is attached and it reads the pinned maps.

use std::sync::{Arc, Barrier};

use lb_decap::{
    dataplane::{self, Applied},
    pins::PinDir,
};

use crate::fixtures::{map_ids, settings, tcx_programs, Lab};

#[test]
fn concurrent_first_starts_leave_one_program_reading_the_pinned_maps() {
    let lab = Lab::new("race");
    let root = lab.pins.clone();
    let (results, programs, (used, pinned)) = lab.inside(move || {
        let pins = PinDir::new(&root);
        let settings = settings("\"198.18.0.100:80/tcp\"");
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pins, settings, barrier) = (pins.clone(), settings.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    dataplane::apply(&settings, &pins).map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        // Threads start in the namespace of the thread that spawns them.
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("apply thread"))
            .collect();
        (results, tcx_programs(), map_ids(&pins))
    });
    let attached = results
        .iter()
        .filter(|r| matches!(r, Ok(Applied::Attached)))
        .count();
    assert_eq!(attached, 1, "{results:?}");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(programs, 1, "one program on the tcx ingress");
    for id in &pinned {
        assert!(
            used.contains(id),
            "pinned map {id} unused by the program: {used:?}"
        );
    }
}

#[test]
fn a_live_program_whose_maps_were_replaced_is_attached_afresh() {
    let lab = Lab::new("stale");
    let root = lab.pins.clone();
    let (first, second, programs, (used, pinned)) = lab.inside(move || {
        let pins = PinDir::new(&root);
        let first = dataplane::apply(&settings("\"198.18.0.100:80/tcp\""), &pins).expect("apply");
        // What an lb-decap racing the first start left: other maps pinned
        // over the ones the live program reads.
        let mut other = dataplane::load_object().expect("object");
        let maps = lb_decap::maps::take(&mut other).expect("maps");
        lb_decap::maps::pin(&maps, &pins).expect("pin");
        let second = dataplane::apply(&settings("\"198.18.0.101:80/tcp\""), &pins).expect("apply");
        (first, second, tcx_programs(), map_ids(&pins))
    });
    assert_eq!(first, Applied::Attached);
    assert_eq!(second, Applied::Attached, "the stale program is replaced");
    assert_eq!(programs, 1, "one program on the tcx ingress");
    for id in &pinned {
        assert!(
            used.contains(id),
            "pinned map {id} unused by the program: {used:?}"
        );
    }
}

#[test]
fn an_older_lb_decaps_program_with_fewer_maps_is_replaced() {
    let lab = Lab::new("older");
    let root = lab.pins.clone();
    let (second, programs, (used, pinned)) = lab.inside(move || {
        let pins = PinDir::new(&root);
        dataplane::apply(&settings("\"198.18.0.100:80/tcp\""), &pins).expect("apply");
        // What an lb-decap from before `sources` left: its maps lacked the
        // source tries, so its program cannot enforce them.
        for name in [
            lb_common::decap::names::MAP_DECAP_SOURCES_V4,
            lb_common::decap::names::MAP_DECAP_SOURCES_V6,
        ] {
            std::fs::remove_file(pins.map_path(name)).expect("unpin");
        }
        let second = dataplane::apply(&settings("\"198.18.0.100:80/tcp\""), &pins)
            .map_err(|e| format!("{e:#}"));
        (second, tcx_programs(), map_ids(&pins))
    });
    assert_eq!(
        second,
        Ok(Applied::Attached),
        "the older program is replaced"
    );
    assert_eq!(programs, 1, "one program on the tcx ingress");
    for id in &pinned {
        assert!(
            used.contains(id),
            "pinned map {id} unused by the program: {used:?}"
        );
    }
}
