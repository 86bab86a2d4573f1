//! The notify commands an instance runs at each change of state: queued
//! one after the other (a newer state replacing one still waiting), and
//! waited for at lbd's exit. Apart as its own small scheduler.

use std::{
    future::Future,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::oneshot, task::JoinSet};
use tracing::{info, warn};

use super::Driver;
use crate::{
    config::VrrpConfig,
    vrrp::{notify_program::check_notify_program, Family},
};

/// Longest lbd's exit waits for the notify commands still running (the
/// "stopped" one a clean stop runs, any still at work): a command that
/// takes longer is killed, with a warning.
pub(crate) const NOTIFY_GRACE: Duration = Duration::from_secs(5);

/// The notify commands an instance started and that may still run: lbd's
/// exit waits for them ([`wait_for_notifies`]), since leaving the runtime
/// kills every child it still owns (`kill_on_drop`), and a "stopped"
/// command killed before it ran would leave whatever it drives (a
/// firewall, a monitoring state) at "master".
///
/// They run one after the other, in the order the instance changed state:
/// run side by side, a slow "master" command could finish after the
/// "backup" one of a quick master→backup flip, leaving whatever it drives
/// at "master" on a backup. At most one waits behind the one running: a
/// newer state replaces it before it starts, as only the newest state
/// matters to what the command drives, so a flapping instance with a slow
/// command never falls behind, and a "stopped" at exit is never stuck
/// behind a backlog.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifies(Arc<Mutex<Queue>>);

/// A queued command, boxed so a newer one can take its place.
type Command = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The command waiting for the one before it to end, with the state it
/// reports; taken (left `None`) when it starts.
type Waiting = Arc<Mutex<Option<(String, Command)>>>;

/// The commands of one instance, and the end of the last one queued.
#[derive(Default)]
struct Queue {
    /// Every command queued and not yet reaped: at most the one running
    /// and the one waiting for it (and, past an exit's [`Notifies::take`],
    /// those of the new set).
    running: JoinSet<()>,
    /// Fires (or is dropped, the command killed) when the last command
    /// queued has ended: the next one waits for it.
    last: Option<oneshot::Receiver<()>>,
    /// The command queued behind the running one, while it has not
    /// started: a newer state replaces it there.
    waiting: Option<Waiting>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("running", &self.running.len())
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

impl Notifies {
    /// Runs `command` (reporting `state` of VRID `vrid`) as a task kept
    /// here: at once if the command queued before it has ended (or was
    /// killed), else once it has, in place of any command still waiting
    /// for it (merged: that older state is never reported). Forgets the
    /// commands that ended. Each command's own time limit starts when it
    /// starts.
    fn spawn(&self, vrid: u8, state: &str, command: impl Future<Output = ()> + Send + 'static) {
        let command: Command = Box::pin(command);
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        while queue.running.try_join_next().is_some() {}
        if let Some(waiting) = &queue.waiting {
            let mut slot = waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((replaced, _)) = slot.take() {
                info!(
                    vrid,
                    %replaced,
                    %state,
                    "VRRP notify: a newer state replaces one still waiting for the command before it to end, which is not reported"
                );
                *slot = Some((state.to_owned(), command));
                return;
            }
        }
        // The command before still running: this one waits for it.
        let before = queue.last.take().and_then(|mut before| {
            matches!(before.try_recv(), Err(oneshot::error::TryRecvError::Empty)).then_some(before)
        });
        let (ended, end) = oneshot::channel();
        queue.last = Some(end);
        let Some(before) = before else {
            queue.waiting = None;
            queue.running.spawn(async move {
                command.await;
                let _ = ended.send(());
            });
            return;
        };
        let waiting: Waiting = Arc::new(Mutex::new(Some((state.to_owned(), command))));
        queue.waiting = Some(waiting.clone());
        queue.running.spawn(async move {
            // An error: the one before was killed; go on.
            let _ = before.await;
            let next = waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((_, command)) = next {
                command.await;
            }
            let _ = ended.send(());
        });
    }

    /// Takes the commands still running or queued (new ones start a fresh
    /// set, still after the last one taken, and never replace one taken).
    fn take(&self) -> JoinSet<()> {
        let mut queue = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        queue.waiting = None;
        std::mem::take(&mut queue.running)
    }
}

/// Waits, all together at most `limit`, for the notify commands of
/// `notifies` still running; those still running then are killed, with a
/// warning naming how many. For lbd's exit, once the instances stopped.
pub(crate) async fn wait_for_notifies(notifies: &[Notifies], limit: Duration) {
    let mut sets: Vec<JoinSet<()>> = notifies.iter().map(Notifies::take).collect();
    let all = async {
        for set in &mut sets {
            while set.join_next().await.is_some() {}
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        let left: usize = sets.iter().map(JoinSet::len).sum();
        warn!(
            running = left,
            "VRRP notify commands still running {} s after lbd began to stop; killing them",
            limit.as_secs()
        );
        for set in &mut sets {
            set.shutdown().await;
        }
    }
}

/// The environment variable a notify command finds the instance's address
/// family in (as its third argument).
const NOTIFY_FAMILY_ENV: &str = "LBD_VRRP_FAMILY";

/// The address family of an instance's addresses, as its notify command
/// gets it: "ipv4" or "ipv6". One VRID may serve both families (one
/// instance each), so the VRID alone does not tell them apart.
fn family_name(config: &VrrpConfig) -> &'static str {
    match config.addresses.first().map(Family::of) {
        Some(Family::V6) => "ipv6",
        _ => "ipv4",
    }
}

/// Runs `config`'s notify command, if any, for `state`, kept in
/// `notifies`: `PROGRAM STATE VRID FAMILY`, with FAMILY also in
/// [`NOTIFY_FAMILY_ENV`] (the first two arguments as ever).
fn spawn_notify(notifies: &Notifies, config: &VrrpConfig, state: &str) {
    let Some(program) = config.notify.clone() else {
        return;
    };
    let command = run_notify(
        program,
        state.to_owned(),
        config.vrid.to_string(),
        family_name(config),
    );
    notifies.spawn(config.vrid, state, command);
}

/// Runs the notify `program` for `state`, once it passed the same checks
/// as at config load again (it may have changed since): a program someone
/// other than root could change is not run, with a warning.
async fn run_notify(program: PathBuf, state: String, vrid: String, family: &'static str) {
    if let Err(problem) = check_notify_program(&program) {
        warn!(program = %program.display(), %state, %problem, "VRRP notify not run");
        return;
    }
    let mut command = tokio::process::Command::new(&program);
    command
        .arg(&state)
        .arg(&vrid)
        .arg(family)
        .env(NOTIFY_FAMILY_ENV, family)
        .kill_on_drop(true);
    crate::rlimit::restore_for_child(&mut command);
    let result = tokio::time::timeout(Duration::from_secs(30), command.status()).await;
    match result {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => {
            warn!(program = %program.display(), %state, %status, "VRRP notify failed")
        }
        Ok(Err(error)) => {
            warn!(program = %program.display(), %state, %error, "VRRP notify could not run")
        }
        Err(_) => {
            warn!(program = %program.display(), %state, "VRRP notify ran over 30 s and was killed")
        }
    }
}

impl Driver {
    pub(super) fn notify(&self, state: &str) {
        spawn_notify(&self.notifies, &self.config, state);
    }
}

#[cfg(test)]
mod tests;
