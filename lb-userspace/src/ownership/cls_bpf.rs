//! The legacy tc filters lbd leaves behind. On a kernel without tcx
//! (before 6.6), `attach = "tc"` runs the balancer as a clsact + cls_bpf
//! filter: it cannot be pinned, and the kernel keeps it after the process
//! is gone (kill -9, a crash), still running the dead lbd's program; the
//! next lbd would attach another filter ahead of it. lbd's own — cls_bpf
//! filters on the interface's ingress whose program is named `tc_lb` —
//! are found over rtnetlink and removed: by the next lbd once its own hook
//! runs (so nothing goes unforwarded meanwhile), and by `lbd --cleanup`.
//! Filters of other tools are left alone. No other lbd may be using the
//! interface meanwhile: the interface's lock is held.

use futures_util::{StreamExt as _, TryStreamExt as _};
use lb_common::consts::names;
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST},
    packet_route::{
        tc::{TcAttribute, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
        RouteNetlinkMessage,
    },
};
use tracing::info;

/// A cls_bpf filter on an interface's ingress, as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClsBpfFilter {
    /// Its header: interface, parent, priority and protocol, handle (what
    /// a delete names it by).
    header: rtnetlink::packet_route::tc::TcHeader,
    /// Its program's name.
    pub name: String,
    /// Its program's id, if the kernel says.
    pub program: Option<u32>,
}

/// The cls_bpf filter `message` describes, if it is one on an ingress
/// (`ffff:fff2`) with a program name; None for anything else (another
/// kind, the per-priority entries of a dump, egress).
pub(crate) fn cls_bpf_filter(message: &TcMessage) -> Option<ClsBpfFilter> {
    let ingress = message.header.parent
        == TcHandle {
            major: 0xffff,
            minor: TcHandle::MIN_INGRESS,
        };
    let bpf = message
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == TcFilterBpf::KIND));
    if !ingress || !bpf {
        return None;
    }
    let options = message.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => Some(options),
        _ => None,
    })?;
    let mut name = None;
    let mut program = None;
    for option in options {
        match option {
            TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => program = Some(*id),
            _ => {}
        }
    }
    Some(ClsBpfFilter {
        header: message.header.clone(),
        name: name?,
        program,
    })
}

/// Whether `filter` is an lbd balancer filter a previous lbd left: its
/// program is lbd's tc program, and not `keep` (the one this lbd runs,
/// when it attached through cls_bpf itself).
pub(crate) fn left_by_lbd(filter: &ClsBpfFilter, keep: Option<u32>) -> bool {
    filter.name == names::PROG_TC_LB && (keep.is_none() || filter.program != keep)
}

/// The cls_bpf filters on the ingress of interface `ifindex` (none when
/// it has no clsact or ingress qdisc).
pub(crate) async fn ingress_filters(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<Vec<ClsBpfFilter>, rtnetlink::Error> {
    let index = i32::try_from(ifindex).unwrap_or(i32::MAX);
    let dump = handle
        .traffic_filter(index)
        .get()
        .ingress()
        .execute()
        .try_collect::<Vec<TcMessage>>()
        .await;
    match dump {
        Ok(messages) => Ok(messages.iter().filter_map(cls_bpf_filter).collect()),
        // No ingress qdisc to hold filters.
        Err(rtnetlink::Error::NetlinkError(e))
            if matches!(-e.raw_code(), libc::EINVAL | libc::ENOENT) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// Deletes `filter` (by its priority, protocol and handle; a filter gone
/// meanwhile is fine).
async fn delete(handle: &rtnetlink::Handle, filter: &ClsBpfFilter) -> Result<(), rtnetlink::Error> {
    let message = TcMessage::from_parts(
        filter.header.clone(),
        vec![TcAttribute::Kind(TcFilterBpf::KIND.to_owned())],
    );
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelTrafficFilter(message));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut handle = handle.clone();
    let mut response = handle.request(request)?;
    while let Some(message) = response.next().await {
        if let NetlinkPayload::Error(error) = message.payload {
            if error.raw_code() == -libc::ENOENT {
                return Ok(());
            }
            return Err(rtnetlink::Error::NetlinkError(error));
        }
    }
    Ok(())
}

/// Removes the cls_bpf filters previous lbds left on the ingress of
/// `interface` (`ifindex`), but `keep`'s (see [`left_by_lbd`]). Returns
/// how many went. Must run inside a tokio runtime.
pub(crate) async fn remove_left_filters(
    interface: &str,
    ifindex: u32,
    keep: Option<u32>,
) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a routing netlink socket")?;
    let task = tokio::spawn(connection);
    let result = async {
        let filters = ingress_filters(&handle, ifindex)
            .await
            .with_context(|| format!("listing the tc filters on the ingress of {interface}"))?;
        let mut removed = 0;
        for filter in filters.iter().filter(|f| left_by_lbd(f, keep)) {
            delete(&handle, filter).await.with_context(|| {
                format!("removing a tc filter a previous lbd left on {interface}")
            })?;
            info!(
                %interface,
                program = ?filter.program,
                priority = filter.header.info >> 16,
                "a tc filter (cls_bpf) a previous lbd left on the interface's ingress removed: its program no longer runs"
            );
            removed += 1;
        }
        Ok(removed)
    }
    .await;
    task.abort();
    result
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::tc::TcHeader;

    use super::*;

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
}
