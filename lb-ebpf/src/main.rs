//! The load balancer's entry points only: one per hook (XDP, tc ingress),
//! plus the tc egress program of data-path health checks, each a thin
//! wrapper that runs the one packet path (generic over the
//! context, see `hook`) and turns its outcome into that hook's verdict on
//! purpose; every verdict is counted.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Built for the host (e.g. `cargo build --workspace`), this is only a stub.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

mod bench;
mod conntrack;
mod copy;
mod fib;
mod forward;
mod guard;
mod hook;
mod lookup;
mod maps;
mod nat;
mod parse;
mod select;
mod state;
mod stats;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// Balances packets to VIPs across their backends (direct server return
/// or NAT) and translates NAT replies back;
/// everything else goes up the stack untouched.
#[xdp]
pub fn xdp_lb(ctx: XdpContext) -> u32 {
    hook::verdict(&ctx, run(&ctx))
}

/// The same balancer as a tc ingress program (tcx or cls_bpf, direct
/// action), for interfaces without XDP: forwarded frames are redirected to
/// the egress of the interface they came in on.
#[classifier]
pub fn tc_lb(ctx: TcContext) -> i32 {
    hook::linearize(&ctx);
    hook::verdict(&ctx, run(&ctx))
}

/// Both hooks' steps for one frame, in order: the packet path, what it
/// left pending (a wrap, the NAT path), then the connection table's
/// queued insert, and the verdict counted; all on this CPU's packet
/// state, looked up once.
#[inline(always)]
fn run<C: hook::Hook>(ctx: &C) -> forward::Outcome {
    let Some(state) = state::this_cpu() else {
        return lb_common::stats::Counter::DropInternal.into();
    };
    let outcome = forward::finish(ctx, forward::balance(ctx, state), state);
    let outcome = forward::Outcome::unpacked(conntrack::settle_pending(outcome.packed(), state));
    state::count(state, outcome.counter);
    outcome
}

/// Data-path health checks: a tc egress program (on `lo` and the
/// balancer's interface) that wraps lbd's marked check packets to a
/// tunnelled VIP for the backend the mark names, as client packets are
/// (see `forward::tunnel::hc`); everything else leaves untouched.
#[classifier]
pub fn tc_hc_encap(ctx: TcContext) -> i32 {
    forward::tunnel::hc::egress(&ctx)
}

/// Passes every frame up. Attached to the peer of a veth whose other end
/// sends frames with XDP_TX: veth delivers such frames only to a peer that
/// runs XDP.
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark wrapper: restores the packet, then tail-calls the program
/// under test (see `bench`). Not attached anywhere.
#[xdp]
pub fn xdp_bench(ctx: XdpContext) -> u32 {
    bench::restore_and_call(&ctx)
}

/// `xdp_bench` for tc: restores the packet, then tail-calls the tc
/// program under test. Not attached anywhere.
#[classifier]
pub fn tc_bench(ctx: TcContext) -> i32 {
    bench::tc_restore_and_call(&ctx)
}

/// Benchmark floor: swaps MACs and returns XDP_TX. Not attached anywhere.
#[xdp]
pub fn xdp_swap(ctx: XdpContext) -> u32 {
    bench::swap_macs(&ctx)
}

/// End-to-end baseline: a bare MAC-rewrite + XDP_TX forwarder.
#[xdp]
pub fn xdp_forward_one(ctx: XdpContext) -> u32 {
    bench::forward_one(&ctx)
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; nothing panics.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// On the host this crate is only a stub: the program is built for
/// bpfel-unknown-none and embedded in lbd.
#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("lb-ebpf is an eBPF object built for bpfel-unknown-none; run lbd instead");
}
