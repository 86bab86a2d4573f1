//! The open-file limit (`RLIMIT_NOFILE`). Linux and systemd start services
//! with a soft limit of 1024 descriptors; lbd holds the data plane's maps,
//! a socket per health check in flight, its listeners' connections and
//! more, so at start-up it raises its soft limit to the hard one (which
//! needs no privilege), and gives programs it runs (VRRP `notify`) the
//! limit it started with: programs built on `select()` break above 1024.

use std::{io, sync::OnceLock};

/// The soft limit lbd started with, and the hard one.
static STARTED_WITH: OnceLock<(libc::rlim_t, libc::rlim_t)> = OnceLock::new();

/// The open-file limits before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Raised {
    /// The soft limit lbd started with.
    pub(crate) before: libc::rlim_t,
    /// The soft limit now.
    pub(crate) soft: libc::rlim_t,
    /// The hard limit (unchanged).
    pub(crate) hard: libc::rlim_t,
}

/// Raises the soft open-file limit to the hard limit (to `fs.nr_open` if
/// the hard limit is unlimited).
pub(crate) fn raise_nofile() -> io::Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    let _ = STARTED_WITH.set((limit.rlim_cur, limit.rlim_max));
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        nr_open()
    } else {
        limit.rlim_max
    };
    if target <= before {
        return Ok(Raised {
            before,
            soft: before,
            hard: limit.rlim_max,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the local it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Raised {
        before,
        soft: target,
        hard: limit.rlim_max,
    })
}

/// The kernel's ceiling for the open-file limit (`fs.nr_open`).
fn nr_open() -> libc::rlim_t {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Makes `command` run with the open-file limit lbd started with (nothing
/// if [`raise_nofile`] never ran).
pub(crate) fn restore_for_child(command: &mut tokio::process::Command) {
    let Some(&(soft, hard)) = STARTED_WITH.get() else {
        return;
    };
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: the closure runs in the child between fork and exec; it only
    // calls setrlimit (async-signal-safe) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn raised_to_the_hard_limit_and_restored_for_children() {
        let raised = raise_nofile().unwrap();
        assert!(raised.soft >= raised.before);
        let (started, _) = *STARTED_WITH.get().unwrap();
        assert_eq!(started, raised.before);
        if raised.hard != libc::RLIM_INFINITY {
            assert_eq!(raised.soft, raised.hard);
        }
        // A child gets what lbd started with.
        let mut command = tokio::process::Command::new("sh");
        command.args(["-c", "ulimit -Sn"]);
        restore_for_child(&mut command);
        let out = command.output().await.unwrap();
        assert!(out.status.success());
        let soft = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert_eq!(soft, started.to_string());
    }
}
