//! A service's weights in lbd's range (0..=MAX_WEIGHT) with their ratios
//! kept: small ones multiplied up, and ones above the range (keepalived
//! and nginx allow them) scaled down together.

use crate::config::MAX_WEIGHT;

/// How a service's weights become lbd's (0..=MAX_WEIGHT) keeping their
/// ratios: multiplied up while the largest fits (x100 at most), or all
/// scaled down together when the largest is above lbd's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scale {
    Up(u32),
    Down { top: u32 },
}

impl Scale {
    pub(super) fn new(top: u32) -> Self {
        if top > MAX_WEIGHT {
            Self::Down { top }
        } else {
            Self::Up((MAX_WEIGHT / top.max(1)).clamp(1, 100))
        }
    }

    /// `weight` in lbd's range; a nonzero one stays nonzero.
    pub(super) fn apply(self, weight: u32) -> u32 {
        match self {
            Self::Up(factor) => weight.saturating_mul(factor).min(MAX_WEIGHT),
            Self::Down { top } => {
                let scaled = (u64::from(weight) * u64::from(MAX_WEIGHT) + u64::from(top) / 2)
                    / u64::from(top);
                let scaled = u32::try_from(scaled).unwrap_or(MAX_WEIGHT).min(MAX_WEIGHT);
                if weight > 0 {
                    scaled.max(1)
                } else {
                    0
                }
            }
        }
    }
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Up(factor) => write!(f, "x{factor}"),
            Self::Down { top } => write!(f, "x{MAX_WEIGHT}/{top}, scaled down to lbd's range"),
        }
    }
}
