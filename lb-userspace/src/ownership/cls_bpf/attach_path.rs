//! The choice between tcx links and cls_bpf filters for lbd's tc
//! programs (`LBD_TC_ATTACH`), read once per process.

use std::{ffi::OsStr, sync::OnceLock};

use tracing::info;

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
