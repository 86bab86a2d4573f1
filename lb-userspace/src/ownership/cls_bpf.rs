//! The legacy tc filters lbd leaves behind. On a kernel without tcx
//! (before 6.6), `attach = "tc"` runs the balancer as a clsact + cls_bpf
//! filter: it cannot be pinned, and the kernel keeps it after the process
//! is gone (kill -9, a crash), still running the dead lbd's program; the
//! next lbd would attach another filter ahead of it. lbd's own — cls_bpf
//! filters on the interface's ingress whose program is named `tc_lb` —
//! are found over rtnetlink and removed: by the next lbd once its own hook
//! runs (so nothing goes unforwarded meanwhile), and by `lbd --cleanup`.
//! Filters of other tools are left alone. No other lbd may be using the
//! interface meanwhile: the interface's lock is held, and a start refuses
//! a `tc_lb` filter that is not its own previous one (another lbd's, see
//! `ownership::foreign_programs::check_tc_filters`) before it attaches anything.
//!
//! The same holds for `tc_hc_encap` (checks through a tunnel), which runs
//! as a cls_bpf filter on the egress of `lo` and of the interface where
//! there is no tcx: lbd removes those at every stop, but a killed lbd
//! leaves them. They sit at [`HC_FILTER_PRIORITY`] with the balancer
//! interface's index as their handle (`lo` is shared by every lbd of the
//! namespace: the handle tells whose), so the next lbd on the interface
//! replaces them in place and `lbd --cleanup` removes them. One on `lo`
//! whose handle names no interface any more (the interface went, or was
//! made again with another index) is removed by either as well.
//!
//! How lbd attaches its tc programs is decided here too: a tcx link
//! where the kernel has tcx (6.6 and later), else a clsact + cls_bpf
//! filter; `LBD_TC_ATTACH=cls_bpf` forces the filters (the path of older
//! kernels, to run and test it on a newer one).

use std::{
    ffi::OsStr,
    sync::{
        atomic::{AtomicU32, Ordering},
        OnceLock,
    },
};

use aya::programs::{
    tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
    ProgramError, SchedClassifier, TcAttachType,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use lb_common::consts::names;
use rtnetlink::{
    packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST},
    packet_route::{
        tc::{TcAttribute, TcFilterBpf, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
        RouteNetlinkMessage,
    },
};
use tracing::{debug, info};

/// The environment variable that picks how lbd attaches its tc programs
/// (read once, at the first attach of the start).
pub(crate) const TC_ATTACH_ENV: &str = "LBD_TC_ATTACH";

/// How lbd attaches its tc programs (`tc_lb` with `attach = "tc"`,
/// `tc_hc_encap` for checks through a tunnel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcPath {
    /// A tcx link; a clsact + cls_bpf filter where the kernel has no tcx
    /// (before 6.6). The default.
    Tcx,
    /// A clsact + cls_bpf filter even where the kernel has tcx
    /// (`LBD_TC_ATTACH=cls_bpf`): the path of kernels before 6.6, which
    /// otherwise runs nowhere a newer kernel is used.
    ClsBpf,
}

/// The path `value` (of [`TC_ATTACH_ENV`]) asks for: unset or empty is
/// the default, `cls_bpf` forces the filters; anything else is refused
/// (a typo must not go unnoticed), the message naming the variable and
/// the values it takes.
pub(crate) fn parse_tc_path(value: Option<&OsStr>) -> Result<TcPath, String> {
    match value.map(OsStr::to_str) {
        None | Some(Some("")) => Ok(TcPath::Tcx),
        Some(Some("cls_bpf")) => Ok(TcPath::ClsBpf),
        Some(_) => Err(format!(
            "environment variable {TC_ATTACH_ENV} is set to {:?}: it takes \"cls_bpf\" (attach lbd's tc programs as clsact + cls_bpf filters even where the kernel has tcx) or nothing (unset or empty: tcx links, cls_bpf filters on kernels without tcx)",
            value.unwrap_or_default()
        )),
    }
}

static TC_PATH: OnceLock<Result<TcPath, String>> = OnceLock::new();

/// The path of [`TC_ATTACH_ENV`], read (and logged when forced) once per
/// process: the first attach of lbd's start reads it, and a value it
/// refuses fails that start.
pub(crate) fn tc_path() -> Result<TcPath, String> {
    TC_PATH
        .get_or_init(|| {
            let path = parse_tc_path(std::env::var_os(TC_ATTACH_ENV).as_deref());
            if path == Ok(TcPath::ClsBpf) {
                info!("{TC_ATTACH_ENV}=cls_bpf: lbd's tc programs (tc_lb with attach = \"tc\", tc_hc_encap for checks through a tunnel) are attached as clsact + cls_bpf filters, not tcx links, as on kernels before 6.6");
            }
            path
        })
        .clone()
}

/// Attaches `program` as a cls_bpf filter (direct action) on
/// `interface`'s `attach_type`, adding the clsact qdisc first where it
/// is missing.
pub(crate) fn attach_filter(
    program: &mut SchedClassifier,
    interface: &str,
    attach_type: TcAttachType,
    options: NlOptions,
) -> Result<SchedClassifierLinkId, ProgramError> {
    if let Err(error) = aya::programs::tc::qdisc_add_clsact(interface) {
        // Already there is fine; anything else shows in the attach.
        debug!(%interface, %error, "adding the clsact qdisc");
    }
    program.attach_with_options(interface, attach_type, TcAttachOptions::Netlink(options))
}

/// The priority of lbd's `tc_lb` filter (without tcx): the lowest a
/// filter takes, so that lbd's runs first on the ingress, as its tcx link
/// goes at the head of the chain. Another tool's filter added later with
/// the kernel's default priority goes below the lowest there (the first
/// one's minus one) and would otherwise run ahead of lbd's; lbd's hook
/// check sees any filter ahead of its own (see `dataplane::HookSeen`).
pub(crate) const LB_FILTER_PRIORITY: u16 = 1;

/// Where lbd's `tc_lb` filter goes: [`LB_FILTER_PRIORITY`], the handle
/// the kernel picks.
pub(crate) fn lb_filter_options() -> NlOptions {
    NlOptions {
        priority: LB_FILTER_PRIORITY,
        ..NlOptions::default()
    }
}

/// The priority of lbd's `tc_hc_encap` filters (after the filters other
/// tools add with the kernel's default priorities, 49152 and below, as a
/// tcx link is appended after the programs there).
pub(crate) const HC_FILTER_PRIORITY: u16 = 50_000;

/// Where lbd's `tc_hc_encap` filter for a balancer on interface
/// `balancer_ifindex` goes: [`HC_FILTER_PRIORITY`], with that index as
/// its handle (on `lo` several lbds of a namespace may have one).
pub(crate) fn hc_filter_options(balancer_ifindex: u32) -> NlOptions {
    NlOptions {
        priority: HC_FILTER_PRIORITY,
        handle: aya::programs::tc::TcHandle::from(balancer_ifindex),
        classid: None,
    }
}

/// The `tc_hc_encap` program this process runs (0: none), whose filters
/// a sweep at its own start leaves alone.
static OWN_HC_PROGRAM: AtomicU32 = AtomicU32::new(0);

/// Notes the id of the `tc_hc_encap` program this process loaded.
pub(crate) fn note_own_hc_program(id: u32) {
    OWN_HC_PROGRAM.store(id, Ordering::Relaxed);
}

/// The index of `lo` in every network namespace (the kernel registers
/// it first).
pub(crate) const LOOPBACK_IFINDEX: u32 = 1;

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
    /// Its chain (0 unless the kernel says another: a packet meets the
    /// filters of chain 0, and others only by a `goto chain`).
    pub chain: u32,
}

impl ClsBpfFilter {
    /// Its priority (what `tc filter del ... pref` takes).
    pub(crate) fn priority(&self) -> u16 {
        u16::try_from(self.header.info >> 16).unwrap_or(u16::MAX)
    }
}

/// The cls_bpf filter `message` describes, if it is one on the clsact
/// hook `minor` names (`TcHandle::MIN_INGRESS`, `ffff:fff2`, or
/// `TcHandle::MIN_EGRESS`) with a program name; None for anything else
/// (another kind, the per-priority entries of a dump, the other hook).
fn cls_bpf_filter_at(message: &TcMessage, minor: u16) -> Option<ClsBpfFilter> {
    let at_hook = message.header.parent
        == TcHandle {
            major: 0xffff,
            minor,
        };
    let bpf = message
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == TcFilterBpf::KIND));
    if !at_hook || !bpf {
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
    let chain = message
        .attributes
        .iter()
        .find_map(|a| match a {
            TcAttribute::Chain(chain) => Some(*chain),
            _ => None,
        })
        .unwrap_or(0);
    Some(ClsBpfFilter {
        header: message.header.clone(),
        name: name?,
        program,
        chain,
    })
}

/// Whether `filter` is an lbd balancer filter a previous lbd left: its
/// program is lbd's tc program, and not `keep` (the one this lbd runs,
/// when it attached through cls_bpf itself).
pub(crate) fn left_by_lbd(filter: &ClsBpfFilter, keep: Option<u32>) -> bool {
    filter.name == names::PROG_TC_LB && (keep.is_none() || filter.program != keep)
}

/// Whether `filter` is a `tc_hc_encap` filter an lbd on interface
/// `balancer_ifindex` attached (its handle, see [`hc_filter_options`])
/// and not one of `keep`'s (the program this process runs; 0: none).
pub(crate) fn left_hc_filter(filter: &ClsBpfFilter, balancer_ifindex: u32, keep: u32) -> bool {
    filter.name == names::PROG_TC_HC_ENCAP
        && handle_of(filter) == balancer_ifindex
        && (keep == 0 || filter.program != Some(keep))
}

/// The handle of `filter`: for lbd's `tc_hc_encap` filters, the index of
/// the balancer interface they were attached for (see
/// [`hc_filter_options`]).
fn handle_of(filter: &ClsBpfFilter) -> u32 {
    (u32::from(filter.header.handle.major) << 16) | u32::from(filter.header.handle.minor)
}

/// Whether `filter` is a `tc_hc_encap` filter whose balancer interface
/// (its handle) no longer exists (`exists` says which indexes name an
/// interface), and not one of `keep`'s (the program this process runs;
/// 0: none). Its lbd died, and the interface went (or was made again
/// with another index) since: no lbd will look for that handle again,
/// and the filter, on `lo`, would stay until a reboot, running a dead
/// lbd's program and maps on every packet `lo` sends.
pub(crate) fn orphan_hc_filter(
    filter: &ClsBpfFilter,
    exists: impl Fn(u32) -> bool,
    keep: u32,
) -> bool {
    filter.name == names::PROG_TC_HC_ENCAP
        && !exists(handle_of(filter))
        && (keep == 0 || filter.program != Some(keep))
}

/// Whether an interface has index `index` in this thread's network
/// namespace. Only "no such device" counts as none: any other failure
/// of the lookup says it may exist (a filter is then left, not removed).
fn interface_exists(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    !found.is_null() || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENXIO)
}

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

/// The name interface `ifindex` has now (None: no interface has that
/// index, or the lookup failed).
pub(crate) fn interface_name(ifindex: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes.
    let found = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

/// The index interface `name` has now (None: no such interface).
pub(crate) fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The cls_bpf filters on the clsact hook `minor` (ingress or egress) of
/// interface `ifindex` (none when it has no clsact qdisc).
async fn filters_at(
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

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::tc::TcHeader;

    use super::*;

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
}
