//! Addresses on interfaces: listing them with their DAD state, and adding
//! or removing the ones lbd owns (VIPs it announces).

use std::{collections::BTreeSet, net::IpAddr};

use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};

use super::{connection::dump, Netlink, NetlinkError};

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// A secondary address (not the interface's primary of its subnet).
    pub secondary: bool,
    /// Its duplicate address detection and lifetime state.
    pub state: AddressState,
}

/// What the kernel says of an address's duplicate address detection and
/// lifetime (IPv6's, and an IPv4 address given `preferred_lft 0`): an
/// address picked as a source for lbd's own packets (a tunnel's outer
/// header, a 4in6 check) must be one the kernel itself would send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct AddressState {
    /// Duplicate address detection is still under way (not optimistic
    /// DAD, whose address may be used meanwhile): nothing may be sent
    /// from it yet.
    pub tentative: bool,
    /// Duplicate address detection failed: another host has it.
    pub dad_failed: bool,
    /// Its preferred lifetime ended (renumbering): valid, but new
    /// connections should use another.
    pub deprecated: bool,
}

impl AddressState {
    /// The state of the address in `message`: from IFA_FLAGS when the
    /// kernel sends it (the header's flags byte holds only the low eight
    /// bits), else from the header.
    pub(super) fn of(message: &AddressMessage) -> Self {
        let flags = message
            .attributes
            .iter()
            .find_map(|a| match a {
                AddressAttribute::Flags(flags) => Some(*flags),
                _ => None,
            })
            .unwrap_or_else(|| {
                AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()))
            });
        Self {
            tentative: flags.contains(AddressFlags::Tentative)
                && !flags.contains(AddressFlags::Optimistic),
            dad_failed: flags.contains(AddressFlags::Dadfailed),
            deprecated: flags.contains(AddressFlags::Deprecated),
        }
    }
}

impl Netlink {
    /// The addresses on interface `ifindex`.
    pub(crate) async fn addresses(
        &self,
        ifindex: u32,
    ) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        Ok(self
            .address_messages(ifindex)
            .await?
            .iter()
            .filter_map(|m| {
                Some(InterfaceAddress {
                    address: message_address(m)?,
                    prefix_len: m.header.prefix_len,
                    secondary: m.header.flags.contains(AddressHeaderFlags::Secondary),
                    state: AddressState::of(m),
                })
            })
            .collect())
    }

    /// Every address of the node, on any interface (loopback included):
    /// those the kernel answers ARP and neighbour solicitations for.
    pub(crate) async fn node_addresses(&self) -> Result<BTreeSet<IpAddr>, NetlinkError> {
        let what = "listing the node's addresses";
        let messages = self
            .request(what, |handle| async move {
                dump(handle.address().get().execute(), what).await
            })
            .await?;
        Ok(messages.iter().filter_map(message_address).collect())
    }

    async fn address_messages(&self, ifindex: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let what = &format!("listing the addresses of interface {ifindex}");
        let messages = self
            .request(what, |handle| async move {
                dump(
                    handle
                        .address()
                        .get()
                        .set_link_index_filter(ifindex)
                        .execute(),
                    what,
                )
                .await
            })
            .await?;
        Ok(messages
            .into_iter()
            .filter(|message| message.header.index == ifindex)
            .collect())
    }

    /// Adds `address/prefix_len` to interface `ifindex` (IPv6 without
    /// duplicate address detection, so it is usable at once). Already
    /// present is fine.
    pub(crate) async fn add_address(
        &self,
        ifindex: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let what = &format!("adding {address}/{prefix_len} to interface {ifindex}");
        self.request(what, |handle| async move {
            let mut request = handle.address().add(ifindex, address, prefix_len);
            if address.is_ipv6() {
                let attributes = &mut request.message_mut().attributes;
                attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                // Valid but deprecated (preferred lifetime 0): it still
                // takes traffic and answers neighbour solicitations, but
                // source address selection never picks it for the node's
                // own connections (health checks to backends that hold the
                // VIP on lo would otherwise answer themselves).
                let mut lifetimes = CacheInfo::default();
                lifetimes.ifa_preferred = 0;
                lifetimes.ifa_valid = u32::MAX;
                attributes.push(AddressAttribute::CacheInfo(lifetimes));
            }
            match request.execute().await {
                Ok(()) => Ok(()),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
                Err(source) => Err(NetlinkError::Request {
                    what: what.clone(),
                    source,
                }),
            }
        })
        .await
    }

    /// Removes `address` from interface `ifindex`; absent is fine. Whether
    /// it was there to remove.
    pub(crate) async fn remove_address(
        &self,
        ifindex: u32,
        address: IpAddr,
    ) -> Result<bool, NetlinkError> {
        let mut removed = false;
        for message in self.address_messages(ifindex).await? {
            if message_address(&message) != Some(address) {
                continue;
            }
            let what = &format!("removing {address} from interface {ifindex}");
            let message = &message;
            removed |= self
                .request(what, |handle| async move {
                    match handle.address().del(message.clone()).execute().await {
                        Ok(()) => Ok(true),
                        Err(rtnetlink::Error::NetlinkError(e))
                            if e.raw_code() == -libc::EADDRNOTAVAIL =>
                        {
                            Ok(false)
                        }
                        Err(source) => Err(NetlinkError::Request {
                            what: what.clone(),
                            source,
                        }),
                    }
                })
                .await?;
        }
        Ok(removed)
    }
}

fn message_address(message: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS
    // otherwise (and for IPv6).
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(address) => Some(*address),
            _ => None,
        })
        .or_else(|| {
            message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(address) => Some(*address),
                _ => None,
            })
        })
}
