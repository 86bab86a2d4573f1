//! Integer socket options socket2 does not wrap (IPv6 receive options for
//! VRRP, `IP_BIND_ADDRESS_NO_PORT` for health checks): one `setsockopt`
//! call, checked, in one place.

use std::{io, mem::size_of, os::fd::AsRawFd};

/// Sets the integer option `name` at `level` of `socket` to `value`.
pub(crate) fn set_int(socket: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live i32 and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_option_is_set_and_a_bad_one_refused() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_int(&socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1).unwrap();
        assert!(set_int(&socket, libc::IPPROTO_IP, -1, 1).is_err());
    }
}
