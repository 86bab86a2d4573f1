//! Source-port allocation for new NAT flows: the reply entry is the
//! reservation. The first candidate is the flow's checksum-neutral port
//! (`neutral_port`) when the range holds it; then the attempts at
//! `lb_common::nat_ports::probe_offset` of a hash of the flow: linear in a
//! small range (every attempt another port; one of at most
//! `NAT_PORT_ATTEMPTS` ports searched completely), scattered in a larger
//! one, so a busy range spreads its flows without the clustering linear
//! probes meet. The reply key's insert is exclusive (`table::insert`): of
//! two CPUs racing for one port, exactly one gets it, the other tries the
//! next.
//!
//! Why neutral first: with it the two ports of every packet of the flow
//! change by sums that cancel in the TCP/UDP checksum, in both directions,
//! so only the addresses (the pseudo-header) move the checksum. At tc that
//! is one checksum helper call per packet instead of two (`Hook::l4_csum_add`
//! skips the ports' call when their change sums to zero). When the VIP and
//! backend ports are equal the neutral port is the client's own, as
//! Linux's SNAT keeps it where it can.
//!
//! Each candidate is first tested from its buckets' header lines alone
//! (`table::probe`: no way under its fingerprint, room in one bucket); the
//! first two that pass are kept, and the first is inserted, the second
//! only if another CPU took the first (or its free way) in the same
//! instant. So the search runs once, and the insert is reached from two
//! places: the BPF verifier follows the search's loop once per attempt,
//! and an insert in the loop would be verified once per attempt too.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use lb_common::{
    consts::NAT_PORT_ATTEMPTS, flow_table::Probed, hash::table_hash, nat_ports::probe_offset,
    stats::Counter, NatSource,
};

use super::{
    scratch::NatScratch,
    table::{self, Inserted},
};
use crate::maps::NAT_SCRATCH;

/// The one source port (network order) that makes a NAT'd flow's port
/// rewrite checksum-neutral: client port + VIP port = neutral + backend
/// port in one's-complement arithmetic (RFC 1071; byte order does not
/// matter to such sums, the ports are taken as they are stored). 0 sums
/// as 0xffff, so a neutral 0 is given as 0xffff (port 0 is never used).
#[inline(always)]
pub fn neutral_port(client_port: u16, vip_port: u16, backend_port: u16) -> u16 {
    let sum = u32::from(client_port) + u32::from(vip_port) + u32::from(!backend_port);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = ((sum & 0xffff) + (sum >> 16)) as u16;
    if sum == 0 {
        0xffff
    } else {
        sum
    }
}

/// Inserts `scratch.reply` under `scratch.reply_key` with the first free
/// port of `source` as its destination port (written into the key) and
/// returns that port (network order); `scratch.reply_place` and
/// `scratch.reply_pos` say where it went. `DropNatPortsExhausted` only
/// when the search found every attempt taken; `DropNatTableFull` when it
/// found a free port but neither candidate went in: a free port's buckets
/// were both full, or the first candidate was lost to a race (another CPU
/// reserved the same port, or took its free ways, between the search and
/// the insert: the range may have many free ports) and the second was
/// taken too. So lbd is told of exhaustion (`EVENT_NAT_PORTS_EXHAUSTED`,
/// the warning to widen the range) only when the range is; a lost race
/// was reported as exhaustion. (Searching again after a lost race would
/// verify the search a second time, about 8,000 instructions.)
#[inline(always)]
pub fn reserve(
    scratch: &mut NatScratch,
    source: &NatSource,
    hash: u32,
    neutral: u16,
) -> Result<u16, Counter> {
    if source.port_max < source.port_min {
        return Err(Counter::DropNatPortsExhausted);
    }
    lb_nat_search(source, hash, neutral);
    // SAFETY: a load from this CPU's slot, written by the search.
    let found = unsafe { read_volatile(addr_of_mut!(scratch.candidates)) };
    if found == 0 {
        return Err(Counter::DropNatPortsExhausted);
    }
    if let Some(port) = claim(scratch, 0) {
        return Ok(port);
    }
    if found >= 2 {
        if let Some(port) = claim(scratch, 1) {
            return Ok(port);
        }
    }
    Err(Counter::DropNatTableFull)
}

/// Probes `neutral` (network order) if the range holds it, then the
/// attempts' ports in order, and keeps the first two free ones
/// in this CPU's scratch slot (`candidate_ports`, `candidate_places`,
/// their count in `candidates`). The count goes through memory: the
/// paths through the loop then meet again at every attempt instead of
/// multiplying. A function of its own: its frame is not stacked on the
/// inserts'.
#[inline(never)]
fn lb_nat_search(source: &NatSource, hash: u32, neutral: u16) {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    let range = u32::from(source.port_max - source.port_min) + 1;
    // SAFETY: a store to this CPU's slot.
    unsafe { write_volatile(addr_of_mut!(scratch.candidates), 0) };
    // Written out attempt by attempt (a loop's paths are kept apart by the
    // verifier until it ends): an attempt leaves nothing in registers for
    // the next to differ by, so the paths through each attempt meet again.
    // `try_port!(port, next, found)`: if `port` (network order) is free,
    // keep it and `next` (the port to try after it, untested: its insert
    // says) as the candidates, `found` of them, and stop.
    macro_rules! try_port {
        ($port:expr, $next:expr, $found:expr) => {{
            let port = $port;
            scratch.reply_key.dport = port;
            let place = table_hash(&scratch.reply_key);
            if table::probe(place) == Probed::Free {
                scratch.candidate_ports[0] = port;
                scratch.candidate_places[0] = place;
                scratch.candidate_ports[1] = $next;
                // SAFETY: a store to this CPU's slot.
                unsafe { write_volatile(addr_of_mut!(scratch.candidates), $found) };
                return;
            }
        }};
    }
    // The hashed attempt `i`'s port (network order).
    let hashed = |i: u32| (source.port_min + probe_offset(hash, i, range) as u16).to_be();
    if (source.port_min..=source.port_max).contains(&u16::from_be(neutral)) {
        try_port!(neutral, hashed(0), 2);
    }
    macro_rules! attempt {
        ($i:expr) => {{
            let found = if $i + 1 < NAT_PORT_ATTEMPTS { 2 } else { 1 };
            try_port!(hashed($i), hashed($i + 1), found);
        }};
    }
    const _: () = assert!(NAT_PORT_ATTEMPTS == 16, "one `attempt!` per attempt");
    attempt!(0);
    attempt!(1);
    attempt!(2);
    attempt!(3);
    attempt!(4);
    attempt!(5);
    attempt!(6);
    attempt!(7);
    attempt!(8);
    attempt!(9);
    attempt!(10);
    attempt!(11);
    attempt!(12);
    attempt!(13);
    attempt!(14);
    attempt!(15);
}

/// Inserts the reply entry with candidate `n`'s port; the port if it went
/// in (another CPU may have taken it, or its free way, in the instant
/// since the search).
#[inline(always)]
fn claim(scratch: &mut NatScratch, n: usize) -> Option<u16> {
    let port = scratch.candidate_ports[n];
    scratch.reply_key.dport = port;
    let place = if n == 0 {
        scratch.candidate_places[0]
    } else {
        table_hash(&scratch.reply_key)
    };
    // Once: a way lost to another CPU's claim leaves the next candidate.
    match table::insert::<false>(&scratch.reply_key, &scratch.reply, place) {
        Inserted::Yes(pos) => {
            scratch.reply_place = place;
            scratch.reply_pos = pos;
            Some(port)
        }
        Inserted::Full | Inserted::Taken(_) | Inserted::Contended => None,
    }
}
