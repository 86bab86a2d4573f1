//! Removing the filters previous lbds left (at a start, and by `lbd
//! --cleanup`), but this process's own `tc_hc_encap` filters.

use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::StreamExt as _;
use lb_common::consts::names;
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST},
    packet_route::{
        tc::{TcAttribute, TcFilterBpf, TcHandle, TcMessage},
        RouteNetlinkMessage,
    },
};
use tracing::info;

use super::{
    filter::{handle_of, ClsBpfFilter},
    interfaces::{interface_exists, LOOPBACK_IFINDEX},
    left_over::{left_by_lbd, left_hc_filter, orphan_hc_filter},
    listing::{filters_at, ingress_filters},
};

/// The `tc_hc_encap` program this process runs (0: none), whose filters
/// a sweep at its own start leaves alone.
static OWN_HC_PROGRAM: AtomicU32 = AtomicU32::new(0);

/// Notes the id of the `tc_hc_encap` program this process loaded.
pub(crate) fn note_own_hc_program(id: u32) {
    OWN_HC_PROGRAM.store(id, Ordering::Relaxed);
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
/// `interface` (`ifindex`), but `keep`'s (see [`left_by_lbd`]), and the
/// `tc_hc_encap` filters they left on the egress of `interface` and of
/// `lo` (see [`left_hc_filter`]; this process's own stay). Returns how
/// many went. Must run inside a tokio runtime.
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
        let own_hc = OWN_HC_PROGRAM.load(Ordering::Relaxed);
        if ifindex != LOOPBACK_IFINDEX {
            removed +=
                remove_hc_filters(&handle, interface, ifindex, |f| left_hc_filter(f, ifindex, own_hc))
                    .await?;
        }
        removed += remove_hc_filters(&handle, "lo", LOOPBACK_IFINDEX, |f| {
            left_hc_filter(f, ifindex, own_hc) || orphan_hc_filter(f, interface_exists, own_hc)
        })
        .await?;
        Ok(removed)
    }
    .await;
    task.abort();
    result
}

/// Removes the `tc_hc_encap` filters lbds left on the egress of `lo`
/// whose balancer interface no longer exists (see [`orphan_hc_filter`]):
/// what `lbd --cleanup` can still remove when the interface it cleans up
/// after is gone (the interface's own filters went with it). Returns how
/// many went. Must run inside a tokio runtime.
pub(crate) async fn remove_orphan_hc_filters() -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let (connection, handle, _) =
        rtnetlink::new_connection().context("opening a routing netlink socket")?;
    let task = tokio::spawn(connection);
    let own_hc = OWN_HC_PROGRAM.load(Ordering::Relaxed);
    let result = remove_hc_filters(&handle, "lo", LOOPBACK_IFINDEX, |f| {
        orphan_hc_filter(f, interface_exists, own_hc)
    })
    .await;
    task.abort();
    result
}

/// Removes the `tc_hc_encap` filters `left` picks on the egress of
/// interface `on` (`index`); returns how many went.
async fn remove_hc_filters(
    handle: &rtnetlink::Handle,
    on: &str,
    index: u32,
    left: impl Fn(&ClsBpfFilter) -> bool,
) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let filters = filters_at(handle, index, TcHandle::MIN_EGRESS)
        .await
        .with_context(|| format!("listing the tc filters on the egress of {on}"))?;
    let mut removed = 0;
    for filter in filters.iter().filter(|f| left(f)) {
        delete(handle, filter).await.with_context(|| {
            format!("removing a tc filter a previous lbd left on the egress of {on}")
        })?;
        info!(
            interface = %on,
            program = ?filter.program,
            balancer_ifindex = handle_of(filter),
            "a {} filter (cls_bpf) a previous lbd left on the egress removed",
            names::PROG_TC_HC_ENCAP
        );
        removed += 1;
    }
    Ok(removed)
}
