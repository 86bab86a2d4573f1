//! Whether the host is shutting down or rebooting, asked of systemd when
//! lbd gets SIGTERM. systemd stops every unit with SIGTERM at a shutdown,
//! just as at `systemctl stop`; only at a shutdown does lbd stop for good
//! then (see the daemon's `stop_kind`), so it asks the service manager,
//! whose state is "stopping" once a shutdown, reboot or kexec is under
//! way (`systemctl is-system-running`). Anything unexpected (not under
//! systemd, no `systemctl`, no answer in time, another state) counts as
//! "not stopping": the restart-style stop lbd always made on SIGTERM.

use std::{ffi::OsStr, process::Stdio, time::Duration};

use anyhow::{anyhow, bail, Context as _};
use tracing::debug;

/// How long `systemctl is-system-running` may take: lbd's stop waits for
/// the answer, and a shutdown gives every unit 90 s by default.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The manager's state while the system shuts down or reboots.
const STOPPING: &str = "stopping";

/// Whether the system lbd runs on is shutting down or rebooting, per
/// systemd. Asked only when lbd runs under systemd (else there is no
/// manager to ask, and `systemctl` may name the host's from inside a
/// container); any failure to tell is logged at debug and counts as not.
pub(crate) async fn system_stopping() -> bool {
    let under_systemd = under_systemd(
        std::env::var_os("INVOCATION_ID").as_deref(),
        std::env::var_os("NOTIFY_SOCKET").as_deref(),
    );
    probe(
        under_systemd,
        OsStr::new("systemctl"),
        &["is-system-running"],
        PROBE_TIMEOUT,
    )
    .await
}

/// Whether lbd runs as a systemd service: systemd gives each unit's
/// processes `INVOCATION_ID` (`invocation_id`), and a `Type=notify`
/// unit's main process `NOTIFY_SOCKET` (`notify_socket`). Empty counts as
/// unset.
fn under_systemd(invocation_id: Option<&OsStr>, notify_socket: Option<&OsStr>) -> bool {
    let set = |value: Option<&OsStr>| value.is_some_and(|value| !value.is_empty());
    set(invocation_id) || set(notify_socket)
}

/// [`system_stopping`]'s driver: whether `program` with `args` (systemctl
/// is-system-running), run only when `under_systemd`, prints "stopping"
/// within `timeout`. Separate so tests can put a fake in systemctl's place.
async fn probe(under_systemd: bool, program: &OsStr, args: &[&str], timeout: Duration) -> bool {
    if !under_systemd {
        debug!("not a systemd service (neither INVOCATION_ID nor NOTIFY_SOCKET is set): the system is taken not to be shutting down");
        return false;
    }
    match manager_state(program, args, timeout).await {
        Ok(state) => {
            debug!(state, "systemd's state, asked at SIGTERM");
            state == STOPPING
        }
        Err(error) => {
            debug!(error = %format!("{error:#}"), "could not tell whether the system is shutting down: taken as not");
            false
        }
    }
}

/// The state `program args` prints on its first line within `timeout`.
/// `systemctl is-system-running` exits 0 only for "running", so its exit
/// status is not read; a program that prints nothing fails, its stderr
/// named.
async fn manager_state(
    program: &OsStr,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<String> {
    let shown = format!("`{} {}`", program.to_string_lossy(), args.join(" "));
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A program that outlives the timeout is killed, not left behind.
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| anyhow!("{shown} did not answer within {timeout:?}"))?
        .with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let state = stdout.lines().next().map_or("", str::trim);
    if state.is_empty() {
        bail!(
            "{shown} printed no state ({}; stderr: {:?})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(state.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `systemctl is-system-running`: `/bin/sh -c script`.
    async fn fake(script: &str, timeout: Duration) -> bool {
        probe(true, OsStr::new("/bin/sh"), &["-c", script], timeout).await
    }

    /// systemd sets INVOCATION_ID for every service, NOTIFY_SOCKET for a
    /// `Type=notify` one (lbd's unit): either says lbd runs under it.
    #[test]
    fn lbd_asks_systemd_only_when_it_runs_under_it() {
        let some = |value: &'static str| Some(OsStr::new(value));
        assert!(under_systemd(some("5f0c3e2b9a"), None));
        assert!(under_systemd(None, some("/run/systemd/notify")));
        assert!(under_systemd(
            some("5f0c3e2b9a"),
            some("/run/systemd/notify")
        ));
        assert!(!under_systemd(None, None));
        assert!(!under_systemd(some(""), some("")));
    }

    /// "stopping" (printed with a non-zero exit status, as systemctl does
    /// for any state but "running") is a shutdown; any other state is not.
    #[tokio::test]
    async fn only_the_stopping_state_is_a_shutdown() {
        let timeout = Duration::from_secs(10);
        assert!(fake("echo stopping; exit 1", timeout).await);
        assert!(fake("echo ' stopping '", timeout).await);
        for state in ["running", "degraded", "starting", "maintenance", "offline"] {
            assert!(!fake(&format!("echo {state}"), timeout).await, "{state}");
        }
    }

    /// Not under systemd, the manager is not asked, whatever it would say.
    #[tokio::test]
    async fn without_systemd_nothing_is_asked() {
        assert!(
            !probe(
                false,
                OsStr::new("/bin/sh"),
                &["-c", "echo stopping"],
                Duration::from_secs(10)
            )
            .await
        );
    }

    /// What cannot be read counts as "not stopping": no output, no such
    /// program, and an answer that does not come in time (the stop does
    /// not wait past the timeout for it).
    #[tokio::test]
    async fn anything_unexpected_is_not_a_shutdown() {
        let timeout = Duration::from_secs(10);
        assert!(!fake("echo 'Failed to connect to bus' >&2; exit 1", timeout).await);
        assert!(
            !probe(
                true,
                OsStr::new("/nonexistent/systemctl"),
                &["is-system-running"],
                timeout
            )
            .await
        );
        let started = std::time::Instant::now();
        assert!(!fake("exec sleep 30", Duration::from_millis(200)).await);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let error = manager_state(OsStr::new("/bin/sh"), &["-c", "exit 3"], timeout)
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("printed no state"),
            "{error:#}"
        );
    }
}
