//! The receiving side's first step: a record rebuilt into this node's two
//! entries, with its own VIP and backend ids and clock, or refused by
//! reason when it cannot be this node's flow.

use lb_common::{
    consts::{IPPROTO_TCP, IPPROTO_UDP, NAT_DIR_FORWARD, NAT_DIR_REPLY},
    nat::counterpart_key,
    FlowKey, Mode, NatEntry,
};

use crate::{
    config::Protocol,
    reconcile::{addr_words, Balancer, VipId},
    sync::{NatFlowRecord, NatHalf},
};

/// Why the backup leaves a NAT record out: it cannot be this node's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unknown {
    /// Not TCP or UDP.
    Protocol,
    /// This node has no such VIP.
    Vip,
    /// This node has the VIP, but not in NAT mode.
    NotNat,
    /// This node's VIP has no backend at that address.
    Backend,
    /// This node's backend listens on another port.
    BackendPort,
    /// The record's tuples do not describe one flow of that VIP and
    /// backend (a peer bug).
    Inconsistent,
    /// Its NAT address is none of this node's NAT sources (the nodes'
    /// `[nat]` or `nat_source` differ): the backend's replies would go to
    /// an address this node does not hold, so the flow would break here.
    NatAddress,
}

impl Unknown {
    /// For the debug log.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unknown::Protocol => "protocol",
            Unknown::Vip => "unknown VIP",
            Unknown::NotNat => "VIP not in NAT mode here",
            Unknown::Backend => "unknown backend",
            Unknown::BackendPort => "backend port differs",
            Unknown::Inconsistent => "inconsistent tuples",
            Unknown::NatAddress => "NAT address not this node's",
        }
    }
}

/// The two entries a record becomes on this node (forward, then reply).
pub(crate) type NatPair = [(FlowKey, NatEntry); 2];

/// Backup: both entries of `record` with this node's VIP and backend ids,
/// ages turned into this node's clock (`now`, CLOCK_MONOTONIC), no next
/// hop (`ifindex` 0: the data plane looks it up).
pub(crate) fn entries_for(
    record: &NatFlowRecord,
    balancer: &Balancer,
    now: u64,
) -> Result<NatPair, Unknown> {
    let protocol = match record.protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        _ => return Err(Unknown::Protocol),
    };
    let vip_id = VipId {
        address: record.vip,
        port: record.vip_port,
        protocol,
    };
    let vip = balancer.vips().get(&vip_id).ok_or(Unknown::Vip)?;
    if vip.mode != Mode::Nat {
        return Err(Unknown::NotNat);
    }
    let backend = vip.backends.get(&record.backend).ok_or(Unknown::Backend)?;
    if backend.port.unwrap_or(record.vip_port) != record.backend_port {
        return Err(Unknown::BackendPort);
    }
    let local_vip = u16::try_from(vip.id).map_err(|_| Unknown::Vip)?;
    let (f, r) = (&record.forward, &record.reply);
    if f.key.dst != record.vip
        || f.key.dport != record.vip_port
        || f.translated.dst != record.backend
        || f.translated.dport != record.backend_port
    {
        return Err(Unknown::Inconsistent);
    }
    // The reply key's address is the same one (checked below: the two
    // entries pair up).
    let own =
        |nat: Option<&crate::config::VipNat>| nat.is_some_and(|n| n.source == f.translated.src);
    if !own(vip.nat.as_ref()) && !balancer.vips().values().any(|v| own(v.nat.as_ref())) {
        return Err(Unknown::NatAddress);
    }
    let entry = |half: &NatHalf, direction: u8| -> Result<(FlowKey, NatEntry), Unknown> {
        let (key_src, family) = addr_words(half.key.src);
        let (key_dst, dst_family) = addr_words(half.key.dst);
        let (src, src_family) = addr_words(half.translated.src);
        let (dst, tdst_family) = addr_words(half.translated.dst);
        if [dst_family, src_family, tdst_family] != [family; 3] {
            return Err(Unknown::Inconsistent);
        }
        let key = FlowKey {
            src: key_src,
            dst: key_dst,
            sport: half.key.sport.to_be(),
            dport: half.key.dport.to_be(),
            proto: record.protocol,
            family,
            _pad: 0,
        };
        let entry = NatEntry {
            src,
            dst,
            sport: half.translated.sport.to_be(),
            dport: half.translated.dport.to_be(),
            backend_id: backend.id,
            last_seen_ns: now.saturating_sub(u64::from(half.age_ms).saturating_mul(1_000_000)),
            ifindex: 0,
            dmac: [0; 6],
            smac: [0; 6],
            flags: half.flags,
            direction,
            vip_id: local_vip,
            mtu: 0,
        };
        Ok((key, entry))
    };
    let forward = entry(f, NAT_DIR_FORWARD)?;
    let reply = entry(r, NAT_DIR_REPLY)?;
    // The two entries must be each other's counterpart, as the data plane
    // pairs them.
    if counterpart_key(&forward.0, &forward.1) != reply.0
        || counterpart_key(&reply.0, &reply.1) != forward.0
    {
        return Err(Unknown::Inconsistent);
    }
    Ok([forward, reply])
}
