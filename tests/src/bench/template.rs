//! The benchmark wrappers' input, shared by the XDP and NAT benchmarks:
//! the packet `xdp_bench` / `tc_bench` restore before each run, and the
//! program they tail-call.

use anyhow::{anyhow, bail};
use aya::maps::{Array, MapData, ProgramArray};
use lb_common::{consts::names, BenchTemplate, BENCH_TEMPLATE_MAX};
use lb_userspace::dataplane::Dataplane;

/// Which wrapper runs the program under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapper {
    /// `xdp_bench` (tail-calls an XDP program).
    Xdp,
    /// `tc_bench` (tail-calls a tc program).
    Tc,
}

/// Points `wrapper` at `target_fd` with `frame` (varying the 32-bit field
/// at `vary_offset` on every run when non-zero).
pub fn prepare(
    dataplane: &mut Dataplane,
    wrapper: Wrapper,
    target_fd: &aya::programs::ProgramFd,
    frame: &[u8],
    vary_offset: u32,
) -> anyhow::Result<()> {
    if frame.len() > BENCH_TEMPLATE_MAX {
        bail!(
            "frame of {} bytes is over the template's {BENCH_TEMPLATE_MAX}",
            frame.len()
        );
    }
    let mut template = BenchTemplate {
        len: frame.len() as u32,
        vary_offset,
        ..BenchTemplate::default()
    };
    template.bytes[..frame.len()].copy_from_slice(frame);
    let ebpf = dataplane.ebpf_mut();
    let mut templates: Array<&mut MapData, BenchTemplate> = Array::try_from(
        ebpf.map_mut(names::MAP_BENCH_TEMPLATE)
            .ok_or_else(|| anyhow!("no {} map", names::MAP_BENCH_TEMPLATE))?,
    )?;
    templates.set(0, template, 0)?;
    let targets_name = match wrapper {
        Wrapper::Xdp => names::MAP_BENCH_TARGET,
        Wrapper::Tc => names::MAP_TC_BENCH_TARGET,
    };
    let mut targets: ProgramArray<&mut MapData> = ProgramArray::try_from(
        ebpf.map_mut(targets_name)
            .ok_or_else(|| anyhow!("no {targets_name} map"))?,
    )?;
    targets.set(0, target_fd, 0)?;
    Ok(())
}
