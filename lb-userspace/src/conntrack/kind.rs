//! Which design backs the connection table. The default is the bucket
//! table (`lb_common::flow_table`): cheaper per new flow than the kernel's
//! shared LRU hash, and, with two candidate buckets per flow and twice the
//! configured size in slots, it keeps every live flow while it holds no
//! more than `conntrack_size` of them (docs/design/conntrack.md). The
//! kernel-map kinds stay loadable so the benchmark (`cargo xtask bench`,
//! BENCHMARKS.md) measures every design side by side, and so an lbd that
//! ran the shared LRU is upgraded from (`conntrack::legacy`). The program
//! carries both designs and runs the one lbd names in a
//! read-only global at load time (the verifier sees it as a constant and
//! prunes the other); the kernel-map kinds differ only in the map's type
//! and flags, rewritten in a copy of the object.

use std::borrow::Cow;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// `BPF_MAP_TYPE_HASH`.
const MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_LRU_HASH`.
const MAP_TYPE_LRU_HASH: u32 = 9;
/// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU instead of a shared one.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;
/// Offsets in aya-ebpf's `bpf_map_def` (all fields u32).
const DEF_TYPE: usize = 0;
const DEF_FLAGS: usize = 16;
const DEF_LEN: usize = 28;

/// The candidate map designs for the connection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConntrackKind {
    /// Buckets of eight ways in an array map, two candidate buckets per
    /// flow, claimed by compare-and-swap: no kernel lock or allocation per
    /// new flow; when both buckets are full the closed, expired, then
    /// half-open flows of the first go first, then its least recently
    /// seen. lbd's default.
    #[default]
    Buckets,
    /// One LRU list shared by all CPUs: the kernel evicts the least
    /// recently used flow when the table is full. lbd's default before
    /// the bucket table.
    Lru,
    /// One LRU list per CPU (`BPF_F_NO_COMMON_LRU`): less contention, but
    /// each CPU can only evict among the flows it inserted.
    LruPerCpu,
    /// A plain hash: nothing is evicted by the kernel, so inserts fail when
    /// the table is full until userspace expires idle flows.
    Hash,
}

impl ConntrackKind {
    /// Every kind, in report order.
    pub const ALL: [ConntrackKind; 4] = [Self::Buckets, Self::Lru, Self::LruPerCpu, Self::Hash];

    /// Whether the table is the kernel map `CONNTRACK` (else `FLOW_BUCKETS`).
    pub fn is_kernel_map(self) -> bool {
        self != Self::Buckets
    }

    /// The program's `CONNTRACK_DESIGN` for this kind.
    pub(crate) fn design(self) -> u32 {
        u32::from(self.is_kernel_map())
    }

    /// Short name for logs and reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Buckets => "buckets (8-way, CAS)",
            Self::Lru => "shared LRU",
            Self::LruPerCpu => "per-CPU LRU (BPF_F_NO_COMMON_LRU)",
            Self::Hash => "hash + userspace expiry",
        }
    }

    fn map_type_and_flags(self) -> (u32, u32) {
        match self {
            Self::Buckets | Self::Lru => (MAP_TYPE_LRU_HASH, 0),
            Self::LruPerCpu => (MAP_TYPE_LRU_HASH, BPF_F_NO_COMMON_LRU),
            Self::Hash => (MAP_TYPE_HASH, 0),
        }
    }
}

/// Why the object could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The object is not the ELF file we expect.
    #[error("reading the XDP object: {0}")]
    Elf(#[from] object::Error),
    /// The map's definition was not found where its symbol says.
    #[error("map {0}: definition not found in the object")]
    NotFound(String),
    /// The map is not the shared LRU hash the program was built with.
    #[error("map {name}: built as type {map_type} flags {flags:#x}, expected an LRU hash")]
    Unexpected {
        /// Which map.
        name: String,
        /// Its type in the object.
        map_type: u32,
        /// Its flags in the object.
        flags: u32,
    },
}

/// The object with map `name` turned into `kind` (borrowed unchanged for
/// the default).
pub(crate) fn patch<'a>(
    object: &'a [u8],
    name: &str,
    kind: ConntrackKind,
) -> Result<Cow<'a, [u8]>, PatchError> {
    if matches!(kind, ConntrackKind::Buckets | ConntrackKind::Lru) {
        return Ok(Cow::Borrowed(object));
    }
    let offset = definition_offset(object, name)?;
    let read = |at: usize| {
        let bytes: [u8; 4] = object[offset + at..offset + at + 4]
            .try_into()
            .unwrap_or_default();
        u32::from_le_bytes(bytes)
    };
    let (map_type, flags) = (read(DEF_TYPE), read(DEF_FLAGS));
    if map_type != MAP_TYPE_LRU_HASH || flags != 0 {
        return Err(PatchError::Unexpected {
            name: name.to_owned(),
            map_type,
            flags,
        });
    }
    let (new_type, new_flags) = kind.map_type_and_flags();
    let mut patched = object.to_vec();
    patched[offset + DEF_TYPE..offset + DEF_TYPE + 4].copy_from_slice(&new_type.to_le_bytes());
    patched[offset + DEF_FLAGS..offset + DEF_FLAGS + 4].copy_from_slice(&new_flags.to_le_bytes());
    Ok(Cow::Owned(patched))
}

/// File offset of the `bpf_map_def` of map `name`.
fn definition_offset(object: &[u8], name: &str) -> Result<usize, PatchError> {
    let file = object::File::parse(object)?;
    let not_found = || PatchError::NotFound(name.to_owned());
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .ok_or_else(not_found)?;
    let section = file.section_by_index(symbol.section_index().ok_or_else(not_found)?)?;
    let (start, size) = section.file_range().ok_or_else(not_found)?;
    let within = symbol.address();
    if within + DEF_LEN as u64 > size {
        return Err(not_found());
    }
    usize::try_from(start + within).map_err(|_| not_found())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ebpf_object::EBPF_OBJECT;
    use lb_common::consts::names;

    #[test]
    fn the_default_kinds_leave_the_object_alone() {
        for kind in [ConntrackKind::Buckets, ConntrackKind::Lru] {
            let out = patch(EBPF_OBJECT, names::MAP_CONNTRACK, kind).expect("patch");
            assert!(matches!(out, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn other_kinds_change_only_type_and_flags_of_the_connection_table() {
        let offset = definition_offset(EBPF_OBJECT, names::MAP_CONNTRACK).expect("offset");
        for kind in [ConntrackKind::LruPerCpu, ConntrackKind::Hash] {
            let out = patch(EBPF_OBJECT, names::MAP_CONNTRACK, kind).expect("patch");
            let (map_type, flags) = kind.map_type_and_flags();
            assert_eq!(out[offset..offset + 4], map_type.to_le_bytes());
            assert_eq!(out[offset + 16..offset + 20], flags.to_le_bytes());
            let changed: Vec<usize> = (0..out.len())
                .filter(|&i| out[i] != EBPF_OBJECT[i])
                .collect();
            assert!(changed
                .iter()
                .all(|&i| (offset..offset + 4).contains(&i)
                    || (offset + 16..offset + 20).contains(&i)));
        }
    }

    #[test]
    fn a_map_that_is_not_an_lru_hash_is_refused() {
        let error = patch(EBPF_OBJECT, names::MAP_VIPS, ConntrackKind::Hash).expect_err("refused");
        assert!(matches!(error, PatchError::Unexpected { .. }), "{error}");
        let error = patch(EBPF_OBJECT, "NO_SUCH_MAP", ConntrackKind::Hash).expect_err("refused");
        assert!(matches!(error, PatchError::NotFound(_)), "{error}");
    }
}
