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
//!
//! Here: the choice of hook (`attach_path`), attaching a filter and where
//! lbd's go (`attach`), a filter as a dump reports it (`filter`), which
//! filters are left over (`left_over`), the dumps (`listing`), interface
//! names and indexes (`interfaces`), and the sweeps (`removal`).

mod attach;
mod attach_path;
mod filter;
mod interfaces;
mod left_over;
mod listing;
mod removal;

pub(crate) use attach::{attach_filter, hc_filter_options, lb_filter_options, HC_FILTER_PRIORITY};
pub(crate) use attach_path::{tc_path, TcPath, TC_ATTACH_ENV};
pub(crate) use interfaces::{interface_index, interface_name, LOOPBACK_IFINDEX};
pub(crate) use left_over::left_by_lbd;
pub(crate) use listing::{
    egress_programs_of, ingress_filters, ingress_filters_of, tcx_egress_programs,
};
pub(crate) use removal::{note_own_hc_program, remove_left_filters, remove_orphan_hc_filters};

#[cfg(test)]
mod tests;
