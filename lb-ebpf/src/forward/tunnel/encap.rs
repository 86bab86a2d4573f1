//! Wrapping a client's packet for its backend, both tunnel modes in one
//! place: IPIP (IPv4 in IPv4, IPv6 in IPv6, IPv4 in IPv6 per
//! `tunnel::outer_family`) and GUE variant 1 (outer IP, UDP to
//! `TunnelConfig::gue_port`, then the inner IP packet: what Linux fou and
//! Katran speak). The inner packet is left exactly as it came (no TTL
//! change: the backend is its destination, as in DSR at L2); VLAN tags
//! are not carried (the frame leaves by a routed interface).
//!
//! Outer header: source from `tunnel::outer_source_v4/v6` (per client
//! address and port), destination the backend; IPv4: DF set, TTL
//! `OUTER_TTL`, TOS copied from the inner packet (ECN included, RFC 6040
//! normal mode), full header checksum; IPv6: traffic class copied, flow
//! label from the flow hash (RFC 6438), hop limit `OUTER_TTL`.
//!
//! GUE's UDP checksum: 0 over IPv4 (allowed, as for every UDP tunnel).
//! Over IPv6 it is computed without reading the payload (local checksum
//! offload, as Linux's `lco_csum`): a finished inner TCP/UDP/ICMPv6
//! segment sums to the complement of its own pseudo-header's sum, and a
//! valid inner IPv4 header sums to zero, so the outer checksum is the sum
//! of the outer pseudo-header, the UDP header, the inner IPv6 header and
//! that complement. This also holds for an skb whose inner checksum the
//! kernel has still to finish (CHECKSUM_PARTIAL). Where the inner packet
//! gives no such sum, the outer checksum is 0 (RFC 6936 zero-checksum
//! UDP tunnels over IPv6, which lb-decap accepts): inner UDP without a
//! checksum (IPv4, or IPv6's zero-checksum tunnel datagrams) or shorter
//! than its IP packet (bytes past its UDP length), an inner
//! IPv6 packet with extension headers, and at tc a
//! GSO packet (its segments' outer checksums are not recomputed by the
//! kernel's UDP-tunnel segmentation without the CSUM flag).

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::bindings::{
    BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
};
use lb_common::{
    consts::{AF_INET, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    hash::flow_hash,
    stats::Counter,
    tunnel::{self, IPPROTO_IPIP, IPPROTO_IPV6, OUTER_V4_LEN},
    Backend,
};
use lb_ebpf_frame::{ETH_LEN, UDP_LEN};

use super::{
    hop,
    outer::{fold16, sum_bytes, write_v4, write_v6, Udp, INNER_V4_WORD, V4_WORDS},
    too_big, Job, JOB_GUE, JOB_HC, JOB_ICMP_ERROR, JOB_NEW_FLOW,
};
use crate::{
    fib::TunnelRoute,
    forward::Outcome,
    hook::Hook,
    maps::{NAT_SCRATCH, TUNNEL_CONFIG},
    nat::rewrite::Layout,
    parse::ptr_at,
};

/// What the inner IP header says.
pub(super) struct Inner {
    /// Length of the inner IP packet (from its header, not the frame).
    pub(super) len: u32,
    /// IPv4 TOS / IPv6 traffic class.
    pub(super) tos: u8,
    /// The inner packet's share of an outer UDP checksum (see the module
    /// docs), if it has one.
    pub(super) csum_part: Option<u64>,
}

/// What `send` returns for a packet that is too big once wrapped (with
/// the MTU left for the inner packet in `egress`): the caller turns it
/// into the answer (`answer_too_big`) or drops it.
pub const TOO_BIG: Counter = Counter::SentIcmpTooBig;

/// Wraps the packet of `job` and picks its way out: `Forwarded` with the
/// egress interface, `TOO_BIG` (nothing changed yet), or the reason it
/// could not be sent. Health checks and ICMP errors that are too big come back as
/// `DropTooBig` instead (never answered), as NAT counts them.
#[inline(always)]
pub fn send<C: Hook>(ctx: &C, job: &Job, backend: &Backend) -> Outcome {
    match try_send(ctx, job, backend) {
        Ok(outcome) => outcome,
        Err(counter) => counter.into(),
    }
}

/// The common case on a lean path: a client's IPv4 packet (not an ICMP
/// error, not a health check) in an untagged frame, not a GSO packet,
/// wrapped in IPIP for an IPv4 backend whose next hop is cached and fresh
/// and whose route's MTU it fits. The same checks as `try_send`, fewer of
/// them because the case is narrower (no outer family to pick, no
/// checksum share, no flow hash, no tags to cover), the same grow and the
/// same writer (`write_v4`). None: not that case, nothing changed, `send`
/// takes it.
#[inline(always)]
pub fn send_lean<C: Hook>(ctx: &C, job: &Job, backend: &Backend) -> Option<Outcome> {
    // `JOB_NEW_FLOW` only changes what is counted (by the caller).
    if job.flags & !JOB_NEW_FLOW != 0 || job.l3_off != ETH_LEN as u32 || job.now == 0 {
        return None;
    }
    if job.key.family != AF_INET || backend.family != AF_INET || ctx.gso_size() != 0 {
        return None;
    }
    let hop = hop::cached(job.backend_id, backend.generation, job.now)?;
    let config = TUNNEL_CONFIG.get(0)?;
    // Judged by the frame's length, which the parser checked holds the
    // whole IP packet (`ETH_LEN + inner length <= bytes`): a frame that
    // fits holds an inner packet that fits. One with bytes past its IP
    // packet (padding) may be judged too big here: `try_send` then
    // judges it by the header, and answers or drops what is too big.
    if hop.mtu != 0 && job.bytes + OUTER_V4_LEN > hop.mtu + ETH_LEN as u32 {
        return None;
    }
    ctx.drop_offloaded_tag();
    // At tc this grow (`bpf_skb_adjust_room`) costs about 15 ns a packet;
    // leaving out the flags saves nothing measurable. `grow_head`
    // (`bpf_skb_change_head`) would save about 7 ns, but it leaves
    // `skb->encapsulation` unset and the network header on the inner
    // packet. A CHECKSUM_PARTIAL skb (a local sender behind a veth) would
    // then leave a NIC that chooses checksum offload by
    // `skb->encapsulation` (mlx5: outer L4 only) with its inner TCP
    // checksum unfinished. So the flags stay.
    if !ctx.grow_after_mac(OUTER_V4_LEN, u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)) {
        return Some(Counter::DropInternal.into());
    }
    // Everything else is read after the grow (a helper call), so only
    // the pointers above live across it, not the values read through
    // them: few spills, and the entry point's frame (part of every call
    // chain's 512 bytes, see the module docs of `tunnel`) stays small.
    // The inner header lies past the room now; read through the view
    // `write_v4` takes (one bounds check for both).
    let Some(frame) = ptr_at::<[u16; V4_WORDS], C>(ctx, 0) else {
        return Some(Counter::DropInternal.into());
    };
    // SAFETY: bounds checked by ptr_at.
    let (ver_tos, total) = unsafe { ((*frame)[INNER_V4_WORD], (*frame)[INNER_V4_WORD + 1]) };
    let inner = Inner {
        len: u32::from(u16::from_be(total)),
        tos: ver_tos.to_ne_bytes()[1],
        csum_part: None,
    };
    let src = tunnel::outer_source_v4(config, job.key.src[0], job.key.sport);
    let written = write_v4(
        ctx,
        hop,
        &inner,
        IPPROTO_IPIP,
        src,
        backend.addr[0],
        false,
        0,
        0,
    );
    Some(if written {
        Outcome {
            counter: Counter::Forwarded,
            egress: hop.ifindex,
        }
    } else {
        Counter::DropInternal.into()
    })
}

/// Turns the frame `send` found too big into the ICMP answer reporting
/// `mtu` (see `too_big`); the verdict counter.
#[inline(always)]
pub fn answer_too_big<C: Hook>(ctx: &C, job: &Job, mtu: u32) -> Counter {
    let l3_off = job.l3_off;
    let Some(scratch) = NAT_SCRATCH.get(0) else {
        return Counter::DropInternal;
    };
    if l3_off > L3_OFF_MAX {
        return Counter::DropInternal;
    }
    too_big::reply(
        ctx,
        l3_off as usize,
        job.key.family == AF_INET,
        scratch.inner_len,
        mtu,
    )
}

/// Largest IP header offset: Ethernet and two VLAN tags.
const L3_OFF_MAX: u32 = 22;
/// Largest transport header offset the path reads at (the packet path's
/// bound, `forward::L4_OFF_MAX`: a client's packet past it went up the
/// stack before any table work; here the bound of the job read back).
const L4_OFF_MAX: u32 = crate::forward::L4_OFF_MAX as u32;

#[inline(always)]
fn try_send<C: Hook>(ctx: &C, job: &Job, backend: &Backend) -> Result<Outcome, Counter> {
    let key = &job.key;
    let gue = job.flags & JOB_GUE != 0;
    // Read back from the map: bounded here once for the verifier.
    let (l3_off, l4_off) = (job.l3_off, job.l4_off);
    if l3_off > L3_OFF_MAX || l3_off < ETH_LEN as u32 || l4_off > L4_OFF_MAX {
        return Err(Counter::PassIpv6Ext);
    }
    let at = Layout {
        l3_off: l3_off as usize,
        l4_off: l4_off as usize,
        quote_l4_off: 0,
    };
    let outer_v4 = match tunnel::outer_family(key.family, backend.family) {
        Some(family) => family == AF_INET,
        None => return Err(Counter::DropNoRoute),
    };
    let config = TUNNEL_CONFIG.get(0).ok_or(Counter::DropNoRoute)?;
    let inner_v4 = key.family == AF_INET;
    // Only GUE over IPv6 carries a checksum to compute.
    let want_csum = gue && !outer_v4;
    let inner = read_inner(ctx, inner_v4, want_csum, &at).ok_or(Counter::DropMalformed)?;
    let inner = launder(inner).ok_or(Counter::DropMalformed)?;
    let src = if outer_v4 {
        [
            tunnel::outer_source_v4(config, key.src[0], key.sport),
            0,
            0,
            0,
        ]
    } else {
        tunnel::outer_source_v6(config, &key.src, key.sport)
    };
    let proto = if gue {
        IPPROTO_UDP
    } else if inner_v4 {
        IPPROTO_IPIP
    } else {
        IPPROTO_IPV6
    };
    let mut route = TunnelRoute {
        family: if outer_v4 {
            AF_INET
        } else {
            lb_common::consts::AF_INET6
        },
        proto,
        src: &src,
        dst: &backend.addr,
        ifindex: job.ifindex,
        cached: 0,
    };
    let hop = hop::get(ctx, job.backend_id, backend, &mut route, key, job.now)?;
    let overhead = tunnel::overhead(gue, backend.family);
    let gso = ctx.gso_size();
    // The packet's own length first: only one too long asks what it is
    // on the wire.
    if hop.mtu != 0
        && inner.len + overhead > hop.mtu
        && segment_len(ctx, &at, &inner, gso, key.proto) + overhead > hop.mtu
    {
        // Never an ICMP error about an ICMP error (RFC 1122), nor to a
        // health check: those are dropped, counted as too big (not as a
        // missing route: the route is there, the packet does not fit).
        if job.flags & (JOB_HC | JOB_ICMP_ERROR) != 0 {
            return Err(Counter::DropTooBig);
        }
        // Answered by `answer_too_big`, from one call site.
        return Ok(Outcome {
            counter: TOO_BIG,
            egress: hop.mtu.saturating_sub(overhead),
        });
    }
    // GUE's source port and IPv6's flow label; a tracked flow's entry
    // kept it (a hash is a chain of ten dependent multiplications).
    let hash = if !gue && outer_v4 {
        0
    } else if job.hash != 0 {
        job.hash
    } else {
        flow_hash(key)
    };
    let udp_csum_part = if gso == 0 { inner.csum_part } else { None };
    let mut flags = if outer_v4 {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    } else {
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6
    };
    if gue {
        flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
    }
    // Tags still in the frame (XDP) make part of the room: the outer
    // header goes where they were; at tc they are popped first, every
    // one (see `Hook::untag_for_wrap`: QinQ).
    let left = ctx
        .untag_for_wrap((at.l3_off - ETH_LEN) as u32)
        .ok_or(Counter::DropInternal)?;
    let grow = overhead - left;
    if !ctx.grow_after_mac(grow, u64::from(flags)) {
        return Err(Counter::DropInternal);
    }
    let written = if outer_v4 {
        write_v4(
            ctx,
            hop,
            &inner,
            proto,
            src[0],
            backend.addr[0],
            gue,
            hash,
            config.gue_port,
        )
    } else {
        let udp = Udp {
            sport: tunnel::gue_source_port(hash),
            dport: config.gue_port,
            csum_part: udp_csum_part,
        };
        write_v6(
            ctx,
            hop,
            &inner,
            proto,
            &src,
            &backend.addr,
            gue,
            hash,
            &udp,
        )
    };
    if !written {
        return Err(Counter::DropInternal);
    }
    Ok(Outcome {
        counter: Counter::Forwarded,
        egress: hop.ifindex,
    })
}

/// `inner` as values the verifier knows only by their type: the header
/// reading has a path per family and protocol, each leaving different
/// known values; read back from a map (this CPU's scratch slot, where
/// `answer_too_big` finds the length again) they are one unknown, so what
/// follows is verified once instead of once per reading path.
#[inline(always)]
fn launder(inner: Inner) -> Option<Inner> {
    let scratch = NAT_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot, used by this program run only;
    // volatile so the compiler keeps the round trip.
    unsafe {
        write_volatile(addr_of_mut!((*scratch).inner_len), inner.len);
        write_volatile(addr_of_mut!((*scratch).inner_tos), u32::from(inner.tos));
        write_volatile(
            addr_of_mut!((*scratch).csum_part),
            inner.csum_part.unwrap_or(u64::MAX),
        );
        let len = read_volatile(addr_of_mut!((*scratch).inner_len));
        let tos = read_volatile(addr_of_mut!((*scratch).inner_tos)) as u8;
        let part = read_volatile(addr_of_mut!((*scratch).csum_part));
        Some(Inner {
            len: len & 0xffff,
            tos,
            csum_part: (part != u64::MAX).then_some(part),
        })
    }
}

/// Reads the inner IP header at `at.l3_off` (its checksum share only if
/// `want_csum`); None only if it is not there (the parser checked it, so
/// a bug).
#[inline(always)]
fn read_inner<C: Hook>(ctx: &C, v4: bool, want_csum: bool, at: &Layout) -> Option<Inner> {
    if v4 {
        let ip = ptr_at::<[u8; 20], C>(ctx, at.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &*ip };
        let len = u32::from(u16::from_be_bytes([ip[2], ip[3]]));
        if !want_csum {
            return Some(Inner {
                len,
                tos: ip[1],
                csum_part: None,
            });
        }
        let proto = ip[9];
        let l4_len = len.wrapping_sub(u32::from(ip[0] & 0x0f) * 4);
        // A valid IPv4 header sums to zero: only the segment counts.
        let csum_part = match proto {
            // ICMPv4 has no pseudo-header: a finished message sums to 0.
            IPPROTO_ICMP => Some(0),
            IPPROTO_TCP | IPPROTO_UDP => {
                if proto == IPPROTO_UDP {
                    let udp = ptr_at::<[u8; 4], C>(ctx, at.l4_off + 4)?;
                    // SAFETY: bounds checked by ptr_at.
                    if !udp_gives_share(unsafe { *udp }, l4_len) {
                        return Some(Inner {
                            len,
                            tos: ip[1],
                            csum_part: None,
                        });
                    }
                }
                let pseudo = sum_bytes(&ip[12..20]) + u64::from(proto) + u64::from(l4_len);
                Some(u64::from(!fold16(pseudo)))
            }
            _ => None,
        };
        Some(Inner {
            len,
            tos: ip[1],
            csum_part,
        })
    } else {
        let ip = ptr_at::<[u8; 40], C>(ctx, at.l3_off)?;
        // SAFETY: bounds checked by ptr_at.
        let ip = unsafe { &*ip };
        let payload = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
        let next = ip[6];
        let tos = (ip[0] << 4) | (ip[1] >> 4);
        let mut plain = want_csum
            && at.l4_off == at.l3_off + 40
            && (next == IPPROTO_TCP || next == IPPROTO_UDP || next == IPPROTO_ICMPV6);
        // A UDP datagram with checksum 0 (RFC 6936, tunnels), or shorter
        // than the payload (bytes after it), does not sum to its
        // pseudo-header's complement: no share, as for IPv4.
        if plain && next == IPPROTO_UDP {
            plain = match ptr_at::<[u8; 4], C>(ctx, at.l4_off + 4) {
                // SAFETY: bounds checked by ptr_at.
                Some(udp) => udp_gives_share(unsafe { *udp }, payload),
                None => false,
            };
        }
        let csum_part = if plain {
            let pseudo = sum_bytes(&ip[8..40]) + u64::from(next) + u64::from(payload);
            Some(sum_bytes(ip) + u64::from(!fold16(pseudo)))
        } else {
            None
        };
        Some(Inner {
            len: payload + 40,
            tos,
            csum_part,
        })
    }
}

/// Whether an inner UDP datagram (`udp`: its length and checksum fields)
/// sums, from its header to the end of its IP packet (`ip_payload` bytes
/// from its header on), to the complement of its pseudo-header's sum with
/// that length, as the share assumes: it has a checksum (not 0: RFC 6936)
/// and ends where its IP packet does. Bytes past its UDP length (which the
/// parser accepts) are outside its checksum but inside the outer one.
#[inline(always)]
fn udp_gives_share(udp: [u8; 4], ip_payload: u32) -> bool {
    let [len_hi, len_lo, csum_hi, csum_lo] = udp;
    (csum_hi | csum_lo) != 0 && u32::from(u16::from_be_bytes([len_hi, len_lo])) == ip_payload
}

/// The size of the largest IP packet the inner packet becomes on the
/// wire: itself, or for a GSO packet (tc) one segment: the headers up to
/// the transport payload and `gso` bytes of it, or at XDP at most the
/// ingress device's MTU (`Hook::wire_mtu`: a longer frame is a GRO
/// aggregate generic XDP sees, as in `nat::wire_len`).
#[inline(always)]
fn segment_len<C: Hook>(ctx: &C, at: &Layout, inner: &Inner, gso: u32, proto: u8) -> u32 {
    if gso == 0 {
        return inner.len.min(ctx.wire_mtu());
    }
    let l4_header = if proto == IPPROTO_TCP {
        match ptr_at::<[u8; 13], C>(ctx, at.l4_off) {
            // SAFETY: bounds checked by ptr_at.
            Some(tcp) => u32::from(unsafe { (*tcp)[12] } >> 4) * 4,
            None => return inner.len,
        }
    } else {
        UDP_LEN as u32
    };
    ((at.l4_off - at.l3_off) as u32 + l4_header + gso).min(inner.len)
}
