//! The tunnel modes' test bed: the NAT bed (`natbed`: the real object and
//! control plane, run inside a namespace with routes and neighbours for
//! the FIB) serving VIPs with `forwarding = "ipip"` / `"gue"`, plus what
//! only tunnels need: the node's `TUNNEL_CONFIG`, the per-backend hop
//! cache, and the health-check program `tc_hc_encap` run with an skb mark.

use std::net::IpAddr;

use anyhow::{anyhow, Context as _};
use aya::{
    maps::PerCpuArray,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use lb_common::{consts::names, tunnel::GUE_PORT_DEFAULT, Mode, TunnelConfig, TunnelHop};
use lb_userspace::{
    config::{BackendConfig, Protocol, VipConfig},
    dataplane::MapSizes,
    reconcile::VipId,
};

use crate::{
    natbed::{NatBed, Verdicts},
    testbed::{self, Hook},
};

/// IPv4 prefix of outer sources.
pub const SOURCE4: [u8; 4] = [198, 18, 200, 0];
/// Its length.
pub const SOURCE4_LEN: u8 = 24;
/// IPv6 prefix of outer sources.
pub const SOURCE6: &str = "2001:2:0:f0::";
/// Its length.
pub const SOURCE6_LEN: u8 = 64;

/// The node's tunnel settings in the bed: FIB lookups of health checks
/// start at `ifindex`.
pub fn config(ifindex: u32) -> TunnelConfig {
    let v6: std::net::Ipv6Addr = SOURCE6.parse().expect("prefix");
    let o = v6.octets();
    let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
    TunnelConfig {
        source_v6: [word(0), word(4), word(8), word(12)],
        source_v4: u32::from_ne_bytes(SOURCE4),
        gue_port: GUE_PORT_DEFAULT.to_be(),
        source_v4_len: SOURCE4_LEN,
        source_v6_len: SOURCE6_LEN,
        ifindex,
    }
}

/// A tunnelled VIP (`mode`: `Mode::Ipip` or `Mode::Gue`) with `backends`.
pub fn tunnel_vip(
    address: &str,
    port: u16,
    protocol: Protocol,
    backends: &[&str],
    mode: Mode,
) -> VipConfig {
    let mut vip = testbed::vip(
        address,
        port,
        protocol,
        backends
            .iter()
            .map(|a| BackendConfig::new(a.parse().expect("test backend address")))
            .collect(),
    );
    vip.forwarding = mode;
    vip
}

/// The NAT bed with the tunnel settings written.
pub struct TunnelBed {
    /// The bed (data plane, control plane, interfaces, verdicts).
    pub nat: NatBed,
    /// What `TUNNEL_CONFIG` holds.
    pub config: TunnelConfig,
}

impl TunnelBed {
    /// Loads the object, applies `vips`, writes the tunnel settings
    /// (health checks start at `in_if`) and loads `tc_hc_encap`.
    pub fn new(hook: Hook, vips: &[VipConfig], in_if: u32, out_if: u32) -> anyhow::Result<Self> {
        Self::with_sizes(hook, vips, in_if, out_if, Self::SIZES)
    }

    /// The tests' map sizes (a small connection table).
    pub const SIZES: MapSizes = MapSizes {
        max_vips: 16,
        conntrack: 4096,
        nat_flows: 1024,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    };

    /// `new` with maps of `sizes` (the benchmark's connection table holds
    /// a round's new flows).
    pub fn with_sizes(
        hook: Hook,
        vips: &[VipConfig],
        in_if: u32,
        out_if: u32,
        sizes: MapSizes,
    ) -> anyhow::Result<Self> {
        let mut nat = NatBed::with_sizes(hook, &[], in_if, out_if, sizes)?;
        let config = config(in_if);
        nat.bed.balancer.set_tunnel_config(config);
        nat.bed.apply(vips)?;
        // The balancer wrote TUNNEL_CONFIG with the VIPs.
        let ebpf = nat.bed.dataplane.ebpf_mut();
        let hc: &mut SchedClassifier = ebpf
            .program_mut(names::PROG_TC_HC_ENCAP)
            .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_HC_ENCAP))?
            .try_into()?;
        hc.load().context("loading tc_hc_encap")?;
        Ok(Self { nat, config })
    }

    /// The hook's raw verdicts.
    pub fn verdicts(&self) -> Verdicts {
        self.nat.verdicts
    }

    /// Runs the packet path on `frame` as if it came in on `ifindex`.
    pub fn run_on(&mut self, ifindex: u32, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        self.nat.run_on(ifindex, frame)
    }

    /// Runs the tc program on `frame` as a GSO skb (a GRO'd packet) of
    /// `segs` segments of `gso_size` payload bytes, come in on `ifindex`:
    /// (raw verdict, frame afterwards). BPF_PROG_TEST_RUN cannot set the
    /// GSO type, so the kernel's room helper refuses to wrap such an skb:
    /// only the MTU decision can be tested this way.
    pub fn run_tc_gso(
        &mut self,
        ifindex: u32,
        frame: &[u8],
        gso_size: u32,
        segs: u32,
    ) -> anyhow::Result<(u32, Vec<u8>)> {
        self.nat.run_tc_gso(ifindex, frame, gso_size, segs)
    }

    /// Runs `tc_hc_encap` on `frame` leaving with skb mark `mark`: (raw
    /// tc verdict, frame afterwards).
    pub fn run_hc(&mut self, frame: &[u8], mark: u32) -> anyhow::Result<(u32, Vec<u8>)> {
        let (verdict, out, _) = self.run_hc_marked(frame, mark)?;
        Ok((verdict, out))
    }

    /// `run_hc`, also returning the skb's mark afterwards.
    pub fn run_hc_marked(
        &mut self,
        frame: &[u8],
        mark: u32,
    ) -> anyhow::Result<(u32, Vec<u8>, u32)> {
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff up to `ifindex` (offset 40): the mark at 8.
        let mut skb = vec![0u8; 44];
        skb[8..12].copy_from_slice(&mark.to_ne_bytes());
        let program: &mut SchedClassifier = self
            .nat
            .bed
            .dataplane
            .ebpf_mut()
            .program_mut(names::PROG_TC_HC_ENCAP)
            .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_HC_ENCAP))?
            .try_into()?;
        // The whole struct comes back (the kernel refuses a shorter buffer).
        let mut skb_out = vec![0u8; 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&skb),
                ctx_out: Some(&mut skb_out),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN of tc_hc_encap")?;
        out.truncate(result.data_size_out as usize);
        let mark_after = u32::from_ne_bytes(skb_out[8..12].try_into()?);
        Ok((result.return_value, out, mark_after))
    }

    /// The id the control plane gave backend `address` of `vip`.
    pub fn backend_id(&self, vip: &VipConfig, address: IpAddr) -> anyhow::Result<u32> {
        let applied = self
            .nat
            .bed
            .balancer
            .vips()
            .get(&VipId::of(vip))
            .ok_or_else(|| anyhow!("VIP not applied"))?;
        applied
            .backends
            .get(&address)
            .map(|b| b.id)
            .ok_or_else(|| anyhow!("{address} is not a backend of the VIP"))
    }

    /// The address of backend id `id` of `vip`.
    pub fn backend_address(&self, vip: &VipConfig, id: u32) -> anyhow::Result<IpAddr> {
        let applied = self
            .nat
            .bed
            .balancer
            .vips()
            .get(&VipId::of(vip))
            .ok_or_else(|| anyhow!("VIP not applied"))?;
        applied
            .backends
            .iter()
            .find(|(_, b)| b.id == id)
            .map(|(a, _)| *a)
            .ok_or_else(|| anyhow!("no backend {id}"))
    }

    /// The cached next hops of backend `id`, one per CPU.
    pub fn hops(&mut self, id: u32) -> anyhow::Result<Vec<TunnelHop>> {
        let map: PerCpuArray<_, TunnelHop> = PerCpuArray::try_from(
            self.nat
                .bed
                .dataplane
                .ebpf_mut()
                .map(names::MAP_TUNNEL_HOPS)
                .ok_or_else(|| anyhow!("no {} map", names::MAP_TUNNEL_HOPS))?,
        )?;
        Ok(map.get(&id, 0)?.iter().copied().collect())
    }
}
