//! Interface names and indexes as the kernel has them now (libc's
//! if_indextoname and if_nametoindex), and the index of `lo`.

/// The index of `lo` in every network namespace (the kernel registers
/// it first).
pub(crate) const LOOPBACK_IFINDEX: u32 = 1;

/// Whether an interface has index `index` in this thread's network
/// namespace. Only "no such device" counts as none: any other failure
/// of the lookup says it may exist (a filter is then left, not removed).
pub(super) fn interface_exists(index: u32) -> bool {
    index_to_name(index).map_or_else(|error| error.raw_os_error() != Some(libc::ENXIO), |_| true)
}

/// The name interface `ifindex` has now (None: no interface has that
/// index, or the lookup failed).
pub(crate) fn interface_name(ifindex: u32) -> Option<String> {
    index_to_name(ifindex).ok()
}

/// if_indextoname(3): the name of interface `index`, or why there is none
/// (`ENXIO`: no interface has that index; a name that is not UTF-8 is
/// `InvalidData`).
fn index_to_name(index: u32) -> std::io::Result<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes if_indextoname writes.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `name`.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    name.to_str()
        .map(str::to_owned)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}

/// The index interface `name` has now (None: no such interface).
pub(crate) fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}
