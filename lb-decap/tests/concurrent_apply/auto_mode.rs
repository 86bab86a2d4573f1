//! `xdp_mode = "auto"` where native XDP is unavailable (`lo`): tc
//! ingress, never generic XDP, and an older lb-decap's generic XDP link
//! moved there.

use lb_decap::{
    config::{Attach, Settings},
    dataplane::{self, Applied},
    pins::PinDir,
};

use crate::fixtures::{eventually, ip_link_xdp, links, map_ids, settings_on, tcx_ids, Lab};

/// `xdp_mode = "auto"` where native XDP does not attach (`lo`) goes to tc
/// ingress, not generic XDP (which would unwrap without fixing the skb's
/// hardware checksum), and stays there across applies; `generic` is
/// refused and changes nothing. Before, auto attached generic XDP here.
#[test]
fn auto_without_native_xdp_attaches_at_tc_ingress_not_generic_xdp() {
    let lab = Lab::new("auto-tc");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let auto = settings_on("lo", "", "\"198.18.0.100:80/tcp\"");
        assert_eq!((auto.attach, auto.xdp_mode.name()), (Attach::Xdp, "auto"));
        assert_eq!(
            dataplane::apply(&auto, &pins).expect("apply"),
            Applied::Attached
        );
        assert!(ip_link_xdp("lo").is_empty(), "{:?}", ip_link_xdp("lo"));
        assert_eq!(links(&pins), [(Attach::Tc, "lo".to_owned())]);
        assert_eq!(
            dataplane::serving_link(&auto, &pins, "lo"),
            pins.link_path(Attach::Tc, "lo")
        );
        let program = tcx_ids("lo");
        assert_eq!(program.len(), 1);
        // Again: native XDP is tried and still fails; the tc link is kept.
        assert_eq!(
            dataplane::apply(&auto, &pins).expect("apply"),
            Applied::Updated
        );
        assert_eq!(tcx_ids("lo"), program);
        assert!(ip_link_xdp("lo").is_empty());
        // Generic asked for (settings built past the file's validation,
        // which refuses it too): refused, nothing changed.
        let generic = Settings {
            xdp_mode: lb_decap::config::XdpMode::Generic,
            ..auto.clone()
        };
        let error = dataplane::apply(&generic, &pins).expect_err("refused");
        assert!(
            format!("{error:#}").contains("xdp_mode = \"generic\" is refused"),
            "{error:#}"
        );
        assert_eq!(tcx_ids("lo"), program);
        assert!(ip_link_xdp("lo").is_empty());
    });
}

/// A generic XDP link an older lb-decap's `auto` left (on `lo`) is moved to
/// tc ingress by `auto`: the tc link is attached, then the XDP link
/// removed.
#[test]
fn auto_moves_an_older_generic_xdp_link_to_tc_ingress() {
    let lab = Lab::new("auto-old");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let auto = settings_on("lo", "", "\"198.18.0.100:80/tcp\"");
        pins.prepare().expect("pin dir");
        // What an older lb-decap attached: generic XDP, pinned.
        let mut ebpf = dataplane::load_object().expect("object");
        let mut maps = lb_decap::maps::take(&mut ebpf).expect("maps");
        lb_decap::maps::Maps::borrowed(&mut maps)
            .expect("views")
            .sync(&auto)
            .expect("sync");
        let program = dataplane::xdp_program(&mut ebpf, lb_common::decap::names::PROG_XDP_DECAP)
            .expect("program");
        let id = program
            .attach("lo", aya::programs::XdpMode::Skb)
            .expect("generic XDP on lo");
        let link = aya::programs::links::FdLink::try_from(program.take_link(id).expect("link"))
            .expect("an XDP link");
        lb_decap::maps::pin(&maps, &pins).expect("pin maps");
        link.pin(pins.link_path(Attach::Xdp, "lo"))
            .expect("pin link");
        drop(ebpf);
        assert_eq!(ip_link_xdp("lo"), ["xdpgeneric"]);

        assert_eq!(
            dataplane::apply(&auto, &pins).expect("apply"),
            Applied::Attached
        );
        eventually("the generic XDP program detached", || {
            ip_link_xdp("lo").is_empty()
        });
        assert_eq!(links(&pins), [(Attach::Tc, "lo".to_owned())]);
        assert_eq!(tcx_ids("lo").len(), 1);
        let (used, pinned) = map_ids(&pins);
        assert!(
            pinned.iter().all(|id| used.contains(id)),
            "{used:?} {pinned:?}"
        );
    });
}
