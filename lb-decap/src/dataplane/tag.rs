//! Program tags: the kernel's hash of a program's instructions, which
//! tells this build's decap program from another build's (an upgrade).

use anyhow::{anyhow, Context as _};
use aya::Ebpf;
use lb_common::decap::names;

use super::load::{load_object, tc_program, xdp_program};
use crate::config::Attach;

/// The kernel's information on loaded program `id`.
pub(super) fn program_info(id: u32) -> anyhow::Result<aya::programs::ProgramInfo> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| anyhow!("program {id} is gone"))
}

/// The tag of loaded program `id`: the kernel's hash of its instructions
/// (map references zeroed), the same for every load of one build's
/// program and different for another build's.
pub fn program_tag(id: u32) -> anyhow::Result<u64> {
    Ok(program_info(id)?.tag())
}

/// The tag of this build's program for `attach` (loaded and verified for
/// the purpose, then dropped): what [`program_tag`] of an attached
/// program is compared with.
pub fn build_tag(attach: Attach) -> anyhow::Result<u64> {
    let mut ebpf = load_object()?;
    tag_of(&mut ebpf, attach)
}

/// A tag as bpftool prints it (16 hex digits).
pub fn format_tag(tag: u64) -> String {
    format!("{tag:016x}")
}

/// The tag of the program for `attach` in `ebpf` (loaded if not yet).
pub(super) fn tag_of(ebpf: &mut Ebpf, attach: Attach) -> anyhow::Result<u64> {
    let info = match attach {
        Attach::Xdp => xdp_program(ebpf, names::PROG_XDP_DECAP)?.info(),
        Attach::Tc => tc_program(ebpf, names::PROG_TC_DECAP)?.info(),
    };
    Ok(info
        .with_context(|| format!("reading this build's {} program", attach.name()))?
        .tag())
}
