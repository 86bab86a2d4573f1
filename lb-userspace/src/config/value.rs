//! The rules for single values of a VIP or backend, shared by the config
//! file's loader and the admin API's conversions (`api::convert`), so both
//! accept exactly the same values and explain a refusal in the same words.
//!
//! Each validator takes the value as its source gives it (a number, a text,
//! an address) and returns the typed value or a [`ValueError`] saying what is
//! wrong with it. The caller names the field its own way: the loader as
//! `lbd.toml:8:12: vip[0].backend[1].weight: ...`, the API as
//! `backends[1].weight: ...` (see [`ValueError::at`]).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::RangeInclusive,
    time::Duration,
};

use crate::{mac::Mac, maglev::is_prime};

use super::{AllDown, Protocol, MAX_BACKENDS_PER_VIP, MAX_TABLE_SIZE, MAX_WEIGHT, MIN_TABLE_SIZE};

/// Longest drain timeout accepted: a week.
pub(crate) const MAX_DRAIN_TIMEOUT_S: u32 = 86_400 * 7;

/// What is wrong with one value; the field is added by whoever knows its
/// name. `Display` is the message without the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    message: String,
    limit: bool,
}

impl ValueError {
    /// The value breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limit: false,
        }
    }

    /// The value is fine but goes past one of lbd's limits (the API
    /// answers these with its own error code).
    pub fn limit(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limit: true,
        }
    }

    /// Whether it is a limit rather than a broken rule.
    pub(crate) fn is_limit(&self) -> bool {
        self.limit
    }

    /// The message, without the field.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, said of the field `field`.
    pub fn at(self, field: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            error: self,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// A [`ValueError`] with the name of the field it is about, e.g.
/// `backends[1].weight: -1 is out of range 0..=10000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {error}")]
pub struct FieldError {
    /// The field, as the source names it.
    pub field: String,
    /// What is wrong with it.
    pub error: ValueError,
}

/// `shown` (a number as written) is outside `range`.
pub(crate) fn out_of_range<T: fmt::Display>(
    shown: impl fmt::Display,
    range: &RangeInclusive<T>,
) -> ValueError {
    ValueError::invalid(format!(
        "{shown} is out of range {}..={}",
        range.start(),
        range.end()
    ))
}

/// An integer within `range`.
pub fn integer<T>(n: i64, range: RangeInclusive<T>) -> Result<T, ValueError>
where
    T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
{
    if n < (*range.start()).into() || n > (*range.end()).into() {
        return Err(out_of_range(n, &range));
    }
    T::try_from(n).map_err(|_| out_of_range(n, &range))
}

/// One of `choices`, given as (spelling, value) pairs.
pub fn choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, ValueError> {
    match choices.iter().find(|(name, _)| *name == text) {
        Some(&(_, value)) => Ok(value),
        None => {
            let names = choices
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ValueError::invalid(format!(
                "{text:?} is not one of {names}"
            )))
        }
    }
}

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

/// An address prefix in text, `ADDRESS/LENGTH` or a bare address (one
/// address: /32 or /128), of the family `ipv6` says; host bits must be
/// zero unless the prefix is one address.
pub(crate) fn prefix(text: &str, ipv6: bool) -> Result<(IpAddr, u8), ValueError> {
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    let (address, len) = match text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        ValueError::invalid(format!(
            "{text:?} is not an {family} prefix (e.g. {})",
            if ipv6 {
                "\"2001:2:f0::/64\""
            } else {
                "\"198.18.200.0/24\""
            }
        ))
    })?;
    if address.is_ipv6() != ipv6 {
        return Err(ValueError::invalid(format!("{text:?} is not {family}")));
    }
    let bits: u8 = if ipv6 { 128 } else { 32 };
    let len = match len {
        None => bits,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= bits => n,
            _ => {
                return Err(ValueError::invalid(format!(
                    "{text:?}: the prefix length must be 0..={bits}"
                )))
            }
        },
    };
    service_address(address)?;
    let host_bits = match address {
        IpAddr::V4(a) => u128::from(u32::from(a) & u32::MAX.checked_shr(len.into()).unwrap_or(0)),
        IpAddr::V6(a) => u128::from(a) & u128::MAX.checked_shr(len.into()).unwrap_or(0),
    };
    if host_bits != 0 && len != bits {
        return Err(ValueError::invalid(format!(
            "{text:?} has host bits set: write the prefix's first address (outer sources vary the host bits)"
        )));
    }
    Ok((address, len))
}

/// A VIP's own NAT address `source`, for a VIP at `vip` in mode `mode`:
/// only NAT VIPs have one, of the VIP's family.
pub(crate) fn nat_source(
    source: IpAddr,
    vip: IpAddr,
    mode: lb_common::Mode,
) -> Result<IpAddr, ValueError> {
    if mode != lb_common::Mode::Nat {
        return Err(ValueError::invalid(
            "only a VIP with forwarding = \"nat\" has a NAT address",
        ));
    }
    if source.is_ipv4() != vip.is_ipv4() {
        return Err(ValueError::invalid(format!(
            "{source} is not of the VIP {vip}'s family"
        )));
    }
    service_address(source)?;
    routable_nat_address(source)
}

/// A NAT VIP at `vip` found no NAT address of its family (its own or
/// the node's `[nat]` one).
pub(crate) fn no_nat_source(vip: IpAddr) -> ValueError {
    let family = if vip.is_ipv4() { "ipv4" } else { "ipv6" };
    ValueError::invalid(format!(
        "forwarding = \"nat\" needs a NAT address of the VIP's family: set nat_source here or [nat].source_{family}"
    ))
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

/// An IP address in text, for a VIP or backend (see [`service_address`]).
pub(crate) fn ip_address(text: &str) -> Result<IpAddr, ValueError> {
    let address: IpAddr = text
        .parse()
        .map_err(|_| ValueError::invalid(format!("{text:?} is not an IPv4 or IPv6 address")))?;
    service_address(address)
}

/// An address a VIP or backend can have: neither unspecified nor
/// multicast, nor an IPv4 address written as IPv6 (`::ffff:a.b.c.d`),
/// which would slip past the checks that compare addresses and families.
pub(crate) fn service_address(address: IpAddr) -> Result<IpAddr, ValueError> {
    not_mapped(address)?;
    if address.is_unspecified() {
        return Err(ValueError::invalid(format!(
            "{address} is the unspecified address"
        )));
    }
    if address.is_multicast() {
        return Err(ValueError::invalid(format!(
            "{address} is a multicast address"
        )));
    }
    Ok(address)
}

/// Refuses an IPv4-mapped IPv6 address (`::ffff:198.18.0.100`): lbd
/// compares addresses and families as written, so the same host written
/// both ways would pass as two addresses of two families.
pub(crate) fn not_mapped(address: IpAddr) -> Result<IpAddr, ValueError> {
    if let IpAddr::V6(v6) = address {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err(ValueError::invalid(format!(
                "{address} is an IPv4-mapped IPv6 address: write the IPv4 address {v4}"
            )));
        }
    }
    Ok(address)
}

/// A TCP endpoint (`ADDRESS:PORT`) this node listens on, or connects to
/// when `peer`: a real port, no multicast group, no mapped address, and a
/// peer is some other node, never the unspecified address (a listener may
/// be: it binds every address).
pub(crate) fn socket_address(address: SocketAddr, peer: bool) -> Result<SocketAddr, ValueError> {
    let ip = address.ip();
    not_mapped(ip)?;
    if address.port() == 0 {
        return Err(ValueError::invalid(format!(
            "{address}: port 0 is no port (the kernel would pick one nobody knows); give the port"
        )));
    }
    if ip.is_multicast() {
        return Err(ValueError::invalid(format!(
            "{ip} is a multicast address: a TCP endpoint is one host's"
        )));
    }
    if peer && ip.is_unspecified() {
        return Err(ValueError::invalid(format!(
            "{ip} is the unspecified address: a peer is the other node's address"
        )));
    }
    if peer && ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(ValueError::invalid(format!(
            "{ip} is the broadcast address: a peer is the other node's address"
        )));
    }
    if let SocketAddr::V6(v6) = address {
        if is_link_local_v6(*v6.ip()) && v6.scope_id() == 0 {
            let scoped = std::net::SocketAddrV6::new(*v6.ip(), v6.port(), 0, 2);
            return Err(ValueError::invalid(format!(
                "{ip} is an IPv6 link-local address without its interface: Linux binds or reaches one only on a given interface; add the interface's index after a % (\"{scoped}\" for the interface `ip link` numbers 2), or give a global or unique local address"
            )));
        }
    }
    Ok(address)
}

/// Whether `ip` is in `fe80::/10`: such an address means something only
/// on one link, so a socket needs the interface (a scope id) with it.
fn is_link_local_v6(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Whether two listeners at `a` and `b` would fight over their port: the
/// same port and address, or one of them bound to every address of a
/// family the other is in (`[::]` is dual-stack).
pub(crate) fn listeners_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |wild: IpAddr, other: IpAddr| wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4());
    a.port() == b.port() && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Refuses a NAT address that cannot be this node's address on the
/// network (loopback, broadcast, link-local): backends' replies go to it,
/// so it must route back here.
pub(crate) fn routable_nat_address(address: IpAddr) -> Result<IpAddr, ValueError> {
    let link_local = match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    if link_local {
        return Err(ValueError::invalid(format!(
            "{address} is a link-local address: routers do not forward packets from it, so no routed backend's replies would come back; give an address the network routes to this node"
        )));
    }
    if address.is_loopback() {
        return Err(ValueError::invalid(format!(
            "{address} is a loopback address: backends' replies go to the NAT address, so it must route back to this node"
        )));
    }
    if address == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(ValueError::invalid(format!(
            "{address} is the broadcast address: backends' replies go to the NAT address, so it must route back to this node"
        )));
    }
    Ok(address)
}

/// A backend's address for the VIP at `vip` in mode `mode`: a service
/// address of the VIP's family, not the VIP's own; tunnelled modes also
/// take IPv6 backends for an IPv4 VIP (4in6), never the reverse.
pub(crate) fn backend_address(
    backend: IpAddr,
    vip: IpAddr,
    mode: lb_common::Mode,
) -> Result<IpAddr, ValueError> {
    service_address(backend)?;
    if let IpAddr::V6(v6) = backend {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            // No interface scope can be given: checks and routed modes
            // could not reach it.
            return Err(ValueError::invalid(format!(
                "{backend} is an IPv6 link-local address: give the backend a global or unique local address (link-local ones carry no interface here, so its health checks could not reach it)"
            )));
        }
    }
    let four_in_six = mode.is_tunnel() && vip.is_ipv4() && backend.is_ipv6();
    if backend.is_ipv4() != vip.is_ipv4() && !four_in_six {
        let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        let hint = if mode.is_tunnel() {
            " (an IPv6 VIP cannot be carried to an IPv4 backend)"
        } else if vip.is_ipv4() {
            " (only forwarding = \"ipip\" or \"gue\" reach IPv6 backends of an IPv4 VIP)"
        } else {
            ""
        };
        return Err(ValueError::invalid(format!(
            "{backend} is {} but the VIP {vip} is {}{hint}",
            family(backend),
            family(vip)
        )));
    }
    if backend == vip {
        return Err(ValueError::invalid(format!(
            "{backend} is the VIP's own address"
        )));
    }
    Ok(backend)
}

/// A backend listed once per VIP: `earlier` names the entry that already
/// has `address`, if one does (as the source names entries).
pub(crate) fn listed_once(address: IpAddr, earlier: Option<&str>) -> Result<(), ValueError> {
    match earlier {
        Some(earlier) => Err(ValueError::invalid(format!(
            "{address} is already {earlier}"
        ))),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: fmt::Debug>(result: Result<T, ValueError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn numbers_say_their_range() {
        assert_eq!(weight(10_000), Ok(10_000));
        assert_eq!(weight(0), Ok(0));
        assert_eq!(message(weight(-1)), "-1 is out of range 0..=10000");
        assert_eq!(
            message(weight(99_999_999_999)),
            "99999999999 is out of range 0..=10000"
        );
        assert_eq!(port(65_535), Ok(65_535));
        assert_eq!(message(port(0)), "0 is out of range 1..=65535");
        assert_eq!(message(port(70_000)), "70000 is out of range 1..=65535");
        assert_eq!(drain_timeout_s(300), Ok(Duration::from_secs(300)));
        assert!(drain_timeout_s(0).is_err());
    }

    #[test]
    fn table_sizes_are_primes_in_range() {
        assert_eq!(table_size(65_537), Ok(65_537));
        assert_eq!(table_size(3), Ok(3));
        assert_eq!(
            message(table_size(100)),
            "100 is not a prime (Maglev needs a prime table size); nearest: 97 or 101"
        );
        assert_eq!(message(table_size(2)), "2 is out of range 3..=65537");
        assert_eq!(weighted_backends_fit(3, 3), Ok(()));
        assert!(message(weighted_backends_fit(4, 3)).starts_with("4 backends with a weight"));
    }

    #[test]
    fn choices_name_the_allowed_spellings() {
        assert_eq!(protocol("udp"), Ok(Protocol::Udp));
        assert_eq!(
            message(protocol("sctp")),
            "\"sctp\" is not one of \"tcp\", \"udp\""
        );
        assert_eq!(on_all_down("keep"), Ok(AllDown::KeepLast));
        assert_eq!(
            message(on_all_down("Keep")),
            "\"Keep\" is not one of \"drop\", \"keep\""
        );
    }

    /// A link-local endpoint needs its interface: Linux refuses to bind
    /// or connect to one without it (EINVAL), which would only show at
    /// run time as a sync sender that never connects.
    #[test]
    fn link_local_endpoints_need_their_interface() {
        for peer in [false, true] {
            let unscoped: SocketAddr = "[fe80::2]:7000".parse().unwrap();
            let refused = message(socket_address(unscoped, peer));
            assert!(
                refused.contains("fe80::2 is an IPv6 link-local address without its interface")
                    && refused.contains("[fe80::2%2]:7000"),
                "{refused}"
            );
            let scoped: SocketAddr = "[fe80::2%2]:7000".parse().unwrap();
            assert_eq!(socket_address(scoped, peer), Ok(scoped));
        }
        let global: SocketAddr = "[2001:db8::2]:7000".parse().unwrap();
        assert_eq!(socket_address(global, true), Ok(global));
    }

    #[test]
    fn addresses() {
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let ok: IpAddr = "198.18.0.11".parse().unwrap();
        assert_eq!(ip_address("198.18.0.11"), Ok(ok));
        assert!(message(ip_address("198.18.0.300")).contains("is not an IPv4 or IPv6 address"));
        assert!(message(ip_address("::")).contains("unspecified"));
        assert!(message(ip_address("ff02::1")).contains("multicast"));
        let dsr = lb_common::Mode::DsrL2;
        assert_eq!(backend_address(ok, vip, dsr), Ok(ok));
        let v6_vip: IpAddr = "2001:2::100".parse().unwrap();
        let link_local: IpAddr = "fe80::11".parse().unwrap();
        let error = message(backend_address(link_local, v6_vip, dsr));
        assert!(
            error.starts_with("fe80::11 is an IPv6 link-local address"),
            "{error}"
        );
        let v6: IpAddr = "2001:2::11".parse().unwrap();
        assert_eq!(
            message(backend_address(v6, vip, dsr)),
            "2001:2::11 is IPv6 but the VIP 198.18.0.100 is IPv4 (only forwarding = \"ipip\" or \"gue\" reach IPv6 backends of an IPv4 VIP)"
        );
        assert_eq!(
            message(backend_address(vip, vip, dsr)),
            "198.18.0.100 is the VIP's own address"
        );
        assert_eq!(listed_once(ok, None), Ok(()));
        assert_eq!(
            message(listed_once(ok, Some("backends[0]"))),
            "198.18.0.11 is already backends[0]"
        );
    }

    #[test]
    fn tunnel_modes_carry_v4_in_v6_but_never_v6_in_v4() {
        let (v4, v6): (IpAddr, IpAddr) = (
            "198.18.0.100".parse().unwrap(),
            "2001:2::100".parse().unwrap(),
        );
        let (b4, b6): (IpAddr, IpAddr) = (
            "198.19.2.11".parse().unwrap(),
            "2001:2:2::11".parse().unwrap(),
        );
        for mode in [lb_common::Mode::Ipip, lb_common::Mode::Gue] {
            assert_eq!(backend_address(b4, v4, mode), Ok(b4));
            assert_eq!(backend_address(b6, v4, mode), Ok(b6));
            assert_eq!(backend_address(b6, v6, mode), Ok(b6));
            assert_eq!(
                message(backend_address(b4, v6, mode)),
                "198.19.2.11 is IPv4 but the VIP 2001:2::100 is IPv6 (an IPv6 VIP cannot be carried to an IPv4 backend)"
            );
            assert!(message(backend_port(8080, mode)).contains("keeps the VIP's port"));
            assert!(message(backend_mac_allowed(mode)).contains("routed"));
            assert_eq!(through_tunnel_allowed(mode), Ok(()));
        }
        assert!(message(backend_address(b6, v4, lb_common::Mode::Nat)).contains("is IPv6 but"));
        assert!(message(through_tunnel_allowed(lb_common::Mode::Nat)).contains("\"nat\""));
        assert_eq!(forwarding("gue"), Ok(lb_common::Mode::Gue));
        assert_eq!(forwarding("ipip"), Ok(lb_common::Mode::Ipip));
    }

    #[test]
    fn prefixes_parse_with_their_family_and_no_host_bits() {
        let v4 = |t| prefix(t, false);
        let v6 = |t| prefix(t, true);
        assert_eq!(
            v4("198.18.200.0/24"),
            Ok(("198.18.200.0".parse().unwrap(), 24))
        );
        assert_eq!(v4("198.18.0.2"), Ok(("198.18.0.2".parse().unwrap(), 32)));
        assert_eq!(v4("198.18.0.2/32"), Ok(("198.18.0.2".parse().unwrap(), 32)));
        assert_eq!(
            v6("2001:2:f0::/64"),
            Ok(("2001:2:f0::".parse().unwrap(), 64))
        );
        assert_eq!(v6("2001:2::2"), Ok(("2001:2::2".parse().unwrap(), 128)));
        assert!(message(v4("198.18.200.1/24")).contains("host bits set"));
        assert!(message(v6("2001:2:f0::1/64")).contains("host bits set"));
        assert!(message(v4("198.18.200.0/33")).contains("0..=32"));
        assert!(message(v4("2001:2::/64")).contains("is not IPv4"));
        assert!(message(v6("198.18.0.0/16")).contains("is not IPv6"));
        assert!(message(v4("nope/8")).contains("is not an IPv4 prefix"));
        assert!(message(v4("0.0.0.0/0")).contains("unspecified"));
    }

    #[test]
    fn macs_are_unicast_and_not_zero() {
        assert_eq!(
            mac("02:00:00:00:00:11").map(Mac::octets),
            Ok([2, 0, 0, 0, 0, 0x11])
        );
        assert!(message(mac("01:00:00:00:00:11")).contains("multicast MAC"));
        assert!(message(mac("00:00:00:00:00:00")).contains("all-zero"));
        assert!(message(mac("02:00")).contains("aa:bb:cc:dd:ee:ff"));
    }

    #[test]
    fn limits_are_told_apart_and_fields_named() {
        assert_eq!(backends_per_vip(MAX_BACKENDS_PER_VIP), Ok(()));
        let error = backends_per_vip(MAX_BACKENDS_PER_VIP + 1).unwrap_err();
        assert!(error.is_limit());
        assert!(!weight(-1).unwrap_err().is_limit());
        assert_eq!(
            weight(-1).unwrap_err().at("backends[1].weight").to_string(),
            "backends[1].weight: -1 is out of range 0..=10000"
        );
    }
}
