//! The settings of a VIP or backend that are a number or a name: port,
//! protocol, table size, weight, forwarding mode, MAC, drain timeout. Apart
//! from the addresses because they check ranges and spellings, not routing.

use std::time::Duration;

use crate::{mac::Mac, maglev::is_prime};

use super::super::{
    AllDown, Protocol, MAX_BACKENDS_PER_VIP, MAX_TABLE_SIZE, MAX_WEIGHT, MIN_TABLE_SIZE,
};
use super::{choice, integer, ValueError, MAX_DRAIN_TIMEOUT_S, MAX_SLOW_START_S};

/// A service's port: 1..=65535.
pub fn port(n: i64) -> Result<u16, ValueError> {
    integer(n, 1..=u16::MAX)
}

/// A service's protocol: `tcp` or `udp`.
pub fn protocol(text: &str) -> Result<Protocol, ValueError> {
    choice(text, &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)])
}

/// What a VIP does when no backend is healthy: `drop` or `keep`.
pub fn on_all_down(text: &str) -> Result<AllDown, ValueError> {
    choice(
        text,
        &[("drop", AllDown::Drop), ("keep", AllDown::KeepLast)],
    )
}

/// A Maglev table size: a prime in `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
pub fn table_size(n: i64) -> Result<u32, ValueError> {
    let size = integer(n, MIN_TABLE_SIZE..=MAX_TABLE_SIZE)?;
    if !is_prime(size) {
        return Err(ValueError::invalid(not_prime_message(size)));
    }
    Ok(size)
}

/// Maglev gives every backend with a weight at least one slot, so a table
/// of `table_size` slots holds at most that many.
pub(crate) fn weighted_backends_fit(weighted: usize, table_size: u32) -> Result<(), ValueError> {
    if weighted > table_size as usize {
        return Err(ValueError::invalid(format!(
            "{weighted} backends with a weight do not fit a Maglev table of {table_size} slots; use a larger prime"
        )));
    }
    Ok(())
}

/// A backend's weight: 0..=[`MAX_WEIGHT`] (0 takes no new flows).
pub fn weight(n: i64) -> Result<u32, ValueError> {
    integer(n, 0..=MAX_WEIGHT)
}

/// A VIP's client affinity by name (`connection`, `source`).
pub fn affinity(text: &str) -> Result<lb_common::Affinity, ValueError> {
    choice(text, &lb_common::Affinity::ALL.map(|a| (a.name(), a)))
}

/// A VIP's forwarding mode by name (`dsr-l2`, `nat`, `ipip`, `gue`).
pub fn forwarding(text: &str) -> Result<lb_common::Mode, ValueError> {
    let choices: Vec<(&str, lb_common::Mode)> = lb_common::Mode::ALL
        .iter()
        .map(|m| (m.name(), *m))
        .collect();
    choice(text, &choices)
}

/// Whether a VIP in mode `mode` may send its checks through the tunnel
/// (`health.through_tunnel`): only tunnelled VIPs have one.
pub(crate) fn through_tunnel_allowed(mode: lb_common::Mode) -> Result<(), ValueError> {
    if mode.is_tunnel() {
        Ok(())
    } else {
        Err(ValueError::invalid(format!(
            "only a VIP with forwarding = \"ipip\" or \"gue\" has a tunnel to check through (this one is {:?})",
            mode.name()
        )))
    }
}

/// A backend's own port, for a VIP in mode `mode`: NAT only, 1..=65535
/// (direct server return, at L2 or tunnelled, keeps the client's packet
/// and so the VIP's port).
pub(crate) fn backend_port(n: i64, mode: lb_common::Mode) -> Result<u16, ValueError> {
    if mode != lb_common::Mode::Nat {
        return Err(ValueError::invalid(format!(
            "direct server return keeps the VIP's port (forwarding = {:?}); a backend port needs forwarding = \"nat\"",
            mode.name()
        )));
    }
    port(n)
}

/// Whether a backend of a VIP in mode `mode` may be given a MAC: only at
/// L2 (DSR); routed modes take the next hop's from the routing table.
pub(crate) fn backend_mac_allowed(mode: lb_common::Mode) -> Result<(), ValueError> {
    if mode == lb_common::Mode::DsrL2 {
        Ok(())
    } else {
        let mode = match mode {
            lb_common::Mode::Nat => "NAT".to_owned(),
            other => format!("tunnelled ({})", other.name()),
        };
        Err(ValueError::invalid(format!(
            "a {mode} VIP's backends are routed: the next hop's MAC comes from the routing table"
        )))
    }
}

/// A drain timeout in seconds: 1 s to a week.
pub fn drain_timeout_s(n: i64) -> Result<Duration, ValueError> {
    integer::<u32>(n, 1..=MAX_DRAIN_TIMEOUT_S).map(|s| Duration::from_secs(s.into()))
}

/// A slow start in seconds: 1 s to an hour (a ramp longer than that
/// keeps a recovered backend under-used for no cache's sake).
pub fn slow_start_s(n: i64) -> Result<Duration, ValueError> {
    integer::<u32>(n, 1..=MAX_SLOW_START_S).map(|s| Duration::from_secs(s.into()))
}

/// At most [`MAX_BACKENDS_PER_VIP`] backends in one VIP.
pub fn backends_per_vip(count: usize) -> Result<(), ValueError> {
    if count > MAX_BACKENDS_PER_VIP {
        return Err(ValueError::limit(format!(
            "too many backends; at most {MAX_BACKENDS_PER_VIP} per VIP are allowed"
        )));
    }
    Ok(())
}

/// A backend's MAC in text: unicast and not all zero.
pub fn mac(text: &str) -> Result<Mac, ValueError> {
    let mac: Mac = text
        .parse()
        .map_err(|e: crate::mac::ParseMacError| ValueError::invalid(e.to_string()))?;
    if mac.is_multicast() {
        return Err(ValueError::invalid(format!(
            "{text:?} is a multicast MAC address (low bit of the first octet set)"
        )));
    }
    if mac.is_zero() {
        return Err(ValueError::invalid(format!(
            "{text:?} is the all-zero MAC address"
        )));
    }
    Ok(mac)
}

/// Says that `size` is not prime and suggests the nearest allowed primes.
fn not_prime_message(size: u32) -> String {
    let below = (MIN_TABLE_SIZE..size).rev().find(|&n| is_prime(n));
    let above = (size.saturating_add(1)..=MAX_TABLE_SIZE).find(|&n| is_prime(n));
    let nearest = [below, above]
        .into_iter()
        .flatten()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    format!("{size} is not a prime (Maglev needs a prime table size); nearest: {nearest}")
}
