//! The hook the decap program runs at with `attach = "xdp"`: native XDP,
//! else tc ingress, never generic XDP (it would leave a stale hardware
//! checksum). A pure decision, apart from the attaching that follows it.

use anyhow::bail;

use crate::config::{Attach, XdpMode};

/// Why `xdp_mode = "generic"` is refused (by the config's validation and
/// by `apply`), with the ways out.
pub const GENERIC_REFUSED: &str = "xdp_mode = \"generic\" is refused: generic (skb) XDP only moves the start of the packet past the removed outer header and leaves the skb's checksum state alone, so where the NIC delivers a hardware checksum (CHECKSUM_COMPLETE) it still covers the removed bytes after an IP6IP6, 4in6 or GUE unwrap (the kernel logs \"hw csum failure\" and checksums every such packet again in software). Use xdp_mode = \"auto\" (native XDP, else the tc hook) or attach = \"tc\" (the same unwrap at tc ingress, where the kernel's helper keeps the checksum right)";

/// Where the decap program runs with `attach = "xdp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookChoice {
    /// Native XDP (with `xdp_mode = "native"` whether or not it attached:
    /// a failure is the error).
    Native,
    /// `auto` without native XDP: tc ingress, the same unwrap.
    Tc,
    /// `generic`: refused ([`GENERIC_REFUSED`]), nothing attached.
    Refuse,
}

/// The hook for `mode`, given whether native XDP attached
/// (`native_attached`; only `auto` asks). Never generic XDP: it would
/// unwrap without fixing the skb's hardware checksum (see
/// [`GENERIC_REFUSED`]), so `auto` falls back to tc ingress, whose
/// `bpf_skb_adjust_room` keeps it right.
pub fn choose_hook(mode: XdpMode, native_attached: bool) -> HookChoice {
    match mode {
        XdpMode::Native => HookChoice::Native,
        XdpMode::Auto if native_attached => HookChoice::Native,
        XdpMode::Auto => HookChoice::Tc,
        XdpMode::Generic => HookChoice::Refuse,
    }
}

/// Refuses `xdp_mode = "generic"` with `attach = "xdp"` (with tc, the
/// config's validation refuses any mode but "auto").
pub fn refuse_generic(attach: Attach, mode: XdpMode) -> anyhow::Result<()> {
    if attach == Attach::Xdp && choose_hook(mode, false) == HookChoice::Refuse {
        bail!(GENERIC_REFUSED);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision `apply` follows with `attach = "xdp"`: `auto` without
    /// native XDP goes to tc ingress, never generic XDP (before, it fell
    /// back to generic and `generic` attached as asked, leaving a stale
    /// hardware checksum after each unwrap); `generic` is refused.
    #[test]
    fn generic_xdp_is_never_chosen() {
        use XdpMode::{Auto, Generic, Native};
        assert_eq!(choose_hook(Auto, true), HookChoice::Native);
        assert_eq!(choose_hook(Auto, false), HookChoice::Tc);
        // Asked for: a failure to attach is the error, not a fallback.
        assert_eq!(choose_hook(Native, true), HookChoice::Native);
        assert_eq!(choose_hook(Native, false), HookChoice::Native);
        assert_eq!(choose_hook(Generic, true), HookChoice::Refuse);
        assert_eq!(choose_hook(Generic, false), HookChoice::Refuse);
        let error = refuse_generic(Attach::Xdp, Generic).expect_err("refused");
        assert_eq!(error.to_string(), GENERIC_REFUSED);
        for mode in [Auto, Native] {
            refuse_generic(Attach::Xdp, mode).expect("not refused");
        }
        // With tc the config's validation refuses any mode but "auto".
        refuse_generic(Attach::Tc, Generic).expect("not the XDP refusal");
    }
}
