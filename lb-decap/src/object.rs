//! The compiled decap object, embedded so lb-decap is a single file to
//! deploy.

/// The ELF object built from `lb-decap-ebpf` by build.rs, 8-byte aligned
/// as the ELF parser wants.
pub static DECAP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap-ebpf"));
