//! The VRRP addresses on the interface. lbd adds each as the address
//! alone (/32, /128), valid for ever, with no broadcast, peer, metric,
//! protocol or flag, but that an IPv6 one is added without duplicate
//! address detection and deprecated (see `Netlink::add_address`; the
//! rule below does not ask for the latter), and it removes only an
//! address in that form.
//! A listed address already on the interface in another form is one of
//! the node's own, set up by whoever configured the node: lbd refuses to
//! start with it listed and never removes it (a release, or `lbd
//! --release-vips` run after such a refusal, leaves it alone). Taken away
//! whenever this node is not master, the node would lose its own address
//! (and, with its subnet's prefix, the connected route).
//!
//! The form is the only witness there is. What lbd records of the
//! addresses it holds (`ownership::held`) names every address of the
//! `[[vrrp]]` lists, and is written before this check runs: it names a
//! node's own address listed by mistake as surely as a VIP. lbd puts no
//! mark of its own on what it adds, and a new one (an `IFA_PROTO` of
//! lbd's, Linux 5.18) would not mark what an older lbd left. So an entry
//! of a listed address is the node's own when (see [`not_lbds`]):
//! - its prefix is not a host prefix (198.18.0.1/24, an "address owner"
//!   configuration: it carries its subnet's route);
//! - it carries an address protocol (`IFA_PROTO`: the kernel's, or one a
//!   program such as `ip address add ... proto` set);
//! - it expires: a DHCPv4 or DHCPv6 lease (the /32 some clouds hand out,
//!   the /128 of a DHCPv6 server), an address from router
//!   advertisements. lbd's are valid for ever;
//! - it has a point-to-point peer, a broadcast address or a route metric,
//!   or a flag lbd never sets (`noprefixroute`, a temporary IPv6
//!   address, ...);
//! - IPv6: duplicate address detection applies to it (the default for an
//!   address set up by hand or by the network configuration).
//!
//! What is left, a plain permanent IPv4 /32 (`ip address add X/32 dev
//! eth0`, a static /32 of the network configuration), is exactly what lbd
//! adds, so what an lbd left behind (a crash, a restart that keeps
//! mastership) looks like: it is taken for one of lbd's, as it must be
//! for a restarted lbd to start and to release its addresses, and the
//! start says so in the log.

use std::{future::Future, net::IpAddr, time::Duration};

use anyhow::{anyhow, bail, Context as _};
use futures_util::TryStreamExt as _;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use tracing::{info, warn};

use crate::netlink::{Interface, InterfaceAddress, Netlink};

/// Longest VRRP waits for one routing netlink request: netlink-proto
/// fails no pending request whose reply is lost (an undecodable message
/// is dropped, an ENOBUFS overrun matches no request), and a request
/// held up behind `rtnl_lock` waits as long as the lock is held. Expiry
/// counts as a failed request.
pub(crate) const NETLINK_LIMIT: Duration = Duration::from_secs(1);

/// `request`, given up after [`NETLINK_LIMIT`] with an error naming
/// `what`, so a reply that never comes cannot hold a VRRP instance up.
pub(crate) async fn bounded<T, E>(
    what: String,
    request: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
{
    match tokio::time::timeout(NETLINK_LIMIT, request).await {
        Ok(result) => result.map_err(|error| anyhow::Error::from(error).context(what)),
        Err(_) => Err(anyhow!(
            "{what}: no answer from the kernel (routing netlink) within {} ms",
            NETLINK_LIMIT.as_millis()
        )),
    }
}

/// Aborts a spawned task when dropped: the connection of a request given
/// up (see [`bounded`]) must not outlive it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The prefix length lbd gives a VRRP address: the address alone.
pub(crate) fn host_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() {
        32
    } else {
        128
    }
}

/// An address on the interface, with what tells whether lbd added it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The address.
    address: IpAddr,
    /// Its prefix length.
    prefix_len: u8,
    /// Its flags (`IFA_FLAGS`, or the header's on a kernel without it).
    flags: AddressFlags,
    /// Its address protocol (`IFA_PROTO`), when it has one.
    protocol: Option<u8>,
    /// A point-to-point peer other than the address itself.
    peer: bool,
    /// A broadcast address.
    broadcast: bool,
    /// A metric for its prefix route (`IFA_RT_PRIORITY`).
    metric: bool,
}

impl Entry {
    /// The entry of an address message; None without an address.
    fn of(message: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut entry = Self {
            address: IpAddr::from([0, 0, 0, 0]),
            prefix_len: message.header.prefix_len,
            flags: AddressFlags::from_bits_retain(u32::from(message.header.flags.bits())),
            protocol: None,
            peer: false,
            broadcast: false,
            metric: false,
        };
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Flags(flags) => entry.flags = *flags,
                AddressAttribute::Protocol(p) => entry.protocol = Some(u8::from(*p)),
                AddressAttribute::Broadcast(_) => entry.broadcast = true,
                AddressAttribute::RoutePriority(metric) => entry.metric = *metric != 0,
                _ => {}
            }
        }
        // IFA_LOCAL is the address itself where there is a peer (then in
        // IFA_ADDRESS); IFA_ADDRESS alone otherwise (IPv6).
        entry.address = local.or(address)?;
        entry.peer = matches!((local, address), (Some(l), Some(a)) if l != a);
        Some(entry)
    }
}

/// Why `entry` is not an address lbd added (see the module's doc), for
/// the refusal; None: it is in the form lbd adds its addresses in.
fn not_lbds(entry: &Entry) -> Option<String> {
    let host = host_prefix(entry.address);
    if entry.prefix_len != host {
        return Some(format!(
            "not a host prefix, so it carries its subnet's route (lbd adds VRRP addresses as /{host})"
        ));
    }
    if let Some(protocol) = entry.protocol.filter(|p| *p != 0) {
        return Some(format!(
            "it carries address protocol {protocol}, which lbd never sets"
        ));
    }
    if !entry.flags.contains(AddressFlags::Permanent) {
        return Some(
            "it expires, as a DHCP lease or an address from router advertisements does, and lbd's never do"
                .to_owned(),
        );
    }
    if entry.peer || entry.broadcast || entry.metric {
        return Some(
            "it has a peer, a broadcast address or a metric, which lbd never sets".to_owned(),
        );
    }
    let lbds = if entry.address.is_ipv4() {
        AddressFlags::Permanent | AddressFlags::Secondary
    } else {
        AddressFlags::Permanent | AddressFlags::Nodad | AddressFlags::Deprecated
    };
    let other = entry.flags.difference(lbds);
    if !other.is_empty() {
        let names: Vec<&str> = other
            .iter_names()
            .map(|(name, _)| match name {
                // IFA_F_TEMPORARY is IFA_F_SECONDARY.
                "Secondary" => "temporary",
                name => name,
            })
            .collect();
        return Some(format!(
            "it has flags lbd never sets ({})",
            names.join(", ")
        ));
    }
    if entry.address.is_ipv6() && !entry.flags.contains(AddressFlags::Nodad) {
        return Some(
            "duplicate address detection applies to it, and lbd adds IPv6 addresses without"
                .to_owned(),
        );
    }
    None
}

/// The entries of `present` that are `listed` addresses not in the form
/// lbd adds its own in: addresses of the node, each with why.
fn own_entries<'a>(present: &'a [Entry], listed: &[IpAddr]) -> Vec<(&'a Entry, String)> {
    present
        .iter()
        .filter(|e| listed.contains(&e.address))
        .filter_map(|e| not_lbds(e).map(|why| (e, why)))
        .collect()
}

/// The addresses on interface `ifindex`, as [`not_lbds`] reads them
/// (`Netlink::addresses` keeps only the address and its prefix), on a
/// routing netlink socket of their own.
async fn entries(ifindex: u32) -> anyhow::Result<Vec<Entry>> {
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a routing netlink socket")?;
    // Ends with this function, even when its request is given up.
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let listing = async {
        let mut stream = handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        let mut out = Vec::new();
        while let Some(message) = stream.try_next().await? {
            if message.header.index == ifindex {
                out.extend(Entry::of(&message));
            }
        }
        Ok::<_, rtnetlink::Error>(out)
    };
    bounded(
        format!("listing the addresses of interface {ifindex}"),
        listing,
    )
    .await
}

/// The `listed` addresses not in `present` (in any form): while master,
/// those something took away (a link bounce, networkd).
pub(crate) fn missing(present: &[InterfaceAddress], listed: &[IpAddr]) -> Vec<IpAddr> {
    listed
        .iter()
        .filter(|l| !present.iter().any(|a| a.address == **l))
        .copied()
        .collect()
}

/// Refuses `listed` addresses that are already the node's own (on the
/// interface in another form than lbd's, see the module's doc): lbd would
/// take them away whenever this node is not master. Notes those there in
/// lbd's form that cannot be told from the node's own (a plain IPv4 /32).
pub(crate) async fn refuse_own(
    interface: &Interface,
    vrid: u8,
    listed: &[IpAddr],
) -> anyhow::Result<()> {
    let present = entries(interface.index)
        .await
        .with_context(|| format!("listing the addresses of {}", interface.name))?;
    if let Some((own, why)) = own_entries(&present, listed).first() {
        bail!(
            "VRRP instance {vrid}: {}/{} is already an address of {}, and the node's own: {why}; \
             lbd removes VRRP addresses when this node is not master, so move the interface's \
             own address out of the [[vrrp]] addresses, or give the interface another address",
            own.address,
            own.prefix_len,
            interface.name,
        );
    }
    for entry in present
        .iter()
        .filter(|e| e.address.is_ipv4() && listed.contains(&e.address))
    {
        info!(
            vrid,
            address = %entry.address,
            interface = %interface.name,
            "a VRRP address is already on the interface as lbd adds them: taken for one a previous lbd left (lbd cannot tell a plain /32 from a static address of the node's own: list none of those)"
        );
    }
    Ok(())
}

/// What [`remove`] did with an address, for a log that says what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// It was there and is gone.
    Removed,
    /// It was not there.
    Absent,
    /// It is an address of the node itself: left.
    Own,
}

/// Removes VRRP address `address` from interface `ifindex`, unless it is
/// there in another form than lbd's (an address of the node itself, see
/// the module's doc): that is left, with a warning. Absent is fine.
pub(crate) async fn remove(
    netlink: &Netlink,
    ifindex: u32,
    address: IpAddr,
) -> anyhow::Result<Removal> {
    let present = entries(ifindex).await?;
    if let Some((own, why)) = own_entries(&present, &[address]).first() {
        warn!(
            %address,
            prefix = own.prefix_len,
            reason = %why,
            "not removing the VRRP address: it is an address of the node itself"
        );
        return Ok(Removal::Own);
    }
    let removed = bounded(
        format!("removing VIP {address} from interface {ifindex}"),
        netlink.remove_address(ifindex, address),
    )
    .await?;
    Ok(if removed {
        Removal::Removed
    } else {
        Removal::Absent
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::address::{AddressHeaderFlags, AddressProtocol, CacheInfo};

    use super::*;

    /// An entry as lbd adds one: the address alone, permanent, IPv6
    /// without duplicate address detection and deprecated.
    fn lbds(address: &str) -> Entry {
        let address: IpAddr = address.parse().unwrap();
        let flags = if address.is_ipv4() {
            AddressFlags::Permanent
        } else {
            AddressFlags::Permanent | AddressFlags::Nodad | AddressFlags::Deprecated
        };
        Entry {
            address,
            prefix_len: host_prefix(address),
            flags,
            protocol: None,
            peer: false,
            broadcast: false,
            metric: false,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The addresses of `present` that [`own_entries`] finds among `listed`.
    fn own(present: &[Entry], listed: &[&str]) -> Vec<IpAddr> {
        let listed: Vec<IpAddr> = listed.iter().map(|a| ip(a)).collect();
        own_entries(present, &listed)
            .iter()
            .map(|(e, _)| e.address)
            .collect()
    }

    #[test]
    fn an_interface_address_with_its_subnet_prefix_is_not_a_vip() {
        let present = [
            Entry {
                prefix_len: 24,
                ..lbds("198.18.0.1")
            },
            lbds("198.18.0.100"),
            Entry {
                prefix_len: 64,
                ..lbds("2001:2::1")
            },
            lbds("2001:2::100"),
        ];
        let listed = ["198.18.0.1", "198.18.0.100", "2001:2::100", "2001:2::1"];
        assert_eq!(own(&present, &listed), [ip("198.18.0.1"), ip("2001:2::1")]);
        assert!(own(&present, &listed[1..3]).is_empty());
        let (_, why) = &own_entries(&present, &[ip("198.18.0.1")])[0];
        assert!(why.starts_with("not a host prefix"), "{why}");
    }

    /// The node's own address at a host prefix: a DHCPv6 /128 lease, a
    /// cloud's DHCP /32, a static /128 (with duplicate address
    /// detection), one a program marked: its own, whatever the prefix.
    #[test]
    fn a_node_address_at_a_host_prefix_is_its_own() {
        let lease6 = Entry {
            flags: AddressFlags::empty(),
            ..lbds("2001:2::5")
        };
        let lease4 = Entry {
            flags: AddressFlags::empty(),
            broadcast: true,
            metric: true,
            ..lbds("198.18.0.5")
        };
        let static6 = Entry {
            flags: AddressFlags::Permanent,
            ..lbds("2001:2::6")
        };
        let marked = Entry {
            protocol: Some(4),
            ..lbds("198.18.0.6")
        };
        let peer = Entry {
            peer: true,
            ..lbds("198.18.0.7")
        };
        let noprefixroute = Entry {
            flags: AddressFlags::Permanent | AddressFlags::Noprefixroute,
            ..lbds("198.18.0.8")
        };
        let temporary = Entry {
            flags: lbds("2001:2::9").flags | AddressFlags::Secondary,
            ..lbds("2001:2::9")
        };
        let present = [
            lease6,
            lease4,
            static6,
            marked,
            peer,
            noprefixroute,
            temporary,
        ];
        let listed: Vec<String> = present.iter().map(|e| e.address.to_string()).collect();
        let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(
            own(&present, &listed),
            present.iter().map(|e| e.address).collect::<Vec<_>>()
        );
        let why = |entry: &Entry| not_lbds(entry).unwrap();
        assert!(why(&present[0]).starts_with("it expires"));
        assert_eq!(
            why(&present[5]),
            "it has flags lbd never sets (Noprefixroute)"
        );
        assert_eq!(why(&present[6]), "it has flags lbd never sets (temporary)");
        assert!(why(&present[2]).starts_with("duplicate address detection"));
        assert!(why(&present[3]).contains("address protocol 4"));
    }

    /// What lbd adds (this lbd or one before it, after a crash or a
    /// restart) is not the node's own: it is removed, and no start is
    /// refused for it. IPv6 ones need not be deprecated.
    #[test]
    fn an_address_in_lbds_form_is_a_vrrp_address() {
        let preferred = Entry {
            flags: AddressFlags::Permanent | AddressFlags::Nodad,
            ..lbds("2001:2::101")
        };
        let present = [lbds("198.18.0.100"), lbds("2001:2::100"), preferred];
        assert!(own(&present, &["198.18.0.100", "2001:2::100", "2001:2::101"]).is_empty());
        // An address protocol of 0 is none.
        let unmarked = Entry {
            protocol: Some(0),
            ..lbds("198.18.0.100")
        };
        assert_eq!(not_lbds(&unmarked), None);
    }

    /// Entries read from the kernel's messages as the kernel sends them:
    /// IFA_FLAGS over the header's flags, the peer in IFA_ADDRESS.
    #[test]
    fn entries_are_read_off_the_kernels_messages() {
        let mut message = AddressMessage::default();
        message.header.prefix_len = 128;
        message.header.flags = AddressHeaderFlags::Permanent;
        message
            .attributes
            .push(AddressAttribute::Address(ip("2001:2::100")));
        let mut info = CacheInfo::default();
        info.ifa_valid = u32::MAX;
        message.attributes.push(AddressAttribute::CacheInfo(info));
        let entry = Entry::of(&message).expect("an entry");
        assert_eq!(entry.address, ip("2001:2::100"));
        assert_eq!(entry.flags, AddressFlags::Permanent);
        assert!(!entry.peer && !entry.broadcast && !entry.metric);
        assert_eq!(entry.protocol, None);
        assert!(
            not_lbds(&entry).is_some(),
            "with duplicate address detection"
        );
        message.attributes.push(AddressAttribute::Flags(
            AddressFlags::Permanent | AddressFlags::Nodad | AddressFlags::Deprecated,
        ));
        assert_eq!(not_lbds(&Entry::of(&message).unwrap()), None);
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(99)));
        assert_eq!(Entry::of(&message).unwrap().protocol, Some(99));

        let mut message = AddressMessage::default();
        message.header.prefix_len = 32;
        message
            .attributes
            .push(AddressAttribute::Address(ip("198.18.0.1")));
        message
            .attributes
            .push(AddressAttribute::Local(ip("198.18.0.100")));
        message
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Permanent));
        message.attributes.push(AddressAttribute::RoutePriority(0));
        let entry = Entry::of(&message).expect("an entry");
        assert_eq!(entry.address, ip("198.18.0.100"));
        assert!(entry.peer && !entry.metric);
        assert!(Entry::of(&AddressMessage::default()).is_none());
    }

    #[test]
    fn missing_lists_what_is_gone() {
        let entry = |address: &str, prefix_len: u8| InterfaceAddress {
            address: ip(address),
            prefix_len,
            secondary: false,
            state: Default::default(),
        };
        let present = [entry("198.18.0.1", 24), entry("198.18.0.100", 32)];
        let listed: Vec<IpAddr> = vec![ip("198.18.0.100"), ip("198.18.0.101")];
        assert_eq!(missing(&present, &listed), vec![listed[1]]);
        assert!(missing(&present, &listed[..1]).is_empty());
    }
}
