//! The loaded object a case runs on: its VIPs, its connection-table
//! design, the wrapper's restore and the timed runs; pinned to a CPU.

use lb_userspace::conntrack::table::FlowTable;

use super::*;

/// The wrapper's run counter (the varied field's value).
const MAP_BENCH_RUNS: &str = "BENCH_RUNS";

/// One loaded object with its VIPs, on one connection-table design.
pub(crate) struct Bench {
    pub(crate) dataplane: Dataplane,
    pub(crate) kind: ConntrackKind,
    balancer: Balancer,
    /// The object's half-open table, mapped again (see `clear_half_open`).
    half_open: FlowTable,
}

impl Bench {
    pub(crate) fn new(conntrack: u32, kind: ConntrackKind) -> anyhow::Result<Self> {
        let mut dataplane = Dataplane::load_with(
            MapSizes {
                max_vips: 4,
                conntrack,
                nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
                half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
            },
            &LoadOptions {
                conntrack_kind: kind,
                ..LoadOptions::default()
            },
        )
        .context("loading the XDP object (root needed)")?;
        dataplane.set_config(&LbConfig {
            iface_mac: LB_MAC,
            flags: 0,
            _pad: 0,
        })?;
        let vips = [vip4_tcp(), vip4_udp(), vip6_tcp()];
        let desired: Vec<DesiredVip> = vips
            .iter()
            .map(|v| DesiredVip::from_config(v, &|_| None))
            .collect();
        let mut balancer = Balancer::new(4);
        balancer.apply(&mut dataplane, &desired)?;
        // Loaded (verified) on first use, as every XDP program of the
        // object is.
        for program in [names::PROG_BENCH, names::PROG_SWAP] {
            dataplane
                .program(program)
                .with_context(|| format!("loading {program}"))?;
        }
        let half_open = crate::bench::tables::half_open_table(&mut dataplane)?;
        Ok(Self {
            dataplane,
            kind,
            balancer,
            half_open,
        })
    }

    pub(crate) fn counter(&self, counter: Counter) -> anyhow::Result<u64> {
        Ok(self
            .dataplane
            .counters()?
            .into_iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| v))
    }

    /// Points the wrapper at `target` with `frame` (varying the 32-bit
    /// field at `vary_offset` on every run when non-zero).
    pub(crate) fn prepare(
        &mut self,
        target: &'static str,
        frame: &[u8],
        vary_offset: u32,
    ) -> anyhow::Result<()> {
        let fd = self.dataplane.program(target)?.fd()?.try_clone()?;
        template::prepare(
            &mut self.dataplane,
            template::Wrapper::Xdp,
            &fd,
            frame,
            vary_offset,
        )
    }

    /// Runs the wrapper `repeat` times per round; ns per packet per round.
    pub(crate) fn measure(
        &mut self,
        frame: &[u8],
        repeat: u32,
        rounds: u32,
        expect_action: u32,
        fresh_table: bool,
    ) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::new();
        let mut data_out = vec![0u8; frame.len() + 256];
        for _ in 0..rounds {
            if fresh_table {
                self.empty()?;
            }
            let program: &mut Xdp = self.dataplane.program(names::PROG_BENCH)?;
            let result = program
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut data_out),
                    repeat,
                    ..TestRunOptions::default()
                })
                .context("BPF_PROG_TEST_RUN")?;
            if result.return_value != expect_action {
                bail!(
                    "the wrapper returned {} (expected {expect_action})",
                    result.return_value
                );
            }
            out.push(result.duration.as_nanos() as f64);
        }
        Ok(out)
    }

    /// `repeat` runs as one round, in batches of at most `batch` (see
    /// `batches`), each batch from an empty half-open table and, with
    /// `fresh_table`, an empty connection table (emptied between the
    /// timed runs, not timed): ns per packet over the round.
    pub(crate) fn measure_batched(
        &mut self,
        frame: &[u8],
        repeat: u32,
        batch: u32,
        expect_action: u32,
        fresh_table: bool,
    ) -> anyhow::Result<f64> {
        let mut timed = Vec::new();
        for runs in batches(repeat, batch) {
            if fresh_table {
                self.clear()?;
            }
            self.clear_half_open()?;
            let ns = self.measure(frame, runs, 1, expect_action, false)?;
            timed.push((runs, ns.first().copied().unwrap_or(f64::NAN)));
        }
        Ok(per_run(&timed))
    }

    /// Empties both tables: the connection table and the half-open one
    /// (where a SYN is held on the shared LRU, or on the bucket table
    /// when its buckets have no free way).
    pub(crate) fn empty(&mut self) -> anyhow::Result<()> {
        self.clear()?;
        self.clear_half_open()?;
        Ok(())
    }

    /// Empties the half-open table; how many flows it held.
    pub(crate) fn clear_half_open(&mut self) -> anyhow::Result<u64> {
        crate::bench::tables::empty(&self.half_open)
    }

    /// Empties both tables and fills the connection table again with the
    /// `count` flows of `prefill`: what a prefilled case starts from.
    /// Returns the flows the table holds then (checked to be `count`).
    pub(crate) fn refill(&mut self, count: u32) -> anyhow::Result<u64> {
        self.empty()?;
        self.prefill(count)?;
        let held = self.dataplane.flow_count();
        if held != u64::from(count) {
            bail!(
                "{}: {held} flows in the table after prefilling {count}",
                self.kind.label()
            );
        }
        Ok(held)
    }

    /// Empties the connection table; returns how many flows it held and
    /// the time taken (a userspace walk + delete, as expiry would do).
    pub(crate) fn clear(&mut self) -> anyhow::Result<(usize, std::time::Duration)> {
        let started = std::time::Instant::now();
        let keys: Vec<FlowKey> = self.dataplane.flows().map(|(k, _)| k).collect();
        for key in &keys {
            self.dataplane.remove_flow(key)?;
        }
        Ok((keys.len(), started.elapsed()))
    }

    /// Fills the connection table with `count` flows unrelated to the
    /// cases' packets.
    pub(crate) fn prefill(&mut self, count: u32) -> anyhow::Result<()> {
        // Seen now: a bucket table evicts long-idle flows first, and these
        // stand for live ones.
        let now = monotonic_ns();
        for i in 0..count {
            let key = FlowKey {
                // 198.19.0.0/16: benchmarking range (never sent anywhere).
                src: [
                    u32::from_ne_bytes([198, 19, (i >> 8) as u8, i as u8]),
                    0,
                    0,
                    0,
                ],
                dst: [u32::from_ne_bytes([198, 18, 0, 100]), 0, 0, 0],
                sport: ((i >> 16) as u16).to_be(),
                dport: 80u16.to_be(),
                proto: 6,
                family: 4,
                _pad: 0,
            };
            let entry = FlowEntry {
                backend_id: 1,
                backend_generation: 1,
                last_seen_ns: now,
                flags: 0,
                hash: 0,
            };
            self.dataplane.install_flow(&key, &entry)?;
        }
        Ok(())
    }
}

impl Bench {
    /// Puts guards in force on every VIP, through lbd's installer: global
    /// deny rules (198.18.66.0/24; 0.0.0.0/8, where the wrapper's varied
    /// IPv4 sources are), an allow list of each TCP VIP (198.18.0.0/16,
    /// 2001:2::/32) and limits per source and per prefix far above what
    /// the cases send, so every VIP packet runs the deny and allow lookups
    /// (or finds their verdict cached) and every new flow the token buckets.
    pub(crate) fn guard(&mut self) -> anyhow::Result<()> {
        self.set_guards(true)
    }

    /// Puts the bench's guards (see `guard`) in force (`on`) or takes
    /// every rule and limit off again.
    pub(super) fn set_guards(&mut self, on: bool) -> anyhow::Result<()> {
        use lb_userspace::guard::{AclRule, Action, Guard, GuardConfig, Limits, RateLimit, Scope};
        let vips: Vec<_> = self
            .balancer
            .vips()
            .iter()
            .map(|(id, v)| (*id, v.id))
            .collect();
        let mut guard = Guard::adopt(self.dataplane.guard(), GuardConfig::default())?;
        if !on {
            guard.apply(self.dataplane.guard_mut(), GuardConfig::default(), &vips, 4)?;
            return Ok(());
        }
        let rate = Some(RateLimit::new(1_000_000, Some(1_000_000), "bench")?);
        let mut config = GuardConfig::default();
        for denied in ["198.18.66.0/24", "0.0.0.0/8"] {
            config.acl.insert(AclRule {
                scope: Scope::Global,
                action: Action::Deny,
                source: denied.parse()?,
            });
        }
        for (vip, allowed) in [(vip4_tcp(), "198.18.0.0/16"), (vip6_tcp(), "2001:2::/32")] {
            config.acl.insert(AclRule {
                scope: Scope::Vip(lb_userspace::vip_id::VipId::of(&vip)),
                action: Action::Allow,
                source: allowed.parse()?,
            });
        }
        config.limits.insert(
            Scope::Global,
            Limits {
                source: rate,
                prefix: rate,
                ..Limits::default()
            },
        );
        guard.apply(self.dataplane.guard_mut(), config, &vips, 4)?;
        Ok(())
    }
}

impl Bench {
    /// The wrapper's run counter: the value the next varied run adds one
    /// to (so the flows a round creates follow from it).
    pub(crate) fn runs(&mut self) -> anyhow::Result<u32> {
        Ok(self.runs_map()?.get(&0, 0)?)
    }

    /// Sets the wrapper's run counter (to replay a round's flows).
    pub(crate) fn set_runs(&mut self, value: u32) -> anyhow::Result<()> {
        self.runs_map()?.set(0, value, 0)?;
        Ok(())
    }

    fn runs_map(&mut self) -> anyhow::Result<Array<&mut MapData, u32>> {
        let map = self
            .dataplane
            .ebpf_mut()
            .map_mut(MAP_BENCH_RUNS)
            .ok_or_else(|| anyhow!("no {MAP_BENCH_RUNS} map"))?;
        Ok(Array::try_from(map)?)
    }
}

/// `repeat` runs split into batches of at most `batch` (the last one
/// shorter), in order.
pub(crate) fn batches(repeat: u32, batch: u32) -> Vec<u32> {
    let batch = batch.max(1);
    let mut out = Vec::new();
    let mut left = repeat;
    while left > 0 {
        let runs = batch.min(left);
        out.push(runs);
        left -= runs;
    }
    out
}

/// ns per run over batches of (runs, ns per run): the total time over
/// the total runs (a short last batch weighs what its runs do).
pub(crate) fn per_run(batches: &[(u32, f64)]) -> f64 {
    let runs: f64 = batches.iter().map(|(n, _)| f64::from(*n)).sum();
    let total: f64 = batches.iter().map(|(n, ns)| f64::from(*n) * ns).sum();
    total / runs
}

/// CPUs the kernel may bring online (what per-CPU maps are sized for).
pub(crate) fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|text| {
            let last = text.trim().rsplit(['-', ',']).next()?.parse::<u32>().ok()?;
            Some(last + 1)
        })
        .unwrap_or(1)
}

/// Keeps this thread on one CPU, so per-CPU state (LRU free lists,
/// counters) is the same from round to round.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_coarse_ns` reads.
fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; the call only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
