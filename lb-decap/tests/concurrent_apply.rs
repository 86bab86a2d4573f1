//! `apply` against one pin directory from many lb-decaps at once, and
//! against a live program whose maps were replaced under it or that an
//! older lb-decap left with fewer maps: afterwards
//! exactly one program is attached and it reads the pinned maps, so a later
//! `apply` reaches the data plane. Runs in a network namespace of its own
//! (`lbk<pid>-race`, only its `lo`), pins under a BPF filesystem outside
//! /sys (mounted if needed), and removes both. Needs root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Barrier},
};

use lb_decap::{
    config::Settings,
    dataplane::{self, Applied},
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
    Settings::parse(&format!(
        "interface = \"lo\"\nattach = \"tc\"\naddresses = [\"198.19.2.11\"]\nvips = [{vips}]\n"
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
    aya::programs::SchedClassifier::query_tcx("lo", aya::programs::TcAttachType::Ingress)
        .map(|(_, p)| p.len())
        .unwrap_or(0)
}

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
