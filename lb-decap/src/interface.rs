//! What lb-decap asks of the interface it attaches to: that it exists,
//! (without `addresses` in the config) which addresses it holds, and in
//! which mode an XDP program runs on it (rtnetlink: an XDP link's own
//! info names only the interface); and of the host, whether an address
//! (a VIP) is local.

use std::{
    ffi::{CStr, CString},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{bail, Context as _};

/// The interface's index; an error if there is no such interface.
pub fn index(name: &str) -> anyhow::Result<u32> {
    let c_name = CString::new(name).context("interface name holds a NUL byte")?;
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        bail!("no such interface: {}", std::io::Error::last_os_error());
    }
    Ok(index)
}

/// `SIOCGIFHWADDR` (linux/sockios.h): its answer's address family is
/// the interface's link type (`dev->type`).
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;

/// `ARPHRD_ETHER` (linux/if_arp.h): Ethernet (veth, bonds, VLANs, most
/// NICs).
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK`: `lo`, whose frames carry an Ethernet header too.
pub const ARPHRD_LOOPBACK: u16 = 772;

/// The link type (`ARPHRD_*`, as `/sys/class/net/<name>/type` shows it)
/// of interface `name`, asked with an ioctl on a socket of this thread's
/// network namespace (sysfs shows the namespace it was mounted in, which
/// need not be this one).
pub fn link_type(name: &str) -> anyhow::Result<u16> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        bail!("{name:?} is not an interface name");
    }
    // struct ifreq: the name (16 bytes), then a union whose sockaddr's
    // family is the link type; 40 bytes covers the union.
    let mut request = [0u8; 40];
    request[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("opening a socket to ask for the link type");
    }
    // SAFETY: a new descriptor we own.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: the ioctl writes at most a struct ifreq (40 bytes) into the buffer.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            SIOCGIFHWADDR as _,
            request.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading the link type of {name}"));
    }
    Ok(u16::from_ne_bytes([request[16], request[17]]))
}

/// The IPv4 and IPv6 addresses on interface `name`, link-local IPv6
/// addresses excepted (nothing routes tunnel packets to them).
pub fn addresses(name: &str) -> anyhow::Result<Vec<IpAddr>> {
    Ok(every_address()?
        .into_iter()
        .filter(|(on, address)| {
            on == name && !matches!(address, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
        })
        .map(|(_, address)| address)
        .collect())
}

/// Every IPv4 and IPv6 address on any interface: (interface, address).
pub fn every_address() -> anyhow::Result<Vec<(String, IpAddr)>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills the pointer; freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getifaddrs");
    }
    let mut found = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name from getifaddrs.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: the family says which sockaddr the pointer is.
        let address = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        found.push((name, address));
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// `RTM_NEWROUTE` / `RTM_GETROUTE` (linux/rtnetlink.h), `RTA_DST`, and
/// `RTN_LOCAL`, the route type of an address delivered on this host.
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTN_LOCAL: u8 = 2;
/// `struct rtmsg` length; its `rtm_type` is its last byte before flags.
const RTMSG_LEN: usize = 12;
const RTM_TYPE_AT: usize = 7;

/// Whether the kernel delivers packets for `address` on this host, as
/// `ip route get ADDRESS` says `local`: an address some interface holds,
/// or one in a local route (`ip route add local PREFIX dev lo`, "AnyIP").
pub fn is_local(address: IpAddr) -> anyhow::Result<bool> {
    let (family, bytes) = match address {
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    };
    let attr_len = 4 + bytes.len();
    let len = NLMSG_HDR_LEN + RTMSG_LEN + attr_len;
    let mut request = vec![0u8; len];
    request[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETROUTE.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[NLMSG_HDR_LEN] = family;
    request[NLMSG_HDR_LEN + 1] = (bytes.len() * 8) as u8;
    let at = NLMSG_HDR_LEN + RTMSG_LEN;
    request[at..at + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
    request[at + 2..at + 4].copy_from_slice(&RTA_DST.to_ne_bytes());
    request[at + 4..].copy_from_slice(&bytes);
    let reply =
        rtnetlink(&request).with_context(|| format!("asking for the route to {address}"))?;
    route_is_local(&reply).with_context(|| format!("the route to {address}"))
}

/// Whether an `RTM_GETROUTE` answer is a local route; an error answer
/// that says there is no route is not.
fn route_is_local(reply: &[u8]) -> anyhow::Result<bool> {
    let kind = reply
        .get(4..6)
        .map(|w| u16::from_ne_bytes([w[0], w[1]]))
        .context("no message")?;
    match kind {
        RTM_NEWROUTE => Ok(reply.get(NLMSG_HDR_LEN + RTM_TYPE_AT) == Some(&RTN_LOCAL)),
        NLMSG_ERROR => {
            let code = reply
                .get(NLMSG_HDR_LEN..NLMSG_HDR_LEN + 4)
                .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
                .context("an error without its code")?;
            match -code {
                libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EINVAL | libc::EACCES => Ok(false),
                errno => Err(std::io::Error::from_raw_os_error(errno)).context("rtnetlink refused"),
            }
        }
        other => bail!("unexpected message type {other}"),
    }
}

/// Sends one request to the kernel over rtnetlink; its answer (one
/// message).
fn rtnetlink(request: &[u8]) -> anyhow::Result<Vec<u8>> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening an rtnetlink socket");
    }
    // SAFETY: a new fd we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: the buffer outlives the call; the kernel is the peer (a
    // zeroed sockaddr_nl).
    let sent = unsafe {
        let mut to: libc::sockaddr_nl = std::mem::zeroed();
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            raw,
            request.as_ptr().cast(),
            request.len(),
            0,
            std::ptr::addr_of!(to).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error()).context("sending to rtnetlink");
    }
    let mut reply = vec![0u8; 64 * 1024];
    // SAFETY: the kernel writes at most `reply.len()` bytes.
    let got = unsafe { libc::recv(raw, reply.as_mut_ptr().cast(), reply.len(), 0) };
    if got < 0 {
        return Err(std::io::Error::last_os_error()).context("reading rtnetlink's answer");
    }
    reply.truncate(got as usize);
    Ok(reply)
}

/// How an XDP program runs on an interface (`ip link` shows `xdp`,
/// `xdpgeneric`, `xdpoffload`): the kernel keeps one program per mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpRunning {
    /// In the driver (`xdp_mode = "native"`).
    Native,
    /// In the generic (skb) path (`xdp_mode = "generic"`).
    Generic,
    /// Offloaded to the NIC.
    Offload,
}

impl XdpRunning {
    /// The name `xdp_mode` and `status` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Offload => "offload",
        }
    }
}

/// `RTM_NEWLINK` / `RTM_GETLINK` (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
/// `NLMSG_ERROR`, `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `IFLA_XDP` (nested) and the program ids in it, one per mode
/// (linux/if_link.h); the kernel puts each whose mode holds a program.
const IFLA_XDP: u16 = 43;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
/// `struct nlmsghdr` and `struct ifinfomsg` lengths.
const NLMSG_HDR_LEN: usize = 16;
const IFINFO_LEN: usize = 16;

/// In which mode XDP program `program_id` runs on interface `ifindex`
/// (None: it runs there in no mode), asked of the kernel over rtnetlink.
pub fn xdp_running(ifindex: u32, program_id: u32) -> anyhow::Result<Option<XdpRunning>> {
    let mut request = [0u8; NLMSG_HDR_LEN + IFINFO_LEN];
    request[0..4].copy_from_slice(&((NLMSG_HDR_LEN + IFINFO_LEN) as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[NLMSG_HDR_LEN + 4..NLMSG_HDR_LEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
    let reply =
        rtnetlink(&request).with_context(|| format!("asking rtnetlink for interface {ifindex}"))?;
    xdp_running_in(&reply, program_id)
        .with_context(|| format!("rtnetlink's answer for interface {ifindex}"))
}

/// The mode of `program_id` in an `RTM_GETLINK` answer (one message).
fn xdp_running_in(reply: &[u8], program_id: u32) -> anyhow::Result<Option<XdpRunning>> {
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|w| u16::from_ne_bytes([w[0], w[1]]));
    let u32_at = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
    };
    let len = u32_at(reply, 0).context("no message")? as usize;
    let kind = u16_at(reply, 4).context("no message type")?;
    let message = reply
        .get(..len)
        .context("a message longer than the answer")?;
    match kind {
        RTM_NEWLINK => {}
        NLMSG_ERROR => {
            let code = u32_at(message, NLMSG_HDR_LEN).context("an error without its code")? as i32;
            return Err(std::io::Error::from_raw_os_error(-code)).context("rtnetlink refused");
        }
        NLMSG_DONE => bail!("no link in the answer"),
        other => bail!("unexpected message type {other}"),
    }
    let mut at = NLMSG_HDR_LEN + IFINFO_LEN;
    while let (Some(attr_len), Some(attr_kind)) = (u16_at(message, at), u16_at(message, at + 2)) {
        let attr_len = usize::from(attr_len);
        if attr_len < 4 {
            bail!("an attribute of {attr_len} bytes");
        }
        let body = message
            .get(at + 4..at + attr_len)
            .context("an attribute past the message")?;
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags, not the type.
        if attr_kind & 0x3fff == IFLA_XDP {
            return Ok(xdp_mode_of(body, program_id, u16_at, u32_at));
        }
        at += attr_len.next_multiple_of(4);
    }
    Ok(None)
}

/// The mode `program_id` holds in the body of an `IFLA_XDP` attribute.
fn xdp_mode_of(
    body: &[u8],
    program_id: u32,
    u16_at: impl Fn(&[u8], usize) -> Option<u16>,
    u32_at: impl Fn(&[u8], usize) -> Option<u32>,
) -> Option<XdpRunning> {
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            return None;
        }
        let mode = match kind & 0x3fff {
            IFLA_XDP_DRV_PROG_ID => Some(XdpRunning::Native),
            IFLA_XDP_SKB_PROG_ID => Some(XdpRunning::Generic),
            IFLA_XDP_HW_PROG_ID => Some(XdpRunning::Offload),
            _ => None,
        };
        if let Some(mode) = mode {
            if len >= 8 && u32_at(body, at + 4) == Some(program_id) {
                return Some(mode);
            }
        }
        at += len.next_multiple_of(4);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_holds_its_address() {
        assert!(index("lo").expect("lo") > 0);
        assert!(index("t2-none").is_err());
        let lo = addresses("lo").expect("addresses of lo");
        assert!(lo.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{lo:?}");
    }

    /// An `RTM_NEWLINK` answer for interface 7 whose `IFLA_XDP` holds
    /// `attrs` (type, u32 value), after an `IFLA_MTU`.
    fn newlink(attrs: &[(u16, u32)]) -> Vec<u8> {
        let attr = |kind: u16, value: &[u8]| {
            let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
            a.extend(kind.to_ne_bytes());
            a.extend(value);
            a.resize(a.len().next_multiple_of(4), 0);
            a
        };
        let mut xdp = attr(2, &[4]); // IFLA_XDP_ATTACHED, padded
        for (kind, value) in attrs {
            xdp.extend(attr(*kind, &value.to_ne_bytes()));
        }
        let mut body = vec![0u8; IFINFO_LEN];
        body[4..8].copy_from_slice(&7u32.to_ne_bytes());
        body.extend(attr(4, &1500u32.to_ne_bytes())); // IFLA_MTU
        body.extend(attr(IFLA_XDP | 0x8000, &xdp));
        let mut out = ((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend(RTM_NEWLINK.to_ne_bytes());
        out.extend([0u8; 10]);
        out.extend(body);
        out
    }

    #[test]
    fn the_xdp_mode_is_read_from_the_link_attributes() {
        let reply = newlink(&[(IFLA_XDP_SKB_PROG_ID, 41), (IFLA_XDP_DRV_PROG_ID, 42)]);
        assert_eq!(
            xdp_running_in(&reply, 41).expect("parsed"),
            Some(XdpRunning::Generic)
        );
        assert_eq!(
            xdp_running_in(&reply, 42).expect("parsed"),
            Some(XdpRunning::Native)
        );
        assert_eq!(xdp_running_in(&reply, 43).expect("parsed"), None);
        let offload = newlink(&[(IFLA_XDP_HW_PROG_ID, 9)]);
        assert_eq!(
            xdp_running_in(&offload, 9).expect("parsed"),
            Some(XdpRunning::Offload)
        );
        // Cut anywhere: an error or nothing found, never a wrong mode.
        for len in 0..reply.len() {
            let mut cut = reply[..len].to_vec();
            if len >= 4 {
                cut[..4].copy_from_slice(&(len as u32).to_ne_bytes());
            }
            assert!(
                !matches!(xdp_running_in(&cut, 42), Ok(Some(m)) if m != XdpRunning::Native),
                "cut at {len}"
            );
        }
        // The kernel's answer for lo, which runs no XDP program here.
        assert_eq!(
            xdp_running(index("lo").expect("lo"), 1).expect("asked"),
            None
        );
    }
}
