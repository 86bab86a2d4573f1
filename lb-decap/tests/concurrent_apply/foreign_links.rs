//! Another tool's programs and links (made by raw bpf(2) calls): left
//! alone under a decap link's name, and not in front of lb-decap's tc link.

use std::path::Path;

use lb_decap::{config::Attach, dataplane, pins::PinDir};

use crate::fixtures::{links, settings, settings_on, tcx_ids, veth_pair, Lab};

/// `BPF_PROG_TYPE_SCHED_CLS` and `BPF_PROG_TYPE_XDP` (linux/bpf.h).
const PROG_SCHED_CLS: u32 = 3;
const PROG_XDP: u32 = 6;
/// `BPF_XDP` and `BPF_TCX_INGRESS`: the attach types of the links.
const ATTACH_XDP: u32 = 37;
const ATTACH_TCX_INGRESS: u32 = 46;

/// bpf(2) with a zeroed attr of 128 bytes, `fill` setting its fields.
fn bpf(cmd: libc::c_long, fill: impl FnOnce(&mut [u8; 128])) -> std::io::Result<i64> {
    let mut attr = [0u8; 128];
    fill(&mut attr);
    // SAFETY: an attr buffer larger than the kernel's union, zero beyond
    // the fields set; what it points at outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// Another tool's program, named `name` (lbd's is `xdp_lb`), of type
/// `prog_type`, returning `verdict` (XDP_PASS, or TCX_PASS that ends the
/// tcx chain), attached to `interface` at `attach_type`: the link's fd.
fn foreign_link(
    name: &str,
    prog_type: u32,
    attach_type: u32,
    verdict: i32,
    interface: &str,
) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    // r0 = verdict; exit.
    let mut insns = [0u8; 16];
    insns[0] = 0xb7;
    insns[4..8].copy_from_slice(&verdict.to_le_bytes());
    insns[8] = 0x95;
    let license = b"GPL\0";
    let prog = bpf(5, |a| {
        a[0..4].copy_from_slice(&prog_type.to_ne_bytes());
        a[4..8].copy_from_slice(&2u32.to_ne_bytes());
        a[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        a[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        a[48..48 + name.len()].copy_from_slice(name.as_bytes());
        if prog_type == PROG_SCHED_CLS {
            a[68..72].copy_from_slice(&attach_type.to_ne_bytes());
        }
    })
    .expect("BPF_PROG_LOAD of the foreign program");
    // SAFETY: a new fd we own.
    let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) };
    let ifindex = lb_decap::interface::index(interface).expect("interface");
    let link = bpf(28, |a| {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&prog) as u32;
        a[0..4].copy_from_slice(&fd.to_ne_bytes());
        a[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        a[8..12].copy_from_slice(&attach_type.to_ne_bytes());
    })
    .expect("BPF_LINK_CREATE of the foreign program");
    // SAFETY: a new fd we own.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(link as i32) }
}

/// Pins the link `link` at `path`.
fn pin(link: &std::os::fd::OwnedFd, path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    bpf(6, |a| {
        a[0..8].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
        let fd = std::os::fd::AsRawFd::as_raw_fd(link) as u32;
        a[8..12].copy_from_slice(&fd.to_ne_bytes());
    })
    .expect("BPF_OBJ_PIN");
}

/// lbd and lb-decap share a pin directory, and lbd's XDP link on v0 is
/// pinned as `xdp-link-v0`, the name lb-decap gives its own: an apply
/// for v1 and a cleanup leave it (and its program) alone; an apply for
/// v0 is refused naming the program, nothing changed. Before, lb-decap
/// took the link for its own: it removed the pin (an apply for another
/// interface, a cleanup) or swapped its decap program into lbd's link.
#[test]
fn another_tools_link_under_a_decap_name_is_left_alone() {
    let lab = Lab::new("foreign");
    veth_pair(&lab);
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        pins.prepare().expect("pin directory");
        let lbds = pins.link_path(Attach::Xdp, "v0");
        let link = foreign_link("xdp_lb", PROG_XDP, ATTACH_XDP, 2, "v0");
        pin(&link, &lbds);
        drop(link);
        let program = dataplane::link_program(&lbds).expect("lbd's live link");
        let vips = "\"198.18.0.100:80/tcp\"";

        dataplane::apply(&settings_on("v1", "attach = \"tc\"", vips), &pins)
            .expect("an apply for v1");
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));
        assert_eq!(links(&pins), [(Attach::Tc, "v1".to_owned())]);
        dataplane::cleanup(&pins).expect("cleanup");
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));

        let error = dataplane::apply(&settings_on("v0", "xdp_mode = \"native\"", vips), &pins)
            .expect_err("lbd's link is not lb-decap's");
        let error = format!("{error:#}");
        for word in [
            lbds.to_str().expect("utf-8"),
            "\"xdp_lb\"",
            "pin directory of its own",
        ] {
            assert!(error.contains(word), "{error:?} should mention {word:?}");
        }
        assert_eq!(dataplane::link_program(&lbds).ok(), Some(program));
        assert!(links(&pins).is_empty());
    });
}

/// A tcx program already on the interface that ends the chain (returns
/// TCX_PASS, as `TC_ACT_OK` does) must not hide tunnel packets from the
/// decap program: its link goes first. Before, it was appended last.
#[test]
fn the_tc_link_goes_before_the_tcx_programs_already_there() {
    let lab = Lab::new("tcxfirst");
    let root = lab.pins.clone();
    lab.inside(move || {
        let pins = PinDir::new(&root);
        let other = foreign_link("tc_firewall", PROG_SCHED_CLS, ATTACH_TCX_INGRESS, 0, "lo");
        let before = tcx_ids("lo");
        assert_eq!(before.len(), 1, "{before:?}");
        dataplane::apply(&settings("\"198.18.0.100:80/tcp\""), &pins).expect("apply");
        let ours = dataplane::link_program(&pins.link_path(Attach::Tc, "lo")).expect("our link");
        assert_eq!(tcx_ids("lo"), [ours, before[0]], "lb-decap's first");
        drop(other);
    });
}
