//! `apply` against one pin directory from many lb-decaps at once, and
//! against a live program whose maps were replaced under it or that an
//! older lb-decap left with fewer maps: afterwards
//! exactly one program is attached and it reads the pinned maps, so a later
//! `apply` reaches the data plane; a replacement whose new program fails
//! to load leaves the old one attached. `xdp_mode = "auto"` where native
//! XDP is unavailable (`lo`) attaches at tc ingress, never generic XDP.
//! Several interfaces share one program and one set of maps; a second
//! running lb-decap for another interface is refused while the first
//! runs; another build's live program is swapped for this build's, but
//! not by a one-shot apply beside a running lb-decap nor by a running
//! one's re-apply.
//! Each test runs in a network namespace of its own (`lbk<pid>-<tag>`: its
//! `lo`, and a veth pair inside it for native XDP), pins under a BPF
//! filesystem outside /sys (mounted if needed), and removes both. Needs
//! root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Barrier},
};

use lb_decap::{
    config::{Attach, Settings},
    dataplane::{self, Applied},
    owner::Ownership,
    pins::{PinDir, PINNED_MAPS},
};

/// The labs' BPF filesystem (as `lb_tests::lab::BPFFS`).
const BPFFS: &str = "/run/lbt-bpffs";

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}

fn ensure_bpffs() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.contains(" bpf "))
    {
        std::fs::create_dir_all(BPFFS).expect("bpffs dir");
        run("mount", &["-t", "bpf", "bpf", BPFFS]);
    }
}

/// A namespace and a pin directory of this test, removed on drop.
struct Lab {
    netns: String,
    pins: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Self {
        ensure_bpffs();
        let netns = format!("lbk{}-{tag}", std::process::id());
        let pins = Path::new(BPFFS).join(format!("lbk{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pins);
        run("ip", &["netns", "add", &netns]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        Self { netns, pins }
    }

    /// Runs `f` on a thread inside the namespace.
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Path::new("/run/netns").join(&self.netns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns");
            // SAFETY: setns on a namespace fd affects only this thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = dataplane::cleanup(&PinDir::new(&self.pins));
        let _ = std::fs::remove_dir_all(&self.pins);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn settings(vips: &str) -> Settings {
    settings_on("lo", "attach = \"tc\"", vips)
}

/// Settings for `interface` with the hook lines `hook` (e.g.
/// `attach = "tc"`, or `xdp_mode = "native"`).
fn settings_on(interface: &str, hook: &str, vips: &str) -> Settings {
    Settings::parse(&format!(
        "interface = \"{interface}\"\n{hook}\naddresses = [\"198.19.2.11\"]\nvips = [{vips}]\n"
    ))
    .expect("settings")
}

/// The ids of the maps the attached program uses, and of the pinned maps.
fn map_ids(pins: &PinDir) -> (Vec<u32>, Vec<u32>) {
    let (_, _, link) = pins.links().into_iter().next().expect("a pinned link");
    let program = dataplane::link_program(&link).expect("live link");
    let used = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program)
        .expect("the program")
        .map_ids()
        .expect("map ids")
        .expect("this kernel says");
    let pinned = PINNED_MAPS
        .iter()
        .map(|name| {
            aya::maps::MapData::from_pin(pins.map_path(name))
                .and_then(|m| m.info())
                .map(|i| i.id())
                .expect("pinned map")
        })
        .collect();
    (used, pinned)
}

fn tcx_programs() -> usize {
    tcx_ids("lo").len()
}

/// The programs on the tcx ingress of `interface`.
fn tcx_ids(interface: &str) -> Vec<u32> {
    aya::programs::SchedClassifier::query_tcx(interface, aya::programs::TcAttachType::Ingress)
        .map(|(_, p)| p.iter().map(aya::programs::ProgramInfo::id).collect())
        .unwrap_or_default()
}

/// How XDP runs on `interface` (`xdp`, `xdpgeneric`), from `ip link`: the
/// mode words of its first line, none if no XDP program is attached.
fn ip_link_xdp(interface: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["link", "show", interface])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .filter(|w| w.starts_with("xdp"))
        .map(str::to_owned)
        .collect()
}

/// Waits (at most 2 s) until `done`: removing a link's pin detaches it
/// from the kernel's deferred work, a moment later.
fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("not within 2 s: {what}");
}

/// The pinned links: (hook, interface).
fn links(pins: &PinDir) -> Vec<(Attach, String)> {
    pins.links().into_iter().map(|(a, i, _)| (a, i)).collect()
}

/// Something that is no BPF object: what a broken build or a truncated
/// binary would hand `apply`.
const NOT_AN_OBJECT: &[u8] = b"\x7fELF, but no more";

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
    run(
        "ip",
        &[
            "-n", &lab.netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    for veth in ["v0", "v1"] {
        run("ip", &["-n", &lab.netns, "link", "set", veth, "up"]);
    }
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

/// A veth pair `v0`/`v1` inside the lab's namespace, both up.
fn veth_pair(lab: &Lab) {
    run(
        "ip",
        &[
            "-n", &lab.netns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ],
    );
    for veth in ["v0", "v1"] {
        run("ip", &["-n", &lab.netns, "link", "set", veth, "up"]);
    }
}

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

/// The decap object with every 64-bit `r = imm` (imm >= 0) of its XDP
/// and tc entry points turned into the 32-bit move of the same value (it
/// zero-extends: the same program to the verifier and to packets), so
/// its programs have other instructions and other tags: what another
/// lb-decap build's program looks like to the kernel.
fn another_build() -> Vec<u8> {
    let mut elf = lb_decap::object::DECAP_OBJECT.to_vec();
    let word = |b: &[u8], at: usize, n: usize| {
        b[at..at + n]
            .iter()
            .rev()
            .fold(0usize, |v, byte| (v << 8) | usize::from(*byte))
    };
    let (shoff, shentsize, shnum, shstrndx) = (
        word(&elf, 0x28, 8),
        word(&elf, 0x3a, 2),
        word(&elf, 0x3c, 2),
        word(&elf, 0x3e, 2),
    );
    let header = |i: usize| shoff + i * shentsize;
    let names = word(&elf, header(shstrndx) + 24, 8);
    let mut patched = 0;
    for i in 0..shnum {
        let at = header(i);
        let name_at = names + word(&elf, at, 4);
        let name: Vec<u8> = elf[name_at..]
            .iter()
            .take_while(|b| **b != 0)
            .copied()
            .collect();
        if name != b"xdp" && name != b"classifier" {
            continue;
        }
        let (offset, size) = (word(&elf, at + 24, 8), word(&elf, at + 32, 8));
        let mut insn = offset;
        while insn + 8 <= offset + size {
            // BPF_LD | BPF_IMM | BPF_DW takes two slots.
            if elf[insn] == 0x18 {
                insn += 16;
                continue;
            }
            let imm =
                i32::from_le_bytes([elf[insn + 4], elf[insn + 5], elf[insn + 6], elf[insn + 7]]);
            // BPF_ALU64 | BPF_MOV | BPF_K -> BPF_ALU | BPF_MOV | BPF_K.
            if elf[insn] == 0xb7 && imm >= 0 {
                elf[insn] = 0xb4;
                patched += 1;
            }
            insn += 8;
        }
    }
    assert!(patched > 0, "no instruction to patch");
    elf
}

/// An upgrade: the live link runs another build's program, reading the
/// same pinned maps. `status` says so, and the next apply swaps this
/// build's program into the same link (no gap, one program on the hook)
/// and says it is this build's. Before, the maps were updated in place
/// and the new build's program stayed unused until a cleanup and a start.
#[test]
fn another_builds_program_in_the_live_link_is_swapped_for_this_builds() {
    let lab = Lab::new("upgrade");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let settings = settings("\"198.18.0.100:80/tcp\"");
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        assert_eq!(
            dataplane::apply_object(&settings, &pins, &older).expect("the other build"),
            Applied::Attached
        );
        let first = dataplane::link_program(&link).expect("live link");
        let this_build = dataplane::build_tag(Attach::Tc).expect("this build's tag");
        let first_tag = dataplane::program_tag(first).expect("tag");
        assert_ne!(first_tag, this_build, "the patched object is another build");
        // Applied by that build again: its own program, left alone.
        assert_eq!(
            dataplane::apply_object(&settings, &pins, &older).expect("again"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains(&format!(
                "program: tc on lo is another build's (tag {}, this lb-decap's {})",
                dataplane::format_tag(first_tag),
                dataplane::format_tag(this_build)
            )),
            "{status}"
        );

        assert_eq!(
            dataplane::apply(&settings, &pins).expect("this build"),
            Applied::Attached
        );
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_ne!(second, first, "a new program");
        assert_eq!(dataplane::program_tag(second).expect("tag"), this_build);
        assert_eq!(tcx_ids("lo"), [second], "in the old one's place");
        let (used, pinned) = map_ids(&pins);
        assert!(
            pinned.iter().all(|id| used.contains(id)),
            "{used:?} {pinned:?}"
        );
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("program: tc on lo is this build's (tag "),
            "{status}"
        );
        assert_eq!(
            dataplane::apply(&settings, &pins).expect("again"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(second));
    });
}

/// An upgrade while the old build still runs (`dpkg -i`, then a one-shot
/// `lb-decap apply` of the new binary): the apply beside the running
/// `run` updates the maps but leaves its program in the link, so the
/// swap waits for a restart. Before, the apply swapped the new program
/// in and the old `run`'s next reload swapped its own back.
#[test]
fn a_one_shot_apply_beside_a_running_lb_decap_of_another_build_swaps_nothing() {
    let lab = Lab::new("beside");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        let mut running = Ownership::new();
        assert_eq!(
            dataplane::apply_with(
                &settings("\"198.18.0.100:80/tcp\""),
                &pins,
                &older,
                Some(&mut running)
            )
            .expect("the running build's start"),
            Applied::Attached
        );
        let first = dataplane::link_program(&link).expect("live link");
        assert_eq!(
            dataplane::apply(
                &settings("\"198.18.0.100:80/tcp\", \"198.18.0.101:80/tcp\""),
                &pins
            )
            .expect("this build, beside it"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));
        assert_eq!(tcx_ids("lo"), [first]);
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("198.18.0.101"),
            "the maps updated: {status}"
        );
        assert!(
            status
                .contains("restart lb-decap (systemctl restart lb-decap) to swap this build's in"),
            "{status}"
        );
        // The running one's reload: its own program, left alone.
        assert_eq!(
            dataplane::apply_with(
                &settings("\"198.18.0.100:80/tcp\""),
                &pins,
                &older,
                Some(&mut running)
            )
            .expect("reload"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(first));

        // Restarted: the new build's start swaps its program in.
        drop(running);
        let mut restarted = Ownership::new();
        assert_eq!(
            dataplane::apply_owned(&settings("\"198.18.0.100:80/tcp\""), &pins, &mut restarted)
                .expect("the new build's start"),
            Applied::Attached
        );
        let second = dataplane::link_program(&link).expect("the same pinned link");
        assert_eq!(
            dataplane::program_tag(second).expect("tag"),
            dataplane::build_tag(Attach::Tc).expect("this build's tag")
        );
        assert_eq!(tcx_ids("lo"), [second]);
    });
}

/// A running lb-decap whose link got another build's program it did not
/// load (here a one-shot apply of a newer build after a cleanup) leaves
/// it there at its reloads and watch re-applies, updating the maps: it
/// swaps only at its start. Before, an old binary still running put its
/// own program back over the new one.
#[test]
fn a_running_lb_decap_does_not_swap_its_program_over_another_builds_on_reapply() {
    let lab = Lab::new("reapply");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let link = pins.link_path(Attach::Tc, "lo");
        let older = another_build();
        let mut running = Ownership::new();
        let vip = settings("\"198.18.0.100:80/tcp\"");
        assert_eq!(
            dataplane::apply_with(&vip, &pins, &older, Some(&mut running)).expect("start"),
            Applied::Attached
        );
        dataplane::cleanup(&pins).expect("cleanup");
        assert_eq!(
            dataplane::apply(&vip, &pins).expect("the newer build, nobody holding"),
            Applied::Attached
        );
        let newer = dataplane::link_program(&link).expect("live link");
        let two = settings("\"198.18.0.100:80/tcp\", \"198.18.0.101:80/tcp\"");
        assert_eq!(
            dataplane::apply_with(&two, &pins, &older, Some(&mut running)).expect("reload"),
            Applied::Updated
        );
        assert_eq!(dataplane::link_program(&link).ok(), Some(newer));
        assert_eq!(tcx_ids("lo"), [newer]);
        let status = lb_decap::status::report(&pins).expect("status");
        assert!(
            status.contains("198.18.0.101"),
            "the maps updated: {status}"
        );
        assert_eq!(running.interfaces(), ["lo"], "still held");
    });
}

/// The features that make UDP GRO merge GUE datagrams before tc ingress
/// are read from the interface (a veth can turn them on), so `apply`
/// can warn when it serves an interface at tc with them on.
#[test]
fn udp_gro_forwarding_is_read_from_the_interface() {
    let lab = Lab::new("gro");
    veth_pair(&lab);
    run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.netns,
            "ethtool",
            "-K",
            "v1",
            "rx-udp-gro-forwarding",
            "on",
            "rx-gro-list",
            "on",
        ],
    );
    let (v0, v1) = lab.inside(|| {
        (
            lb_decap::gro::merging("v0").expect("v0"),
            lb_decap::gro::merging("v1").expect("v1"),
        )
    });
    assert!(v0.is_empty(), "{v0:?}");
    assert_eq!(v1, lb_decap::gro::MERGING);
}

/// `BPF_PROG_TYPE_SCHED_CLS` and `BPF_PROG_TYPE_XDP` (linux/bpf.h).
const PROG_SCHED_CLS: u32 = 3;
const PROG_XDP: u32 = 6;
/// `BPF_XDP` and `BPF_TCX_INGRESS`: the attach types of the links.
const ATTACH_XDP: u32 = 37;
const ATTACH_TCX_INGRESS: u32 = 46;

/// bpf(2) with a zeroed attr of 128 bytes, `fill` setting its fields.
fn bpf(cmd: libc::c_long, fill: impl FnOnce(&mut [u8; 128])) -> std::io::Result<i64> {
    let mut attr = [0u8; 128];
    fill(&mut attr);
    // SAFETY: an attr buffer larger than the kernel's union, zero beyond
    // the fields set; what it points at outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// Another tool's program, named `name` (lbd's is `xdp_lb`), of type
/// `prog_type`, returning `verdict` (XDP_PASS, or TCX_PASS that ends the
/// tcx chain), attached to `interface` at `attach_type`: the link's fd.
fn foreign_link(
    name: &str,
    prog_type: u32,
    attach_type: u32,
    verdict: i32,
    interface: &str,
) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    // r0 = verdict; exit.
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&verdict.to_le_bytes());
    insns[8] = 0x95;
    let license = b"GPL\0";
    let prog = bpf(5, |a| {
        a[0..4].copy_from_slice(&prog_type.to_ne_bytes());
        a[4..8].copy_from_slice(&2u32.to_ne_bytes());
        a[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        a[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        a[48..48 + name.len()].copy_from_slice(name.as_bytes());
        if prog_type == PROG_SCHED_CLS {
            a[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        }
    })
    .expect("BPF_PROG_LOAD of the foreign program");
    // SAFETY: a new fd we own.
    let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) };
    let ifindex = lb_decap::interface::index(interface).expect("interface");
    let link = bpf(28, |a| {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&prog) as u32;
        a[0..4].copy_from_slice(&fd.to_ne_bytes());
        a[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        a[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    })
    .expect("BPF_LINK_CREATE of the foreign program");
    // SAFETY: a new fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(link as i32) }
}

/// Pins the link `link` at `path`.
fn pin(link: &std::os::fd::OwnedFd, path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    bpf(6, |a| {
        a[0..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
        let fd = std::os::fd::AsRawFd::as_raw_fd(link) as u32;
        a[8..12].copy_from_slice(&fd.to_ne_bytes());
    })
    .expect("BPF_OBJ_PIN");
}

/// lbd and lb-decap share a pin directory, and lbd's XDP link on v0 is
/// pinned as `xdp-link-v0`, the name lb-decap gives its own: an apply
/// for v1 and a cleanup leave it (and its program) alone; an apply for
/// v0 is refused naming the program, nothing changed. Before, lb-decap
/// took the link for its own: it removed the pin (an apply for another
/// interface, a cleanup) or swapped its decap program into lbd's link.
#[test]
fn another_tools_link_under_a_decap_name_is_left_alone() {
    let lab = Lab::new("foreign");
    veth_pair(&lab);
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        pins.prepare().expect("pin directory");
        let lbds = pins.link_path(Attach::Xdp, "v0");
        let link = foreign_link("xdp_lb", PROG_XDP, ATTACH_XDP, 2, "v0");
        pin(&link, &lbds);
        drop(link);
        let program = dataplane::link_program(&lbds).expect("lbd's live link");
        let vips = "\"198.18.0.100:80/tcp\"";

        dataplane::apply(&settings_on("v1", "attach = \"tc\"", vips), &pins)
            .expect("an apply for v1");
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));
        assert_eq!(links(&pins), [(Attach::Tc, "v1".to_owned())]);
        dataplane::cleanup(&pins).expect("cleanup");
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));

        let error = dataplane::apply(&settings_on("v0", "xdp_mode = \"native\"", vips), &pins)
            .expect_err("lbd's link is not lb-decap's");
        let error = format!("{error:#}");
        for word in [
            lbds.to_str().expect("utf-8"),
            "\"xdp_lb\"",
            "pin directory of its own",
        ] {
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));
        assert!(links(&pins).is_empty());
    });
}

/// A tcx program already on the interface that ends the chain (returns
/// TCX_PASS, as `TC_ACT_OK` does) must not hide tunnel packets from the
/// decap program: its link goes first. Before, it was appended last.
#[test]
fn the_tc_link_goes_before_the_tcx_programs_already_there() {
    let lab = Lab::new("tcxfirst");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let other = foreign_link("tc_firewall", PROG_SCHED_CLS, ATTACH_TCX_INGRESS, 0, "lo");
        let before = tcx_ids("lo");
        assert_eq!(before.len(), 1, "{before:?}");
        dataplane::apply(&settings("\"198.18.0.100:80/tcp\""), &pins).expect("apply");
        let ours = dataplane::link_program(&pins.link_path(Attach::Tc, "lo")).expect("our link");
        assert_eq!(tcx_ids("lo"), [ours, before[0]], "lb-decap's first");
        drop(other);
    });
}
