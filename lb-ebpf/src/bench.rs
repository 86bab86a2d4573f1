//! Benchmark support, not on the packet path: a wrapper that restores the
//! packet before every run of the program under test (BPF_PROG_TEST_RUN
//! with a repeat count otherwise feeds a program its own output), and the
//! floor every XDP forwarder pays (swap MACs, XDP_TX).

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6,
    },
    helpers::{
        bpf_skb_change_tail, bpf_skb_store_bytes, bpf_xdp_adjust_head, bpf_xdp_adjust_tail,
        bpf_xdp_store_bytes,
    },
    macros::map,
    maps::{Array, ProgramArray},
    programs::{TcContext, XdpContext},
    EbpfContext as _,
};
use lb_common::{BenchTemplate, BENCH_TEMPLATE_MAX_U32};
use network_types::eth::EthHdr;

use crate::parse::ptr_at;

/// The packet to restore (one entry).
#[map]
pub static BENCH_TEMPLATE: Array<BenchTemplate> = Array::with_max_entries(1, 0);

/// The program under test, in slot 0.
#[map]
pub static BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Run counter (the varying field). Shared, not per CPU, so a round on
/// another CPU does not replay earlier values (test runs do not overlap).
#[map]
pub static BENCH_RUNS: Array<u32> = Array::with_max_entries(1, 0);

/// Restores the template, varies the field (and port) if asked, tail-calls the
/// program under test. XDP_ABORTED if anything fails (so a broken setup
/// cannot pass for a fast program).
#[inline(always)]
pub fn restore_and_call(ctx: &XdpContext) -> u32 {
    let Some(template) = BENCH_TEMPLATE.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // Bounded for the verifier: at most the buffer's size.
    let want = template.len;
    if want == 0 || want > BENCH_TEMPLATE_MAX_U32 {
        return xdp_action::XDP_ABORTED;
    }
    let have = (ctx.data_end() - ctx.data()) as i32;
    // A program that grew the frame at the front (tunnel modes) gets its
    // headroom back; one that cut or grew the tail gets the length back.
    // The head is adjusted on every run, by 0 when nothing grew, so the
    // wrapper costs every case the same (one helper call) and the
    // difference of two cases is the difference of their programs.
    let restored = if have < want as i32 {
        // SAFETY: helper on our own context.
        unsafe { bpf_xdp_adjust_tail(ctx.as_ptr().cast(), want as i32 - have) }
    } else {
        // SAFETY: helper on our own context.
        unsafe { bpf_xdp_adjust_head(ctx.as_ptr().cast(), have - want as i32) }
    };
    if restored != 0 {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: `want` is at most the template's buffer size.
    let stored = unsafe {
        bpf_xdp_store_bytes(
            ctx.as_ptr().cast(),
            0,
            template.bytes.as_ptr() as *mut _,
            want,
        )
    };
    if stored != 0 {
        return xdp_action::XDP_ABORTED;
    }
    vary(template, want, |at, bytes, len| {
        // SAFETY: helper on our own context; `vary` keeps the bytes
        // inside the restored packet.
        unsafe { bpf_xdp_store_bytes(ctx.as_ptr().cast(), at, bytes as *mut _, len) };
    });
    // SAFETY: tail call with our context; returns only on failure.
    unsafe { BENCH_TARGET.tail_call(ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// Writes what the template varies into the restored packet of `want`
/// bytes with `store(offset, bytes, len)` (the hook's store helper): the
/// run's number (big endian) at `vary_offset` and, with
/// `vary_port_offset`, `BenchTemplate::varied_port` of it. Nothing when
/// `vary_offset` is 0. One place for both wrappers.
#[inline(always)]
fn vary(template: &BenchTemplate, want: u32, mut store: impl FnMut(u32, *const u8, u32)) {
    let offset = template.vary_offset;
    if offset == 0 || offset + 4 > want {
        return;
    }
    let Some(runs) = BENCH_RUNS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: benchmark runs do not overlap.
    let run = unsafe {
        *runs = (*runs).wrapping_add(1);
        *runs
    };
    let value = run.to_be_bytes();
    store(offset & 0xff, value.as_ptr(), 4);
    let port_offset = template.vary_port_offset;
    if port_offset != 0 && port_offset + 2 <= want {
        let port = BenchTemplate::varied_port(run).to_be_bytes();
        store(port_offset & 0xff, port.as_ptr(), 2);
    }
}

/// The tc program under test, in slot 0 (a program array holds one
/// program type, so tc has its own).
#[map]
pub static TC_BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// `TC_ACT_TRAP`: what the tc wrapper returns when its setup fails, a
/// value the program under test never returns (its pass verdict is
/// `TC_ACT_UNSPEC`, -1).
const SETUP_FAILED: i32 = 8;

/// `restore_and_call` for tc: restores the template into the skb, varies
/// the field (and port) if asked, tail-calls the tc program under test.
#[inline(always)]
pub fn tc_restore_and_call(ctx: &TcContext) -> i32 {
    let Some(template) = BENCH_TEMPLATE.get(0) else {
        return SETUP_FAILED;
    };
    let want = template.len;
    if want == 0 || want > BENCH_TEMPLATE_MAX_U32 {
        return SETUP_FAILED;
    }
    let skb = ctx.skb.skb;
    if ctx.len() > want && ctx.len() - want < 64 {
        // What a tunnel mode put after the MAC header comes out again, so
        // the headroom does not run out over the runs. The skb stays
        // marked encapsulated (the kernel keeps the mark on a decap), so
        // later runs wrap through `grow_after_mac`'s retry without the
        // ENCAP flags (tests/tests/tunnel_dataplane/repeated.rs).
        let decap = if template.bytes[12..14] == [0x86, 0xdd] {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6
        } else {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4
        };
        let shrink = -((ctx.len() - want) as i32);
        if ctx
            .adjust_room(shrink, BPF_ADJ_ROOM_MAC, u64::from(decap))
            .is_err()
        {
            return SETUP_FAILED;
        }
    }
    if ctx.len() != want {
        // SAFETY: helper on our own context.
        if unsafe { bpf_skb_change_tail(skb, want, 0) } != 0 {
            return SETUP_FAILED;
        }
    }
    // SAFETY: `want` is at most the template's buffer size.
    let stored =
        unsafe { bpf_skb_store_bytes(skb.cast(), 0, template.bytes.as_ptr() as *const _, want, 0) };
    if stored != 0 {
        return SETUP_FAILED;
    }
    vary(template, want, |at, bytes, len| {
        // SAFETY: helper on our own skb; `vary` keeps the bytes inside
        // the restored packet.
        unsafe { bpf_skb_store_bytes(skb.cast(), at, bytes.cast(), len, 0) };
    });
    // SAFETY: tail call with our context; returns only on failure.
    unsafe { TC_BENCH_TARGET.tail_call(ctx, 0) };
    SETUP_FAILED
}

/// MACs for `forward_one`: slot 0 our own (the source), slots 1..=4 the
/// backends' (all-zero: unused).
#[map]
pub static BENCH_FORWARD: Array<[u8; 6]> = Array::with_max_entries(5, 0);

/// The baseline the end-to-end benchmark compares lbd with: a bare
/// MAC-rewrite + XDP_TX forwarder. Every IPv4 TCP frame (options-free IPv4
/// header assumed) goes to backend `source port % backends`: no VIP lookup,
/// no Maglev, no connection table; everything else passes.
#[inline(always)]
pub fn forward_one(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr, _>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let (Some(proto), Some(sport)) = (
        ptr_at::<u8, _>(ctx, EthHdr::LEN + 9),
        ptr_at::<[u8; 2], _>(ctx, EthHdr::LEN + 20),
    ) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by ptr_at.
    let (ether_type, proto, sport) = unsafe {
        (
            u16::from_be((*eth).ether_type),
            *proto,
            u16::from_be_bytes(*sport),
        )
    };
    if ether_type != 0x0800 || proto != 6 {
        return xdp_action::XDP_PASS;
    }
    let mut backends = 0u32;
    for slot in 1..=4u32 {
        if BENCH_FORWARD.get(slot).is_some_and(|mac| *mac != [0; 6]) {
            backends = slot;
        }
    }
    if backends == 0 {
        return xdp_action::XDP_PASS;
    }
    let (Some(src), Some(dst)) = (
        BENCH_FORWARD.get(0),
        BENCH_FORWARD.get(1 + u32::from(sport) % backends),
    ) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        (*eth).dst_addr = *dst;
        (*eth).src_addr = *src;
    }
    xdp_action::XDP_TX
}

/// Swaps the MACs and sends the frame back: the least an XDP forwarder does.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at::<EthHdr, _>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        core::mem::swap(&mut (*eth).dst_addr, &mut (*eth).src_addr);
    }
    xdp_action::XDP_TX
}
