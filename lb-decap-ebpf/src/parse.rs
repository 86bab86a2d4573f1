//! Bounds-checked access to the frame and the header constants both
//! halves of the parser (`outer`, `inner`) use.

/// Ethernet header length (untagged: see `outer` for VLANs).
pub const ETH_LEN: usize = 14;
/// Ethernet type of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Ethernet type of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
/// UDP header.
pub const UDP_LEN: usize = 8;
/// IPv4 "more fragments" flag and fragment offset bits of `frags`.
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// IPv4 fragment offset bits of `frags`.
pub const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// The one bounds-checked access to the frame, shared with the other
/// eBPF program of the workspace.
pub use lb_ebpf_frame::ptr_at;

/// An address as the maps key it, shared like `ptr_at`.
pub use lb_ebpf_frame::words;
