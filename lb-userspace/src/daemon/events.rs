//! Events the data plane reports (a VIP packet with no backend, a refused
//! connection-table insert), read from the `EVENTS` ring buffer as they
//! come and handed to the engine, which logs them with the VIP's name.
//! The program already limits them to one per second per CPU and kind.

use aya::maps::{MapData, RingBuf};
use lb_common::DataplaneEvent;
use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};
use tracing::warn;

use crate::dataplane::parse_event;

/// Reads the ring buffer until the receiver goes away.
pub fn spawn(
    ring: RingBuf<MapData>,
    events: mpsc::Sender<DataplaneEvent>,
) -> anyhow::Result<JoinHandle<()>> {
    // SAFETY: the ring buffer owns its map fd, which stays open and the
    // same while the AsyncFd owns it.
    let mut fd = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("watching the event ring buffer: {}", e.into_parts().1))?;
    Ok(tokio::spawn(async move {
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(guard) => guard,
                Err(error) => {
                    warn!(%error, "event ring buffer unreadable; data-plane events are no longer logged");
                    return;
                }
            };
            let ring = guard.get_inner_mut();
            let mut batch = Vec::new();
            while let Some(item) = ring.next() {
                if let Some(event) = parse_event(&item) {
                    batch.push(event);
                }
            }
            guard.clear_ready();
            for event in batch {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        }
    }))
}
