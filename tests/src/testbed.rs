//! The real eBPF object, loaded and filled by the real control-plane code,
//! run on crafted frames with BPF_PROG_TEST_RUN at either hook (the XDP
//! program or the tc one): no network needed (root and a bpf()-capable
//! kernel are).

use std::net::IpAddr;

use anyhow::{anyhow, Context as _};
use aya::programs::{TestRun as _, TestRunOptions};
use lb_common::{
    consts::{names, FLOW_F_HALF_OPEN, IPPROTO_TCP, IPPROTO_UDP},
    hash::{flow_hash, maglev_hash},
    stats::Counter,
    FlowKey, LbConfig,
};
use lb_userspace::{
    config::{BackendConfig, Protocol, VipConfig},
    dataplane::{Dataplane, LoadOptions, MapSizes, MapWriter as _},
    mac::Mac,
    reconcile::{addr_words, Balancer, DesiredVip, VipId},
};

use crate::packet::{Flow, LB_MAC};

/// XDP verdicts as BPF_PROG_TEST_RUN returns them.
pub mod action {
    /// XDP_DROP.
    pub const DROP: u32 = 1;
    /// XDP_PASS.
    pub const PASS: u32 = 2;
    /// XDP_TX.
    pub const TX: u32 = 3;
}

/// tc verdicts as BPF_PROG_TEST_RUN returns them.
pub mod tc_action {
    /// TC_ACT_UNSPEC (-1, `TCX_NEXT`): up the stack, after the tcx
    /// programs attached behind ours. TC_ACT_OK (0) would end the tcx
    /// chain, so the programs' pass verdict is this one.
    pub const PASS: u32 = u32::MAX;
    /// TC_ACT_SHOT: dropped.
    pub const SHOT: u32 = 2;
    /// TC_ACT_REDIRECT: what `bpf_redirect` returns.
    pub const REDIRECT: u32 = 7;
}

/// Which of the two entry points of the one packet path a bed runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `xdp_lb`.
    Xdp,
    /// `tc_lb` (a tc ingress program; BPF_PROG_TEST_RUN builds an skb).
    Tc,
}

impl Hook {
    /// Both, for fixtures that must hold on each.
    pub const ALL: [Hook; 2] = [Hook::Xdp, Hook::Tc];

    /// The hook as lbd's config names it, whose program a bed's load
    /// verifies (`LoadOptions::hook`): a bed at tc never waits for
    /// `xdp_lb`'s verification, nor one at XDP for `tc_lb`'s.
    pub fn attach(self) -> lb_common::hook::Attach {
        match self {
            Hook::Xdp => lb_common::hook::Attach::Xdp,
            Hook::Tc => lb_common::hook::Attach::Tc,
        }
    }

    /// `options` with this hook's program verified at the load.
    pub fn load_options(self, options: &LoadOptions) -> LoadOptions {
        LoadOptions {
            hook: self.attach(),
            ..options.clone()
        }
    }

    /// The XDP action a raw verdict of this hook stands for, so one
    /// fixture table asserts both hooks; a tc code with no XDP
    /// counterpart is an error, never a guess.
    pub fn as_xdp_action(self, raw: u32) -> anyhow::Result<u32> {
        match self {
            Hook::Xdp => Ok(raw),
            Hook::Tc => match raw {
                tc_action::PASS => Ok(action::PASS),
                tc_action::SHOT => Ok(action::DROP),
                tc_action::REDIRECT => Ok(action::TX),
                other => Err(anyhow!("tc program returned {other}")),
            },
        }
    }
}

/// Whether BPF_PROG_TEST_RUN refuses (EINVAL) to build an skb from
/// `frame`, so the tc program cannot be run on it: a frame shorter than an
/// Ethernet header, or an untagged IPv4 or IPv6 frame too short for the
/// minimal IP header (found by trying every length on this 6.18 kernel; a
/// tagged frame of any length from 14 bytes is taken). XDP runs take any
/// frame of 14 bytes or more.
pub fn skb_refuses(frame: &[u8]) -> bool {
    let shortest = match frame.get(12..14) {
        Some([0x08, 0x00]) => 14 + 20,
        Some([0x86, 0xdd]) => 14 + 40,
        _ => 14,
    };
    frame.len() < shortest
}

/// A loaded data plane serving some VIPs.
pub struct TestBed {
    /// The data plane.
    pub dataplane: Dataplane,
    /// The control plane's view of it.
    pub balancer: Balancer,
    /// The entry point `run` uses.
    pub hook: Hook,
}

/// A backend for test configs: address and MAC.
pub fn backend(address: &str, mac_last_octet: u8, weight: u32) -> BackendConfig {
    BackendConfig {
        mac: Some(Mac([0x02, 0, 0, 0, 0xbe, mac_last_octet])),
        weight,
        ..BackendConfig::new(address.parse().expect("test backend address"))
    }
}

/// A VIP for test configs.
pub fn vip(
    address: &str,
    port: u16,
    protocol: Protocol,
    backends: Vec<BackendConfig>,
) -> VipConfig {
    VipConfig {
        backends,
        ..VipConfig::new(address.parse().expect("test VIP address"), port, protocol)
    }
}

impl TestBed {
    /// Instructions the verifier went through for the XDP and the tc
    /// program (the complexity the tests bound).
    pub fn verified_instructions(&mut self) -> (u32, u32) {
        let count = |info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>| {
            info.expect("program info")
                .verified_instruction_count()
                .expect("count")
        };
        let xdp = count(self.dataplane.program(names::PROG_LB).expect("xdp").info());
        let tc = count(self.dataplane.tc_program().expect("tc").info());
        (xdp, tc)
    }

    /// Loads the object (small maps) and applies `vips`; runs the XDP
    /// program.
    pub fn new(vips: &[VipConfig]) -> anyhow::Result<Self> {
        Self::with_hook(vips, Hook::Xdp)
    }

    /// As `new`, running the program of `hook`.
    pub fn with_hook(vips: &[VipConfig], hook: Hook) -> anyhow::Result<Self> {
        Self::with_conntrack(vips, hook, 4096)
    }

    /// As `with_hook`, with a connection table of `conntrack` flows.
    pub fn with_conntrack(vips: &[VipConfig], hook: Hook, conntrack: u32) -> anyhow::Result<Self> {
        Self::with_options(vips, hook, conntrack, &LoadOptions::default())
    }

    /// As `with_conntrack`, loaded with `options` (a table design, pins).
    pub fn with_options(
        vips: &[VipConfig],
        hook: Hook,
        conntrack: u32,
        options: &LoadOptions,
    ) -> anyhow::Result<Self> {
        let sizes = MapSizes {
            max_vips: 4,
            conntrack,
            nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
            half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
        };
        Self::with_sizes(vips, hook, sizes, options)
    }

    /// As `with_options`, with maps of `sizes` (a half-open table of
    /// another size).
    pub fn with_sizes(
        vips: &[VipConfig],
        hook: Hook,
        sizes: MapSizes,
        options: &LoadOptions,
    ) -> anyhow::Result<Self> {
        let mut dataplane = Dataplane::load_with(sizes, &hook.load_options(options))
            .context("loading the object (are you root?)")?;
        dataplane.set_config(&LbConfig {
            iface_mac: LB_MAC,
            flags: 0,
            _pad: 0,
        })?;
        let mut bed = Self {
            dataplane,
            balancer: Balancer::new(sizes.max_vips),
            hook,
        };
        bed.apply(vips)?;
        Ok(bed)
    }

    /// Applies a new desired state (MACs come from the configs).
    pub fn apply(&mut self, vips: &[VipConfig]) -> anyhow::Result<()> {
        let desired: Vec<DesiredVip> = vips
            .iter()
            .map(|v| DesiredVip::from_config(v, &|_| None))
            .collect();
        self.balancer.apply(&mut self.dataplane, &desired)?;
        Ok(())
    }

    /// Puts `guard` (deny/allow rules, limits) in force for the VIPs
    /// applied, through lbd's own installer (`guard` keeps what it wrote).
    pub fn set_guard(
        &mut self,
        guard: &mut Option<lb_userspace::guard::Guard>,
        config: lb_userspace::guard::GuardConfig,
    ) -> anyhow::Result<()> {
        if guard.is_none() {
            *guard = Some(lb_userspace::guard::Guard::adopt(
                self.dataplane.guard(),
                lb_userspace::guard::GuardConfig::default(),
            )?);
        }
        let vips: Vec<_> = self
            .balancer
            .vips()
            .iter()
            .map(|(id, vip)| (*id, vip.id))
            .collect();
        let max_vips = self.dataplane.sizes().max_vips;
        if let Some(guard) = guard {
            guard.apply(self.dataplane.guard_mut(), config, &vips, max_vips)?;
        }
        Ok(())
    }

    /// Runs the balancer once on `frame`: (XDP action, frame afterwards).
    /// At tc the verdict is translated (`Hook::as_xdp_action`).
    pub fn run(&mut self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let (raw, out) = self.run_raw(frame)?;
        Ok((self.hook.as_xdp_action(raw)?, out))
    }

    /// Runs the balancer once on `frame`: (the hook's own verdict, frame
    /// afterwards).
    pub fn run_raw(&mut self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let (raw, out, _) = self.run_repeated(frame, 1)?;
        Ok((raw, out))
    }

    /// Runs the balancer `repeat` times on `frame` in the kernel (the same
    /// buffer each time): (last verdict, frame afterwards, mean time per
    /// run as the kernel measured it — the program only, not the building
    /// of the skb or XDP buffer).
    pub fn run_repeated(
        &mut self,
        frame: &[u8],
        repeat: u32,
    ) -> anyhow::Result<(u32, Vec<u8>, std::time::Duration)> {
        let mut out = vec![0u8; frame.len() + 256];
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            repeat,
            ..TestRunOptions::default()
        };
        let result = match self.hook {
            Hook::Xdp => self.dataplane.program(names::PROG_LB)?.test_run(options),
            Hook::Tc => self.dataplane.tc_program()?.test_run(options),
        }
        .context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out, result.duration))
    }

    /// TCP handshakes the data plane holds (SYN seen, ACK not yet): SYNs
    /// the connection table took (`FLOW_F_HALF_OPEN`) and those held in
    /// the half-open table.
    pub fn handshakes(&self) -> u64 {
        let in_table = self
            .dataplane
            .flows()
            .filter(|(_, entry)| entry.flags & FLOW_F_HALF_OPEN != 0)
            .count() as u64;
        in_table + self.dataplane.half_open_count()
    }

    /// The flow `flow` (of `protocol`) as a handshake: its entry, from
    /// the connection table (flagged `FLOW_F_HALF_OPEN`) or the half-open
    /// table.
    pub fn handshake(&self, key: &FlowKey) -> Option<lb_common::FlowEntry> {
        match self.dataplane.flow(key) {
            Ok(Some(entry)) if entry.flags & FLOW_F_HALF_OPEN != 0 => Some(entry),
            _ => self.dataplane.half_open_flow(key),
        }
    }

    /// Puts the data plane in SYN-flood mode (`CONFIG_F_SYN_FLOOD`: SYNs
    /// go to the half-open table alone) or takes it out, as lbd does.
    pub fn set_syn_flood(&mut self, flood: bool) -> anyhow::Result<()> {
        Ok(self.dataplane.set_syn_flood(flood)?)
    }

    /// Attaches the bed's `tc_lb` to `interface`'s ingress through a tcx
    /// link (held by the program: detached when the bed goes), for the
    /// live tc labs that send real frames through it.
    pub fn attach_tc_ingress(&mut self, interface: &str) -> anyhow::Result<()> {
        use aya::programs::{tc::TcAttachOptions, LinkOrder, TcAttachType};
        self.dataplane
            .tc_program()?
            .attach_with_options(
                interface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .with_context(|| format!("attaching tc_lb to {interface} (tcx)"))?;
        Ok(())
    }

    /// A node counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self
            .dataplane
            .counters()?
            .into_iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, v)| v)
            .unwrap_or(0))
    }

    /// The id of the backend Maglev gives `flow` of `vip`, worked out here
    /// from the control plane's table and the shared flow hash.
    pub fn maglev_backend_id(&self, vip: &VipConfig, flow: &Flow) -> anyhow::Result<u32> {
        let applied = self
            .balancer
            .vips()
            .get(&VipId::of(vip))
            .ok_or_else(|| anyhow!("VIP not applied"))?;
        let table = applied
            .live_table()
            .ok_or_else(|| anyhow!("no live table"))?;
        let key = flow_key(flow, vip.protocol);
        let hash = maglev_hash(applied.affinity as u32, &key, flow_hash(&key));
        let slot = hash % applied.table_size;
        Ok(table[slot as usize])
    }

    /// The backend Maglev gives `flow` of `vip`, worked out here from the
    /// control plane's table and the shared flow hash: (address, MAC).
    pub fn maglev_backend(
        &self,
        vip: &VipConfig,
        flow: &Flow,
    ) -> anyhow::Result<(IpAddr, [u8; 6])> {
        let id = self.maglev_backend_id(vip, flow)?;
        let applied = self
            .balancer
            .vips()
            .get(&VipId::of(vip))
            .ok_or_else(|| anyhow!("VIP not applied"))?;
        let (address, _) = applied
            .backends
            .iter()
            .find(|(_, b)| b.id == id)
            .ok_or_else(|| anyhow!("Maglev names unknown backend {id}"))?;
        let mac = vip
            .backends
            .iter()
            .find(|b| b.address == *address)
            .and_then(|b| b.mac)
            .ok_or_else(|| anyhow!("backend {address} has no MAC in the config"))?;
        Ok((*address, mac.octets()))
    }
}

/// The connection-table key of a flow.
pub fn flow_key(flow: &Flow, protocol: Protocol) -> FlowKey {
    let (src, family) = addr_words(flow.src);
    let (dst, _) = addr_words(flow.dst);
    FlowKey {
        src,
        dst,
        sport: flow.sport.to_be(),
        dport: flow.dport.to_be(),
        proto: match protocol {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        },
        family,
        _pad: 0,
    }
}

/// The IPv4 VIP of the crafted-packet tests and benchmarks.
pub const VIP4: &str = "198.18.0.100";
/// The IPv6 VIP of the crafted-packet tests and benchmarks.
pub const VIP6: &str = "2001:2::100";

/// TCP :80 on `VIP4` with three backends (MACs ..:11, :12, :13).
pub fn vip4_tcp() -> VipConfig {
    vip(
        VIP4,
        80,
        Protocol::Tcp,
        vec![
            backend("198.18.0.11", 0x11, 100),
            backend("198.18.0.12", 0x12, 100),
            backend("198.18.0.13", 0x13, 100),
        ],
    )
}

/// UDP :53 on `VIP4`, same backends.
pub fn vip4_udp() -> VipConfig {
    let mut v = vip4_tcp();
    v.port = 53;
    v.protocol = Protocol::Udp;
    v
}

/// TCP :80 on `VIP6` with three backends.
pub fn vip6_tcp() -> VipConfig {
    vip(
        VIP6,
        80,
        Protocol::Tcp,
        vec![
            backend("2001:2::11", 0x61, 100),
            backend("2001:2::12", 0x62, 100),
            backend("2001:2::13", 0x63, 100),
        ],
    )
}

/// UDP :53 on `VIP6`, same backends as `vip6_tcp`.
pub fn vip6_udp() -> VipConfig {
    let mut v = vip6_tcp();
    v.port = 53;
    v.protocol = Protocol::Udp;
    v
}

/// Turns fixtures that take the hook into one test per hook (`xdp::name`,
/// `tc::name`), so a fixture cannot hold on one entry point and be
/// forgotten on the other. The calling file has `Hook` in scope.
#[macro_export]
macro_rules! on_both_hooks {
    ($($name:ident),+ $(,)?) => {
        mod xdp {
            $(#[test] fn $name() { super::$name(super::Hook::Xdp) })+
        }
        mod tc {
            $(#[test] fn $name() { super::$name(super::Hook::Tc) })+
        }
    };
}
