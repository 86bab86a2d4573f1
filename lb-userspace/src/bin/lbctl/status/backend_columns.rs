//! How a backend's cells read in a VIP's table (and in `--watch`): its
//! name, state, last check, how long its health has held, and its flows.

use lb_userspace::api::schema::{BackendStatus, HealthStatus};

/// A backend as the table names it: its address, with its own port when
/// it has one (NAT).
pub(super) fn backend_name(b: &BackendStatus) -> String {
    match b.port {
        Some(port) => std::net::SocketAddr::new(b.address, port).to_string(),
        None => b.address.to_string(),
    }
}

/// A VIP's state text of a backend (with a timed drain's seconds left,
/// or a down backend's hold after its VIP failed open: why it still
/// carries flows; a slow start's share of the weight and seconds left:
/// why it takes less than its share; `(backup)` for a backup; and the
/// sync peer where an operator set the state, when not here).
pub(super) fn state_text(b: &BackendStatus) -> String {
    let text = match (b.drain_remaining_s, b.held_s, b.slow_start) {
        (Some(left), _, _) => format!("{} {left}s", b.state),
        (None, Some(left), _) => format!("{} held {left}s", b.state),
        (None, None, Some(ramp)) => {
            format!("{} slow start {}% {}s", b.state, ramp.percent, ramp.left_s)
        }
        (None, None, None) => b.state.to_string(),
    };
    let text = if b.backup {
        format!("{text} (backup)")
    } else {
        text
    };
    match &b.state_from {
        Some(peer) => format!("{text} from {peer}"),
        None => text,
    }
}

/// A backend's last check as the tables show it: its outcome in short
/// (`ok`, `refused`, `timeout`, ...), with the streak toward its health's
/// next change against `rise` or `fall` (`refused 2/3` on its way down,
/// `refused 3/3` down, `ok 1/2` coming back); a passing backend that is
/// up shows `ok` alone. `-` with no check, or before its first.
pub(super) fn check_text(b: &BackendStatus) -> String {
    let Some(check) = &b.check else {
        return "-".to_owned();
    };
    let Some(last) = &check.last else {
        return "-".to_owned();
    };
    let label = check
        .last_label
        .clone()
        .unwrap_or_else(|| short_outcome(last).to_owned());
    let (streak, threshold) = match label.as_str() {
        "ok" if b.health == HealthStatus::Up => return label,
        "ok" => (check.consecutive_successes, check.rise),
        "full" => return label,
        _ => (check.consecutive_failures, check.fall),
    };
    match threshold {
        Some(threshold) => format!("{label} {streak}/{threshold}"),
        // An lbd before rise and fall in the status: the streak alone.
        None => format!("{label} {streak}"),
    }
}

/// A check outcome's text in short, for an lbd that does not send it so
/// (`last_label`): `ok`, `full`, and the commonest failures by name.
fn short_outcome(last: &str) -> &'static str {
    match last {
        "success" => "ok",
        "connection refused" => "refused",
        "timeout" => "timeout",
        "unreachable" => "unreachable",
        full if full.starts_with("full") => "full",
        _ => "failed",
    }
}

/// How long a backend's health has been what it is (`42s`, `12m`, `3h`,
/// `5d`); `-` when it has not changed since lbd started, or is not
/// checked.
pub(super) fn since_text(b: &BackendStatus) -> String {
    let Some(seconds) = b.check.as_ref().and_then(|c| c.last_change_s) else {
        return "-".to_owned();
    };
    age_text(seconds)
}

/// An age in seconds, shortly: `42s`, `12m`, `3h`, `5d`.
pub(super) fn age_text(seconds: u64) -> String {
    match seconds {
        0..=119 => format!("{seconds}s"),
        120..=7_199 => format!("{}m", seconds / 60),
        7_200..=172_799 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A backend's live, closing and idle flows as the table shows them
/// (idle ones, silent past their idle timeout with no FIN or RST, still
/// go to it: a drain's pooled sessions): marked `~` while a NAT
/// backend's count is not one of now (no sweep of the NAT table since
/// lbd started or its drain began), so a 0 there is not read as "no
/// flows".
pub(super) fn flow_columns(b: &BackendStatus) -> (String, String, String) {
    let mark = if b.flows_counting { "~" } else { "" };
    (
        format!("{mark}{}", b.flows.live),
        format!("{mark}{}", b.flows.closing),
        format!("{mark}{}", b.flows.idle),
    )
}
