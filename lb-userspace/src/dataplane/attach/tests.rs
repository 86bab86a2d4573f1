use super::*;
use super::{
    tc::{runs_among, tcx_missing, tcx_runs, ENOTSUPP},
    xdp::{mode_fits, warn_if_generic_kept},
};
use crate::{config::XdpMode as ConfigXdpMode, pinning::PinError};

/// A restart under `auto` that keeps a previous lbd's generic link
/// warns each time, naming generic mode and the ways back to native;
/// a configured `generic`, or a native link kept, says nothing.
/// Before, only the first fallback warned: every later start kept
/// the slow mode silently.
#[test]
fn keeping_a_generic_link_under_auto_warns_at_each_start() {
    use ConfigXdpMode::{Auto, Generic, Native};
    let logs =
        |mode, running| crate::test_logs::logs_of(|| warn_if_generic_kept("eth0", mode, running));
    let kept = logs(Auto, Some(Generic));
    assert!(kept.contains("WARN"), "{kept}");
    assert!(kept.contains("generic (skb) mode"), "{kept}");
    assert!(kept.contains("xdp_mode = \"native\""), "{kept}");
    assert!(kept.contains("lbd --cleanup"), "{kept}");
    assert!(kept.contains("MTU"), "{kept}");
    for (mode, running) in [
        (Generic, Some(Generic)),
        (Auto, Some(Native)),
        (Auto, Some(Auto)),
        (Auto, None),
        (Native, Some(Native)),
    ] {
        assert_eq!(logs(mode, running), "", "{mode} running {running:?}");
    }
}

#[test]
fn a_pinned_link_is_kept_only_in_a_mode_the_config_takes() {
    use ConfigXdpMode::{Auto, Generic, Native};
    // Auto takes whatever runs: a fallback to generic is not redone
    // (and attached anew) at every restart.
    for running in [Auto, Native, Generic] {
        assert!(mode_fits(Auto, running), "{running}");
    }
    assert!(mode_fits(Native, Native));
    assert!(mode_fits(Generic, Generic));
    // xdp_mode changed across a restart: attached anew.
    assert!(!mode_fits(Native, Generic));
    assert!(!mode_fits(Generic, Native));
    // A mode the kernel did not name is taken as it is.
    assert!(mode_fits(Native, Auto));
}

/// A link that cannot be made, pinned or reopened says which hook's
/// link, its pin, and the errno: aya's system-call error alone says
/// only which call failed, its errno is the source.
#[test]
fn a_link_error_names_the_hook_the_pin_and_the_errno() {
    let syscall = |call, errno| aya::sys::SyscallError {
        call,
        io_error: std::io::Error::from_raw_os_error(errno),
    };
    let pin = std::path::Path::new("/sys/fs/bpf/lbd/tc-link-eth0");
    let failed = aya::pin::PinError::SyscallError(syscall("BPF_OBJ_PIN", libc::EEXIST));
    let message = link_error("creating", Attach::Tc, pin, &failed).to_string();
    assert!(
        message.starts_with("creating the pinned tc link /sys/fs/bpf/lbd/tc-link-eth0: "),
        "{message}"
    );
    assert!(message.contains("`BPF_OBJ_PIN` failed"), "{message}");
    assert!(message.contains("File exists"), "{message}");

    let pin = std::path::Path::new("/sys/fs/bpf/lbd/xdp-link-eth0");
    let failed =
        aya::programs::links::LinkError::SyscallError(syscall("BPF_OBJ_GET", libc::ENOENT));
    let message = link_error("reopening", Attach::Xdp, pin, &failed).to_string();
    assert!(
        message.starts_with("reopening the pinned XDP link /sys/fs/bpf/lbd/xdp-link-eth0: "),
        "{message}"
    );
    assert!(message.contains("No such file or directory"), "{message}");
}

/// A source an error already writes in its own message is not
/// written twice.
#[test]
fn sources_already_said_are_not_repeated() {
    let error = PinError::Io {
        action: "removing",
        path: "/x".into(),
        source: std::io::Error::from_raw_os_error(libc::EEXIST),
    };
    assert_eq!(
        crate::pinning::error_chain(&error),
        "removing /x: File exists (os error 17)"
    );
}

/// Only a kernel without tcx (an attach type `BPF_LINK_CREATE` does
/// not know: EINVAL; EOPNOTSUPP, ENOTSUPP, E2BIG) falls back to
/// cls_bpf, which cannot be pinned; a tcx attach refused for another
/// reason (EPERM, ENOMEM, EBUSY), or that is no system call's
/// failure, fails the attach.
#[test]
fn only_a_kernel_without_tcx_falls_back_to_cls_bpf() {
    let failed = |errno| {
        aya::programs::ProgramError::SyscallError(aya::sys::SyscallError {
            call: "bpf_mprog_attach",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    };
    for errno in [libc::EINVAL, libc::EOPNOTSUPP, ENOTSUPP, libc::E2BIG] {
        assert!(tcx_missing(&failed(errno)), "{errno}");
    }
    for errno in [libc::EPERM, libc::ENOMEM, libc::EBUSY, libc::ENODEV] {
        assert!(!tcx_missing(&failed(errno)), "{errno}");
    }
    let not_a_syscall = aya::programs::ProgramError::TcError(aya::programs::tc::TcError::IoError(
        std::io::Error::from_raw_os_error(libc::EINVAL),
    ));
    assert!(!tcx_missing(&not_a_syscall));
}

/// The tcx hook is watched by the interface's index, as the XDP hook
/// is: a rename (`eth0` to `eth0-old`) keeps the device, its index
/// and lbd's link on it, so the link is in place whatever the
/// configured name now names (nothing, or a new device, e.g. a bond
/// rebuilt under the old name, without lbd's program), and a detach
/// is still seen. Asked by the configured name, the first read "cannot
/// tell" for good, and the second a detach: the working link's pin
/// removed (destroying it) and lbd gone. No name for the index, a
/// failed query or a rename during the query cannot tell.
#[test]
fn a_renamed_interface_keeps_its_tcx_hook_in_place() {
    use std::collections::HashMap;
    const OURS: u32 = 42;
    /// Devices by index: name and tcx ingress programs.
    type Devices = HashMap<u32, (&'static str, Vec<u32>)>;
    let ask = |devices: &Devices, ifindex: u32| {
        tcx_runs(
            OURS,
            "eth0",
            ifindex,
            |index| devices.get(&index).map(|(name, _)| (*name).to_owned()),
            |name| {
                devices
                    .values()
                    .find(|(n, _)| *n == name)
                    .map(|(_, programs)| programs.clone())
                    .ok_or_else(|| format!("no device {name}"))
            },
            |name| {
                devices
                    .iter()
                    .find(|(_, (n, _))| *n == name)
                    .map(|(index, _)| *index)
            },
        )
    };
    let devices = |list: &[(u32, &'static str, &[u32])]| -> Devices {
        list.iter()
            .map(|(index, name, programs)| (*index, (*name, programs.to_vec())))
            .collect()
    };
    assert_eq!(
        ask(&devices(&[(3, "eth0", &[OURS, 7])]), 3),
        Some(HookSeen::Runs)
    );
    assert_eq!(
        ask(&devices(&[(3, "eth0", &[7])]), 3),
        Some(HookSeen::Absent),
        "detached by something else"
    );
    assert_eq!(
        ask(&devices(&[(3, "eth0-old", &[OURS])]), 3),
        Some(HookSeen::Runs),
        "renamed, nothing under the old name"
    );
    assert_eq!(
        ask(&devices(&[(3, "eth0-old", &[OURS]), (9, "eth0", &[])]), 3),
        Some(HookSeen::Runs),
        "renamed, a new device under the old name"
    );
    assert_eq!(
        ask(&devices(&[(3, "eth0-old", &[]), (9, "eth0", &[OURS])]), 3),
        Some(HookSeen::Absent),
        "the device lbd watches runs it no more"
    );
    assert_eq!(ask(&devices(&[(9, "eth0", &[])]), 3), None, "no name");
    let failed = tcx_runs(
        OURS,
        "eth0",
        3,
        |_| Some("eth0".to_owned()),
        |_| Err("EPERM".to_owned()),
        |_| Some(3),
    );
    assert_eq!(failed, None, "a failed query");
    let renamed_meanwhile = tcx_runs(
        OURS,
        "eth0",
        3,
        |_| Some("eth0".to_owned()),
        |_| Ok(Vec::new()),
        |_| Some(9),
    );
    assert_eq!(renamed_meanwhile, None, "renamed during the query");
}

/// lbd's cls_bpf filter (no tcx) counts as in place while the
/// ingress dump shows its program, lost once it does not (deleted by
/// something else), and unknown when the dump was not had.
#[test]
fn a_cls_bpf_filter_is_in_place_while_the_ingress_dump_shows_its_program() {
    let at = |program, priority| IngressFilter { program, priority };
    assert_eq!(
        runs_among(42, Some(&[at(42, 1), at(7, 49152)])),
        Some(HookSeen::Runs)
    );
    assert_eq!(runs_among(42, Some(&[at(7, 1)])), Some(HookSeen::Absent));
    assert_eq!(
        runs_among(42, Some(&[])),
        Some(HookSeen::Absent),
        "no qdisc left"
    );
    assert_eq!(runs_among(42, None), None);
}

/// A program another tool puts ahead of lbd's at tc (a tcx link with
/// `BPF_F_BEFORE`, a cls_bpf filter of a lower priority) ends the
/// chain for every packet it passes: lbd's is shadowed, naming it,
/// though still attached. A filter of lbd's own priority (a previous
/// lbd's, swept after the attach) is no shadow.
#[test]
fn a_program_ahead_of_lbds_at_tc_shadows_it() {
    let at = |program, priority| IngressFilter { program, priority };
    assert_eq!(
        runs_among(42, Some(&[at(7, 0), at(42, 1)])),
        Some(HookSeen::Shadowed { by: 7 })
    );
    assert_eq!(
        runs_among(42, Some(&[at(9, 1), at(42, 1)])),
        Some(HookSeen::Runs)
    );
    let shadowed = tcx_runs(
        42,
        "eth0",
        3,
        |_| Some("eth0".to_owned()),
        |_| Ok(vec![7, 42]),
        |_| Some(3),
    );
    assert_eq!(shadowed, Some(HookSeen::Shadowed { by: 7 }));
}
