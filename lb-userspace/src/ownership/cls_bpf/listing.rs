//! Listing what runs on an interface's tc hooks: the cls_bpf filters of
//! an ingress or egress (over rtnetlink), and the programs of a tcx
//! egress.

use aya::programs::{SchedClassifier, TcAttachType};
use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::tc::{TcHandle, TcMessage};
use tracing::debug;

use super::{
    filter::{cls_bpf_filter_at, ClsBpfFilter},
    interfaces::{interface_index, interface_name},
};

/// The cls_bpf filters on the ingress of interface `ifindex` (none when
/// it has no clsact or ingress qdisc).
pub(crate) async fn ingress_filters(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<Vec<ClsBpfFilter>, rtnetlink::Error> {
    filters_at(handle, ifindex, TcHandle::MIN_INGRESS).await
}

/// The cls_bpf filters on the ingress of interface `ifindex`, over a
/// routing netlink connection of their own (see [`ingress_filters`]).
/// Must run inside a tokio runtime.
pub(crate) async fn ingress_filters_of(ifindex: u32) -> anyhow::Result<Vec<ClsBpfFilter>> {
    use anyhow::Context as _;
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a routing netlink socket")?;
    let task = tokio::spawn(connection);
    let filters = ingress_filters(&handle, ifindex)
        .await
        .with_context(|| format!("listing the tc filters on the ingress of interface {ifindex}"));
    task.abort();
    filters
}

/// The programs of the cls_bpf filters on the egress of interface
/// `ifindex` (none without a clsact qdisc), over a routing netlink
/// connection of their own: whether lbd's `tc_hc_encap` filter is still
/// there (`tc filter del`, or the clsact qdisc deleted, removes it under
/// lbd). Must run inside a tokio runtime.
pub(crate) async fn egress_programs_of(ifindex: u32) -> anyhow::Result<Vec<u32>> {
    use anyhow::Context as _;
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a routing netlink socket")?;
    let task = tokio::spawn(connection);
    let filters = filters_at(&handle, ifindex, TcHandle::MIN_EGRESS)
        .await
        .with_context(|| format!("listing the tc filters on the egress of interface {ifindex}"));
    task.abort();
    Ok(filters?.iter().filter_map(|f| f.program).collect())
}

/// The ids of the programs on the tcx egress of interface `ifindex`:
/// whether lbd's `tc_hc_encap` link still runs there (`bpftool link
/// detach` removes it under lbd). The kernel's query takes a name, so it
/// is asked by the one the index has now, and answers only if that name
/// still has the index after it (a rename meanwhile would answer for
/// another device). None: cannot tell (no interface has the index, no
/// tcx, a failed query, a rename during it).
pub(crate) fn tcx_egress_programs(ifindex: u32) -> Option<Vec<u32>> {
    let name = interface_name(ifindex)?;
    let programs = match SchedClassifier::query_tcx(&name, TcAttachType::Egress) {
        Ok((_, programs)) => programs,
        Err(error) => {
            debug!(interface = %name, %error, "querying tcx egress programs");
            return None;
        }
    };
    (interface_index(&name) == Some(ifindex)).then(|| {
        programs
            .iter()
            .map(aya::programs::ProgramInfo::id)
            .collect()
    })
}

/// The cls_bpf filters on the clsact hook `minor` (ingress or egress) of
/// interface `ifindex` (none when it has no clsact qdisc).
pub(super) async fn filters_at(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    minor: u16,
) -> Result<Vec<ClsBpfFilter>, rtnetlink::Error> {
    let index = i32::try_from(ifindex).unwrap_or(i32::MAX);
    let request = handle.traffic_filter(index).get();
    let request = if minor == TcHandle::MIN_EGRESS {
        request.egress()
    } else {
        request.ingress()
    };
    let dump = request.execute().try_collect::<Vec<TcMessage>>().await;
    match dump {
        Ok(messages) => Ok(messages
            .iter()
            .filter_map(|m| cls_bpf_filter_at(m, minor))
            .collect()),
        // No ingress qdisc to hold filters.
        Err(rtnetlink::Error::NetlinkError(e))
            if matches!(-e.raw_code(), libc::EINVAL | libc::ENOENT) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}
