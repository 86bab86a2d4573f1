//! Loading the decap object and its programs into the kernel (the
//! verifier runs here), and the one object an apply loads, maps filled,
//! before any link is touched.

use anyhow::{anyhow, Context as _};
use aya::{
    maps::Map,
    programs::{SchedClassifier, Xdp},
    Ebpf,
};

use super::tag::tag_of;
use crate::{
    config::{Attach, Settings},
    maps::{Maps, MAP_COUNT},
    object::DECAP_OBJECT,
};

/// Loads the embedded object (programs not yet loaded into the kernel,
/// maps created, nothing pinned or attached): for `apply`, the tests and
/// the benchmark.
pub fn load_object() -> anyhow::Result<Ebpf> {
    load_bytes(DECAP_OBJECT)
}

/// [`load_object`] of the object `object`.
fn load_bytes(object: &[u8]) -> anyhow::Result<Ebpf> {
    Ebpf::load(object)
        .context("loading the decap object (root, or CAP_BPF and CAP_NET_ADMIN, needed)")
}

/// The XDP decap program of `ebpf`, loaded into the kernel.
pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the decap object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    if program.fd().is_err() {
        program
            .load()
            .with_context(|| format!("loading {name} (the verifier's log says why)"))?;
    }
    Ok(program)
}

/// The tc decap program of `ebpf`, loaded into the kernel.
pub fn tc_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the decap object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a tc program"))?;
    if program.fd().is_err() {
        program
            .load()
            .with_context(|| format!("loading {name} (the verifier's log says why)"))?;
    }
    Ok(program)
}

/// The object loaded with its maps filled for the settings: everything
/// that can fail before a link is touched but the program's own load.
pub(super) struct Ready {
    pub(super) ebpf: Ebpf,
    pub(super) maps: [Map; MAP_COUNT],
}

impl Ready {
    fn load(settings: &Settings, object: &[u8]) -> anyhow::Result<Self> {
        let mut ebpf = load_bytes(object)?;
        let mut maps = crate::maps::take(&mut ebpf)?;
        Maps::borrowed(&mut maps)?.sync(settings)?;
        Ok(Self { ebpf, maps })
    }

    /// The tag of this object's program for `attach`.
    pub(super) fn tag(&mut self, attach: Attach) -> anyhow::Result<u64> {
        tag_of(&mut self.ebpf, attach)
    }
}

/// The object of this apply, loaded at its first use.
pub(super) fn loaded<'a>(
    ready: &'a mut Option<Ready>,
    settings: &Settings,
    object: &[u8],
) -> anyhow::Result<&'a mut Ready> {
    if ready.is_none() {
        *ready = Some(Ready::load(settings, object)?);
    }
    ready
        .as_mut()
        .ok_or_else(|| anyhow!("the decap object was not loaded"))
}
