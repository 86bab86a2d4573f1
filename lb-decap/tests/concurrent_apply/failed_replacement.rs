//! A live program that must be replaced stays attached when the new one
//! fails to load (at tc and at native XDP); once one loads, it takes the
//! same link's place.

use lb_decap::{
    config::Attach,
    dataplane::{self, Applied},
    pins::PinDir,
};

use crate::fixtures::{
    ip_link_xdp, links, map_ids, settings, settings_on, tcx_ids, veth_pair, Lab,
};

/// Something that is no BPF object: what a broken build or a truncated
/// binary would hand `apply`.
const NOT_AN_OBJECT: &[u8] = b"\x7fELF, but no more";

/// What an lb-decap racing a first start leaves: other maps pinned over
/// the ones the live program reads.
fn pin_other_maps(pins: &PinDir) {
    let mut other = dataplane::load_object().expect("object");
    let maps = lb_decap::maps::take(&mut other).expect("maps");
    lb_decap::maps::pin(&maps, pins).expect("pin");
}

/// What an lb-decap from before `sources` leaves: no source tries.
fn unpin_source_maps(pins: &PinDir) {
    for name in [
        lb_common::decap::names::MAP_DECAP_SOURCES_V4,
        lb_common::decap::names::MAP_DECAP_SOURCES_V6,
    ] {
        std::fs::remove_file(pins.map_path(name)).expect("unpin");
    }
}

/// A live tc program that must be replaced (its maps replaced, or an
/// older lb-decap's with fewer maps) stays attached when the new program
/// fails to load; once one loads, it takes the same link's place (one
/// program on the tcx ingress throughout). Before, the old link was
/// removed first: a failed load left nothing attached.
#[test]
fn a_tc_replacement_that_fails_to_load_leaves_the_old_program_attached() {
    let lab = Lab::new("keep-tc");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let settings = settings("\"198.18.0.100:80/tcp\"");
        let link = pins.link_path(Attach::Tc, "lo");
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("apply"),
            Applied::Attached
        );
        let first = dataplane::link_program(&link).expect("live link");
        for (what, make_stale) in [
            ("maps replaced", pin_other_maps as fn(&PinDir)),
            ("an older lb-decap's", unpin_source_maps),
        ] {
            make_stale(&pins);
            let error = dataplane::apply_object(&settings, &pins, NOT_AN_OBJECT)
                .expect_err("a broken object does not load");
            assert!(
                format!("{error:#}").contains("loading the decap object"),
                "{what}: {error:#}"
            );
            assert_eq!(
                dataplane::link_program(&link).ok(),
                Some(first),
                "{what}: the old program stays attached"
            );
            assert_eq!(tcx_ids("lo"), [first], "{what}");
        }
        let replaced = dataplane::apply(&settings, &pins).expect("apply");
        assert_eq!(replaced, Applied::Attached);
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_ne!(second, first, "a new program");
        assert_eq!(tcx_ids("lo"), [second], "in the old one's place");
        let (used, pinned) = map_ids(&pins);
        assert!(
            pinned.iter().all(|id| used.contains(id)),
            "{used:?} {pinned:?}"
        );
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("apply"),
            Applied::Updated
        );
    });
}

/// As at tc, for a native XDP link (on a veth: `lo` has no native XDP):
/// a failed load leaves the old program attached; a good one is swapped
/// into the same link, still native.
#[test]
fn an_xdp_replacement_that_fails_to_load_leaves_the_old_program_attached() {
    let lab = Lab::new("keep-xdp");
    veth_pair(&lab);
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let settings = settings_on("v0", "xdp_mode = \"native\"", "\"198.18.0.100:80/tcp\"");
        let link = pins.link_path(Attach::Xdp, "v0");
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("apply"),
            Applied::Attached
        );
        assert_eq!(ip_link_xdp("v0"), ["xdp"]);
        let first = dataplane::link_program(&link).expect("live link");
        for (what, make_stale) in [
            ("maps replaced", pin_other_maps as fn(&PinDir)),
            ("an older lb-decap's", unpin_source_maps),
        ] {
            make_stale(&pins);
            dataplane::apply_object(&settings, &pins, NOT_AN_OBJECT)
                .expect_err("a broken object does not load");
            assert_eq!(
                dataplane::link_program(&link).ok(),
                Some(first),
                "{what}: the old program stays attached"
            );
            assert_eq!(ip_link_xdp("v0"), ["xdp"], "{what}");
        }
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("apply"),
            Applied::Attached
        );
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_ne!(second, first, "a new program");
        assert_eq!(ip_link_xdp("v0"), ["xdp"], "still native");
        let ifindex = lb_decap::interface::index("v0").expect("v0");
        assert_eq!(
            lb_decap::interface::xdp_running(ifindex, second).expect("mode"),
            Some(lb_decap::interface::XdpRunning::Native)
        );
        let (used, pinned) = map_ids(&pins);
        assert!(
            pinned.iter().all(|id| used.contains(id)),
            "{used:?} {pinned:?}"
        );
        assert_eq!(links(&pins), [(Attach::Xdp, "v0".to_owned())]);
    });
}
