//! The address an instance's adverts go from: which of the interface's
//! addresses may be one (never a VIP, NAT or instance address, nor a
//! tentative, DAD-failed, deprecated or temporary one), picked at start,
//! checked at every look and followed when it moves or goes.
//!
//! Here: the kinds of source (`kind`), which addresses may be one
//! (`eligibility`), the pick at start (`start`), the check of the current
//! one (`check`), following it in the driver (`follow`), and the message
//! when there is none (`no_source`).

mod check;
mod eligibility;
mod follow;
mod kind;
mod no_source;
mod start;

pub(super) use eligibility::never_sources;
pub(super) use follow::{source_may_be_stale, source_recheck_due};
pub(super) use kind::SourceKind;
pub(super) use start::{open_socket, source_address};

#[cfg(test)]
mod tests;
