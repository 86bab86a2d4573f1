//! A running lb-decap holds its interfaces in the pin directory: a
//! second one for another interface is refused while the first runs.

use lb_decap::{
    config::Attach,
    dataplane::{self, Applied},
    owner::Ownership,
    pins::PinDir,
};

use crate::fixtures::{eventually, links, map_ids, settings_on, tcx_ids, veth_pair, Lab};

/// Two lb-decaps on one pin directory, one per interface (what a backend
/// with its IPv4 on eth0 and its IPv6 on eth1 used to need): the second
/// is refused, naming the directory and the first's interface, and the
/// first keeps unwrapping. Before, the second re-pinned the maps and
/// removed the first's link as "stale". A running lb-decap's own move to
/// another interface, and a start after the first stopped, remove the
/// link left behind.
#[test]
fn a_second_lb_decap_for_another_interface_is_refused_while_the_first_runs() {
    let lab = Lab::new("owners");
    veth_pair(&lab);
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let on = |name: &str| settings_on(name, "attach = \"tc\"", "\"198.18.0.100:80/tcp\"");
        let tc = |name: &str| pins.link_path(Attach::Tc, name);
        let mut first = Ownership::new();
        assert_eq!(
            dataplane::apply_owned(&on("v0"), &pins, &mut first).expect("first"),
            Applied::Attached
        );
        assert_eq!(first.interfaces(), ["v0"]);
        let program = dataplane::link_program(&tc("v0")).expect("v0");
        let maps = map_ids(&pins).1;

        let mut second = Ownership::new();
        let error = format!(
            "{:#}",
            dataplane::apply_owned(&on("v1"), &pins, &mut second).expect_err("refused")
        );
        for words in [
            format!(
                "the pin directory {} holds the tc link on v0 of another running lb-decap",
                root.display()
            ),
            "this config does not name v0".to_owned(),
            "interfaces = [\"v1\", \"v0\"]".to_owned(),
            "a pin directory of its own".to_owned(),
            "Nothing was changed".to_owned(),
        ] {
            assert!(error.contains(&words), "{words:?} not in {error}");
        }
        assert!(second.interfaces().is_empty());
        // A one-shot apply for v1 is refused too.
        assert!(dataplane::apply(&on("v1"), &pins).is_err());
        // Nothing changed: the first's link, program and maps.
        assert_eq!(links(&pins), [(Attach::Tc, "v0".to_owned())]);
        assert_eq!(dataplane::link_program(&tc("v0")).ok(), Some(program));
        assert_eq!(tcx_ids("v0"), [program]);
        assert!(tcx_ids("v1").is_empty());
        assert_eq!(map_ids(&pins).1, maps);

        // A second `run` for v0 itself would fight over the maps: refused.
        let error = format!(
            "{:#}",
            dataplane::apply_owned(&on("v0"), &pins, &mut second).expect_err("refused")
        );
        assert!(
            error.contains("interface v0 is already served from the pin directory"),
            "{error}"
        );
        // A one-shot apply of the first's own config beside it is fine.
        assert_eq!(
            dataplane::apply(&on("v0"), &pins).expect("apply"),
            Applied::Updated
        );

        // The first moves to v1 (its reload): v0's link goes.
        assert_eq!(
            dataplane::apply_owned(&on("v1"), &pins, &mut first).expect("moved"),
            Applied::Attached
        );
        assert_eq!(first.interfaces(), ["v1"]);
        assert_eq!(links(&pins), [(Attach::Tc, "v1".to_owned())]);
        eventually("v0's program detached", || tcx_ids("v0").is_empty());

        // The first stops; one for v0 starts: v1's link is nobody's now.
        drop(first);
        assert_eq!(
            dataplane::apply_owned(&on("v0"), &pins, &mut second).expect("after the first"),
            Applied::Attached
        );
        assert_eq!(links(&pins), [(Attach::Tc, "v0".to_owned())]);
        assert_eq!(second.interfaces(), ["v0"]);

        // Cleanup removes everything, the lock directories too.
        dataplane::cleanup(&pins).expect("cleanup");
        assert!(!root.exists(), "{} left", root.display());
        eventually("v0's program detached", || tcx_ids("v0").is_empty());
    });
}
