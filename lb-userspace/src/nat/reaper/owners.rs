//! Who owns a NAT entry: the backends of NAT VIPs as the applied state has
//! them, and how an entry names its backend and VIP. An entry no backend
//! owns any more is cut (see the module's doc).

use std::collections::HashMap;

use lb_common::{consts::NAT_DIR_REPLY, FlowKey, NatEntry, VipKey};

/// A backend as NAT entries name it: its VIP (id, and the service
/// itself) and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// VIP id of the NAT VIP it serves.
    pub vip_id: u32,
    /// That VIP's address, port and protocol, as a forward key's
    /// destination (and a reply entry's source) hold them. A VIP replaced
    /// by another in one change (moved to another address, same
    /// backends) gets the lowest free ids, often the old one's: ids and
    /// backend addresses alone would count the old VIP's flows as the new
    /// one's and keep them until they time out.
    pub vip: VipKey,
    /// Its address, as in entries (network-order words).
    pub address: [u32; 4],
}

/// What the reaper checks entries against, taken from the applied state
/// just before a tick.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    /// Backend id -> its VIP and address, for backends of NAT VIPs only.
    pub backends: HashMap<u32, Owner>,
}

impl Owners {
    /// Whether a backend of `before` is not one of these (removed, its VIP
    /// gone or no longer in NAT mode, or its id now another backend's):
    /// its flows are to go, and a sweep is owed (`pace`).
    pub(crate) fn lost_since(&self, before: &Owners) -> bool {
        before
            .backends
            .iter()
            .any(|(id, owner)| self.backends.get(id) != Some(owner))
    }

    /// Whether the entry `(key, entry)` still names a backend of a NAT VIP
    /// by its ids, the backend's address and the VIP's service.
    pub(super) fn owns(&self, key: &FlowKey, entry: &NatEntry) -> bool {
        let address = backend_address(key, entry);
        let vip = vip_of(key, entry);
        self.backends.get(&entry.backend_id).is_some_and(|o| {
            o.vip_id == u32::from(entry.vip_id) && o.address == address && o.vip == vip
        })
    }
}

/// The address of the backend an entry belongs to: the translated
/// destination of a forward entry, the source of a reply.
fn backend_address(key: &FlowKey, entry: &NatEntry) -> [u32; 4] {
    if entry.direction == NAT_DIR_REPLY {
        key.src
    } else {
        entry.dst
    }
}

/// The VIP an entry belongs to: the destination of a forward key (the
/// client's packet as it arrived), the translated source of a reply.
fn vip_of(key: &FlowKey, entry: &NatEntry) -> VipKey {
    let (addr, port) = if entry.direction == NAT_DIR_REPLY {
        (entry.src, entry.sport)
    } else {
        (key.dst, key.dport)
    };
    VipKey {
        addr,
        port,
        proto: key.proto,
        family: key.family,
    }
}
