//! lb-decap on a backend in a namespace lab (see `lb_tests::decaplab`):
//! every encapsulation reaches a TCP service on the VIPs and the answer
//! names the client (its address preserved), at XDP and at tc; a restart of
//! lb-decap keeps the same program unwrapping (a long-lived connection
//! survives it), SIGHUP applies a changed config (including a switch of
//! hook), bad input changes nothing, and cleanup leaves the interface as it
//! was; `sources` admits the balancer and drops others; `run` follows a
//! rebuilt interface and its addresses without a SIGHUP; one lb-decap
//! serves two interfaces, a second on the same pins is refused, and a
//! link pin removed under `run` is attached again; VIPs the backend does
//! not hold are warned about. Needs root; run with the lb-decap binary
//! built.

use std::{net::IpAddr, time::Duration};

use lb_tests::{
    decaplab::{ask, DecapLab, RelayMode, Wrap, BACKEND4, CLIENT4, CLIENT6, VIP4, VIP6},
    support::{outcome, wait_until},
};

fn config(attach: &str, vips: &str) -> String {
    // xdp_mode is refused with attach = "tc" (it would be ignored).
    let mode = if attach == "xdp" {
        "xdp_mode = \"native\"\n"
    } else {
        ""
    };
    format!("interface = \"eth0\"\nattach = \"{attach}\"\n{mode}vips = [{vips}]\n")
}

const VIPS: &str = "\"198.18.0.100:80/tcp\", \"[2001:2::100]:80/tcp\"";

/// Every wrap the balancer uses, for both VIPs, through lb-decap.
fn every_form_is_served(lab: &DecapLab, hook: &str) {
    let forms = [
        (Wrap::Ipip, false, IpAddr::from(VIP4), "ipip"),
        (Wrap::Ipip, true, VIP6.into(), "ip6ip6"),
        (Wrap::Ipip, true, VIP4.into(), "4in6"),
        (Wrap::Gue1, false, VIP4.into(), "gue1 v4"),
        (Wrap::Gue1, true, VIP6.into(), "gue1 v6"),
        (Wrap::Gue0, false, VIP4.into(), "gue0 v4"),
        (Wrap::Gue0, true, VIP6.into(), "gue0 v6"),
        (Wrap::Gue1, true, VIP4.into(), "gue1 4in6"),
    ];
    for (wrap, outer_v6, vip, name) in forms {
        lab.set_mode(RelayMode { wrap, outer_v6 });
        let client: IpAddr = if vip.is_ipv6() {
            CLIENT6.into()
        } else {
            CLIENT4.into()
        };
        let answer = lab
            .request(vip)
            .unwrap_or_else(|e| panic!("{name} at {hook}: {e:#}"));
        assert_eq!(
            answer,
            format!("served {vip} for {client}"),
            "{name} at {hook}"
        );
    }
}

fn status(lab: &DecapLab) -> String {
    let out = lab.lb_decap(&["status"]).expect("lb-decap status");
    let (code, stdout, stderr) = outcome(&out);
    assert_eq!(code, 0, "status failed: {stderr}");
    stdout
}

fn counter(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("counter {name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in {status}"))
}

fn attached_line(status: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with("attached:"))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn lb_decap_serves_every_encapsulation_survives_restarts_and_cleans_up() {
    let mut lab = DecapLab::start().expect("decap lab");

    // Nothing decapsulates yet: the tunnel packets reach a stack without
    // ipip/fou and are lost.
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    assert!(lab.request(VIP4.into()).is_err(), "no decap, no answer");

    // A start that fails (native XDP on lo) changes nothing.
    let lo = lab
        .write_config(
            "lo.toml",
            &format!("interface = \"lo\"\nxdp_mode = \"native\"\naddresses = [\"198.19.2.11\"]\nvips = [{VIPS}]\n"),
        )
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &lo.to_string_lossy()])
            .expect("apply"),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("attaching xdp_decap to lo"), "{stderr}");
    assert!(
        !lab.pin_dir.exists(),
        "a failed start left {}",
        lab.pin_dir.display()
    );

    // XDP, the addresses taken from the interface.
    let xdp = lab
        .write_config("xdp.toml", &config("xdp", VIPS))
        .expect("config");
    let xdp_arg = xdp.to_string_lossy().into_owned();
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &xdp_arg])
            .expect("apply"),
    );
    assert_eq!(code, 0, "apply: {stderr}");
    assert!(lab.backend_link().expect("link").contains("prog/xdp"));
    every_form_is_served(&lab, "xdp");
    let s = status(&lab);
    assert!(
        s.contains("address: 198.19.2.11") && s.contains("address: 2001:2:0:2::11"),
        "{s}"
    );
    assert!(
        s.contains("vip: 198.18.0.100:80/tcp") && s.contains("vip: [2001:2::100]:80/tcp"),
        "{s}"
    );
    assert!(
        counter(&s, "decap_ipip") >= 3 && counter(&s, "decap_gue") >= 5,
        "{s}"
    );
    let attached = attached_line(&s);
    assert!(
        attached.starts_with("attached: xdp on eth0 (program id"),
        "{s}"
    );

    // A long-lived connection across restarts of the foreground daemon:
    // the same program keeps running, so nothing is lost.
    lab.set_mode(RelayMode {
        wrap: Wrap::Gue1,
        outer_v6: false,
    });
    let mut stream = lab.connect(VIP4.into()).expect("long-lived connection");
    assert_eq!(
        ask(&mut stream).expect("first answer"),
        format!("served {VIP4} for {CLIENT4}")
    );
    for round in 0..2 {
        let name = format!("run-{round}");
        lab.spawn_lb_decap(&name, &["run", "--config", &xdp_arg])
            .expect("lb-decap run");
        wait_until("lb-decap run to apply", Duration::from_secs(10), || {
            lab.log(&name).contains("running; SIGHUP")
        });
        let text = lab.log(&name);
        assert!(text.contains("configuration updated in place"), "{text}");
        assert_eq!(
            ask(&mut stream).expect("answer while running"),
            format!("served {VIP4} for {CLIENT4}")
        );
        lab.signal(&name, libc::SIGTERM).expect("SIGTERM");
        let code = lab.wait(&name).expect("lb-decap run exits");
        assert!(code.success(), "lb-decap run exited with {code}");
        assert_eq!(
            ask(&mut stream).expect("answer after stop"),
            format!("served {VIP4} for {CLIENT4}")
        );
        assert_eq!(
            attached_line(&status(&lab)),
            attached,
            "the same program stays attached"
        );
    }

    // Bad input changes nothing.
    let bad = lab
        .write_config("bad.toml", &config("xdp", "\"198.18.0.100:80/sctp\""))
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &bad.to_string_lossy()])
            .expect("apply"),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("sctp"),
        "the error names the bad value: {stderr}"
    );
    let s = status(&lab);
    assert!(s.contains("vip: [2001:2::100]:80/tcp"), "{s}");
    assert_eq!(attached_line(&s), attached);

    // A VIP taken out of the config is no longer unwrapped.
    let only4 = lab
        .write_config("only4.toml", &config("xdp", "\"198.18.0.100:80/tcp\""))
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &only4.to_string_lossy()])
            .expect("apply"),
    );
    assert_eq!(code, 0, "{stderr}");
    let before = counter(&status(&lab), "drop_not_vip");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: true,
    });
    assert!(
        lab.request(VIP6.into()).is_err(),
        "a VIP not configured is not served"
    );
    assert!(counter(&status(&lab), "drop_not_vip") > before);

    // SIGHUP with the hook switched to tc: the tc link comes, XDP goes.
    lab.spawn_lb_decap("run-tc", &["run", "--config", &xdp_arg])
        .expect("lb-decap run");
    wait_until("lb-decap run to apply", Duration::from_secs(10), || {
        lab.log("run-tc").contains("running; SIGHUP")
    });
    std::fs::write(&xdp, config("tc", VIPS)).expect("rewrite config");
    lab.signal("run-tc", libc::SIGHUP).expect("SIGHUP");
    wait_until("the tc link", Duration::from_secs(10), || {
        lab.tc_programs().is_ok_and(|p| !p.is_empty())
            && !lab.backend_link().is_ok_and(|l| l.contains("prog/xdp"))
    });
    every_form_is_served(&lab, "tc");
    assert!(attached_line(&status(&lab)).starts_with("attached: tc on eth0"));
    lab.signal("run-tc", libc::SIGTERM).expect("SIGTERM");
    assert!(lab.wait("run-tc").expect("exit").success());
    assert!(
        !lab.tc_programs().expect("tcx").is_empty(),
        "the program outlives lb-decap"
    );

    // Cleanup leaves nothing: no program on the interface, no pins.
    let (code, _, stderr) = outcome(&lab.lb_decap(&["--cleanup"]).expect("cleanup"));
    assert_eq!(code, 0, "{stderr}");
    assert!(lab.tc_programs().expect("tcx").is_empty());
    assert!(!lab.backend_link().expect("link").contains("prog/xdp"));
    assert!(
        !lab.pin_dir.exists(),
        "pins left at {}",
        lab.pin_dir.display()
    );
    let (code, _, stderr) = outcome(&lab.lb_decap(&["status"]).expect("status"));
    assert_ne!(code, 0);
    assert!(stderr.contains("nothing pinned"), "{stderr}");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    assert!(lab.request(VIP4.into()).is_err(), "no decap after cleanup");
}

#[test]
fn lb_decap_unwraps_only_from_configured_sources() {
    let lab = DecapLab::start().expect("decap lab");
    let apply = |name: &str, sources: &str| -> String {
        let path = lab
            .write_config(
                name,
                &format!("{}sources = [{sources}]\n", config("xdp", VIPS)),
            )
            .expect("config");
        let (code, _, stderr) = outcome(
            &lab.lb_decap(&["apply", "--config", &path.to_string_lossy()])
                .expect("apply"),
        );
        assert_eq!(code, 0, "apply {name}: {stderr}");
        stderr
    };
    // The balancer's outer sources (its eth0: 198.19.2.1, 2001:2:0:2::1).
    let stderr = apply("ours.toml", "\"198.19.2.0/30\", \"2001:2:0:2::/126\"");
    assert!(!stderr.contains("ANY sender"), "{stderr}");
    every_form_is_served(&lab, "xdp with sources");
    let s = status(&lab);
    assert!(
        s.contains("source: 198.19.2.0/30\nsource: 2001:2:0:2::/126\n"),
        "{s}"
    );
    // Another balancer's prefixes only: ours is dropped and counted.
    apply("theirs.toml", "\"198.19.3.0/24\", \"2001:2:0:3::/64\"");
    let before = counter(&status(&lab), "drop_not_source");
    for (outer_v6, vip) in [(false, IpAddr::from(VIP4)), (true, VIP6.into())] {
        lab.set_mode(RelayMode {
            wrap: Wrap::Gue1,
            outer_v6,
        });
        assert!(lab.request(vip).is_err(), "{vip} served from a stranger");
    }
    let after = counter(&status(&lab), "drop_not_source");
    assert!(after >= before + 2, "drop_not_source {before} -> {after}");
    // Unset: any sender again, with a warning.
    let path = lab
        .write_config("any.toml", &config("xdp", VIPS))
        .expect("config");
    let (code, _, stderr) = outcome(
        &lab.lb_decap(&["apply", "--config", &path.to_string_lossy()])
            .expect("apply"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("sources not set: tunnel packets from ANY sender"),
        "{stderr}"
    );
    assert!(status(&lab).contains("sources: any (not checked)"));
    every_form_is_served(&lab, "xdp without sources");
}

#[test]
fn lb_decap_run_follows_a_rebuilt_interface_and_its_addresses() {
    let mut lab = DecapLab::start().expect("decap lab");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    // Addresses omitted: they are the interface's, followed.
    let path = lab
        .write_config("follow.toml", &config("xdp", VIPS))
        .expect("config");
    let arg = path.to_string_lossy().into_owned();
    lab.spawn_lb_decap("run", &["run", "--config", &arg])
        .expect("lb-decap run");
    wait_until("lb-decap run to apply", Duration::from_secs(10), || {
        lab.log("run").contains("running; SIGHUP")
    });
    lab.request(VIP4.into()).expect("served before the rebuild");

    // The veth deleted and made again: the XDP link went with the old
    // interface; no SIGHUP is sent.
    lab.rebuild_link().expect("rebuild the veth");
    wait_until("service after the rebuild", Duration::from_secs(20), || {
        lab.request(VIP4.into()).is_ok()
    });
    for (outer_v6, vip) in [(true, IpAddr::from(VIP6)), (true, VIP4.into())] {
        lab.set_mode(RelayMode {
            wrap: Wrap::Gue1,
            outer_v6,
        });
        wait_until(
            "both families after the rebuild",
            Duration::from_secs(10),
            || lab.request(vip).is_ok(),
        );
    }
    let log = lab.log("run");
    assert!(log.contains("was recreated"), "{log}");
    assert!(lab.backend_link().expect("link").contains("prog/xdp"));

    // A new address on the interface becomes an accepted destination.
    lab.add_backend_address("198.19.2.12/24").expect("address");
    wait_until(
        "the new address in the maps",
        Duration::from_secs(10),
        || status(&lab).contains("address: 198.19.2.12"),
    );
    assert!(lab.log("run").contains("added [198.19.2.12]"));

    // A re-apply reads no file (only SIGHUP does): with the file broken
    // meanwhile, a new address is taken with the configuration in force,
    // and `run` goes on.
    std::fs::write(&path, config("xdp", "\"198.18.0.100:80/sctp\"")).expect("break config");
    lab.add_backend_address("198.19.2.13/24").expect("address");
    wait_until(
        "the second new address in the maps",
        Duration::from_secs(10),
        || status(&lab).contains("address: 198.19.2.13"),
    );
    // SIGHUP reads the broken file: refused and logged, the configuration
    // in force stays and serves.
    lab.signal("run", libc::SIGHUP).expect("SIGHUP");
    wait_until("the refused reload logged", Duration::from_secs(10), || {
        lab.log("run")
            .contains("reload failed; the previous configuration stays in force")
    });
    lab.request(VIP4.into())
        .expect("served with the configuration in force");
    lab.signal("run", libc::SIGTERM).expect("SIGTERM");
    let code = lab.wait("run").expect("lb-decap run exits");
    assert!(code.success(), "run exited with {code}");
    assert!(lab.backend_link().expect("link").contains("prog/xdp"));
}

/// A two-namespace lab of its own (`lbk<pid>-tx`, `lbk<pid>-be`, a veth
/// between): lb-decap at tc on the backend's `eth0` and, after it on the
/// same tcx ingress, a second decap program standing in for whatever runs
/// there too (Cilium, monitoring). Removed on drop.
struct ChainLab {
    sender: String,
    backend: String,
    dir: std::path::PathBuf,
    pin_dir: std::path::PathBuf,
}

/// Runs a command; its stdout, or an error with its stderr.
fn sh(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CHAIN_SENDER: &str = "198.19.9.1";
const CHAIN_BACKEND: &str = "198.19.9.2";

impl ChainLab {
    fn start() -> Self {
        lb_tests::lab::ensure_bpffs().expect("bpffs");
        let prefix = format!("lbk{}", std::process::id());
        let lab = Self {
            sender: format!("{prefix}-tx"),
            backend: format!("{prefix}-be"),
            dir: std::env::temp_dir().join(&prefix),
            pin_dir: std::path::Path::new(lb_tests::lab::BPFFS).join(format!("{prefix}-decap")),
        };
        let _ = std::fs::remove_dir_all(&lab.dir);
        std::fs::create_dir_all(&lab.dir).expect("scratch dir");
        for ns in [&lab.sender, &lab.backend] {
            sh("ip", &["netns", "add", ns]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // Made in the namespaces themselves: nothing is ever left in the
        // root namespace, whatever fails.
        sh(
            "ip",
            &[
                "-n",
                &lab.sender,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &lab.backend,
            ],
        );
        for (ns, addr) in [(&lab.sender, CHAIN_SENDER), (&lab.backend, CHAIN_BACKEND)] {
            sh(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ],
            );
            sh("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        lab
    }

    /// `lb-decap --pin-dir <pins> args...` in the backend namespace.
    fn lb_decap(&self, args: &[&str]) -> String {
        let binary = lb_tests::decaplab::decap_binary().expect("lb-decap binary");
        let mut full = vec!["netns", "exec", &self.backend];
        let binary = binary.to_string_lossy().into_owned();
        let pins = self.pin_dir.to_string_lossy().into_owned();
        full.extend([binary.as_str(), "--pin-dir", &pins]);
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    /// Sends `payload` from the sender to the backend's GUE port in one
    /// datagram written in two parts (MSG_MORE), so it leaves (and arrives)
    /// as an skb whose data after the first part is not linear.
    fn send_gue_in_parts(&self, payload: Vec<u8>) {
        let target: std::net::SocketAddr =
            format!("{CHAIN_BACKEND}:{}", lb_tests::decaplab::GUE_PORT)
                .parse()
                .expect("addr");
        lb_tests::lab::in_netns(&self.sender, move || {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("udp socket");
            socket.connect(&target.into()).expect("connect");
            let (head, rest) = payload.split_at(64);
            socket
                .send_with_flags(head, libc::MSG_MORE)
                .expect("first part");
            socket.send_with_flags(rest, 0).expect("second part");
        })
        .expect("in the sender namespace");
    }
}

impl Drop for ChainLab {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &self.backend])
            .arg(lb_tests::decaplab::decap_binary().unwrap_or_default())
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .arg("cleanup")
            .output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        for ns in [&self.sender, &self.backend] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An inner IPv6 TCP SYN to the VIP whose extension headers (512 bytes)
/// reach past the 256 bytes tc makes linear first.
fn inner_with_long_chain() -> Vec<u8> {
    use lb_tests::craft::{bytes, ip_packet, tcp_flag, Ext, Ip, Upper};
    let mut header = Ip::new(CLIENT6.into(), VIP6.into());
    header.ext = vec![Ext::dest_opts(32), Ext::dest_opts(32)];
    bytes(&ip_packet(
        &header,
        &Upper::Tcp {
            sport: 40_000,
            dport: 80,
            flags: tcp_flag::SYN,
            payload: Vec::new(),
        },
    ))
}

#[test]
fn lb_decap_at_tc_passes_to_the_next_tcx_program_and_pulls_long_chains() {
    let lab = ChainLab::start();
    let config = lab.dir.join("tc.toml");
    std::fs::write(
        &config,
        format!("interface = \"eth0\"\nattach = \"tc\"\naddresses = [\"{CHAIN_BACKEND}\"]\nvips = [{VIPS}]\n"),
    )
    .expect("config");
    lab.lb_decap(&["apply", "--config", &config.to_string_lossy()]);

    // A second program after lb-decap's on the same tcx ingress, counting
    // what reaches it.
    let sender = lab.sender.clone();
    let seen = lb_tests::lab::in_netns(&lab.backend, move || -> anyhow::Result<Vec<(String, u64)>> {
        use aya::programs::{tc::TcAttachOptions, LinkOrder, TcAttachType};
        let settings = lb_decap::config::Settings::parse(&format!(
            "interface = \"eth0\"\nattach = \"tc\"\naddresses = [\"{CHAIN_BACKEND}\"]\nvips = [{VIPS}]\n"
        ))?;
        let mut ebpf = lb_decap::dataplane::load_object()?;
        let mut maps = lb_decap::maps::take(&mut ebpf)?;
        lb_decap::maps::Maps::borrowed(&mut maps)?.sync(&settings)?;
        let program = lb_decap::dataplane::tc_program(
            &mut ebpf,
            lb_common::decap::names::PROG_TC_DECAP,
        )?;
        // LinkOrder::default(): after every program already there.
        program.attach_with_options(
            "eth0",
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )?;
        let (_, programs) =
            aya::programs::SchedClassifier::query_tcx("eth0", TcAttachType::Ingress)?;
        anyhow::ensure!(programs.len() == 2, "{} tcx programs", programs.len());
        // Plain UDP (and the ARP before it): not tunnel packets.
        lb_tests::lab::in_netns(&sender, || -> anyhow::Result<()> {
            let socket = std::net::UdpSocket::bind(format!("{CHAIN_SENDER}:0"))?;
            for _ in 0..3 {
                socket.send_to(b"not a tunnel", format!("{CHAIN_BACKEND}:9"))?;
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        })??;
        // Until the three UDP packets have passed it.
        let mut counters = Vec::new();
        wait_until(
            "the program after lb-decap's to pass 3 non-tunnel packets",
            Duration::from_secs(5),
            || {
                counters = lb_decap::maps::Maps::borrowed(&mut maps)
                    .and_then(|m| m.counters())
                    .expect("the second program's counters");
                counters
                    .iter()
                    .any(|(c, v)| c.name() == "pass_not_tunnel" && *v >= 3)
            },
        );
        Ok(counters.into_iter().map(|(c, v)| (c.name().to_owned(), v)).collect())
        // `ebpf` drops here: the second program is detached.
    })
    .expect("in the backend namespace")
    .expect("second program");
    let passed = seen
        .iter()
        .find(|(name, _)| name == "pass_not_tunnel")
        .map_or(0, |(_, v)| *v);
    assert!(
        passed >= 3,
        "the program after lb-decap's saw {passed} non-tunnel packets (UDP and ARP): {seen:?}"
    );

    // At tc only the first 256 bytes are linear to begin with; a GUE
    // packet whose inner extension headers reach further is pulled and
    // unwrapped, as at XDP, not dropped as malformed.
    let status = |lab: &ChainLab| lab.lb_decap(&["status"]);
    let before = status(&lab);
    lab.send_gue_in_parts(inner_with_long_chain());
    wait_until(
        "the GUE packet to be judged",
        Duration::from_secs(5),
        || {
            let now = status(&lab);
            counter(&now, "decap_gue") + counter(&now, "drop_malformed")
                > counter(&before, "decap_gue") + counter(&before, "drop_malformed")
        },
    );
    let after = status(&lab);
    assert_eq!(
        (
            counter(&after, "decap_gue") - counter(&before, "decap_gue"),
            counter(&after, "drop_malformed") - counter(&before, "drop_malformed"),
        ),
        (1, 0),
        "{after}"
    );
}

/// The running XDP mode is shown and a running generic XDP link (what an
/// older lb-decap's `auto` fell back to; generic XDP leaves a stale
/// hardware checksum after the unwrap) is kept under `native` with a
/// warning, refused as `generic`, and moved to tc ingress by `auto`
/// without a gap; `auto` applied again then takes native XDP.
#[test]
fn lb_decap_shows_the_running_xdp_mode_and_moves_an_older_generic_link_to_tc() {
    let lab = DecapLab::start().expect("decap lab");
    lab.set_mode(RelayMode {
        wrap: Wrap::Ipip,
        outer_v6: false,
    });
    let text = |mode: &str| {
        format!("interface = \"eth0\"\nattach = \"xdp\"\nxdp_mode = \"{mode}\"\nvips = [{VIPS}]\n")
    };
    let with_mode = |mode: &str| {
        lab.write_config(&format!("{mode}.toml"), &text(mode))
            .expect("config")
    };
    let apply_code = |path: &std::path::Path| -> (i32, String) {
        let (code, _, stderr) = outcome(
            &lab.lb_decap(&["apply", "--config", &path.to_string_lossy()])
                .expect("apply"),
        );
        (code, stderr)
    };
    let apply = |path: &std::path::Path| -> String {
        let (code, stderr) = apply_code(path);
        assert_eq!(code, 0, "apply {}: {stderr}", path.display());
        stderr
    };
    // `ip link` is the independent witness of the mode: its first line
    // says `xdp` (native) or `xdpgeneric`, nothing without XDP.
    let ip_link_mode = || -> String {
        let link = lab.backend_link().expect("link");
        let first = link.lines().next().unwrap_or("").to_owned();
        first
            .split_whitespace()
            .find(|w| w.starts_with("xdp"))
            .unwrap_or("none")
            .to_owned()
    };
    let served = |how: &str| {
        assert_eq!(
            lab.request(VIP4.into())
                .unwrap_or_else(|e| panic!("served {how}: {e:#}")),
            format!("served {VIP4} for {CLIENT4}"),
            "{how}"
        );
    };
    let (auto, native, generic) = (with_mode("auto"), with_mode("native"), with_mode("generic"));
    lab.attach_generic_as_an_older_lb_decap(&text("auto"))
        .expect("an older lb-decap's generic link");
    assert_eq!(ip_link_mode(), "xdpgeneric");
    let line = attached_line(&status(&lab));
    assert!(line.ends_with(", mode generic)"), "{line}");
    served("in generic mode");

    // Native asked of the running generic link: kept (no gap), and said.
    let stderr = apply(&native);
    assert!(
        stderr.contains(
            "xdp_mode = \"native\" is not applied: the program attached earlier keeps running in generic mode"
        ) && stderr.contains("`lb-decap cleanup` and a start apply it"),
        "{stderr}"
    );
    assert_eq!(attached_line(&status(&lab)), line, "the same program, mode");
    assert_eq!(ip_link_mode(), "xdpgeneric");

    // Generic asked: refused, saying why and what instead; nothing changes.
    let (code, stderr) = apply_code(&generic);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("xdp_mode = \"generic\" is refused")
            && stderr.contains("hw csum failure")
            && stderr.contains("Use xdp_mode = \"auto\""),
        "{stderr}"
    );
    assert_eq!(attached_line(&status(&lab)), line);

    // Auto: the program moves to tc ingress, the tc link attached before
    // the generic one goes, and serves there.
    let stderr = apply(&auto);
    assert!(stderr.contains("moving it to tc ingress"), "{stderr}");
    wait_until(
        "the generic XDP program detached",
        Duration::from_secs(5),
        || ip_link_mode() == "none",
    );
    assert_eq!(lab.tc_programs().expect("tcx").len(), 1);
    assert!(
        attached_line(&status(&lab)).starts_with("attached: tc on eth0"),
        "{}",
        status(&lab)
    );
    served("at tc");

    // Auto again: native XDP attaches now (no generic program in the
    // way), and the tc link goes.
    apply(&auto);
    assert_eq!(ip_link_mode(), "xdp");
    wait_until("the tc program detached", Duration::from_secs(5), || {
        lab.tc_programs().is_ok_and(|p| p.is_empty())
    });
    let line = attached_line(&status(&lab));
    assert!(line.ends_with(", mode native)"), "{line}");
    assert!(!apply(&native).contains("is not applied"));
    assert_eq!(attached_line(&status(&lab)), line, "kept: the mode asked");
    served("in native mode");
}

/// `xdp_mode = "auto"` on an interface without native XDP (macvlan, as a
/// VLAN interface) attaches at tc ingress, not generic XDP, and serves there;
/// applied again, native XDP is tried and the tc link kept. Before, it
/// attached generic XDP.
#[test]
fn lb_decap_auto_attaches_at_tc_where_native_xdp_is_unavailable() {
    let lab = DecapLab::start().expect("decap lab");
    let vlan = lab.steer_ipv4_through_macvlan().expect("macvlan");
    let config = lab
        .write_config(
            "vlan.toml",
            &format!("interface = \"{vlan}\"\naddresses = [\"{BACKEND4}\"]\nvips = [{VIPS}]\n"),
        )
        .expect("config");
    let apply = || -> String {
        let (code, _, stderr) = outcome(
            &lab.lb_decap(&["apply", "--config", &config.to_string_lossy()])
                .expect("apply"),
        );
        assert_eq!(code, 0, "apply: {stderr}");
        stderr
    };
    let stderr = apply();
    assert!(
        stderr.contains("native XDP attach failed; attaching at tc ingress instead"),
        "{stderr}"
    );
    let link = lab.backend_link_of(&vlan).expect("link");
    assert!(!link.contains("xdp"), "{link}");
    let programs = lab.tc_programs_on(&vlan).expect("tcx");
    assert_eq!(programs.len(), 1);
    let s = status(&lab);
    assert!(
        attached_line(&s).starts_with(&format!("attached: tc on {vlan} (program id")),
        "{s}"
    );
    for wrap in [Wrap::Ipip, Wrap::Gue1] {
        lab.set_mode(RelayMode {
            wrap,
            outer_v6: false,
        });
        assert_eq!(
            lab.request(VIP4.into())
                .unwrap_or_else(|e| panic!("{wrap:?} through {vlan}: {e:#}")),
            format!("served {VIP4} for {CLIENT4}"),
        );
    }
    let after = status(&lab);
    assert!(
        counter(&after, "decap_ipip") > 0 && counter(&after, "decap_gue") > 0,
        "{after}"
    );

    // Again: native XDP still fails; the same tc program is kept.
    let stderr = apply();
    assert!(
        stderr.contains("native XDP still unavailable")
            && stderr.contains("configuration updated in place"),
        "{stderr}"
    );
    assert_eq!(lab.tc_programs_on(&vlan).expect("tcx"), programs);
    assert!(!lab.backend_link_of(&vlan).expect("link").contains("xdp"));
}

/// Whether `vip` is served over `wrap` with an IPv6 (`outer_v6`) or IPv4
/// outer header right now.
fn served(lab: &DecapLab, wrap: Wrap, outer_v6: bool, vip: IpAddr) -> bool {
    lab.set_mode(RelayMode { wrap, outer_v6 });
    lab.request(vip).is_ok()
}

/// A backend whose IPv4 tunnel traffic arrives on `eth0` and IPv6 on
/// `eth1`: a second `lb-decap run` for `eth1` on the same pin directory
/// is refused (naming the directory, the first's interface and
/// `interfaces`) and the first keeps unwrapping on `eth0`; the first,
/// reloaded with `interfaces = ["eth0", "eth1"]`, serves both with one
/// program; its link pin removed under it is noticed and attached again.
/// Before, the second attached on `eth1`, re-pinned the maps and removed
/// `eth0`'s link, and the first took the missing pin for a cleanup.
#[test]
fn lb_decap_serves_two_interfaces_and_refuses_a_second_instance_on_its_pins() {
    let mut lab = DecapLab::start().expect("decap lab");
    lab.steer_ipv6_through_eth1().expect("eth1");
    let text = |interfaces: &str| {
        format!("{interfaces}\naddresses = [\"{BACKEND4}\", \"2001:2:0:2::11\"]\nvips = [{VIPS}]\n")
    };
    let first = lab
        .write_config("first.toml", &text("interface = \"eth0\""))
        .expect("config");
    let first_arg = first.to_string_lossy().into_owned();
    lab.spawn_lb_decap("first", &["run", "--config", &first_arg])
        .expect("lb-decap run");
    wait_until(
        "the first lb-decap to apply",
        Duration::from_secs(10),
        || lab.log("first").contains("running; SIGHUP"),
    );
    assert!(served(&lab, Wrap::Ipip, false, VIP4.into()), "IPv4 on eth0");
    assert!(
        !served(&lab, Wrap::Ipip, true, VIP6.into()),
        "IPv6 arrives on eth1, where nothing unwraps yet"
    );
    let before = attached_line(&status(&lab));

    // A second lb-decap for eth1 on the same pin directory: refused.
    let second = lab
        .write_config("second.toml", &text("interface = \"eth1\""))
        .expect("config");
    lab.spawn_lb_decap("second", &["run", "--config", &second.to_string_lossy()])
        .expect("lb-decap run");
    let code = lab.wait("second").expect("the second exits");
    assert!(!code.success(), "the second lb-decap ran: {code}");
    let log = lab.log("second");
    for words in [
        format!(
            "the pin directory {} holds the xdp link on eth0 of another running lb-decap",
            lab.pin_dir.display()
        ),
        "interfaces = [\"eth1\", \"eth0\"]".to_owned(),
        "a pin directory of its own".to_owned(),
    ] {
        assert!(log.contains(&words), "{words:?} not in {log}");
    }
    assert!(
        served(&lab, Wrap::Gue1, false, VIP4.into()),
        "eth0 still unwraps"
    );
    assert_eq!(
        attached_line(&status(&lab)),
        before,
        "the first's link kept"
    );

    // The first, reloaded with both interfaces: one program on both.
    std::fs::write(&first, text("interfaces = [\"eth0\", \"eth1\"]")).expect("rewrite");
    lab.signal("first", libc::SIGHUP).expect("SIGHUP");
    wait_until("IPv6 through eth1", Duration::from_secs(10), || {
        served(&lab, Wrap::Ipip, true, VIP6.into())
    });
    assert!(
        served(&lab, Wrap::Gue1, true, VIP4.into()),
        "4in6 through eth1"
    );
    assert!(served(&lab, Wrap::Ipip, false, VIP4.into()), "IPv4 on eth0");
    let s = status(&lab);
    let ids: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("attached: xdp on eth"))
        .filter_map(|l| l.split("program id ").nth(1)?.split(',').next())
        .collect();
    assert_eq!(ids.len(), 2, "{s}");
    assert_eq!(ids[0], ids[1], "one program on both: {s}");

    // Its own link pin removed under it: noticed, attached again.
    std::fs::remove_file(lab.pin_dir.join("xdp-link-eth1")).expect("unpin");
    wait_until("the first to notice", Duration::from_secs(15), || {
        let log = lab.log("first");
        log.contains("the link on eth1") && log.contains("is gone")
    });
    wait_until("eth1 served again", Duration::from_secs(10), || {
        served(&lab, Wrap::Ipip, true, VIP6.into())
    });
    assert!(lab.pin_dir.join("xdp-link-eth1").exists());
    lab.signal("first", libc::SIGTERM).expect("SIGTERM");
    assert!(lab.wait("first").expect("exit").success());
}

/// A VIP the backend does not hold (taken off `lo`): `check`, `apply` and
/// `status` name it and the command that fixes it; held again, none does.
/// Before, nothing looked, while its unwrapped packets counted as
/// unwrapped were dropped (or forwarded) by the kernel. And an apply at
/// tc ingress warns when UDP GRO for forwarding is on.
#[test]
fn lb_decap_warns_about_vips_not_held_and_udp_gro_at_tc() {
    let lab = DecapLab::start().expect("decap lab");
    let path = lab
        .write_config("vips.toml", &config("xdp", VIPS))
        .expect("config");
    let arg = path.to_string_lossy().into_owned();
    let warning = "VIP 198.18.0.100 is not local: no interface holds it";
    let fix = "ip addr add 198.18.0.100/32 dev lo";
    lab.backend_ip(&["addr", "del", &format!("{VIP4}/32"), "dev", "lo"])
        .expect("VIP off lo");
    for command in ["check", "apply"] {
        let (code, _, stderr) =
            outcome(&lab.lb_decap(&[command, "--config", &arg]).expect(command));
        assert_eq!(code, 0, "{command}: {stderr}");
        assert!(
            stderr.contains(warning) && stderr.contains(fix),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("VIP 2001:2::100"), "{command}: {stderr}");
    }
    let s = status(&lab);
    assert!(
        s.lines()
            .any(|l| l.starts_with("warning: ") && l.contains(warning) && l.contains(fix)),
        "{s}"
    );
    lab.backend_ip(&["addr", "add", &format!("{VIP4}/32"), "dev", "lo"])
        .expect("VIP back on lo");
    let (code, _, stderr) = outcome(&lab.lb_decap(&["apply", "--config", &arg]).expect("apply"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("is not local"), "{stderr}");
    assert!(!status(&lab).contains("warning:"));

    // At tc ingress with UDP GRO for forwarding on: merged GUE datagrams
    // would lose all but their first inner packet. Said at the apply.
    let tc = lab
        .write_config("tc.toml", &config("tc", VIPS))
        .expect("config");
    let tc = tc.to_string_lossy().into_owned();
    let (code, _, stderr) = outcome(&lab.lb_decap(&["apply", "--config", &tc]).expect("apply"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("UDP GRO"), "{stderr}");
    let ethtool = |state: &str| {
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &lab.backend, "ethtool", "-K", "eth0"])
            .args(["rx-udp-gro-forwarding", state])
            .status()
            .expect("ethtool");
        assert!(status.success());
    };
    ethtool("on");
    let (code, _, stderr) = outcome(&lab.lb_decap(&["apply", "--config", &tc]).expect("apply"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("rx-udp-gro-forwarding on for eth0, where lb-decap unwraps at tc ingress")
            && stderr.contains("ethtool -K eth0 rx-udp-gro-forwarding off"),
        "{stderr}"
    );
    ethtool("off");
}
