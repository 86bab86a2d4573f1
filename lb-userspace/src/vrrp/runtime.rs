//! The thread the VRRP instances run on: an OS thread of its own with a
//! current-thread tokio runtime, and a routing netlink connection driven
//! by that runtime.
//!
//! VRRP's timing must not depend on the rest of lbd's work, the way
//! keepalived's VRRP process does not depend on its checkers: on the main
//! runtime, synchronous work that holds its worker threads for hundreds of
//! milliseconds (installing a batch of replicated NAT flows, walking the
//! flow tables, the NAT reaper's sweep) also stops the timers and sockets
//! that runtime drives, and a master's adverts then leave late, or a
//! backup reads them late: past the master-down interval (about 340 ms at
//! a 100 ms advert interval), the backup takes the VIPs from a healthy
//! master. Here nothing but the VRRP drivers (and the announcements and
//! notify commands they start) runs, and every resource they wait on (the
//! VRRP socket, their timers, the netlink connection they read and change
//! the interface's addresses through) belongs to this runtime: tokio I/O
//! and timers are driven by the runtime that created them.

use std::sync::{mpsc, Mutex, PoisonError};

use anyhow::{anyhow, Context as _};
use tokio::runtime::Handle;

use crate::netlink::Netlink;

/// The VRRP thread's runtime, and the netlink connection it drives.
#[derive(Clone)]
pub(crate) struct VrrpRuntime {
    /// Spawns onto the VRRP thread.
    pub(crate) handle: Handle,
    /// A routing netlink connection whose task runs on the VRRP thread:
    /// the drivers' address and link checks never wait for the main
    /// runtime.
    pub(crate) netlink: Netlink,
}

/// The one VRRP thread of the process, started by the first instance.
static RUNTIME: Mutex<Option<VrrpRuntime>> = Mutex::new(None);

impl VrrpRuntime {
    /// The VRRP thread, started on the first call. It runs until the
    /// process exits: lbd's exit stops the instances and waits for their
    /// notify commands first.
    pub(crate) fn get() -> anyhow::Result<Self> {
        // Held while the thread starts (a few milliseconds, once), so two
        // first instances never start two threads.
        let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = Self::start()?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// Starts the thread and its runtime, and connects its netlink socket
    /// inside it.
    fn start() -> anyhow::Result<Self> {
        let (started_tx, started_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("lbd-vrrp".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started_tx
                            .send(Err(error).context("building the VRRP thread's tokio runtime"));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Inside the runtime: the connection's task is spawned
                    // on it.
                    let started = Netlink::connect()
                        .map(|netlink| Self {
                            handle: Handle::current(),
                            netlink,
                        })
                        .context("opening the VRRP thread's routing netlink socket");
                    if started_tx.send(started).is_ok() {
                        // Serves the drivers spawned through the handle.
                        std::future::pending::<()>().await;
                    }
                });
            })
            .context("starting the VRRP thread")?;
        started_rx
            .recv()
            .map_err(|_| anyhow!("the VRRP thread ended while starting"))?
    }
}
