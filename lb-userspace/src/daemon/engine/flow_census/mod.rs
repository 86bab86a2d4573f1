//! The connection table's census: its flows per backend (live, closing,
//! idle), its live flows and their handshakes, and the half-open table's
//! occupancy, counted off lbd's loop.
//!
//! Why: a walk of the connection table costs about 155 ns a flow
//! (BENCHMARKS.md), seconds for the largest one (`conntrack_size` 16 Mi,
//! twice as many ways). Made in the engine's loop for every status read,
//! scrape and `drain --wait` poll, it held health events, drain deadlines,
//! replication ticks and BIRD's answers behind it. Now a census walks a
//! second mapping of the tables on a blocking thread (the tables'
//! protocol makes reads safe against the data plane's writes), never more
//! than one at a time; the loop answers a read of counts from the latest
//! census if it is recent enough for that read ([`Desk`](desk::Desk)), and parks the
//! read until the next census ends otherwise, serving everything else
//! meanwhile. Counts are then at most [`FRESH`](desk::FRESH) (or two walks) older than
//! the read, never older than a drain: a drained backend's zero is always
//! one counted after its drain began.
//!
//! The census a read is answered from is lent to the engine for that
//! read only (`Engine::lend_census`), so `Engine::status` keeps its
//! signature; called outside such a loan it counts on the spot.

mod census;
mod desk;
mod off_loop;
mod runner;
#[cfg(test)]
mod tests;

pub(crate) use census::{tally, tally_half_open, Census, CensusInput, CensusTables};
pub(crate) use off_loop::OffLoop;
#[cfg(test)]
pub(crate) use off_loop::REMAP_BACKOFF;
pub(crate) use runner::Censuses;

use crate::api::{
    route::{Call, Route},
    Method, Request,
};

/// Whether `request` reads flow counts (status, the VIPs, one VIP, a
/// backend's flows): it is answered from a census.
pub(crate) fn reads_counts(request: &Request) -> bool {
    request.method == Method::Get
        && matches!(
            Call::decode(request),
            Ok(Call {
                route: Route::Status | Route::ListVips | Route::GetVip(_) | Route::Flows(..),
                ..
            })
        )
}
