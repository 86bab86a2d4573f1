//! NAT and tunnelled VIPs never run at generic XDP, in the routed lab
//! (client behind r1, lbd on the LB network, a backend behind r2).
//! Generic (skb) XDP may be handed skbs with a partial checksum or GSO
//! packets, which the XDP program cannot see and would translate wrong;
//! lbd cannot tell where such skbs come from, so the VIPs' modes alone
//! decide: `xdp_mode = "generic"` with a NAT VIP is refused at start
//! (nothing attached); `xdp_mode = "auto"` without native XDP (forced
//! here: veth refuses native XDP while its peer's MTU is above a page)
//! falls back to the tc hook where a NAT VIP is configured, also when it
//! finds a previous lbd's generic XDP link pinned, and to generic XDP
//! where only DSR-L2 VIPs are; a reload or `lbctl vip add` that brings a
//! NAT VIP to an lbd running generic XDP is refused, nothing changed.
//! Bulk transfers both ways through the NAT VIP check that the hook
//! taken forwards it. Needs root.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use lb_common::Mode;
use lb_tests::{
    lab::{in_netns, Lab, Topology, VIP4},
    support::{ip, lbctl_ok, lbctl_outcome, status},
};
use lb_userspace::config::{Attach, XdpMode};

/// The node's NAT address.
const NAT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 50);
/// The NAT VIP's port, and the backend's bulk server's.
const BULK_PORT: u16 = 9000;
/// The DSR-L2 VIP's port (no traffic is sent to it).
const DSR_PORT: u16 = 80;
/// r2, on the LB network: the DSR-L2 VIP's backend (on-link, as DSR-L2
/// needs).
const R2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// Bytes each way of a bulk transfer.
const BULK: usize = 4 << 20;
/// Longest a bulk transfer may sit still.
const STALL: Duration = Duration::from_secs(10);

/// The routed lab with one backend, the NAT address on the LB's
/// interface, native XDP unavailable there (see `without_native_xdp`),
/// and a bulk server on the backend: per connection it reads `BULK` bytes
/// of 0x5a, then writes `BULK` bytes of 0xa5.
fn lab() -> Lab {
    let lab = Lab::start_topology(Topology::routed(1, 1, true)).expect("routed lab");
    ip(&[
        "-n",
        &lab.lb.netns,
        "addr",
        "add",
        &format!("{NAT4}/32"),
        "dev",
        "eth0",
    ]);
    without_native_xdp(&lab);
    let backend = lab.backends[0].ipv4;
    let listener = in_netns(&lab.backends[0].netns, move || {
        TcpListener::bind((backend, BULK_PORT))
    })
    .expect("backend netns")
    .expect("bulk server");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve_bulk(stream));
        }
    });
    lab
}

/// One connection of the bulk server.
fn serve_bulk(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(STALL));
    let _ = stream.set_write_timeout(Some(STALL));
    let mut received = vec![0u8; BULK];
    if stream.read_exact(&mut received).is_err() || received.iter().any(|b| *b != 0x5a) {
        return;
    }
    let _ = stream.write_all(&vec![0xa5; BULK]);
}

/// Makes native XDP unavailable on the LB's `eth0`: veth refuses a
/// program without multi-buffer support while its peer (the switch port)
/// has an MTU above a page. Generic XDP and tc are unaffected.
fn without_native_xdp(lab: &Lab) {
    ip(&[
        "-n",
        &format!("{}-sw", lab.prefix),
        "link",
        "set",
        "p-lb",
        "mtu",
        "9000",
    ]);
}

/// lbd's config: `xdp_mode`, the node's NAT address, the DSR-L2 VIP
/// (`VIP4:DSR_PORT` to r2) and, if `nat_vip`, the NAT VIP
/// (`VIP4:BULK_PORT` to the backend's bulk server).
fn config(lab: &Lab, xdp_mode: &str, nat_vip: bool) -> String {
    let mut config = format!(
        "interface = \"eth0\"\nxdp_mode = \"{xdp_mode}\"\nconntrack_size = 65536\nadmin_socket = \"{}\"\n\n[nat]\nsource_ipv4 = \"{NAT4}\"\n{}",
        lab.admin_socket().display(),
        vip_table(DSR_PORT, "dsr-l2", R2),
    );
    if nat_vip {
        config.push_str(&vip_table(BULK_PORT, "nat", lab.backends[0].ipv4));
    }
    config
}

/// A VIP's table: `VIP4:port`, `forwarding`, one backend at `backend`
/// (the same port), no health checks.
fn vip_table(port: u16, forwarding: &str, backend: Ipv4Addr) -> String {
    format!(
        "\n[[vip]]\naddress = \"{VIP4}\"\nport = {port}\nprotocol = \"tcp\"\nforwarding = \"{forwarding}\"\n[vip.health]\ncheck = \"none\"\n  [[vip.backend]]\n  address = \"{backend}\"\n"
    )
}

/// One bulk transfer each way through the NAT VIP, from the client: how
/// long it took, or why it failed (a stall times out after `STALL`).
fn bulk_transfer(lab: &Lab) -> Result<Duration, String> {
    in_netns(&lab.client.netns, || -> Result<Duration, String> {
        let start = Instant::now();
        let vip = SocketAddr::from((VIP4, BULK_PORT));
        let mut stream =
            TcpStream::connect_timeout(&vip, STALL).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(STALL))
            .and_then(|()| stream.set_write_timeout(Some(STALL)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&vec![0x5a; BULK])
            .map_err(|e| format!("sending {BULK} bytes: {e}"))?;
        let mut received = vec![0u8; BULK];
        stream
            .read_exact(&mut received)
            .map_err(|e| format!("receiving {BULK} bytes: {e}"))?;
        if received.iter().any(|b| *b != 0xa5) {
            return Err("received bytes differ".into());
        }
        Ok(start.elapsed())
    })
    .map_err(|e| e.to_string())?
}

/// Asserts a bulk transfer each way through the NAT VIP completes.
fn assert_bulk_flows(lab: &Lab, when: &str) {
    match bulk_transfer(lab) {
        Ok(took) => eprintln!("{when}: {BULK} bytes each way in {took:?}"),
        Err(error) => panic!(
            "{when}: bulk transfer through the NAT VIP failed ({error})\n{}",
            lab.log("lbd")
        ),
    }
}

/// Asserts lbd runs at tc (tcx ingress), not at XDP, and says so.
fn assert_at_tc(lab: &Lab) {
    let lb = lab.lb.clone();
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "no XDP program");
    assert_eq!(
        lab.tc_program_ids(&lb).expect("tcx query").len(),
        1,
        "one tcx ingress program"
    );
    let now = status(lab);
    assert_eq!(now.attach, Attach::Tc);
    assert_eq!(now.xdp_mode, None);
    let text = lbctl_ok(lab, &["status"]);
    assert!(text.contains("lbd on eth0 (tc)"), "{text}");
}

/// The VIPs lbd serves: (address:port/protocol, mode).
fn vips(lab: &Lab) -> Vec<(String, Mode)> {
    status(lab)
        .vips
        .into_iter()
        .map(|v| (v.vip, v.mode))
        .collect()
}

/// `xdp_mode = "generic"` with a NAT VIP is refused before anything is
/// attached; `auto` without native XDP attaches at tc instead of generic
/// XDP, bulk transfers through the NAT VIP flow there, and a SIGTERM
/// restart takes that tc link over.
#[test]
fn auto_falls_back_to_tc_and_generic_is_refused_with_a_nat_vip() {
    let mut lab = lab();
    let lb = lab.lb.clone();

    // A name of its own: `terminate("lbd")` below must find the lbd that
    // runs.
    let refused = lab
        .start_lbd_on(&lb, "refused", &config(&lab, "generic", true))
        .expect_err("generic XDP with a NAT VIP must be refused");
    let message = format!("{refused:#}");
    for part in [
        "xdp_mode = \"generic\" serves DSR-L2 VIPs only",
        "198.18.0.100:9000/tcp (nat)",
        "attach = \"tc\"",
        "xdp_mode = \"native\"",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert!(!lab.xdp_attached(&lb).expect("ip link"), "nothing attached");
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());

    let auto = config(&lab, "auto", true);
    lab.start_lbd(&auto).expect("lbd with xdp_mode = auto");
    let log = lab.log("lbd");
    assert!(log.contains("native XDP attach failed"), "{log}");
    assert!(log.contains("attaching at tc ingress instead"), "{log}");
    assert!(
        !log.contains("falling back to generic"),
        "no generic XDP: {log}"
    );
    assert_at_tc(&lab);
    assert_bulk_flows(&lab, "auto, fallen back to tc");

    // A restart keeps the hook: the pinned tc link is taken over.
    let stopped = lab.terminate("lbd").expect("SIGTERM");
    assert!(stopped.success(), "{}", lab.log("lbd"));
    lab.start_lbd_on(&lb, "lbd2", &auto).expect("restart");
    let log = lab.log("lbd2");
    assert!(
        log.contains("tc program replaced atomically on the pinned link"),
        "{log}"
    );
    assert_at_tc(&lab);
    assert_bulk_flows(&lab, "after the restart");
    let stopped = lab.interrupt("lbd2").expect("SIGINT");
    assert!(stopped.success(), "{}", lab.log("lbd2"));
}

/// `auto` without native XDP and only a DSR-L2 VIP falls back to generic
/// XDP as before. The next lbd, with a NAT VIP added to its config, does
/// not keep that pinned generic link: it attaches at tc and removes the
/// XDP link, and bulk transfers through the NAT VIP flow.
#[test]
fn dsr_l2_only_stays_generic_and_a_nat_vip_moves_a_restart_to_tc() {
    let mut lab = lab();
    let lb = lab.lb.clone();
    lab.start_lbd(&config(&lab, "auto", false))
        .expect("auto with a DSR-L2 VIP only");
    let log = lab.log("lbd");
    assert!(log.contains("falling back to generic"), "{log}");
    assert_eq!(status(&lab).xdp_mode, Some(XdpMode::Generic));
    assert!(lab.xdp_attached(&lb).expect("ip link"));
    assert!(lab.tc_program_ids(&lb).expect("tcx").is_empty());
    let stopped = lab.terminate("lbd").expect("SIGTERM");
    assert!(stopped.success(), "{}", lab.log("lbd"));
    assert!(lab.xdp_attached(&lb).expect("ip link"), "left running");

    lab.start_lbd_on(&lb, "lbd2", &config(&lab, "auto", true))
        .expect("lbd with a NAT VIP");
    let log = lab.log("lbd2");
    assert!(
        log.contains("the pinned XDP link runs in generic (skb) mode"),
        "{log}"
    );
    assert!(
        log.contains("the other hook's pinned link removed"),
        "{log}"
    );
    assert_at_tc(&lab);
    assert_bulk_flows(&lab, "auto after a generic lbd");
}

/// An lbd at generic XDP with a DSR-L2 VIP (`auto`, native XDP
/// unavailable) refuses a reload that adds a NAT VIP or switches the
/// DSR-L2 one to NAT, and an `lbctl vip add` of a NAT VIP: nothing
/// changes. A DSR-L2 VIP is still added. (With `xdp_mode = "generic"`
/// written in the file, the file's own check refuses such a VIP:
/// `config::tests::generic_xdp_serves_dsr_l2_vips_only`.)
#[test]
fn a_nat_vip_is_refused_to_generic_xdp() {
    let mut lab = lab();
    let start = format!(
        "pin_dir = \"{}\"\n{}",
        lab.pin_dir_of(&lab.lb).display(),
        config(&lab, "auto", false)
    );
    lab.start_lbd(&start)
        .expect("generic XDP with a DSR-L2 VIP");
    assert_eq!(status(&lab).xdp_mode, Some(XdpMode::Generic));
    let dsr_only = vec![(format!("{VIP4}:{DSR_PORT}/tcp"), Mode::DsrL2)];
    assert_eq!(vips(&lab), dsr_only);

    let added = format!(
        "{start}{}",
        vip_table(BULK_PORT, "nat", lab.backends[0].ipv4)
    );
    let switched = start.replace("forwarding = \"dsr-l2\"", "forwarding = \"nat\"");
    assert_ne!(switched, start);
    for (file, named) in [
        (added, "198.18.0.100:9000/tcp (nat)"),
        (switched, "198.18.0.100:80/tcp (nat)"),
    ] {
        lab.write_lbd_config(&file).expect("config");
        let (code, stdout, stderr) = lbctl_outcome(&lab, &["reload"]);
        assert_ne!(code, 0, "reload accepted: {stdout}");
        for part in [
            "reload refused, running state unchanged",
            "lbd runs generic XDP on eth0",
            named,
            "attach = \"tc\"",
        ] {
            assert!(stderr.contains(part), "{part:?} in {stderr}");
        }
        assert_eq!(vips(&lab), dsr_only, "nothing changed");
    }
    lab.write_lbd_config(&start).expect("config");

    let backend = format!("{},port={BULK_PORT}", lab.backends[0].ipv4);
    let nat_vip = format!("{VIP4}:{BULK_PORT}");
    let (code, stdout, stderr) = lbctl_outcome(
        &lab,
        &[
            "vip",
            "add",
            &nat_vip,
            "--forwarding",
            "nat",
            "--backend",
            &backend,
        ],
    );
    assert_ne!(code, 0, "vip add accepted: {stdout}");
    assert!(
        stderr.contains("lbd runs generic XDP on eth0")
            && stderr.contains("198.18.0.100:9000/tcp (nat)"),
        "{stdout}{stderr}"
    );
    assert_eq!(vips(&lab), dsr_only, "nothing changed");

    // What generic XDP can serve still goes in.
    let dsr_vip = format!("{VIP4}:81");
    lbctl_ok(
        &lab,
        &[
            "vip",
            "add",
            &dsr_vip,
            "--forwarding",
            "dsr-l2",
            "--backend",
            &R2.to_string(),
        ],
    );
    assert_eq!(vips(&lab).len(), 2);
    assert_eq!(status(&lab).xdp_mode, Some(XdpMode::Generic));
}
