//! `xdp_mode = "generic"` against the VIPs it would serve: generic XDP
//! serves DSR-L2 VIPs only. A rule across the node's settings and the
//! VIPs, checked once both are known.

use crate::config::{checker::Checker, raw::RawConfig, Attach, ConfigError, VipConfig, XdpMode};

impl Checker<'_> {
    /// `xdp_mode = "generic"` serves DSR-L2 VIPs only: generic XDP may be
    /// handed partial-checksum and GSO skbs, which a NAT or tunnelled VIP's
    /// rewrite gets wrong (see `dataplane::hook_choice`). Refused here, so
    /// `lbctl config check` and a reload say so as lbd's start does.
    pub(super) fn generic_xdp_serves(
        &self,
        raw: &RawConfig,
        attach: Attach,
        xdp_mode: XdpMode,
        vips: &[VipConfig],
    ) -> Result<(), ConfigError> {
        let translating = crate::dataplane::Translating::of(vips);
        match &raw.xdp_mode {
            Some(value)
                if attach == Attach::Xdp && xdp_mode == XdpMode::Generic && translating.any() =>
            {
                Err(self.bad_value(
                    value,
                    "xdp_mode",
                    translating.refusal("xdp_mode = \"generic\" serves DSR-L2 VIPs only"),
                ))
            }
            _ => Ok(()),
        }
    }
}
