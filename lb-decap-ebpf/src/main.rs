//! lb-decap's entry points only: one per hook (XDP, tc ingress), each a
//! thin wrapper that runs the one decap path (generic over the context, see
//! `hook`), counts its outcome and turns it into that hook's verdict.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Built for the host (e.g. `cargo build --workspace`), this is only a stub.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

mod bench;
mod decap;
mod ecn;
mod hook;
mod inner;
mod maps;
mod outer;
mod parse;
mod stats;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lb_common::decap::DecapCounter;

/// Unwraps tunnel packets addressed to this backend and to one of its
/// VIPs and hands the inner packet to the stack; passes everything else
/// that is not a tunnel packet to us, untouched; drops the rest.
#[xdp]
pub fn xdp_decap(ctx: XdpContext) -> u32 {
    let counter = decap::run(&ctx);
    stats::count(counter);
    hook::verdict(&ctx, counter)
}

/// The same as a tc ingress program (tcx), for interfaces without XDP.
#[classifier]
pub fn tc_decap(ctx: TcContext) -> i32 {
    hook::linearize(&ctx);
    let mut counter = tc_run(&ctx);
    // Judged on part of the frame only: judged again on all it may need.
    if counter == DecapCounter::DropMalformed && hook::linearize_more(&ctx) {
        counter = tc_run(&ctx);
    }
    stats::count(counter);
    hook::verdict(&ctx, counter)
}

/// `decap::run` at tc, not inlined: `tc_decap` calls it twice at most.
#[inline(never)]
fn tc_run(ctx: &TcContext) -> DecapCounter {
    decap::run(ctx)
}

/// Benchmark wrapper: restores the packet, then tail-calls the XDP program
/// under test (see `bench`). Not attached anywhere.
#[xdp]
pub fn xdp_decap_bench(ctx: XdpContext) -> u32 {
    bench::xdp_restore_and_call(&ctx)
}

/// `xdp_decap_bench` for tc. Not attached anywhere.
#[classifier]
pub fn tc_decap_bench(ctx: TcContext) -> i32 {
    bench::tc_restore_and_call(&ctx)
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

/// On the host this crate is only a stub: the programs are built for
/// bpfel-unknown-none and embedded in lb-decap.
#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("lb-decap-ebpf is an eBPF object built for bpfel-unknown-none; run lb-decap instead");
}
