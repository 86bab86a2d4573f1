//! A filter read from its dump, which are left over, the hook switch, and
//! the looks at a real namespace's hooks.

use std::ffi::OsStr;

use lb_common::consts::names;
use rtnetlink::packet_route::tc::{
    TcAttribute, TcFilterBpfOption, TcHandle, TcHeader, TcMessage, TcOption,
};

use super::{
    attach_path::parse_tc_path,
    filter::{cls_bpf_filter_at, ClsBpfFilter},
    interfaces::interface_exists,
    left_over::{left_hc_filter, orphan_hc_filter},
    *,
};

/// The filter `message` describes on an ingress.
fn cls_bpf_filter(message: &TcMessage) -> Option<ClsBpfFilter> {
    cls_bpf_filter_at(message, TcHandle::MIN_INGRESS)
}

fn message(parent_minor: u16, kind: &str, options: Vec<TcFilterBpfOption>) -> TcMessage {
    let header = TcHeader {
        index: 3,
        parent: TcHandle {
            major: 0xffff,
            minor: parent_minor,
        },
        info: (0xbfff << 16) | 0x0300,
        handle: TcHandle { major: 0, minor: 1 },
        ..TcHeader::default()
    };
    let mut attributes = vec![TcAttribute::Kind(kind.to_owned())];
    if !options.is_empty() {
        attributes.push(TcAttribute::Options(
            options.into_iter().map(TcOption::Bpf).collect(),
        ));
    }
    TcMessage::from_parts(header, attributes)
}

fn lbd_filter(program: u32) -> TcMessage {
    message(
        TcHandle::MIN_INGRESS,
        "bpf",
        vec![
            TcFilterBpfOption::ProgName(names::PROG_TC_LB.to_owned()),
            TcFilterBpfOption::ProgId(program),
        ],
    )
}

#[test]
fn an_ingress_cls_bpf_filter_is_read_with_its_program() {
    let filter = cls_bpf_filter(&lbd_filter(42)).expect("a cls_bpf filter");
    assert_eq!(filter.name, "tc_lb");
    assert_eq!(filter.program, Some(42));
    assert_eq!(filter.priority(), 0xbfff);
    // The per-priority entry of a dump, egress, other kinds: not filters.
    assert_eq!(
        cls_bpf_filter(&message(TcHandle::MIN_INGRESS, "bpf", vec![])),
        None
    );
    let egress = message(
        TcHandle::MIN_EGRESS,
        "bpf",
        vec![TcFilterBpfOption::ProgName("tc_lb".to_owned())],
    );
    assert_eq!(cls_bpf_filter(&egress), None);
    assert_eq!(
        cls_bpf_filter(&message(TcHandle::MIN_INGRESS, "u32", vec![])),
        None
    );
}

/// Every lbd start looks: an interface without a clsact or ingress
/// qdisc (the kernel answers the dump with an error) has no filters,
/// not a failure to warn about.
#[tokio::test]
async fn an_interface_without_an_ingress_qdisc_has_no_filters() {
    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
    let task = tokio::spawn(connection);
    let loopback = ingress_filters(&handle, 1).await;
    task.abort();
    assert_eq!(loopback.expect("no error"), Vec::new());
}

/// The scan's looks at an egress: `lo`'s is listed without error
/// even with no clsact qdisc (then empty: "gone" rather than "cannot
/// tell"); an index no interface has cannot be asked for tcx
/// programs.
#[tokio::test]
async fn an_egress_is_listed_without_a_qdisc_and_no_interface_has_no_answer() {
    egress_programs_of(LOOPBACK_IFINDEX)
        .await
        .expect("lo's egress listed");
    assert_eq!(tcx_egress_programs(u32::MAX), None);
    assert_eq!(interface_index("lo"), Some(LOOPBACK_IFINDEX));
}

/// `LBD_TC_ATTACH`: unset or empty is the default, `cls_bpf` forces
/// the filters, and anything else (a typo) is refused with a message
/// that names the variable and the values it takes.
#[test]
fn the_tc_attach_switch_takes_cls_bpf_or_nothing() {
    assert_eq!(parse_tc_path(None), Ok(TcPath::Tcx));
    assert_eq!(parse_tc_path(Some(OsStr::new(""))), Ok(TcPath::Tcx));
    assert_eq!(
        parse_tc_path(Some(OsStr::new("cls_bpf"))),
        Ok(TcPath::ClsBpf)
    );
    for wrong in ["tcx", "clsbpf", "CLS_BPF", " cls_bpf", "1"] {
        let message = parse_tc_path(Some(OsStr::new(wrong))).expect_err(wrong);
        assert!(message.contains("LBD_TC_ATTACH"), "{message}");
        assert!(message.contains(&format!("{wrong:?}")), "{message}");
        assert!(message.contains("\"cls_bpf\""), "{message}");
    }
}

fn hc_filter(minor: u16, handle: u32, name: &str, program: u32) -> TcMessage {
    let mut message = message(
        minor,
        "bpf",
        vec![
            TcFilterBpfOption::ProgName(name.to_owned()),
            TcFilterBpfOption::ProgId(program),
        ],
    );
    message.header.handle = TcHandle {
        major: u16::try_from(handle >> 16).expect("major"),
        minor: u16::try_from(handle & 0xffff).expect("minor"),
    };
    message
}

/// A `tc_hc_encap` filter on an egress is lbd's for the balancer
/// interface its handle names (on `lo`, one per lbd of the
/// namespace), and left over unless this process runs its program.
#[test]
fn a_left_hc_filter_is_the_balancer_interfaces_and_not_this_processes() {
    let filter = |handle, name, program| {
        cls_bpf_filter_at(
            &hc_filter(TcHandle::MIN_EGRESS, handle, name, program),
            TcHandle::MIN_EGRESS,
        )
        .expect("an egress cls_bpf filter")
    };
    let left = filter(3, names::PROG_TC_HC_ENCAP, 42);
    assert_eq!(left.name, "tc_hc_encap");
    assert!(left_hc_filter(&left, 3, 0));
    assert!(left_hc_filter(&left, 3, 7));
    assert!(!left_hc_filter(&left, 3, 42), "this process's own");
    assert!(!left_hc_filter(&left, 4, 0), "another lbd's, on lo");
    let wide = filter(0x1_0003, names::PROG_TC_HC_ENCAP, 42);
    assert!(left_hc_filter(&wide, 0x1_0003, 0), "handles past 16 bits");
    assert!(!left_hc_filter(&filter(3, "tc_lb", 42), 3, 0));
    // Read at the egress only.
    assert_eq!(
        cls_bpf_filter(&hc_filter(
            TcHandle::MIN_EGRESS,
            3,
            names::PROG_TC_HC_ENCAP,
            42
        )),
        None
    );
    let options = hc_filter_options(0x1_0003);
    assert_eq!(options.priority, HC_FILTER_PRIORITY);
    assert_eq!(u32::from(options.handle), 0x1_0003);
}

/// A `tc_hc_encap` filter whose handle names no interface any more
/// (its lbd died, and the interface went or was made again with
/// another index) is left over, whatever lbd looks; one whose
/// interface exists is that interface's lbd's, and this process's own
/// program stays.
#[test]
fn a_hc_filter_whose_interface_is_gone_is_left_over() {
    let filter = |handle, name| {
        cls_bpf_filter_at(
            &hc_filter(TcHandle::MIN_EGRESS, handle, name, 42),
            TcHandle::MIN_EGRESS,
        )
        .expect("an egress cls_bpf filter")
    };
    let interfaces = [1, 12];
    let exists = |index| interfaces.contains(&index);
    let stale = filter(7, names::PROG_TC_HC_ENCAP);
    assert!(orphan_hc_filter(&stale, exists, 0));
    assert!(orphan_hc_filter(&stale, exists, 9));
    assert!(!orphan_hc_filter(&stale, exists, 42), "this process's own");
    let live = filter(12, names::PROG_TC_HC_ENCAP);
    assert!(!orphan_hc_filter(&live, exists, 0), "interface 12's lbd's");
    assert!(
        !orphan_hc_filter(&filter(7, "tc_lb"), exists, 0),
        "not lbd's hc program"
    );
    // The namespace's real interfaces: lo is index 1; no interface
    // has the largest index.
    assert!(interface_exists(LOOPBACK_IFINDEX));
    assert!(!interface_exists(u32::MAX));
}

#[test]
fn only_lbd_filters_but_the_running_one_are_left_overs() {
    let old = cls_bpf_filter(&lbd_filter(42)).expect("filter");
    assert!(left_by_lbd(&old, None));
    assert!(left_by_lbd(&old, Some(7)));
    assert!(!left_by_lbd(&old, Some(42)), "this lbd's own");
    let other = cls_bpf_filter(&message(
        TcHandle::MIN_INGRESS,
        "bpf",
        vec![TcFilterBpfOption::ProgName("cil_from_netdev".to_owned())],
    ))
    .expect("filter");
    assert!(!left_by_lbd(&other, None), "another tool's");
}
