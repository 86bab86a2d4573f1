//! Interfaces as routing netlink describes them: the one lbd attaches to,
//! every link of the netns, and what lbd tracks of its own (up, XDP
//! program, MAC) read from one link message.

use futures_util::TryStreamExt as _;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, State as OperState};

use super::{connection::dump, Interface, Netlink, NetlinkError};

impl Netlink {
    /// Index and MAC of interface `name`.
    pub(crate) async fn interface(&self, name: &str) -> Result<Interface, NetlinkError> {
        let what = &format!("looking up interface {name}");
        let link = self
            .request(what, |handle| async move {
                let mut links = handle.link().get().match_name(name.to_owned()).execute();
                match links.try_next().await {
                    Ok(Some(link)) => Ok(link),
                    Ok(None) => Err(NetlinkError::NoSuchInterface(name.to_owned())),
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
                        Err(NetlinkError::NoSuchInterface(name.to_owned()))
                    }
                    Err(source) => Err(NetlinkError::Request {
                        what: what.clone(),
                        source,
                    }),
                }
            })
            .await?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NoMac(name.to_owned()))?;
        Ok(Interface {
            name: name.to_owned(),
            index: link.header.index,
            mac,
        })
    }
}

/// An interface of the netns, as the NAT mode's redirect map needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// Index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Admin up with its carrier.
    pub up: bool,
    /// A loopback interface.
    pub loopback: bool,
}

impl Netlink {
    /// Interface `ifindex`'s link message; None when no interface has that
    /// index (the kernel answers a lookup by index with ENODEV then, not
    /// with an empty reply: the interface was deleted, re-created with
    /// another index, or moved to another network namespace).
    pub(super) async fn link(
        &self,
        ifindex: u32,
    ) -> Result<Option<netlink_packet_route::link::LinkMessage>, NetlinkError> {
        let what = &format!("looking up interface {ifindex}");
        self.request(what, |handle| async move {
            let mut links = handle.link().get().match_index(ifindex).execute();
            match links.try_next().await {
                Ok(link) => Ok(link),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
                Err(source) => Err(NetlinkError::Request {
                    what: what.clone(),
                    source,
                }),
            }
        })
        .await
    }

    /// What lbd tracks of interface `ifindex` in one lookup: whether it
    /// can carry traffic, which XDP program it runs and its MAC. None: no
    /// interface has that index any more (see [`Self::link`]).
    pub(crate) async fn link_state(&self, ifindex: u32) -> Result<Option<LinkState>, NetlinkError> {
        Ok(self.link(ifindex).await?.map(|link| LinkState {
            up: carries_traffic(&link),
            xdp: xdp_of(&link),
            mac: link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            }),
        }))
    }

    /// The cls_bpf filters on chain 0 of interface `ifindex`'s ingress
    /// (none without a clsact or ingress qdisc), with their priorities:
    /// whether lbd's filter, attached without tcx, is still there, and
    /// runs first.
    pub(crate) async fn cls_bpf_ingress_programs(
        &self,
        ifindex: u32,
    ) -> Result<Vec<crate::dataplane::IngressFilter>, NetlinkError> {
        let what = &format!("listing the tc filters on the ingress of interface {ifindex}");
        let filters = self
            .request(what, |handle| async move {
                crate::ownership::cls_bpf::ingress_filters(&handle, ifindex)
                    .await
                    .map_err(|source| NetlinkError::Request {
                        what: what.clone(),
                        source,
                    })
            })
            .await?;
        Ok(filters
            .iter()
            .filter(|f| f.chain == 0)
            .filter_map(|f| {
                f.program.map(|program| crate::dataplane::IngressFilter {
                    program,
                    priority: f.priority(),
                })
            })
            .collect())
    }

    /// Every interface of the netns, with whether it is up (admin up
    /// with its carrier) and a loopback.
    pub(crate) async fn links(&self) -> Result<Vec<Link>, NetlinkError> {
        let what = "listing the interfaces";
        let links = self
            .request(what, |handle| async move {
                dump(handle.link().get().execute(), what).await
            })
            .await?;
        let mut out = Vec::new();
        for link in links {
            let flags = link.header.flags;
            out.push(Link {
                index: link.header.index,
                name: link
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::IfName(name) => Some(name.clone()),
                        _ => None,
                    })
                    .unwrap_or_default(),
                up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
                loopback: flags.contains(LinkFlags::Loopback),
            });
        }
        Ok(out)
    }

    /// The XDP program interface `ifindex` runs now, with its mode
    /// (None: no program, or no such interface). Tells a live pinned link
    /// from a stale one.
    pub(crate) async fn xdp_program(
        &self,
        ifindex: u32,
    ) -> Result<Option<(u32, crate::config::XdpMode)>, NetlinkError> {
        Ok(self.link(ifindex).await?.and_then(|link| xdp_of(&link)))
    }
}

/// The MAC to follow when the interface, known with `known`, is `seen`
/// with another one now (None: the same, or none read): the data plane's
/// "frame for this node" test and VRRP's announcements both use it.
pub(crate) fn mac_to_follow(known: [u8; 6], seen: Option<[u8; 6]>) -> Option<[u8; 6]> {
    seen.filter(|mac| *mac != known && *mac != [0; 6])
}

/// What lbd tracks of its interface: read together, once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkState {
    /// Administratively up with its carrier, and operationally up.
    pub up: bool,
    /// The XDP program it runs, with its mode (None: none).
    pub xdp: Option<(u32, crate::config::XdpMode)>,
    /// Its MAC now (None: it has none of six bytes): it may change under
    /// lbd (a bond's `fail_over_mac`, `ip link set address`).
    pub mac: Option<[u8; 6]>,
}

/// Whether a link can carry traffic: admin up with its carrier, and an
/// operational state of up (or unknown, as veth and tun report).
pub(super) fn carries_traffic(link: &netlink_packet_route::link::LinkMessage) -> bool {
    let flags_up =
        link.header.flags.contains(LinkFlags::Up) && link.header.flags.contains(LinkFlags::LowerUp);
    let oper_up = link.attributes.iter().any(|a| {
        matches!(
            a,
            LinkAttribute::OperState(OperState::Up | OperState::Unknown)
        )
    });
    flags_up && oper_up
}

/// The XDP program a link message says runs at the driver or generic
/// hook, with its mode (`Auto` where the kernel names neither driver nor
/// generic mode). The kernel names each mode's program
/// (`IFLA_XDP_DRV_PROG_ID`, `IFLA_XDP_SKB_PROG_ID`, `IFLA_XDP_HW_PROG_ID`),
/// and `IFLA_XDP_PROG_ID` only while a single mode is attached: with a
/// driver program and an offloaded one (`XDP_ATTACHED_MULTI`) it omits
/// it, and reading that alone took lbd's driver program for detached.
/// A program offloaded to the NIC is never lbd's: beside a driver or
/// generic one it is not reported; alone it is, with `Auto`, as a program
/// that is not lbd's (the start refuses it as another tool's, and the
/// hook check finds lbd's program absent).
pub(super) fn xdp_of(
    link: &netlink_packet_route::link::LinkMessage,
) -> Option<(u32, crate::config::XdpMode)> {
    use netlink_packet_route::link::{LinkXdp, XdpAttached};
    let mut driver = None;
    let mut generic = None;
    let mut single = None;
    let mut mode = crate::config::XdpMode::Auto;
    for attribute in &link.attributes {
        if let LinkAttribute::Xdp(xdp) = attribute {
            for item in xdp {
                match item {
                    LinkXdp::DrvProgId(id) if *id != 0 => driver = Some(*id),
                    LinkXdp::SkbProgId(id) if *id != 0 => generic = Some(*id),
                    LinkXdp::ProgId(id) if *id != 0 => single = Some(*id),
                    LinkXdp::Attached(XdpAttached::Driver) => mode = crate::config::XdpMode::Native,
                    LinkXdp::Attached(XdpAttached::SocketBuffer) => {
                        mode = crate::config::XdpMode::Generic
                    }
                    _ => {}
                }
            }
        }
    }
    driver
        .map(|id| (id, crate::config::XdpMode::Native))
        .or_else(|| generic.map(|id| (id, crate::config::XdpMode::Generic)))
        .or_else(|| single.map(|id| (id, mode)))
}
