//! The NAT mode's test bed: the real object, loaded and filled by the real
//! control plane (`forwarding = "nat"`), run with BPF_PROG_TEST_RUN from a
//! thread inside a network namespace of its own, because the program's FIB
//! lookups see the caller's namespace. The namespace holds two veth
//! interfaces with routes, permanent neighbour entries and forwarding on:
//! `in0` (the clients' network, also one same-interface backend) and
//! `out0` (the backends' network, and a gateway with no neighbour entry).
//! Benchmarking addresses only; the namespace goes away on drop (and with
//! the lab's sweep if the run is killed: its name has the lab prefix).

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{anyhow, Context as _};
use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{
    consts::{names, AF_INET, NAT_FLOWS_SIZE_DEFAULT},
    FlowKey, NatEntry,
};
use lb_userspace::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::{Dataplane, LoadOptions, MapSizes},
    reconcile::Balancer,
};

use crate::{
    lab::{output, run},
    packet::{self, Flow, Tcp, CLIENT_MAC, LB_MAC},
    testbed::{self, Hook, TestBed},
};

/// The clients' interface (ingress of forward packets).
pub const IN_DEV: &str = "in0";
/// The backends' interface (ingress of replies).
pub const OUT_DEV: &str = "out0";
/// MAC of `in0` (the MAC crafted frames are sent to).
pub const IN_MAC: [u8; 6] = LB_MAC;
/// MAC of `out0`.
pub const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x01];
/// The client of the crafted flows (IPv4), a neighbour on `in0`.
pub const CLIENT4: &str = "198.18.0.10";
/// The client (IPv6).
pub const CLIENT6: &str = "2001:2::10";
/// NAT address of the IPv4 VIPs (on the backends' side).
pub const NAT4: &str = "198.19.1.100";
/// NAT address of the IPv6 VIPs.
pub const NAT6: &str = "2001:2:0:1::100";
/// Backends on `out0` (IPv4), neighbours with MACs `be:11`, `be:12`, `be:13`.
pub const BACKENDS4: [&str; 3] = ["198.19.1.11", "198.19.1.12", "198.19.1.13"];
/// Backends on `out0` (IPv6), MACs `be:61`, `be:62`, `be:63`.
pub const BACKENDS6: [&str; 3] = ["2001:2:0:1::11", "2001:2:0:1::12", "2001:2:0:1::13"];
/// A backend on the clients' interface (same-interface next hop), MAC `be:50`.
pub const SAME_IF4: &str = "198.18.0.50";
/// The same, IPv6.
pub const SAME_IF6: &str = "2001:2::50";
/// A backend behind a gateway whose neighbour entry is missing.
pub const BEHIND_GATEWAY4: &str = "198.19.2.11";
/// The same, IPv6.
pub const BEHIND_GATEWAY6: &str = "2001:2:0:2::11";
/// That gateway (IPv4).
pub const GATEWAY4: &str = "198.19.1.254";
/// That gateway (IPv6).
pub const GATEWAY6: &str = "2001:2:0:1::254";
/// A backend no route leads to (IPv4).
pub const UNROUTED4: &str = "198.19.200.11";
/// The same, IPv6.
pub const UNROUTED6: &str = "2001:2:0:200::11";

/// The MAC of a neighbour the namespace knows, by address.
pub fn neighbour_mac(address: &str) -> Option<[u8; 6]> {
    let last = match address {
        CLIENT4 | CLIENT6 => return Some(CLIENT_MAC),
        "198.19.1.11" => 0x11,
        "198.19.1.12" => 0x12,
        "198.19.1.13" => 0x13,
        "2001:2:0:1::11" => 0x61,
        "2001:2:0:1::12" => 0x62,
        "2001:2:0:1::13" => 0x63,
        SAME_IF4 | SAME_IF6 => 0x50,
        _ => return None,
    };
    Some([0x02, 0, 0, 0, 0xbe, last])
}

/// Sequence of namespaces this process made (names stay unique).
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with the bed's interfaces, routes and neighbours;
/// deleted on drop.
pub struct FibNetns {
    /// Its name (`lbt<pid>n<seq>-natfib`, the lab's sweepable prefix).
    pub name: String,
}

impl FibNetns {
    /// Creates and configures it.
    pub fn new() -> anyhow::Result<Self> {
        let seq = 9000 + SEQ.fetch_add(1, Ordering::Relaxed);
        let netns = Self {
            name: format!("lbt{}n{seq}-natfib", std::process::id()),
        };
        run("ip", &["netns", "add", &netns.name])?;
        netns.configure()?;
        Ok(netns)
    }

    fn configure(&self) -> anyhow::Result<()> {
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let (in_mac, out_mac) = (mac(IN_MAC), mac(OUT_MAC));
        let mut commands: Vec<Vec<String>> = vec![vec!["link", "set", "lo", "up"]
            .into_iter()
            .map(String::from)
            .collect()];
        let mut add = |args: &[&str]| commands.push(args.iter().map(|s| s.to_string()).collect());
        add(&[
            "link", "add", IN_DEV, "address", &in_mac, "type", "veth", "peer", "name", "in0p",
        ]);
        add(&[
            "link", "add", OUT_DEV, "address", &out_mac, "type", "veth", "peer", "name", "out0p",
        ]);
        for dev in [IN_DEV, "in0p", OUT_DEV, "out0p"] {
            add(&["link", "set", dev, "up"]);
        }
        add(&["addr", "add", "198.18.0.1/24", "dev", IN_DEV]);
        add(&["addr", "add", "2001:2::1/64", "dev", IN_DEV, "nodad"]);
        add(&["addr", "add", "198.19.1.1/24", "dev", OUT_DEV]);
        add(&["addr", "add", "2001:2:0:1::1/64", "dev", OUT_DEV, "nodad"]);
        add(&["route", "add", "198.19.2.0/24", "via", GATEWAY4]);
        add(&["-6", "route", "add", "2001:2:0:2::/64", "via", GATEWAY6]);
        for address in [CLIENT4, CLIENT6, SAME_IF4, SAME_IF6]
            .into_iter()
            .map(|a| (a, IN_DEV))
            .chain(BACKENDS4.into_iter().chain(BACKENDS6).map(|a| (a, OUT_DEV)))
        {
            let (address, dev) = address;
            let lladdr = mac(neighbour_mac(address).expect("known neighbour"));
            add(&[
                "neigh",
                "add",
                address,
                "lladdr",
                &lladdr,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        for args in &commands {
            let mut full = vec!["-n", self.name.as_str()];
            full.extend(args.iter().map(String::as_str));
            run("ip", &full)?;
        }
        for key in [
            "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding",
        ] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.name,
                    "sysctl",
                    "-qw",
                    &format!("{key}=1"),
                ],
            )?;
        }
        Ok(())
    }

    /// The index of interface `dev` in the namespace.
    pub fn ifindex(&self, dev: &str) -> anyhow::Result<u32> {
        let out = output("ip", &["-n", &self.name, "-o", "link", "show", "dev", dev])?;
        out.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| anyhow!("no ifindex in {out:?}"))
    }

    /// Runs `f` on a thread inside the namespace (BPF_PROG_TEST_RUN's FIB
    /// lookups and the devmap's interface lookups use the caller's).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::lab::in_netns(&self.name, f)
    }
}

impl Drop for FibNetns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A NAT VIP: `backends` as (address, port), the NAT address `source`
/// with source ports `ports`.
pub fn nat_vip(
    address: &str,
    port: u16,
    protocol: Protocol,
    backends: &[(&str, Option<u16>)],
    source: &str,
    ports: (u16, u16),
) -> VipConfig {
    let mut vip = testbed::vip(
        address,
        port,
        protocol,
        backends
            .iter()
            .map(|(a, p)| BackendConfig {
                port: *p,
                ..BackendConfig::new(a.parse().expect("test backend address"))
            })
            .collect(),
    );
    vip.forwarding = lb_common::Mode::Nat;
    vip.nat = Some(VipNat {
        source: source.parse().expect("test NAT address"),
        own_source: true,
        port_min: ports.0,
        port_max: ports.1,
    });
    vip
}

/// The raw verdicts of a hook, by meaning.
#[derive(Debug, Clone, Copy)]
pub struct Verdicts {
    /// Up the stack.
    pub pass: u32,
    /// Dropped.
    pub drop: u32,
    /// Out of the ingress interface.
    pub bounce: u32,
    /// Out of another interface.
    pub redirect: u32,
}

impl Verdicts {
    /// Those of `hook` (tc cannot tell a bounce from a redirect: both are
    /// `bpf_redirect`; the MACs of the output tell them apart).
    pub fn of(hook: Hook) -> Self {
        match hook {
            Hook::Xdp => Verdicts {
                pass: 2,
                drop: 1,
                bounce: 3,
                redirect: 4,
            },
            Hook::Tc => Verdicts {
                pass: crate::testbed::tc_action::PASS,
                drop: 2,
                bounce: 7,
                redirect: 7,
            },
        }
    }
}

/// A test bed for NAT VIPs inside a `FibNetns` (create it on the
/// namespace's thread).
pub struct NatBed {
    /// The loaded data plane and its control plane.
    pub bed: TestBed,
    /// Index of `in0`.
    pub in_if: u32,
    /// Index of `out0`.
    pub out_if: u32,
    /// The hook's verdicts.
    pub verdicts: Verdicts,
    /// tc: `run_on` runs every frame as a CHECKSUM_COMPLETE skb
    /// (`run_tc_checksum_complete`).
    pub checksum_complete: bool,
    /// While Some, every `run_on`'s (verdict, frame afterwards), in order.
    pub recorded: Option<Vec<(u32, Vec<u8>)>>,
}

/// `BPF_PROG_TEST_RUN`'s command number.
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// Its flag making a tc program's skb CHECKSUM_COMPLETE (Linux 6.11).
const BPF_F_TEST_SKB_CHECKSUM_COMPLETE: u32 = 1 << 2;

/// `union bpf_attr` as `BPF_PROG_TEST_RUN` reads it (`test`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

impl NatBed {
    /// Loads the object, applies `vips` and lets the XDP program redirect
    /// to both interfaces (as lbd does for every interface).
    pub fn new(hook: Hook, vips: &[VipConfig], in_if: u32, out_if: u32) -> anyhow::Result<Self> {
        Self::with_flow_table(hook, vips, in_if, out_if, NAT_FLOWS_SIZE_DEFAULT)
    }

    /// As `new`, with a NAT flow table of `nat_flows` entries.
    pub fn with_flow_table(
        hook: Hook,
        vips: &[VipConfig],
        in_if: u32,
        out_if: u32,
        nat_flows: u32,
    ) -> anyhow::Result<Self> {
        let sizes = MapSizes {
            max_vips: 4,
            conntrack: 4096,
            nat_flows,
            half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
        };
        Self::with_sizes(hook, vips, in_if, out_if, sizes)
    }

    /// As `new`, with maps of `sizes`.
    pub fn with_sizes(
        hook: Hook,
        vips: &[VipConfig],
        in_if: u32,
        out_if: u32,
        sizes: MapSizes,
    ) -> anyhow::Result<Self> {
        Self::with_options(hook, vips, (in_if, out_if), sizes, &LoadOptions::default())
    }

    /// As `with_sizes`, loaded with `options` (e.g. pinned).
    pub fn with_options(
        hook: Hook,
        vips: &[VipConfig],
        (in_if, out_if): (u32, u32),
        sizes: MapSizes,
        options: &LoadOptions,
    ) -> anyhow::Result<Self> {
        let mut bed = TestBed::with_sizes(vips, hook, sizes, options)?;
        for ifindex in [in_if, out_if] {
            bed.dataplane.nat_mut().add_tx_port(ifindex)?;
        }
        Ok(Self {
            bed,
            in_if,
            out_if,
            verdicts: Verdicts::of(hook),
            checksum_complete: false,
            recorded: None,
        })
    }

    /// A data plane loaded with `options` whose pins a previous one left
    /// (its VIPs, backends and redirect targets adopted, nothing applied),
    /// as a restarted or upgraded lbd finds it.
    pub fn adopting(
        hook: Hook,
        (in_if, out_if): (u32, u32),
        sizes: MapSizes,
        options: &LoadOptions,
    ) -> anyhow::Result<Self> {
        let dataplane = Dataplane::load_with(sizes, &hook.load_options(options))
            .context("loading the object (are you root?)")?;
        Ok(Self {
            bed: TestBed {
                dataplane,
                balancer: Balancer::new(sizes.max_vips),
                hook,
            },
            in_if,
            out_if,
            verdicts: Verdicts::of(hook),
            checksum_complete: false,
            recorded: None,
        })
    }

    /// Runs the program once on `frame` as if it came in on `ifindex`:
    /// (raw verdict, frame afterwards).
    pub fn run_on(&mut self, ifindex: u32, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let ran = if self.checksum_complete && self.bed.hook == Hook::Tc {
            self.run_tc_checksum_complete(ifindex, frame)?
        } else {
            self.run_plain(ifindex, frame)?
        };
        if let Some(recorded) = &mut self.recorded {
            recorded.push(ran.clone());
        }
        Ok(ran)
    }

    /// `run_on` through aya's test run.
    fn run_plain(&mut self, ifindex: u32, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let xdp_md: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        // struct __sk_buff up to `ifindex` (offset 40): all else zero.
        let mut skb = vec![0u8; 44];
        skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let hook = self.bed.hook;
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(match hook {
                Hook::Xdp => &xdp_md,
                Hook::Tc => &skb,
            }),
            ..TestRunOptions::default()
        };
        let result = match hook {
            Hook::Xdp => self
                .bed
                .dataplane
                .program(names::PROG_LB)?
                .test_run(options),
            Hook::Tc => self.bed.dataplane.tc_program()?.test_run(options),
        }
        .context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Runs the tc program once on `frame` as a CHECKSUM_COMPLETE skb
    /// that came in on `ifindex`: (raw verdict, frame afterwards). The
    /// kernel sets `skb->csum` to the sum of the packet from the IP header
    /// on and fails the run (EBADMSG) if it no longer is that afterwards.
    /// A raw `BPF_PROG_TEST_RUN`: aya's options have no flags.
    pub fn run_tc_checksum_complete(
        &mut self,
        ifindex: u32,
        frame: &[u8],
    ) -> anyhow::Result<(u32, Vec<u8>)> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff up to `ifindex` (offset 40), as `run_on`.
        let mut skb = [0u8; 44];
        skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let program = self.bed.dataplane.tc_program()?;
        let fd = program.fd()?.as_fd().as_raw_fd();
        let mut attr = TestRunAttr {
            prog_fd: u32::try_from(fd)?,
            data_size_in: u32::try_from(frame.len())?,
            data_size_out: u32::try_from(out.len())?,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ctx_size_in: u32::try_from(skb.len())?,
            ctx_in: skb.as_ptr() as u64,
            flags: BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
            ..TestRunAttr::default()
        };
        // SAFETY: the attribute is the kernel's layout, every pointer in
        // it lives (with the size given) until the call returns.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error())
                .context("BPF_PROG_TEST_RUN of a CHECKSUM_COMPLETE skb");
        }
        out.truncate(attr.data_size_out as usize);
        Ok((attr.retval, out))
    }

    /// Runs the tc program once on `frame` as a GSO skb (a GRO'd packet of
    /// `segs` segments of `gso_size` bytes of payload) that came in on
    /// `ifindex`: (raw verdict, frame afterwards). The test run sets the
    /// skb's segment size and count but no GSO type.
    pub fn run_tc_gso(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        gso_size: u32,
        segs: u32,
    ) -> anyhow::Result<(u32, Vec<u8>)> {
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff up to `gso_size` (offset 176).
        let mut skb = vec![0u8; 184];
        skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        skb[164..168].copy_from_slice(&segs.to_ne_bytes());
        skb[176..180].copy_from_slice(&gso_size.to_ne_bytes());
        let result = self
            .bed
            .dataplane
            .tc_program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&skb),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN of a GSO skb")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Every NAT flow entry.
    pub fn flows(&self) -> Vec<(FlowKey, NatEntry)> {
        self.bed.dataplane.nat().flows().collect()
    }

    /// Removes every NAT flow entry (as the reaper would).
    pub fn clear_flows(&mut self) -> anyhow::Result<()> {
        self.clear_flows_but(&std::collections::HashSet::new())
    }

    /// Removes every NAT flow entry but those of `kept`.
    pub fn clear_flows_but(
        &mut self,
        kept: &std::collections::HashSet<FlowKey>,
    ) -> anyhow::Result<()> {
        for (key, _) in self.flows() {
            if !kept.contains(&key) {
                self.bed.dataplane.nat_mut().remove_flow(&key)?;
            }
        }
        Ok(())
    }
}

/// The address `s` (tests' constants).
pub fn addr(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A client's flow to `vip`:`port` from `sport`: the bed's client of the
/// VIP's family, so its replies have a neighbour to go to.
pub fn client_flow(vip: &str, port: u16, sport: u16) -> Flow {
    let client = if vip.contains(':') { CLIENT6 } else { CLIENT4 };
    Flow {
        src: addr(client),
        dst: addr(vip),
        sport,
        dport: port,
    }
}

/// A frame of `flow`: TCP with `flags`, or UDP (`flags` unused).
pub fn frame(flow: &Flow, protocol: Protocol, flags: Tcp, payload: &[u8]) -> Vec<u8> {
    match protocol {
        Protocol::Tcp => packet::tcp(flow, flags, None, payload),
        Protocol::Udp => packet::udp(flow, None, payload),
    }
}

/// An address the maps keep as four words in network order (`FlowKey`,
/// `NatEntry`) and a family: the tests' own reading, apart from lbd's.
pub fn words_to_addr(words: [u32; 4], family: u8) -> IpAddr {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    if family == AF_INET {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        let array: [u8; 16] = bytes.try_into().expect("16 bytes");
        IpAddr::from(array)
    }
}
