//! The data plane's event ring buffer: handed to its reader, or drained
//! here, and each record read as a `DataplaneEvent`.

use aya::maps::{MapData, RingBuf};
use lb_common::DataplaneEvent;

use super::Dataplane;

impl Dataplane {
    /// Hands the event ring buffer to its reader (once).
    pub(crate) fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Events waiting in the ring buffer, if it was not taken.
    pub fn drain_events(&mut self) -> Vec<DataplaneEvent> {
        let mut out = Vec::new();
        if let Some(ring) = &mut self.events {
            while let Some(item) = ring.next() {
                if let Some(event) = parse_event(&item) {
                    out.push(event);
                }
            }
        }
        out
    }
}

/// A `DataplaneEvent` from a ring-buffer record, if it has the size.
pub(crate) fn parse_event(bytes: &[u8]) -> Option<DataplaneEvent> {
    if bytes.len() != std::mem::size_of::<DataplaneEvent>() {
        return None;
    }
    // SAFETY: the length matches and DataplaneEvent is plain integers
    // (any bit pattern is valid); read_unaligned copes with alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DataplaneEvent>()) })
}
