//! `interfaces = [...]`: one program and one set of maps serve them all,
//! a link on each.

use std::path::Path;

use lb_decap::{
    config::{Attach, Settings},
    dataplane::{self, Applied},
    pins::PinDir,
};

use crate::fixtures::{eventually, ip_link_xdp, links, map_ids, run, veth_pair, Lab};

/// The ids of the maps the program of the link at `link` uses.
fn maps_of(link: &Path) -> Vec<u32> {
    let program = dataplane::link_program(link).expect("live link");
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program)
        .expect("the program")
        .map_ids()
        .expect("map ids")
        .expect("this kernel says")
}

/// `interfaces = [...]`: one program and one set of maps, a link on each
/// interface; their addresses together are the default; an interface
/// taken out of the config loses its link, one put back gets the same
/// program as the others again.
#[test]
fn several_interfaces_share_one_program_and_one_set_of_maps() {
    let lab = Lab::new("several");
    veth_pair(&lab);
    for (veth, address) in [("v0", "198.19.7.1/24"), ("v1", "198.19.8.1/24")] {
        run(
            "ip",
            &["-n", &lab.netns, "addr", "add", address, "dev", veth],
        );
    }
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let text = |interfaces: &str| {
            Settings::parse(&format!(
                "interfaces = [{interfaces}]\nxdp_mode = \"native\"\nvips = [\"198.18.0.100:80/tcp\"]\n"
            ))
            .expect("settings")
        };
        let both = text("\"v0\", \"v1\"");
        assert_eq!(both.interfaces, ["v0", "v1"]);
        let want: Vec<std::net::IpAddr> = ["198.19.7.1", "198.19.8.1"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(both.addresses, want, "both interfaces' addresses");
        assert_eq!(
            dataplane::apply(&both, &pins).expect("apply"),
            Applied::Attached
        );
        let xdp = |name: &str| pins.link_path(Attach::Xdp, name);
        assert_eq!(
            links(&pins),
            [(Attach::Xdp, "v0".to_owned()), (Attach::Xdp, "v1".to_owned())]
        );
        let program = dataplane::link_program(&xdp("v0")).expect("v0");
        assert_eq!(
            dataplane::link_program(&xdp("v1")).ok(),
            Some(program),
            "one program on both"
        );
        let (used, pinned) = map_ids(&pins);
        assert!(pinned.iter().all(|id| used.contains(id)), "{used:?} {pinned:?}");
        assert_eq!(ip_link_xdp("v0"), ["xdp"]);
        assert_eq!(ip_link_xdp("v1"), ["xdp"]);
        // Again: nothing new, the maps updated in place.
        assert_eq!(
            dataplane::apply(&both, &pins).expect("apply"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&xdp("v1")).ok(), Some(program));
        // v1 taken out (nobody else holds it): its link goes.
        assert_eq!(
            dataplane::apply(&text("\"v0\""), &pins).expect("apply"),
            Applied::Updated
        );
        assert_eq!(links(&pins), [(Attach::Xdp, "v0".to_owned())]);
        eventually("v1's program detached", || ip_link_xdp("v1").is_empty());
        // Put back: a new link, and one new program in both links (v0's
        // swapped in place), reading the pinned maps.
        assert_eq!(
            dataplane::apply(&both, &pins).expect("apply"),
            Applied::Attached
        );
        let again = dataplane::link_program(&xdp("v0")).expect("v0");
        assert_eq!(dataplane::link_program(&xdp("v1")).ok(), Some(again));
        let pinned = map_ids(&pins).1;
        for link in [xdp("v0"), xdp("v1")] {
            let used = maps_of(&link);
            assert!(pinned.iter().all(|id| used.contains(id)), "{used:?} {pinned:?}");
        }
    });
}
