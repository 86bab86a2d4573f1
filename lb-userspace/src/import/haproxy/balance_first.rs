//! `balance first`: a failover order lbd has not, carried over as one
//! server taking every flow, with the WARNING that the order is lost.

use crate::import::model::{keep_only, Backend, Note, Sourced};

/// Under `balance first`, HAProxy sent each connection to the first
/// server, in file order, with a free connection slot, the next ones
/// taking over only when it was full or down: that server keeps its
/// weight, the others get 0, with a WARNING that the order is lost (a
/// weighted split sent flows to servers HAProxy kept idle).
pub(super) fn first_only(servers: &mut [Backend], first: &Sourced<()>) -> Option<Note> {
    let keep = servers.iter().position(Backend::usable)?;
    let kept = keep_only(servers, &[keep], &first.origin, &first.what);
    Some(Note::new(
        &first.origin,
        format!(
            "WARNING: {}: HAProxy sent each connection to the first server (in file order) with a free connection slot and went on to the next only when it was full or down; lbd has no failover order: server {} takes all new flows and the others are written with weight 0, so nothing takes over when it fails: give another a weight then (`lbctl backend weight`)",
            first.what,
            kept.join(", ")
        ),
    ))
}
