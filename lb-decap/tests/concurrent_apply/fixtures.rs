//! What every test here shares: its lab (a network namespace and a pin
//! directory, removed on drop), the settings it applies, and the looks at
//! what the kernel then has attached.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use lb_decap::{
    config::{Attach, Settings},
    dataplane,
    pins::{PinDir, PINNED_MAPS},
};

/// The labs' BPF filesystem (as `lb_tests::lab::BPFFS`).
const BPFFS: &str = "/run/lbt-bpffs";

pub(crate) fn run(program: &str, args: &[&str]) {
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
pub(crate) struct Lab {
    pub(crate) netns: String,
    pub(crate) pins: PathBuf,
}

impl Lab {
    pub(crate) fn new(tag: &str) -> Self {
        ensure_bpffs();
        let netns = format!("lbk{}-{tag}", std::process::id());
        let pins = Path::new(BPFFS).join(format!("lbk{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pins);
        run("ip", &["netns", "add", &netns]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        Self { netns, pins }
    }

    /// Runs `f` on a thread inside the namespace.
    pub(crate) fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
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

pub(crate) fn settings(vips: &str) -> Settings {
    settings_on("lo", "attach = \"tc\"", vips)
}

/// Settings for `interface` with the hook lines `hook` (e.g.
/// `attach = "tc"`, or `xdp_mode = "native"`).
pub(crate) fn settings_on(interface: &str, hook: &str, vips: &str) -> Settings {
    Settings::parse(&format!(
        "interface = \"{interface}\"\n{hook}\naddresses = [\"198.19.2.11\"]\nvips = [{vips}]\n"
    ))
    .expect("settings")
}

/// The ids of the maps the attached program uses, and of the pinned maps.
pub(crate) fn map_ids(pins: &PinDir) -> (Vec<u32>, Vec<u32>) {
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

pub(crate) fn tcx_programs() -> usize {
    tcx_ids("lo").len()
}

/// The programs on the tcx ingress of `interface`.
pub(crate) fn tcx_ids(interface: &str) -> Vec<u32> {
    aya::programs::SchedClassifier::query_tcx(interface, aya::programs::TcAttachType::Ingress)
        .map(|(_, p)| p.iter().map(aya::programs::ProgramInfo::id).collect())
        .unwrap_or_default()
}

/// How XDP runs on `interface` (`xdp`, `xdpgeneric`), from `ip link`: the
/// mode words of its first line, none if no XDP program is attached.
pub(crate) fn ip_link_xdp(interface: &str) -> Vec<String> {
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
pub(crate) fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("not within 2 s: {what}");
}

/// The pinned links: (hook, interface).
pub(crate) fn links(pins: &PinDir) -> Vec<(Attach, String)> {
    pins.links().into_iter().map(|(a, i, _)| (a, i)).collect()
}

/// A veth pair `v0`/`v1` inside the lab's namespace, both up.
pub(crate) fn veth_pair(lab: &Lab) {
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
