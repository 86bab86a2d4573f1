//! Who may use the admin socket.

use std::io;

use crate::{
    api::server::ServeOptions,
    config::{AdminSocketGroup, Config},
};

/// Who may connect to the admin socket: root only (mode 0600), or root and
/// the members of `admin_socket_group` (mode 0660, the socket's group set to
/// it). A group that does not exist is an error: lbd does not start with a
/// socket other than the one configured.
pub(crate) fn admin_socket_options(config: &Config) -> anyhow::Result<ServeOptions> {
    let Some(group) = &config.admin_socket_group else {
        return Ok(ServeOptions::default());
    };
    let gid = match group {
        AdminSocketGroup::Gid(gid) => *gid,
        AdminSocketGroup::Name(name) => group_id(name)?.ok_or_else(|| {
            anyhow::anyhow!("admin_socket_group: there is no group named {name:?}")
        })?,
    };
    Ok(ServeOptions {
        mode: 0o660,
        group: Some(gid),
        ..ServeOptions::default()
    })
}

/// The id of group `name` from the system's group database (`/etc/group`,
/// or whatever NSS is set up with); `None` if there is no such group.
pub fn group_id(name: &str) -> anyhow::Result<Option<u32>> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("group name {name:?} contains a NUL byte"))?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: a zeroed group struct is valid; getgrnam_r fills it with
        // pointers into `buffer`, which outlives every use.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, and `buffer.len()` is its size.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(group.gr_gid)),
            libc::ERANGE if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 4, 0),
            // Some NSS modules answer "not found" with an error number.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => {
                return Err(anyhow::anyhow!(
                    "looking up group {name:?}: {}",
                    io::Error::from_raw_os_error(errno)
                ))
            }
        }
    }
}
