//! Bounds-checked access to the frame and the header constants both
//! halves of the parser (`outer`, `inner`) use.

/// IPv4 "more fragments" flag and fragment offset bits of `frags`.
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// IPv4 fragment offset bits of `frags`.
pub const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// The one bounds-checked access to the frame and the wire constants,
/// shared with the other eBPF program of the workspace (Ethernet lengths
/// are untagged: see `outer` for VLANs).
pub use lb_ebpf_frame::{ptr_at, ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, IPV6_LEN, UDP_LEN};

/// An address as the maps key it, shared like `ptr_at`.
pub use lb_ebpf_frame::words;
