//! Benchmark support, not on the packet path: wrappers that restore the
//! packet before every run of the program under test (BPF_PROG_TEST_RUN
//! with a repeat count otherwise feeds a program its own output) and
//! tail-call it. Unlike the balancer's wrapper, this one undoes a moved
//! head: the decap program removes bytes at the front.

use aya_ebpf::{
    bindings::{bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action},
    helpers::{bpf_skb_change_tail, bpf_skb_store_bytes, bpf_xdp_adjust_head, bpf_xdp_store_bytes},
    macros::map,
    maps::{Array, ProgramArray},
    programs::{TcContext, XdpContext},
    EbpfContext as _,
};
use lb_common::{BenchTemplate, BENCH_TEMPLATE_MAX_U32};

/// The packet to restore (one entry).
#[map]
pub static DECAP_BENCH_TEMPLATE: Array<BenchTemplate> = Array::with_max_entries(1, 0);

/// The XDP program under test, in slot 0.
#[map]
pub static DECAP_BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The tc program under test, in slot 0 (a program array holds one
/// program type).
#[map]
pub static TC_DECAP_BENCH_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// `TC_ACT_TRAP`: what the tc wrapper returns when its setup fails, a
/// value the program under test never returns (its pass verdict is
/// `TC_ACT_UNSPEC`, -1).
const SETUP_FAILED: i32 = 8;

/// Restores the template (moving the head back by what the last run
/// removed), tail-calls the program under test. XDP_ABORTED if anything
/// fails, so a broken setup cannot pass for a fast program.
#[inline(always)]
pub fn xdp_restore_and_call(ctx: &XdpContext) -> u32 {
    let Some(template) = DECAP_BENCH_TEMPLATE.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let want = template.len;
    if want == 0 || want > BENCH_TEMPLATE_MAX_U32 {
        return xdp_action::XDP_ABORTED;
    }
    let have = (ctx.data_end() - ctx.data()) as i32;
    if have != want as i32 {
        // SAFETY: helper on our own context; a negative delta grows the
        // frame at the front, back to where the last run's head was.
        if unsafe { bpf_xdp_adjust_head(ctx.as_ptr().cast(), have - want as i32) } != 0 {
            return xdp_action::XDP_ABORTED;
        }
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
    // SAFETY: tail call with our context; returns only on failure.
    unsafe { DECAP_BENCH_TARGET.tail_call(ctx, 0) };
    xdp_action::XDP_ABORTED
}

/// `xdp_restore_and_call` for tc: the room the last run removed after the
/// Ethernet header is put back there (growing at the tail instead would
/// walk the data forward run after run until the skb's 16-bit header
/// offsets overflow), and the template is written over it.
#[inline(always)]
pub fn tc_restore_and_call(ctx: &TcContext) -> i32 {
    let Some(template) = DECAP_BENCH_TEMPLATE.get(0) else {
        return SETUP_FAILED;
    };
    let want = template.len;
    if want == 0 || want > BENCH_TEMPLATE_MAX_U32 {
        return SETUP_FAILED;
    }
    let skb = ctx.skb.skb;
    let have = ctx.len();
    if have < want {
        if ctx
            .adjust_room((want - have) as i32, BPF_ADJ_ROOM_MAC, 0)
            .is_err()
        {
            return SETUP_FAILED;
        }
    } else if have > want {
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
    // SAFETY: tail call with our context; returns only on failure.
    unsafe { TC_DECAP_BENCH_TARGET.tail_call(ctx, 0) };
    SETUP_FAILED
}
