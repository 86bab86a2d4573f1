//! ICMP and ICMPv6 errors about VIP flows. With direct server return the
//! backends answer from the VIP, so a router on the way back to the client
//! that cannot deliver a reply (fragmentation needed / packet too big,
//! unreachable, TTL exceeded) sends its error to the VIP, quoting the start
//! of the reply. Only the backend that owns the flow can act on it (path
//! MTU discovery above all), so the packet path sends the frame there
//! unchanged, as Katran does.
//!
//! Decisions:
//! - Which messages are errors, what a quote must hold and which quotes
//!   are about a VIP flow: `lb_ebpf_frame::icmp_error`, shared with the
//!   backend's decap. Here, a message that is no error (echo, redirect,
//!   neighbour discovery, ...) or quotes neither TCP nor UDP goes up the
//!   stack as before (`PassUnsupportedL4`), a quote sent from another
//!   address than the one the error is for is no VIP's business
//!   (`PassNotVip`), and one cut short is `DropMalformed`.
//! - The flow key is the one of the original client-to-VIP direction
//!   (quoted source and destination swapped, ports too), so the VIP lookup,
//!   the connection table and Maglev treat it like the flow itself.
//! - NAT mode takes the same errors and keys: one sent to a NAT address
//!   quotes a packet from it, so its key is the flow's reply direction
//!   (backend -> NAT address); the quote's IP header sits right after the
//!   8-byte ICMP header and its transport header at `Packet::quote_l4_off`,
//!   where the translation rewrites them.

use crate::hook::Hook;
use lb_common::{
    consts::{AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6},
    stats::Counter,
    FlowKey,
};
use lb_ebpf_frame::icmp_error::{self, QuoteStop, Quoted};

use super::{Class, Packet};

/// Parses what follows an IP header that is neither TCP nor UDP: an ICMP
/// error about a VIP flow becomes a `Class::IcmpError` packet keyed by that
/// flow; the rest is an error counter. `outer` is the packet's own key
/// (addresses, family, protocol).
#[inline(always)]
pub fn parse_error<C: Hook>(
    ctx: &C,
    outer: &FlowKey,
    l4_off: usize,
    l3_end: usize,
) -> Result<Packet, Counter> {
    let is_v4 = match (outer.family, outer.proto) {
        (AF_INET, IPPROTO_ICMP) => true,
        (AF_INET6, IPPROTO_ICMPV6) => false,
        _ => return Err(Counter::PassUnsupportedL4),
    };
    let quote = icmp_error::error_quote(ctx, l4_off, l3_end, !is_v4).map_err(quote_counter)?;
    if is_v4 {
        let quoted =
            icmp_error::quoted_v4(ctx, quote, l3_end, outer.dst[0]).map_err(quote_counter)?;
        Ok(error_packet(outer, AF_INET, quoted))
    } else {
        let quoted =
            icmp_error::quoted_v6(ctx, quote, l3_end, &outer.dst).map_err(quote_counter)?;
        Ok(error_packet(outer, AF_INET6, quoted))
    }
}

/// The balancer's word for an ICMP message that is no error about a VIP
/// flow.
#[inline(always)]
fn quote_counter(stop: QuoteStop) -> Counter {
    match stop {
        QuoteStop::Malformed => Counter::DropMalformed,
        QuoteStop::OtherSource => Counter::PassNotVip,
        QuoteStop::NotAnError | QuoteStop::NotTcpUdp => Counter::PassUnsupportedL4,
    }
}

/// The error as a packet of the client-to-VIP flow it quotes: the quoted
/// packet was sent from the VIP (`outer.dst`), so its addresses and ports
/// are swapped.
#[inline(always)]
fn error_packet(outer: &FlowKey, family: u8, quoted: Quoted) -> Packet {
    Packet {
        key: FlowKey {
            src: quoted.dst,
            dst: outer.dst,
            family,
            proto: quoted.proto,
            sport: quoted.dport,
            dport: quoted.sport,
            ..FlowKey::default()
        },
        tcp_flags: 0,
        class: Class::IcmpError,
        l3_off: 0,
        l4_off: 0,
        quote_l4_off: quoted.l4_off,
    }
}
