//! A new NAT flow: its backend, a source port (the reply entry is the
//! reservation), then the forward entry; the packet then goes through the
//! forward entry like any other (its next hop is looked up then, as for
//! an entry whose cached hop is unset).
//!
//! All of it is table work on the packet this CPU's scratch slot holds,
//! in a function of its own that takes no context and reads nothing of
//! the packet's headers: the BPF verifier then checks it in one state,
//! not once per address family and protocol the translation splits into,
//! and its frame (the inserts' two cache lines of writes, the port
//! search) is not stacked on the translation's.

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use lb_common::{
    consts::{
        AF_INET, AF_INET6, EVENT_NAT_PORTS_EXHAUSTED, EVENT_NO_BACKEND, NAT_DIR_FORWARD,
        NAT_DIR_REPLY,
    },
    flow_table::NOWHERE,
    hash::flow_hash_after,
    stats::Counter,
    NatEntry,
};

use super::{
    flags::nat_flags,
    ports,
    table::{self, Inserted},
};
use crate::{
    guard::limit,
    maps::{NAT_SCRATCH, NAT_SOURCES},
    select, stats,
};

/// `lb_nat_open`'s answer for a flow this packet opened: the entry's
/// bucket and way below this bit.
const OPENED: u64 = 1 << 62;
/// The same for a flow another CPU opened in the same instant (its entry
/// is used).
const JOINED: u64 = 1 << 61;

/// Opens the flow of the packet in this CPU's scratch slot (`now`: the
/// time it is seen; `place`: its key's table hash): its forward entry in
/// the table, and whether this packet inserted it (false: another CPU
/// opening the same flow at the same time won, its entry is used and
/// this one's port freed); else the counter saying why not.
#[inline(always)]
pub fn open(now: u64, place: u32) -> Result<(&'static mut NatEntry, bool), Counter> {
    let answer = lb_nat_open(now, place);
    if answer & (OPENED | JOINED) == 0 {
        // SAFETY: the low half is a `Counter` (`repr(u32)`) that
        // `lb_nat_open` stored; nothing else builds these words.
        return Err(unsafe { core::mem::transmute::<u32, Counter>(answer as u32) });
    }
    let entry = table::entry_in(((answer >> 8) & 0xffff_ffff) as u32, answer as u32 & 0xff)
        .ok_or(Counter::DropNatTableFull)?;
    Ok((entry, answer & OPENED != 0))
}

/// `open`'s work, a function of its own (see the module's comment): the
/// answer in one register, `OPENED` or `JOINED` with the entry's bucket
/// (bits 8 on) and way, or a `Counter`.
#[inline(never)]
fn lb_nat_open(now: u64, place: u32) -> u64 {
    let Some(scratch) = NAT_SCRATCH.get_ptr_mut(0) else {
        return Counter::DropInternal as u64;
    };
    // SAFETY: this CPU's slot, used by this program run only.
    let scratch = unsafe { &mut *scratch };
    // The way the forward entry will most likely take, written after the
    // port search: its misses overlap the search's.
    table::warm_slot(place);
    let vip = &scratch.vip;
    let key = &scratch.packet.key;
    let hash = flow_hash_after(key, place);
    let Some((backend_id, backend)) = select::pick_with(vip, key, hash) else {
        stats::report(EVENT_NO_BACKEND, vip.id, key);
        return Counter::DropNoBackend as u64;
    };
    let Some(source) = NAT_SOURCES.get(vip.id) else {
        return Counter::DropNatPortsExhausted as u64;
    };
    let family_ok =
        source.family == key.family && (key.family == AF_INET || key.family == AF_INET6);
    if !family_ok {
        return Counter::DropNatPortsExhausted as u64;
    }
    // Charged before the port search, so a limited flood costs no
    // search; every later refusal (and a join: the opening CPU's packet
    // paid) gives the tokens back (`limit::refund`), as a refused flow
    // takes nothing.
    if !limit::admit(vip.id, key) {
        return Counter::DropRateLimited as u64;
    }
    let backend_port = if backend.port != 0 {
        backend.port
    } else {
        key.dport
    };
    let vip_id = vip.id as u16;
    let reported_vip = vip.id;
    let (proto, family) = (key.proto, key.family);
    let (client, client_port, vip_addr, vip_port) = (key.src, key.sport, key.dst, key.dport);
    // Field by field: a struct built whole would be built on this frame
    // first and copied (the frame is on the insert's).
    let reply_key = &mut scratch.reply_key;
    reply_key.src = backend.addr;
    reply_key.dst = source.addr;
    reply_key.sport = backend_port;
    reply_key.dport = 0;
    reply_key.proto = proto;
    reply_key.family = family;
    reply_key._pad = 0;
    fill(
        &mut scratch.reply,
        (vip_addr, client, vip_port, client_port),
        (backend_id, vip_id, now),
    );
    scratch.reply.direction = NAT_DIR_REPLY;
    let neutral = ports::neutral_port(client_port, vip_port, backend_port);
    let port = match ports::reserve(scratch, source, hash, neutral) {
        Ok(port) => port,
        Err(counter) => {
            if counter == Counter::DropNatPortsExhausted {
                stats::report(EVENT_NAT_PORTS_EXHAUSTED, reported_vip, &scratch.packet.key);
            }
            limit::refund(reported_vip, &scratch.packet.key);
            return counter as u64;
        }
    };
    fill(
        &mut scratch.entry,
        (source.addr, backend.addr, port, backend_port),
        (backend_id, vip_id, now),
    );
    scratch.entry.flags = nat_flags(scratch.packet.tcp_flags);
    scratch.entry.direction = NAT_DIR_FORWARD;
    let key = &scratch.packet.key;
    let (kind, pos) = match table::insert::<true>(key, &scratch.entry, place) {
        Inserted::Yes(pos) => {
            stats::count(Counter::NatNew);
            (OPENED, pos)
        }
        not_opened => {
            // This one's port goes back, and its tokens: the table is
            // full, or another CPU opened this flow a moment ago (its
            // translation stands, its packet paid). One call site of each
            // for both outcomes (fewer instructions to verify).
            table::release(&scratch.reply_key, scratch.reply_place, scratch.reply_pos);
            limit::refund(reported_vip, key);
            // Another CPU's copy of the flow took this one's out while
            // both were being settled (`Taken(NOWHERE)`): it stands, or
            // is about to, and this packet joins it as it would a copy
            // found standing. (It was dropped as `DropNatTableFull`: a
            // lost race counted as a full table.)
            let pos = match not_opened {
                Inserted::Taken(pos) if pos as usize >= NOWHERE => table::standing_copy(place),
                Inserted::Taken(pos) => pos,
                _ => NOWHERE as u32,
            };
            // Through memory: one unknown position for the verifier to
            // follow into `holds_at`, not one per case above.
            // SAFETY: this CPU's slot.
            let pos = unsafe {
                write_volatile(addr_of_mut!(scratch.inserted), pos);
                read_volatile(addr_of!(scratch.inserted))
            };
            let key = &scratch.packet.key;
            if !table::holds_at(key, place, pos) {
                // Full; or (never in practice) every way it tried taken
                // by other CPUs' inserts of other keys in the same
                // instant (`flow_table::insert_new`), or the copy that
                // stood gone again.
                return Counter::DropNatTableFull as u64;
            }
            (JOINED, pos)
        }
    };
    match table::bucket_index_at(place, pos) {
        Some(bucket) => kind | (u64::from(bucket) << 8) | u64::from(pos & 7),
        None => Counter::DropNatTableFull as u64,
    }
}

/// Writes a new entry's translation (`src`, `dst`, `sport`, `dport`),
/// backend, VIP and time into `entry` in place, everything else zero
/// (the caller sets flags and direction).
#[inline(always)]
fn fill(
    entry: &mut NatEntry,
    (src, dst, sport, dport): ([u32; 4], [u32; 4], u16, u16),
    (backend_id, vip_id, now): (u32, u16, u64),
) {
    entry.src = src;
    entry.dst = dst;
    entry.sport = sport;
    entry.dport = dport;
    entry.backend_id = backend_id;
    entry.last_seen_ns = now;
    entry.ifindex = 0;
    entry.dmac = [0; 6];
    entry.smac = [0; 6];
    entry.flags = 0;
    entry.direction = 0;
    entry.vip_id = vip_id;
    entry.mtu = 0;
}
