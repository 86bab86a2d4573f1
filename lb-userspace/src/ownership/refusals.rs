//! The refusals' messages: what holds the data plane, or runs on the
//! interface, and the ways out. Apart, as text, from the checks that decide
//! on a refusal.

use std::path::Path;

use super::{foreign_programs::TcReach, lock::OwnerRecord, Claimed, Purpose};

/// The refusal when `claimed` is held by `owner`.
pub(crate) fn owned_message(
    claimed: &Claimed,
    owner: Option<&OwnerRecord>,
    lock: &Path,
    purpose: Purpose,
) -> String {
    let owner = owner.map_or_else(
        || "another lbd (it has not recorded its pid and config yet)".to_owned(),
        ToString::to_string,
    );
    let lock = lock.display();
    match purpose {
        Purpose::Serve => {
            let rule = match claimed {
                Claimed::Interface { .. } => "one lbd serves an interface",
                Claimed::PinDir(_) => "an lbd on another interface needs a pin_dir of its own",
                Claimed::Record { .. } => {
                    "an lbd on another interface needs an admin_socket of its own, with a file \
                     name stem of its own (the record of what it holds, its VRRP state files \
                     and its restart marker are named after it)"
                }
                Claimed::BgpFile { .. } => {
                    "an lbd on another interface needs its own [bgp] routes_file (and a protocol \
                     stem BIRD's config tells apart) and node_state_file"
                }
            };
            format!(
                "{claimed} is owned by {owner} (lock {lock}): exactly one lbd may own a data plane. \
                 Stop that lbd first (SIGTERM leaves its data plane forwarding for the next lbd); \
                 {rule}"
            )
        }
        Purpose::Cleanup | Purpose::ReleaseVips => {
            let flag = if purpose == Purpose::Cleanup {
                "--cleanup"
            } else {
                "--release-vips"
            };
            format!(
                "refusing {flag}: {claimed} is owned by {owner}, which is running (lock {lock}). \
                 Stop it first (SIGINT removes its VIPs and data plane itself)"
            )
        }
    }
}

/// A foreign program's name as shown, and why it is not this lbd's.
fn program_words<'a>(name: Option<&'a str>, pin_dir: Option<&Path>) -> (&'a str, String) {
    let name = name.filter(|n| !n.is_empty()).unwrap_or("no name");
    let whose = match pin_dir {
        Some(dir) => format!("not the one pinned in this lbd's pin_dir {}", dir.display()),
        None => "and this lbd pins nothing (pin_dir = \"off\")".to_owned(),
    };
    (name, whose)
}

/// The refusal when `interface` runs program `id` that this lbd did not
/// pin, with the ways out.
pub(crate) fn foreign_program_message(
    interface: &str,
    id: u32,
    name: Option<&str>,
    pin_dir: Option<&Path>,
) -> String {
    let (name, whose) = program_words(name, pin_dir);
    format!(
        "interface {interface} already has XDP program id {id} ({name}) attached, {whose}: \
         it belongs to another tool, or to an lbd with another pin_dir. lbd does not replace it. \
         If it is an lbd's (lbd's program is named {}), remove it with \
         `lbd --config <that lbd's config> --cleanup` (refused while that lbd runs; a pinned \
         XDP link goes only with its pin, and `ip link` cannot detach it); if another tool \
         attached it, detach it with that tool or `ip link set dev {interface} xdp off` (in \
         the interface's network namespace). Then start lbd again",
        lb_common::consts::names::PROG_LB
    )
}

/// The refusal when the tcx ingress of `interface` runs program `id` that
/// this lbd (at `attach`) did not pin, with the ways out.
pub(crate) fn foreign_tc_program_message(
    interface: &str,
    id: u32,
    name: Option<&str>,
    pin_dir: Option<&Path>,
    reach: TcReach,
) -> String {
    let (name, whose) = program_words(name, pin_dir);
    let tc_lb = lb_common::consts::names::PROG_TC_LB;
    match reach {
        TcReach::AutoFallback => format!(
            "interface {interface} already has tc program id {id} ({name}) on its tcx ingress, \
             {whose}: with xdp_mode = \"auto\" and NAT or tunnelled VIPs lbd attaches at tc \
             where native XDP fails, and must then be the only tcx ingress program (one ahead \
             of it that passes packets on bypasses it). If it is an lbd's (lbd's tc program is \
             named {tc_lb}), remove it with `lbd --config <that lbd's config> --cleanup`; if \
             another tool attached it, detach it with that tool (`bpftool net show dev \
             {interface}` lists it). Or use xdp_mode = \"native\" where the driver has native \
             XDP. Then start lbd again"
        ),
        TcReach::Tc => format!(
            "interface {interface} already has tc program id {id} ({name}) on its tcx ingress, \
             {whose}: with attach = \"tc\" lbd must be the only tcx ingress program (another one \
             would see or change the packets before or after it). If it is an lbd's (lbd's tc \
             program is named {tc_lb}), remove it with `lbd --config <that lbd's config> --cleanup`; \
             if another tool attached it, detach it with that tool (`bpftool net show dev \
             {interface}` lists it). Or use attach = \"xdp\". Then start lbd again"
        ),
        TcReach::Xdp => format!(
            "interface {interface} already has lbd's tc program id {id} ({name}) on its tcx \
             ingress, {whose}: another lbd (with attach = \"tc\" and another pin_dir) balances \
             this interface, or did before it was killed, and one lbd serves an interface (both \
             would take its packets). Stop that lbd, or remove what it left with `lbd --config \
             <that lbd's config> --cleanup` (`bpftool net show dev {interface}` lists the \
             program). Then start lbd again"
        ),
    }
}

/// The refusal when a cls_bpf filter (priority `priority`) on the ingress
/// of `interface` runs lbd's tc program `id` that this lbd did not leave,
/// with the ways out.
pub(crate) fn foreign_tc_filter_message(
    interface: &str,
    id: Option<u32>,
    priority: u16,
    pin_dir: Option<&Path>,
) -> String {
    let tc_lb = lb_common::consts::names::PROG_TC_LB;
    let id = id.map_or_else(|| "of unknown id".to_owned(), |id| format!("id {id}"));
    let whose = match pin_dir {
        Some(dir) => format!(
            "whose maps are not the ones pinned in this lbd's pin_dir {}",
            dir.display()
        ),
        None => "which this lbd (pin_dir = \"off\") did not leave: the record of its admin \
                 socket names no earlier run of its own at tc on this interface"
            .to_owned(),
    };
    format!(
        "interface {interface} already has a tc filter (clsact + cls_bpf, priority {priority}) \
         on its ingress running lbd's tc program {tc_lb} ({id}), {whose}: another lbd (with \
         another pin_dir, or an earlier release's with its admin socket elsewhere) balances \
         this interface, or did before it was killed (such a filter outlives its lbd), and one \
         lbd serves an interface (each would remove the other's filter). Stop that lbd, or \
         remove what it left with `lbd --config <that lbd's config> --cleanup`, or delete the \
         filter with `tc filter del dev {interface} ingress pref {priority}` (in the \
         interface's network namespace). Then start lbd again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::test_support::owner;

    #[test]
    fn a_refused_start_names_the_owner_and_what_it_holds() {
        let claimed = Claimed::Interface {
            name: "eth0".into(),
            netns: 4_026_531_840,
        };
        let message = owned_message(
            &claimed,
            Some(&owner()),
            Path::new("/run/lbd/x.lock"),
            Purpose::Serve,
        );
        assert!(
            message.starts_with(
                "interface eth0 (network namespace net:[4026531840]) is owned by lbd pid 1234 (config /etc/lbd/lbd.toml)"
            ),
            "{message}"
        );
        assert!(message.contains("one lbd serves an interface"), "{message}");
        let message = owned_message(
            &Claimed::PinDir("/sys/fs/bpf/lbd".into()),
            Some(&owner()),
            Path::new("/sys/fs/bpf/lbd"),
            Purpose::Serve,
        );
        assert!(message.starts_with("pin_dir /sys/fs/bpf/lbd is owned by lbd pid 1234"));
        assert!(message.contains("a pin_dir of its own"), "{message}");
    }

    #[test]
    fn a_refused_cleanup_says_which_flag_and_to_stop_lbd_first() {
        for (purpose, flag) in [
            (Purpose::Cleanup, "--cleanup"),
            (Purpose::ReleaseVips, "--release-vips"),
        ] {
            let message = owned_message(
                &Claimed::PinDir("/p".into()),
                Some(&owner()),
                Path::new("/p"),
                purpose,
            );
            assert!(
                message.starts_with(&format!(
                    "refusing {flag}: pin_dir /p is owned by lbd pid 1234"
                )),
                "{message}"
            );
            assert!(message.contains("Stop it first"), "{message}");
        }
    }

    #[test]
    fn an_unknown_owner_is_still_a_refusal() {
        let message = owned_message(
            &Claimed::PinDir("/p".into()),
            None,
            Path::new("/p"),
            Purpose::Serve,
        );
        assert!(message.contains("owned by another lbd"), "{message}");
    }

    #[test]
    fn a_foreign_program_is_named_with_the_ways_out() {
        let message =
            foreign_program_message("eth0", 42, Some("xdp_lb"), Some(Path::new("/sys/fs/bpf/b")));
        assert!(
            message.starts_with("interface eth0 already has XDP program id 42 (xdp_lb) attached"),
            "{message}"
        );
        assert!(message.contains("/sys/fs/bpf/b"), "{message}");
        assert!(message.contains("lbd --config"), "{message}");
        assert!(message.contains("named xdp_lb"), "{message}");
        assert!(message.contains("--cleanup"), "{message}");
        assert!(
            message.contains("ip link set dev eth0 xdp off"),
            "{message}"
        );
        let message = foreign_program_message("eth1", 7, None, None);
        assert!(message.contains("id 7 (no name)"), "{message}");
        assert!(message.contains("pin_dir = \"off\""), "{message}");
    }

    #[test]
    fn a_foreign_tc_program_is_named_with_the_ways_out() {
        let message =
            foreign_tc_program_message("eth0", 9, Some("cil_from_netdev"), None, TcReach::Tc);
        assert!(
            message.starts_with(
                "interface eth0 already has tc program id 9 (cil_from_netdev) on its tcx ingress"
            ),
            "{message}"
        );
        for hint in [
            "named tc_lb",
            "--cleanup",
            "bpftool net show dev eth0",
            "attach = \"xdp\"",
        ] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
    }

    #[test]
    fn an_lbds_tc_program_refused_at_xdp_and_a_foreign_filter_say_the_ways_out() {
        let message = foreign_tc_program_message(
            "eth0",
            9,
            Some("tc_lb"),
            Some(Path::new("/sys/fs/bpf/b")),
            TcReach::Xdp,
        );
        assert!(
            message.starts_with(
                "interface eth0 already has lbd's tc program id 9 (tc_lb) on its tcx ingress"
            ),
            "{message}"
        );
        for hint in ["/sys/fs/bpf/b", "--cleanup", "one lbd serves an interface"] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
        assert!(!message.contains("Or use attach"), "{message}");
        let message =
            foreign_tc_filter_message("eth0", Some(42), 49152, Some(Path::new("/sys/fs/bpf/b")));
        assert!(
            message.starts_with(
                "interface eth0 already has a tc filter (clsact + cls_bpf, priority 49152) on its ingress running lbd's tc program tc_lb (id 42)"
            ),
            "{message}"
        );
        for hint in [
            "pinned in this lbd's pin_dir /sys/fs/bpf/b",
            "--cleanup",
            "tc filter del dev eth0 ingress pref 49152",
            "one lbd serves an interface",
        ] {
            assert!(message.contains(hint), "{hint}: {message}");
        }
        let message = foreign_tc_filter_message("eth1", None, 1, None);
        assert!(message.contains("(of unknown id)"), "{message}");
        assert!(message.contains("pin_dir = \"off\""), "{message}");
    }
}
