//! A wrap repeated on one skb, as the benchmark's repeated runs make it:
//! BPF_PROG_TEST_RUN with a repeat count runs the program over and over
//! on the same skb, which the bench wrapper (`tc_bench`, `xdp_bench`)
//! restores to the template before each run. At tc the first run's wrap
//! leaves the skb marked encapsulated, so the next run's room helper
//! refuses the ENCAP flags (`-EALREADY`) and `TcContext::grow_after_mac`
//! wraps without them (its fallback, taken for an skb that came through
//! another tunnel too). The last run's frame must be the very wrap a
//! single run gives: etherparse checks it (outer header and checksums,
//! GUE's UDP checksum, the inner packet byte for byte), for every mode
//! and family pair. At XDP (no mark, no retry) the same holds through
//! `xdp_bench`.

use anyhow::{anyhow, Context as _};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use lb_common::{consts::names, stats::Counter};
use lb_tests::{
    bench::template::{self, Wrapper},
    natbed::{client_flow, frame},
    packet::{ACK, SYN},
    testbed::{Hook, VIP4, VIP6},
    tunnelbed::TunnelBed,
};
use lb_userspace::config::{Protocol, VipConfig};

use crate::{
    counter, find,
    frames::{check_wrapped, wrapped_for},
    in_netns, vips, GUE, GUE_4IN6, IPIP, IPIP_4IN6,
};

/// Loads the hook's bench wrapper (lbd never loads it) and points it at
/// the hook's packet program with `frame` as the packet it restores
/// before every run.
fn prepare_wrapper(bed: &mut TunnelBed, frame: &[u8]) -> anyhow::Result<()> {
    let dataplane = &mut bed.nat.bed.dataplane;
    let (wrapper, target) = match bed.nat.bed.hook {
        Hook::Xdp => {
            dataplane
                .program(names::PROG_BENCH)
                .context("loading xdp_bench")?;
            (
                Wrapper::Xdp,
                dataplane.program(names::PROG_LB)?.fd()?.try_clone()?,
            )
        }
        Hook::Tc => {
            let bench: &mut SchedClassifier = dataplane
                .ebpf_mut()
                .program_mut(names::PROG_TC_BENCH)
                .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_BENCH))?
                .try_into()?;
            if bench.fd().is_err() {
                bench.load().context("loading tc_bench")?;
            }
            (Wrapper::Tc, dataplane.tc_program()?.fd()?.try_clone()?)
        }
    };
    template::prepare(dataplane, wrapper, &target, frame, 0u32)
}

/// One BPF_PROG_TEST_RUN of the hook's bench wrapper (`prepare_wrapper`
/// first) on `frame` come in on `ifindex`, `repeat` runs on the same
/// context: (raw verdict, frame after the last run).
fn run_wrapper(
    bed: &mut TunnelBed,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> anyhow::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
    let xdp_md: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .collect();
    // struct __sk_buff up to `ifindex` (offset 40): all else zero.
    let mut skb = vec![0u8; 44];
    skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let hook = bed.nat.bed.hook;
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(match hook {
            Hook::Xdp => &xdp_md,
            Hook::Tc => &skb,
        }),
        repeat,
        ..TestRunOptions::default()
    };
    let dataplane = &mut bed.nat.bed.dataplane;
    let result = match hook {
        Hook::Xdp => dataplane.program(names::PROG_BENCH)?.test_run(options),
        Hook::Tc => {
            let bench: &mut SchedClassifier = dataplane
                .ebpf_mut()
                .program_mut(names::PROG_TC_BENCH)
                .ok_or_else(|| anyhow!("no {} program", names::PROG_TC_BENCH))?
                .try_into()?;
            bench.test_run(options)
        }
    }
    .with_context(|| format!("BPF_PROG_TEST_RUN of the bench wrapper, repeat {repeat}"))?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// A tracked packet of a TCP flow to `vip`:`port` (a tunnel VIP of the
/// fixture), run once by itself, then through the bench wrapper once and
/// `REPEAT` times on one context: every run's frame is the one wrap
/// etherparse accepts for the flow's backend, and every run is counted
/// as a wrap.
fn repeated_wrap_is_the_single_wrap(bed: &mut TunnelBed, vips: &[VipConfig], vip: &str, port: u16) {
    /// More than one run: the second on an skb the first wrapped.
    const REPEAT: u32 = 3;
    let config = find(vips, vip, port, Protocol::Tcp).clone();
    let flow = client_flow(vip, port, 40_070);
    let in_if = bed.nat.in_if;
    let redirect = bed.verdicts().redirect;
    let (verdict, _) = bed
        .run_on(in_if, &frame(&flow, Protocol::Tcp, SYN, b""))
        .expect("SYN");
    assert_eq!(verdict, redirect, "{vip}:{port}: the SYN");
    let tracked = frame(&flow, Protocol::Tcp, ACK, b"wrapped again and again");
    let want = wrapped_for(bed, &config, &flow, &tracked[14..], false);
    let (verdict, single) = bed.run_on(in_if, &tracked).expect("single run");
    assert_eq!(verdict, redirect, "{vip}:{port}: single run");
    check_wrapped(&single, &want);

    prepare_wrapper(bed, &tracked).expect("bench wrapper");
    let before = counter(bed, Counter::TunnelEncap);
    for (runs, repeat) in [(1, 1), (1 + REPEAT, REPEAT)] {
        let (verdict, out) = run_wrapper(bed, in_if, &tracked, repeat).expect("wrapper run");
        assert_eq!(verdict, redirect, "{vip}:{port}: repeat {repeat}");
        check_wrapped(&out, &want);
        assert_eq!(
            out, single,
            "{vip}:{port}: repeat {repeat} ends with the single run's frame"
        );
        assert_eq!(
            counter(bed, Counter::TunnelEncap) - before,
            u64::from(runs),
            "{vip}:{port}: every run wrapped"
        );
    }
    assert_eq!(counter(bed, Counter::DropMalformed), 0, "{vip}:{port}");
    assert_eq!(counter(bed, Counter::DropInternal), 0, "{vip}:{port}");
}

/// Every mode and family pair: IPIP and GUE, 4in4, 6in6 and 4in6.
fn a_wrap_repeated_on_one_context_is_the_single_runs_wrap(hook: Hook) {
    in_netns(hook, vips(), |bed, vips| {
        for (vip, port) in [
            (VIP4, IPIP),
            (VIP6, IPIP),
            (VIP4, IPIP_4IN6),
            (VIP4, GUE),
            (VIP6, GUE),
            (VIP4, GUE_4IN6),
        ] {
            repeated_wrap_is_the_single_wrap(bed, vips, vip, port);
        }
    });
}

lb_tests::on_both_hooks!(a_wrap_repeated_on_one_context_is_the_single_runs_wrap);

/// The premise of the tc case, checked on the running kernel with a probe
/// of its own (a tiny tc program built here, instruction by
/// instruction): an skb wrapped with the ENCAP flags and unwrapped again
/// as `tc_bench` unwraps it (`BPF_F_ADJ_ROOM_DECAP_L3_IPV4`) stays
/// marked encapsulated, so a second wrap with the flags is refused
/// (`-EALREADY`). The wrapper's later runs of the tc program therefore
/// wrap through `grow_after_mac`'s retry without them. Should a kernel
/// clear the mark on this decap, this fails: the repeated case above
/// would then no longer reach the retry.
#[test]
fn the_kernel_refuses_a_second_encap_after_a_decap() {
    let frame = lb_tests::packet::tcp(&client_flow(VIP4, IPIP, 40_071), ACK, None, b"probe");
    let len = i32::try_from(frame.len()).expect("length");
    let probe = probe::load_wrap_probe(len).expect("loading the probe (are you root?)");
    // One run: a fresh skb takes the wrap.
    assert_eq!(probe::run(&probe, &frame, 1).expect("one run"), 0);
    // Two on one skb: the second unwraps, then wraps again.
    let refused = probe::run(&probe, &frame, 2).expect("two runs");
    assert_eq!(
        refused as i32,
        -libc::EALREADY,
        "the second wrap with ENCAP flags (0: the mark was cleared; {}: the unwrap failed)",
        probe::UNWRAP_FAILED
    );
}

/// A hand-built tc program that wraps as the tunnel modes do at tc and
/// unwraps as `tc_bench` does, to ask the kernel what the bench's runs
/// meet (no tracing needed).
mod probe {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    use anyhow::Context as _;

    /// `BPF_PROG_LOAD` and `BPF_PROG_TEST_RUN`'s command numbers.
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    /// `BPF_PROG_TYPE_SCHED_CLS`.
    const SCHED_CLS: u32 = 3;
    /// `bpf_skb_adjust_room`'s helper number and its flags.
    const SKB_ADJUST_ROOM: i32 = 50;
    const ADJ_ROOM_MAC: i32 = 1;
    const FIXED_GSO: i32 = 1 << 0;
    const ENCAP_L3_IPV4: i32 = 1 << 1;
    const DECAP_L3_IPV4: i32 = 1 << 7;
    /// The room a wrap takes (an outer IPv4 header).
    const ROOM: i32 = 20;
    /// What the probe returns when its unwrap fails.
    pub(super) const UNWRAP_FAILED: u32 = 1000;

    /// `struct bpf_insn`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        }
    }

    /// `r{dst} = r{src}`, `r{dst} = imm`, a helper call, exit.
    fn mov(dst: u8, src: u8) -> Insn {
        insn(0xbf, dst, src, 0, 0)
    }
    fn mov_imm(dst: u8, imm: i32) -> Insn {
        insn(0xb7, dst, 0, 0, imm)
    }
    fn call(helper: i32) -> Insn {
        insn(0x85, 0, 0, 0, helper)
    }
    fn exit() -> Insn {
        insn(0x95, 0, 0, 0, 0)
    }

    /// `bpf_skb_adjust_room(skb in r6, len, BPF_ADJ_ROOM_MAC, flags)`.
    fn adjust_room(len: i32, flags: i32) -> [Insn; 5] {
        [
            mov(1, 6),
            mov_imm(2, len),
            mov_imm(3, ADJ_ROOM_MAC),
            mov_imm(4, flags),
            call(SKB_ADJUST_ROOM),
        ]
    }

    /// `union bpf_attr` as `BPF_PROG_LOAD` reads it, up to the fields
    /// used.
    #[repr(C)]
    #[derive(Default)]
    struct LoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }

    /// `union bpf_attr` as `BPF_PROG_TEST_RUN` reads it (`test`).
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
    }

    /// Loads the probe for frames of `len` bytes: an skb longer than
    /// that (a run's wrap left it so) is unwrapped first (`UNWRAP_FAILED`
    /// if refused); then it is wrapped with the ENCAP flags, and the
    /// helper's answer returned.
    pub(super) fn load_wrap_probe(len: i32) -> anyhow::Result<OwnedFd> {
        let mut insns = vec![
            mov(6, 1),
            // r7 = skb->len
            insn(0x61, 7, 6, 0, 0),
            // if r7 <= len: skip the unwrap (its 5, a test and a return).
            insn(0xb5, 7, 0, 8, len),
        ];
        insns.extend(adjust_room(-ROOM, DECAP_L3_IPV4));
        insns.extend([
            // if r0 == 0: skip the failure's return.
            insn(0x15, 0, 0, 2, 0),
            mov_imm(0, UNWRAP_FAILED as i32),
            exit(),
        ]);
        insns.extend(adjust_room(ROOM, ENCAP_L3_IPV4 | FIXED_GSO));
        insns.push(exit());
        let license = c"GPL";
        let mut log = vec![0u8; 4096];
        let attr = LoadAttr {
            prog_type: SCHED_CLS,
            insn_cnt: u32::try_from(insns.len())?,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: u32::try_from(log.len())?,
            log_buf: log.as_mut_ptr() as u64,
            ..LoadAttr::default()
        };
        // SAFETY: the attribute is the kernel's layout; every pointer in
        // it lives (with the size given) until the call returns.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const LoadAttr,
                std::mem::size_of::<LoadAttr>(),
            )
        };
        if fd < 0 {
            let log = String::from_utf8_lossy(&log);
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!("BPF_PROG_LOAD of the probe: {}", log.trim_end_matches('\0'))
            });
        }
        // SAFETY: a new descriptor the kernel just gave us.
        Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
    }

    /// Runs `probe` `repeat` times on one skb holding `frame`: the last
    /// run's return value.
    pub(super) fn run(probe: &OwnedFd, frame: &[u8], repeat: u32) -> anyhow::Result<u32> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = TestRunAttr {
            prog_fd: u32::try_from(probe.as_raw_fd())?,
            data_size_in: u32::try_from(frame.len())?,
            data_size_out: u32::try_from(out.len())?,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat,
            ..TestRunAttr::default()
        };
        // SAFETY: as in `load_wrap_probe`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error()).context("BPF_PROG_TEST_RUN of the probe");
        }
        Ok(attr.retval)
    }
}
