//! The cls_bpf filter dump lbd's hook check reads, public for the lab
//! tests only (that check runs only on kernels without tcx).

/// The programs of the cls_bpf filters on the ingress of `interface` (in
/// this thread's network namespace), from the netlink dump lbd's hook
/// check reads (whether its filter, attached without tcx, is still in
/// place; see `dataplane::attach`). Public for the lab tests only: that
/// check runs only on kernels without tcx, so a test places a filter with
/// tc and asks this dump, which must report the filter's program id and
/// name. Must run inside a tokio runtime.
#[doc(hidden)]
pub async fn cls_bpf_ingress_programs(interface: &str) -> anyhow::Result<Vec<u32>> {
    let netlink = crate::netlink::Netlink::connect()?;
    let index = netlink.interface(interface).await?.index;
    Ok(netlink
        .cls_bpf_ingress_programs(index)
        .await?
        .iter()
        .map(|f| f.program)
        .collect())
}
