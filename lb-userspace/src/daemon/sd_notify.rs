//! The two messages of systemd's notification protocol (sd_notify(3)) lbd
//! sends: `READY=1` once it serves (the unit is `Type=notify`), and
//! `WATCHDOG=1` from its main loop every half `WatchdogSec=`. A loop that
//! stops turning while the process lives on (wedged, not crashed) would
//! leave the BGP routes announced and the VRRP thread advertising while no
//! health change is applied; without its pings systemd kills lbd
//! (`WatchdogSignal=`, SIGABRT) and handles it as a crash: the unit's stop
//! path withdraws the routes, the adverts end with the process, and a new
//! lbd is started.
//!
//! The protocol is one datagram per message to the Unix socket named in
//! `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`), so it is written here on std's `UnixDatagram`: no libsystemd and
//! no crate for a dozen lines.

use std::{
    ffi::OsStr,
    io::ErrorKind,
    os::{
        linux::net::SocketAddrExt as _,
        unix::{
            ffi::OsStrExt as _,
            net::{SocketAddr, UnixDatagram},
        },
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use tracing::{debug, info, warn};

/// Where systemd hears lbd's notifications, and the socket lbd sends them
/// from.
struct Notifier {
    /// Unbound and non-blocking: a full queue at systemd's end costs one
    /// message, never a stall of the loop that sends it.
    socket: UnixDatagram,
    /// `$NOTIFY_SOCKET`'s address.
    address: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for the log.
    name: String,
    /// The last send failed: a failure is logged once, not at every ping.
    failing: bool,
}

impl Notifier {
    /// The notifier for `notify_socket` (`$NOTIFY_SOCKET`): a path, or an
    /// abstract name after `@`. Other forms (`vsock:...`) are not spoken.
    fn new(notify_socket: &OsStr) -> anyhow::Result<Self> {
        let name = notify_socket.to_string_lossy().into_owned();
        let bytes = notify_socket.as_bytes();
        let address = match bytes.first() {
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])
                .with_context(|| format!("abstract socket address {name:?}"))?,
            Some(b'/') => SocketAddr::from_pathname(notify_socket)
                .with_context(|| format!("socket path {name:?}"))?,
            _ => bail!("NOTIFY_SOCKET={name:?} is neither a path nor an abstract name (@...)"),
        };
        let socket = UnixDatagram::unbound().context("creating a Unix datagram socket")?;
        socket
            .set_nonblocking(true)
            .context("making the notification socket non-blocking")?;
        Ok(Self {
            socket,
            address,
            name,
            failing: false,
        })
    }

    /// Sends `message`; a failure is logged, not returned: systemd missing
    /// one message is no reason to stop serving.
    fn send(&mut self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.address) {
            Ok(_) => {
                if std::mem::take(&mut self.failing) {
                    info!(socket = %self.name, "systemd notifications get through again");
                }
            }
            Err(error) if !self.failing => {
                self.failing = true;
                let hint = if error.kind() == ErrorKind::WouldBlock {
                    " (systemd's queue is full)"
                } else {
                    ""
                };
                warn!(%error, socket = %self.name, message, "sending a notification to systemd failed{hint}; if its watchdog misses the pings for WatchdogSec, it kills lbd");
            }
            Err(error) => {
                debug!(%error, socket = %self.name, message, "notification to systemd failed again")
            }
        }
    }
}

/// How often to ping systemd's watchdog: half of `watchdog_usec`
/// (`$WATCHDOG_USEC`, microseconds), as sd_watchdog_enabled(3) advises,
/// so one late ping is not yet a kill. None when there is no watchdog, or
/// it is another process's: `watchdog_pid` (`$WATCHDOG_PID`) names a pid
/// other than `pid` (ours), as it does for a program that inherited the
/// environment from lbd (a VRRP notify command). A value systemd would
/// not write is an error.
fn ping_interval(
    watchdog_usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    pid: u32,
) -> anyhow::Result<Option<Duration>> {
    let Some(usec) = watchdog_usec else {
        return Ok(None);
    };
    let usec: u64 = usec
        .to_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("WATCHDOG_USEC={usec:?} is not a number of microseconds"))?;
    // systemd's own "infinity" is no watchdog either.
    if usec == 0 || usec == u64::MAX {
        bail!("WATCHDOG_USEC={usec} is no watchdog timeout");
    }
    if let Some(owner) = watchdog_pid {
        let owner: u32 = owner
            .to_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("WATCHDOG_PID={owner:?} is not a pid"))?;
        if owner != pid {
            return Ok(None);
        }
    }
    // At least a microsecond: a zero period is no interval.
    Ok(Some(Duration::from_micros((usec / 2).max(1))))
}

/// lbd's side of the notification protocol: does nothing when lbd does
/// not run under systemd (no `$NOTIFY_SOCKET`), and pings only when
/// systemd set a watchdog for this process.
pub(crate) struct Systemd {
    notifier: Option<Notifier>,
    /// When the next ping is due; None without a watchdog.
    pings: Option<tokio::time::Interval>,
}

impl Systemd {
    /// From the environment systemd gives lbd. Call it inside the tokio
    /// runtime (the pings' timer).
    pub(crate) fn from_env() -> Self {
        Self::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// From the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
    /// `WATCHDOG_PID`, for the process `pid`. What cannot be used is
    /// logged and left out.
    fn from_vars(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&OsStr>,
        watchdog_pid: Option<&OsStr>,
        pid: u32,
    ) -> Self {
        let notifier = match notify_socket.filter(|s| !s.is_empty()).map(Notifier::new) {
            None => None,
            Some(Ok(notifier)) => Some(notifier),
            Some(Err(error)) => {
                warn!(error = format!("{error:#}"), "systemd's NOTIFY_SOCKET cannot be used: lbd sends systemd no readiness and no watchdog pings");
                None
            }
        };
        let interval = match ping_interval(watchdog_usec, watchdog_pid, pid) {
            Ok(interval) => interval,
            Err(error) => {
                warn!(
                    error = format!("{error:#}"),
                    "systemd's watchdog settings cannot be used: no watchdog pings"
                );
                None
            }
        };
        let pings = match (&notifier, interval) {
            (Some(notifier), Some(every)) => {
                info!(socket = %notifier.name, every = ?every, "systemd watchdog: the main loop pings it");
                let mut pings = tokio::time::interval(every);
                pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(pings)
            }
            (None, Some(_)) => {
                warn!("WATCHDOG_USEC is set but there is no NOTIFY_SOCKET to ping: systemd's watchdog will kill lbd");
                None
            }
            (_, None) => None,
        };
        Self { notifier, pings }
    }

    /// Tells systemd lbd serves: the start of a `Type=notify` unit ends
    /// here, and its watchdog starts counting.
    pub(crate) fn ready(&mut self) {
        if let Some(notifier) = &mut self.notifier {
            notifier.send("READY=1");
        }
    }

    /// Resolves when the next watchdog ping is due; never without a
    /// watchdog. Cancel-safe: a select! may drop it.
    pub(crate) async fn ping_due(&mut self) {
        match &mut self.pings {
            Some(pings) => {
                pings.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Pings systemd's watchdog (nothing without one). Only from the loop
    /// whose turning it vouches for.
    pub(crate) fn ping(&mut self) {
        if self.pings.is_none() {
            return;
        }
        if let Some(notifier) = &mut self.notifier {
            notifier.send("WATCHDOG=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_scratch::ScratchDir;

    /// A socket standing in for systemd's, bound in a directory of the
    /// test's own; the directory goes when it is dropped.
    struct FakeSystemd {
        dir: ScratchDir,
        socket: UnixDatagram,
    }

    impl FakeSystemd {
        fn bind(tag: &str) -> Self {
            let dir = ScratchDir::new(&format!("sd-notify-{tag}"));
            let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
            socket.set_nonblocking(true).unwrap();
            Self { dir, socket }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.join("notify")
        }

        /// The messages received so far.
        fn received(&self) -> Vec<String> {
            received(&self.socket)
        }
    }

    fn received(socket: &UnixDatagram) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return messages,
                Err(error) => panic!("{error}"),
            }
        }
    }

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    /// Waits (up to 2 s) until `socket` has received `n` messages.
    async fn wait_for(n: usize, socket: &UnixDatagram) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(received(socket));
            if got.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        got
    }

    #[test]
    fn pings_come_at_half_the_watchdog_timeout() {
        let pid = 4242;
        assert_eq!(
            ping_interval(os("30000000"), None, pid).unwrap(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            ping_interval(os("3000"), os("4242"), pid).unwrap(),
            Some(Duration::from_micros(1500))
        );
        // Never a zero period (tokio's interval refuses one).
        assert_eq!(
            ping_interval(os("1"), None, pid).unwrap(),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn no_pings_without_a_watchdog_or_for_another_process() {
        let pid = 4242;
        assert_eq!(ping_interval(None, None, pid).unwrap(), None);
        assert_eq!(ping_interval(None, os("4242"), pid).unwrap(), None);
        // A program lbd started inherited the environment: not its watchdog.
        assert_eq!(ping_interval(os("30000000"), os("1"), pid).unwrap(), None);
        for bad in ["0", "18446744073709551615", "30s", "", "-1"] {
            assert!(ping_interval(os(bad), None, pid).is_err(), "{bad:?}");
        }
        assert!(ping_interval(os("30000000"), os("me"), pid).is_err());
    }

    #[tokio::test]
    async fn ready_and_pings_reach_the_notify_socket() {
        let systemd = FakeSystemd::bind("path");
        let pid = std::process::id();
        let watchdog = format!("{pid}");
        let mut notify = Systemd::from_vars(
            Some(systemd.path().as_os_str()),
            os("20000"),
            os(&watchdog),
            pid,
        );
        notify.ready();
        assert_eq!(systemd.received(), ["READY=1"]);
        // As the main loop does: wait for the ping to be due, then ping.
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(2), notify.ping_due())
                .await
                .expect("a ping is due every 10 ms");
            notify.ping();
        }
        assert_eq!(wait_for(3, &systemd.socket).await, ["WATCHDOG=1"; 3]);
    }

    #[tokio::test]
    async fn an_abstract_notify_socket_is_reached_too() {
        let name = format!("lbd-sd-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut notify = Systemd::from_vars(
            os(&format!("@{name}")),
            os("30000000"),
            None,
            std::process::id(),
        );
        notify.ready();
        notify.ping();
        assert_eq!(wait_for(2, &socket).await, ["READY=1", "WATCHDOG=1"]);
    }

    #[tokio::test]
    async fn nothing_is_pinged_without_a_watchdog_of_ours() {
        let systemd = FakeSystemd::bind("unset");
        let pid = std::process::id();
        let other = format!("{}", pid + 1);
        for (usec, owner) in [(None, None), (os("20000"), os(&other))] {
            let mut notify = Systemd::from_vars(Some(systemd.path().as_os_str()), usec, owner, pid);
            // Never due...
            let due = tokio::time::timeout(Duration::from_millis(100), notify.ping_due()).await;
            assert!(due.is_err(), "a ping fell due for {usec:?} {owner:?}");
            // ...and a ping sends nothing.
            notify.ping();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(systemd.received(), Vec::<String>::new());
            // Readiness is not the watchdog's: still told.
            notify.ready();
            assert_eq!(systemd.received(), ["READY=1"]);
        }
    }

    #[tokio::test]
    async fn without_a_notify_socket_nothing_is_sent_and_nothing_fails() {
        for socket in [None, os(""), os("vsock:2:1234"), os("relative/path")] {
            let mut notify = Systemd::from_vars(socket, os("20000"), None, std::process::id());
            assert!(notify.notifier.is_none() && notify.pings.is_none());
            notify.ready();
            notify.ping();
        }
    }

    /// A listener that went away (systemd re-executing, say) costs a
    /// logged failure, not lbd.
    #[tokio::test]
    async fn a_notify_socket_nobody_listens_on_is_survived() {
        let systemd = FakeSystemd::bind("gone");
        let path = systemd.path();
        let mut notify = Systemd::from_vars(
            Some(path.as_os_str()),
            os("20000"),
            None,
            std::process::id(),
        );
        drop(systemd);
        notify.ready();
        notify.ping();
        assert!(notify.notifier.as_ref().is_some_and(|n| n.failing));
    }

    /// The values of the `key=` lines of the shipped unit.
    fn unit_values(key: &str) -> Vec<&'static str> {
        include_str!("../../../deploy/systemd/lbd.service")
            .lines()
            .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    /// The unit waits for READY=1, hears only lbd itself, and has a
    /// watchdog whose kill is a crash: the default SIGABRT, restarted by
    /// `Restart=on-failure` (a watchdog timeout is a failure) after the
    /// stop path (ExecStopPost) withdrew what a crash leaves.
    #[test]
    fn the_systemd_unit_waits_for_readiness_and_has_a_watchdog() {
        assert_eq!(unit_values("Type"), ["notify"]);
        assert_eq!(unit_values("NotifyAccess"), ["main"]);
        let watchdog = unit_values("WatchdogSec");
        assert_eq!(watchdog.len(), 1, "{watchdog:?}");
        let seconds: u64 = watchdog[0].trim_end_matches('s').parse().unwrap();
        // Long enough for a loop turn that waits on the kernel; pings at
        // half of it.
        assert!((10..=120).contains(&seconds), "WatchdogSec={seconds}s");
        assert!(unit_values("WatchdogSignal").is_empty());
        assert_eq!(unit_values("Restart"), ["on-failure"]);
        assert!(unit_values("ExecStopPost")
            .iter()
            .any(|c| c.contains("--release-vips")));
    }
}
