//! The compiled XDP object, embedded so lbd is a single file to deploy.

/// The ELF object built from `lb-ebpf` by build.rs, 8-byte aligned as the
/// ELF parser wants.
pub(crate) static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
