//! The open-file limit (`RLIMIT_NOFILE`). Linux and systemd start services
//! with a soft limit of 1024 descriptors; lbd holds the data plane's maps,
//! a socket per health check in flight, its listeners' connections and
//! more, so at start-up it raises its soft limit to the hard one (which
//! needs no privilege), and gives programs it runs (VRRP `notify`) the
//! limit it started with: programs built on `select()` break above 1024.
//!
//! Also the locked-memory limit (`RLIMIT_MEMLOCK`): kernels before 5.11
//! charge BPF maps and programs to it, and its usual default (64 KiB or
//! 8 MiB) makes creating the maps fail with a misleading EPERM; lbd
//! raises it to unlimited at start-up ([`raise_memlock`]).

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

/// What [`raise_memlock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Memlock {
    /// Already unlimited (the systemd unit's `LimitMEMLOCK=infinity`).
    Unlimited,
    /// Raised to unlimited from these soft and hard limits.
    Raised {
        soft: libc::rlim_t,
        hard: libc::rlim_t,
    },
}

/// Raises the locked-memory limit (`RLIMIT_MEMLOCK`), soft and hard, to
/// unlimited. Raising the hard limit needs `CAP_SYS_RESOURCE` (root
/// outside the systemd unit, which sets `LimitMEMLOCK=infinity` itself);
/// without it the soft limit is still raised to the hard one, and the
/// error returned.
pub(crate) fn raise_memlock() -> io::Result<Memlock> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur == libc::RLIM_INFINITY && limit.rlim_max == libc::RLIM_INFINITY {
        return Ok(Memlock::Unlimited);
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the local it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        let error = io::Error::last_os_error();
        let to_hard = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // Best effort: as far as no privilege goes.
        // SAFETY: setrlimit reads the local it is given.
        let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const to_hard) };
        return Err(error);
    }
    Ok(Memlock::Raised {
        soft: limit.rlim_cur,
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

    fn memlock() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the local it is given.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) },
            0
        );
        limit
    }

    /// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK: lbd started
    /// by hand (`sudo lbd`, a soft limit of 64 KiB or 8 MiB) raises it to
    /// unlimited. That needs CAP_SYS_RESOURCE, which root normally has;
    /// without it (a container that took it away) the soft limit still
    /// goes up to the hard one, and the error is returned.
    #[test]
    fn the_locked_memory_limit_is_raised_to_unlimited() {
        let started = memlock();
        // Only the soft limit is lowered: without CAP_SYS_RESOURCE a hard
        // limit lowered could not be raised again.
        let low = libc::rlimit {
            rlim_cur: (64 << 10).min(started.rlim_max),
            rlim_max: started.rlim_max,
        };
        // SAFETY: setrlimit reads the local it is given.
        assert_eq!(
            unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const low) },
            0
        );
        let raised = raise_memlock();
        let now = memlock();
        let privileged = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap();
        if privileged || started.rlim_max == libc::RLIM_INFINITY {
            assert_eq!(
                (now.rlim_cur, now.rlim_max),
                (libc::RLIM_INFINITY, libc::RLIM_INFINITY)
            );
            assert_eq!(
                raised.unwrap(),
                Memlock::Raised {
                    soft: low.rlim_cur,
                    hard: low.rlim_max
                }
            );
            assert_eq!(raise_memlock().unwrap(), Memlock::Unlimited);
        } else {
            println!("no CAP_SYS_RESOURCE: only the soft limit can go up");
            assert_eq!(
                raised.unwrap_err().raw_os_error(),
                Some(libc::EPERM),
                "soft {} hard {}",
                now.rlim_cur,
                now.rlim_max
            );
            assert_eq!(
                (now.rlim_cur, now.rlim_max),
                (started.rlim_max, started.rlim_max)
            );
        }
    }

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
