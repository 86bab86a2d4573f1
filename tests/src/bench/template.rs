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

/// What the wrappers change in the frame on every run (`BenchTemplate`'s
/// `vary_offset` and `vary_port_offset`; 0: nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vary {
    /// Offset of a 32-bit field that gets the run's number.
    pub offset: u32,
    /// Offset of a 16-bit port that gets `BenchTemplate::varied_port` of
    /// it (only with `offset`).
    pub port_offset: u32,
}

impl From<u32> for Vary {
    /// The 32-bit field at `offset` only.
    fn from(offset: u32) -> Self {
        Vary {
            offset,
            port_offset: 0,
        }
    }
}

impl Vary {
    /// Applies run `run`'s values to `frame` as the wrappers do (for
    /// runs made without them).
    pub fn apply(self, frame: &mut [u8], run: u32) {
        let at = self.offset as usize;
        if at == 0 || at + 4 > frame.len() {
            return;
        }
        frame[at..at + 4].copy_from_slice(&run.to_be_bytes());
        let port_at = self.port_offset as usize;
        if port_at != 0 && port_at + 2 <= frame.len() {
            frame[port_at..port_at + 2]
                .copy_from_slice(&BenchTemplate::varied_port(run).to_be_bytes());
        }
    }
}

/// Points `wrapper` at `target_fd` with `frame`, varied on every run as
/// `vary` says.
pub fn prepare(
    dataplane: &mut Dataplane,
    wrapper: Wrapper,
    target_fd: &aya::programs::ProgramFd,
    frame: &[u8],
    vary: impl Into<Vary>,
) -> anyhow::Result<()> {
    let vary = vary.into();
    if frame.len() > BENCH_TEMPLATE_MAX {
        bail!(
            "frame of {} bytes is over the template's {BENCH_TEMPLATE_MAX}",
            frame.len()
        );
    }
    let mut template = BenchTemplate {
        len: frame.len() as u32,
        vary_offset: vary.offset,
        vary_port_offset: vary.port_offset,
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
