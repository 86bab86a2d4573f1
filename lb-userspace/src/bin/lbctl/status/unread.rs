//! The traffic counters lbd could not read: shown `-`, never as a count of
//! 0, in the plain tables and in `--watch` alike.

use lb_userspace::api::schema::{BackendStatus, Status, UnreadTraffic, VipStatus};

/// The traffic counters a status could not read: those its
/// `traffic_unread` names (an older lbd's only mark), and those marked
/// `traffic_read: false` themselves (as `GET /v1/vips/...` answers carry
/// them, counters and marks in one answer). They show 0 there, which is
/// no count.
#[derive(Clone, Copy)]
pub(super) struct Unread<'a>(pub(super) &'a UnreadTraffic);

impl Unread<'_> {
    /// Whether `vip`'s counters were read.
    pub(super) fn vip(&self, vip: &VipStatus) -> bool {
        vip.traffic_read && !self.0.vips.contains(&vip.vip)
    }

    /// Whether the counters of VIP `vip`'s backend `b` were read.
    pub(super) fn backend(&self, vip: &str, b: &BackendStatus) -> bool {
        b.traffic_read
            && !self
                .0
                .backends
                .iter()
                .any(|(v, a)| v == vip && *a == b.address)
    }
}

/// Whether some traffic counter of `status` was not read (the tables
/// then end with a note on what their `-` means).
pub(super) fn any_unread(status: &Status) -> bool {
    !status.traffic_unread.is_empty()
        || status
            .vips
            .iter()
            .any(|v| !v.traffic_read || v.backends.iter().any(|b| !b.traffic_read))
}

/// A counter as the tables show it: `-` when it was not read.
pub(super) fn counter(value: u64, read: bool) -> String {
    if read {
        value.to_string()
    } else {
        "-".to_owned()
    }
}
