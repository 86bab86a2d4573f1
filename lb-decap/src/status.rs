//! `lb-decap status`: what the pinned program does (attachment, whether
//! the attached program is this build's, addresses, VIPs, encapsulations)
//! and its counters, read from the pins alone (no running lb-decap
//! needed), with a `warning:` line for each VIP the host does not hold.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use anyhow::{bail, Context as _};
use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    Pod,
};
use lb_common::{
    decap::{
        names, DecapAddr, DecapConfig, DecapCounter, DECAP_F_GUE, DECAP_F_IPIP, DECAP_F_SOURCES,
    },
    VipKey,
};

use crate::{
    config::{Attach, Vip},
    dataplane::{self, link_program},
    maps::Maps,
    pins::{PinDir, PINNED_MAPS},
    sources::Prefix,
};

/// The status report as text (one `key: value` per line; counters as
/// `counter NAME VALUE`, stable for scripts). With some maps not pinned
/// (what an older lb-decap, from before those maps, leaves: its program
/// still attached and unwrapping, see `dataplane::apply`), it says so and
/// reports what the pinned maps there still say; only a directory with no
/// link and no map pinned is "not set up".
pub fn report(pins: &PinDir) -> anyhow::Result<String> {
    let links = pins.links();
    let missing = pins.missing_maps();
    if links.is_empty() && missing.len() == PINNED_MAPS.len() {
        bail!(
            "nothing pinned under {}: lb-decap is not set up here (run `lb-decap apply` or `lb-decap run`)",
            pins.root().display()
        );
    }
    let mut out = String::new();
    if links.is_empty() {
        out.push_str("attached: no (no link pinned)\n");
    }
    let mut attached = Vec::new();
    for (attach, interface, path) in links {
        match link_program(&path) {
            Ok(id) => {
                writeln!(
                    out,
                    "attached: {} on {interface} (program id {id}{})",
                    attach.name(),
                    running_mode(attach, &path, id)
                )?;
                attached.push((attach, interface, id));
            }
            Err(error) => writeln!(
                out,
                "attached: no ({} link on {interface}: {error:#})",
                attach.name()
            )?,
        }
    }
    let mut build_tags = BTreeMap::new();
    for (attach, interface, id) in &attached {
        let build = build_tags
            .entry(*attach)
            .or_insert_with(|| dataplane::build_tag(*attach).map_err(|e| format!("{e:#}")));
        out.push_str(&program_line(
            *attach,
            interface,
            dataplane::program_tag(*id).map_err(|e| format!("{e:#}")),
            build.clone(),
        ));
    }
    let attached = !attached.is_empty();
    if !missing.is_empty() {
        let missing_list = missing.join(", ");
        if attached {
            writeln!(
                out,
                "older program: the attached program is an older lb-decap's, without the maps {missing_list}; it keeps unwrapping as last configured, but cannot enforce what those maps would hold: restart lb-decap (systemctl restart lb-decap) to replace it: the new program takes its place in the same link, no gap (`lb-decap apply` does too, but only while no lb-decap runs)"
            )?;
        } else {
            writeln!(
                out,
                "incomplete: the maps {missing_list} are not pinned and no program is attached (run `lb-decap apply` or `lb-decap run`)"
            )?;
        }
        out.push_str(&partial(pins, &missing));
        return Ok(out);
    }
    let maps = Maps::from_pins(pins)?;
    let vips = maps.vips();
    out.push_str(&describe(
        &maps.config()?,
        &maps.addresses(),
        &maps.sources(),
        &vips,
    ));
    for warning in crate::local::warnings(&vips) {
        writeln!(out, "warning: {warning}")?;
    }
    for (counter, value) in maps.counters()? {
        writeln!(out, "counter {} {value}", counter.name())?;
    }
    Ok(out)
}

/// What the maps that are pinned still say when `missing` are not (an
/// older program's): its encapsulations, addresses, VIPs and counters,
/// each as far as it can be read (a map that cannot is named with the
/// error; a counter an older program does not have is left out).
fn partial(pins: &PinDir, missing: &[&str]) -> String {
    let pinned = |name: &str| !missing.contains(&name);
    let unreadable = |name: &str, error: anyhow::Error| format!("unreadable: {name} ({error:#})\n");
    let mut lines = String::new();
    if pinned(names::MAP_DECAP_CONFIG) {
        let config = open(pins, names::MAP_DECAP_CONFIG)
            .and_then(|m| Ok(Array::<MapData, DecapConfig>::try_from(Map::Array(m))?.get(&0, 0)?));
        match config {
            Ok(config) => lines.push_str(&encapsulations(&config)),
            Err(error) => lines.push_str(&unreadable(names::MAP_DECAP_CONFIG, error)),
        }
    }
    if pinned(names::MAP_DECAP_ADDRS) {
        match keys::<DecapAddr>(pins, names::MAP_DECAP_ADDRS) {
            Ok(keys) => {
                let mut list: Vec<IpAddr> = keys
                    .iter()
                    .filter_map(|a| crate::maps::ip_of(a.family, a.addr))
                    .collect();
                list.sort();
                for address in list {
                    lines.push_str(&format!("address: {address}\n"));
                }
            }
            Err(error) => lines.push_str(&unreadable(names::MAP_DECAP_ADDRS, error)),
        }
    }
    if pinned(names::MAP_DECAP_VIPS) {
        match keys::<VipKey>(pins, names::MAP_DECAP_VIPS) {
            Ok(keys) => {
                let mut list: Vec<Vip> = keys
                    .iter()
                    .filter_map(|k| {
                        Some(Vip {
                            addr: crate::maps::ip_of(k.family, k.addr)?,
                            port: u16::from_be(k.port),
                            proto: k.proto,
                        })
                    })
                    .collect();
                list.sort();
                for vip in list {
                    lines.push_str(&format!("vip: {vip}\n"));
                }
            }
            Err(error) => lines.push_str(&unreadable(names::MAP_DECAP_VIPS, error)),
        }
    }
    if pinned(names::MAP_DECAP_COUNTERS) {
        let counters = open(pins, names::MAP_DECAP_COUNTERS)
            .and_then(|m| Ok(PerCpuArray::<MapData, u64>::try_from(Map::PerCpuArray(m))?));
        match counters {
            Ok(counters) => {
                for counter in DecapCounter::ALL {
                    if let Ok(values) = counters.get(&(counter as u32), 0) {
                        let value: u64 = values.iter().sum();
                        lines.push_str(&format!("counter {} {value}\n", counter.name()));
                    }
                }
            }
            Err(error) => lines.push_str(&unreadable(names::MAP_DECAP_COUNTERS, error)),
        }
    }
    lines
}

/// Whether the program attached at `attach` on `interface` is this
/// build's, by the kernel's tag of each (`attached`, `build`): a
/// `program:` line. Another build's (an upgrade not yet applied) is
/// swapped for this build's by a restart of lb-decap, without a gap (a
/// running one swaps only at its start, so `apply` beside it does not).
fn program_line(
    attach: Attach,
    interface: &str,
    attached: Result<u64, String>,
    build: Result<u64, String>,
) -> String {
    let hook = attach.name();
    match (attached, build) {
        (Ok(attached), Ok(build)) if attached == build => format!(
            "program: {hook} on {interface} is this build's (tag {})\n",
            dataplane::format_tag(attached)
        ),
        (Ok(attached), Ok(build)) => format!(
            "program: {hook} on {interface} is another build's (tag {}, this lb-decap's {}): restart lb-decap (systemctl restart lb-decap) to swap this build's in (no gap)\n",
            dataplane::format_tag(attached),
            dataplane::format_tag(build)
        ),
        (Err(error), _) | (_, Err(error)) => format!(
            "program: {hook} on {interface}: whether it is this build's is unknown ({error})\n"
        ),
    }
}

/// The map pinned as `name`.
fn open(pins: &PinDir, name: &str) -> anyhow::Result<MapData> {
    let path = pins.map_path(name);
    MapData::from_pin(&path).with_context(|| format!("opening the pinned map {}", path.display()))
}

/// The keys of the hash map pinned as `name`.
fn keys<K: Pod>(pins: &PinDir, name: &str) -> anyhow::Result<Vec<K>> {
    let map = HashMap::<MapData, K, u32>::try_from(Map::HashMap(open(pins, name)?))?;
    Ok(map.keys().collect::<Result<Vec<_>, _>>()?)
}

/// For an XDP link, `, mode native` (or `generic`, `offload`): the mode
/// the program was attached in, which a changed `xdp_mode` does not alter
/// (`lb-decap cleanup` and a start do); nothing for tc.
fn running_mode(attach: Attach, link: &std::path::Path, program_id: u32) -> String {
    if attach != Attach::Xdp {
        return String::new();
    }
    let mode = crate::link::pinned_target(link)
        .and_then(|t| crate::interface::xdp_running(t.ifindex, program_id));
    match mode {
        Ok(Some(mode)) => format!(", mode {}", mode.name()),
        Ok(None) => ", mode unknown: the interface does not list the program".to_owned(),
        Err(error) => format!(", mode unknown: {error:#}"),
    }
}

/// What the program unwraps, one `key: value` per line (`ipip`, `gue`,
/// then an `address` line per accepted outer destination, a `source` line
/// per accepted outer source prefix or `sources: any (not checked)`, and a
/// `vip` line per VIP): the maps' contents for `status`, a file's for
/// `check`, so the two read alike.
pub fn describe(
    config: &DecapConfig,
    addresses: &[IpAddr],
    sources: &[Prefix],
    vips: &[Vip],
) -> String {
    let mut out = encapsulations(config);
    for address in addresses {
        out.push_str(&format!("address: {address}\n"));
    }
    if config.flags & DECAP_F_SOURCES == 0 {
        out.push_str("sources: any (not checked)\n");
    } else {
        for source in sources {
            out.push_str(&format!("source: {source}\n"));
        }
    }
    for vip in vips {
        out.push_str(&format!("vip: {vip}\n"));
    }
    out
}

/// The `ipip` and `gue` lines of `describe`.
fn encapsulations(config: &DecapConfig) -> String {
    let ipip = if config.flags & DECAP_F_IPIP != 0 {
        "on"
    } else {
        "off"
    };
    let mut out = format!("ipip: {ipip}\n");
    if config.flags & DECAP_F_GUE != 0 {
        out.push_str(&format!(
            "gue: on, port {}\n",
            u16::from_be(config.gue_port)
        ));
    } else {
        out.push_str("gue: off\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use lb_common::consts::IPPROTO_TCP;

    use super::*;
    use crate::{config::Settings, dataplane};

    #[test]
    fn a_directory_with_nothing_pinned_is_not_set_up() {
        let pins = PinDir::new(
            std::env::temp_dir().join(format!("lbk{}-status-none", std::process::id())),
        );
        let error = format!("{:#}", report(&pins).expect_err("nothing pinned"));
        assert!(error.contains("lb-decap is not set up here"), "{error}");
    }

    /// The labs' BPF filesystem (as `lb_tests::lab::BPFFS`).
    const BPFFS: &str = "/run/lbt-bpffs";

    fn run(program: &str, args: &[&str]) {
        let status = Command::new(program).args(args).status().expect(program);
        assert!(status.success(), "{program} {args:?}");
    }

    /// A network namespace (only its `lo`) and a pin directory under the
    /// labs' BPF filesystem (mounted if needed), removed on drop.
    struct Lab {
        netns: String,
        pins: std::path::PathBuf,
    }

    impl Lab {
        fn new(tag: &str) -> Self {
            let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
            if !mounts
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.contains(" bpf "))
            {
                std::fs::create_dir_all(BPFFS).expect("bpffs dir");
                run("mount", &["-t", "bpf", "bpf", BPFFS]);
            }
            let netns = format!("lbk{}-{tag}", std::process::id());
            let pins = Path::new(BPFFS).join(&netns);
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
                let rc = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                };
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

    /// What an lb-decap from before the source maps leaves (its program
    /// attached and unwrapping, those maps never pinned): reported as an
    /// older program, with what the other maps say, not as "not set up".
    /// Needs root.
    #[test]
    fn an_older_program_without_some_maps_is_reported_not_called_unset() {
        let lab = Lab::new("status");
        let root = lab.pins.clone();
        let (older, cleaned) = lab.inside(move || {
            let pins = PinDir::new(&root);
            let settings = Settings::parse(
                "interface = \"lo\"\nattach = \"tc\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\"]\n",
            )
            .expect("settings");
            dataplane::apply(&settings, &pins).expect("apply");
            for name in [names::MAP_DECAP_SOURCES_V4, names::MAP_DECAP_SOURCES_V6] {
                std::fs::remove_file(pins.map_path(name)).expect("unpin");
            }
            let older = report(&pins).map_err(|e| format!("{e:#}"));
            dataplane::cleanup(&pins).expect("cleanup");
            (older, report(&pins).map_err(|e| format!("{e:#}")))
        });
        let older = older.expect("the report of an older program");
        for said in [
            "attached: tc on lo (program id ",
            "older program: the attached program is an older lb-decap's, without the maps DECAP_SOURCES_V4, DECAP_SOURCES_V6;",
            "restart lb-decap (systemctl restart lb-decap) to replace it",
            "ipip: on\n",
            "address: 198.19.2.11\n",
            "vip: 198.18.0.100:80/tcp\n",
            "counter decap_ipip 0\n",
        ] {
            assert!(older.contains(said), "{said:?} not in:\n{older}");
        }
        assert!(!older.contains("unreadable"), "{older}");
        let cleaned = cleaned.expect_err("nothing pinned after a cleanup");
        assert!(cleaned.contains("not set up"), "{cleaned}");
    }

    /// A VIP no interface holds is reported (by `local::not_local` and in
    /// `status` as a warning naming it and the fix); one on an interface
    /// or in a local route (AnyIP) is not. Before, nothing looked, and
    /// unwrapped packets for it counted as unwrapped were dropped or
    /// forwarded by the kernel. Needs root.
    #[test]
    fn vips_no_interface_holds_are_warned_about_and_local_ones_not() {
        let lab = Lab::new("vips");
        for args in [
            &["addr", "add", "198.18.0.100/32", "dev", "lo"][..],
            &["-6", "addr", "add", "2001:2::100/128", "dev", "lo", "nodad"],
            &["route", "add", "local", "198.18.5.0/24", "dev", "lo"],
        ] {
            let mut full = vec!["-n", lab.netns.as_str()];
            full.extend_from_slice(args);
            run("ip", &full);
        }
        let root = lab.pins.clone();
        let (missing, report) = lab.inside(move || {
            let pins = PinDir::new(&root);
            let settings = Settings::parse(
                "interface = \"lo\"\nattach = \"tc\"\naddresses = [\"198.19.2.11\"]\nvips = [\"198.18.0.100:80/tcp\", \"198.18.0.100:443/tcp\", \"198.18.5.7:80/tcp\", \"198.18.0.101:80/tcp\", \"[2001:2::100]:80/tcp\", \"[2001:2::101]:80/udp\"]\n",
            )
            .expect("settings");
            let missing = crate::local::not_local(&settings.vips).expect("checked");
            dataplane::apply(&settings, &pins).expect("apply");
            (missing, report(&pins).expect("status"))
        });
        let want: std::collections::BTreeSet<IpAddr> = ["198.18.0.101", "2001:2::101"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        assert_eq!(missing, want);
        let warnings: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with("warning: "))
            .collect();
        assert_eq!(
            warnings,
            [
                format!(
                    "warning: {}",
                    crate::local::warning("198.18.0.101".parse().expect("ip"))
                ),
                format!(
                    "warning: {}",
                    crate::local::warning("2001:2::101".parse().expect("ip"))
                ),
            ],
            "{report}"
        );
        assert!(
            warnings[0].contains("ip addr add 198.18.0.101/32 dev lo"),
            "{report}"
        );
    }

    #[test]
    fn the_program_line_says_whether_the_attached_program_is_this_builds() {
        assert_eq!(
            program_line(Attach::Xdp, "eth0", Ok(0xab), Ok(0xab)),
            "program: xdp on eth0 is this build's (tag 00000000000000ab)\n"
        );
        let other = program_line(Attach::Tc, "eth1", Ok(0xab), Ok(0xcd));
        assert!(
            other.starts_with("program: tc on eth1 is another build's (tag 00000000000000ab, this lb-decap's 00000000000000cd)"),
            "{other}"
        );
        // A running lb-decap swaps only at its start: `apply` beside it
        // leaves the program, so a restart is what to do.
        assert!(
            other.ends_with(": restart lb-decap (systemctl restart lb-decap) to swap this build's in (no gap)\n"),
            "{other}"
        );
        let unknown = program_line(Attach::Tc, "eth1", Ok(1), Err("no BPF".into()));
        assert!(unknown.contains("is unknown (no BPF)"), "{unknown}");
    }

    #[test]
    fn the_description_names_each_setting_in_host_order() {
        let config = DecapConfig {
            gue_port: 6080u16.to_be(),
            flags: DECAP_F_GUE,
        };
        let vip = Vip {
            addr: "2001:2::100".parse().expect("address"),
            port: 443,
            proto: IPPROTO_TCP,
        };
        let address: IpAddr = "198.19.2.11".parse().expect("address");
        assert_eq!(
            describe(&config, &[address], &[], &[vip]),
            "ipip: off\ngue: on, port 6080\naddress: 198.19.2.11\nsources: any (not checked)\nvip: [2001:2::100]:443/tcp\n"
        );
        let checked = DecapConfig {
            flags: DECAP_F_GUE | DECAP_F_SOURCES,
            ..config
        };
        let source: Prefix = "198.19.200.0/24".parse().expect("prefix");
        assert_eq!(
            describe(&checked, &[address], &[source], &[vip]),
            "ipip: off\ngue: on, port 6080\naddress: 198.19.2.11\nsource: 198.19.200.0/24\nvip: [2001:2::100]:443/tcp\n"
        );
    }
}
