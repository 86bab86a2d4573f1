//! Repairing the adopted flow tables in place: the ways a killed lbd left
//! held mid-write, and the flows a previous release placed where this
//! release does not look for them.

use tracing::{info, warn};

use super::super::{flows::FlowStore, Dataplane};

impl Dataplane {
    /// Empties the ways of the adopted tables (connection, half-open and
    /// NAT flow tables) that an lbd killed between a claim and its publish
    /// left held (`FlowTable::reclaim_abandoned`): no lookup, insert or
    /// eviction takes a held way, so it would stay out of use for good,
    /// and its flow's packets would go untracked (in the NAT table, whose
    /// inserts are exclusive, the key could never be installed again).
    /// Run while this lbd holds the data plane's lock and has not started
    /// writing: the only other writer, the program, holds a way for one
    /// run.
    pub(in crate::dataplane) fn reclaim_abandoned_ways(&mut self) {
        const GRACE: std::time::Duration = std::time::Duration::from_millis(100);
        let flows = match &self.flows {
            FlowStore::Buckets(table) => table.reclaim_abandoned(GRACE),
            FlowStore::KernelMap(_) => 0,
        };
        let half_open = self.half_open.reclaim_abandoned(GRACE);
        let nat = self.nat.table().reclaim_abandoned(GRACE);
        if flows + half_open + nat > 0 {
            warn!(
                flows,
                half_open,
                nat,
                "ways a stopped lbd left held mid-write (killed between a claim and its publish) emptied; their flows' next packets are tracked again"
            );
        }
    }

    /// Puts the adopted table's flows that a previous release placed by
    /// another hash or in a far second bucket where this release looks
    /// for them
    /// (`FlowTable::re_place`): copies them after the load (`release`
    /// false), and again once this lbd's program runs, taking the old
    /// copies out (`release` true).
    pub(in crate::dataplane) fn re_place_flows(&mut self, release: bool) {
        let FlowStore::Buckets(table) = &self.flows else {
            return;
        };
        let done = table.re_place(release);
        if done.misplaced > 0 {
            info!(
                misplaced = done.misplaced,
                copied = done.copied,
                left_out = done.full,
                failed = done.failed,
                released = done.released,
                "flows a previous release placed elsewhere (another hash, or a second bucket anywhere) moved to where this release looks for them"
            );
        }
        if done.full > 0 || done.failed > 0 {
            warn!(
                left_out = done.full,
                failed = done.failed,
                "some flows could not be moved where this release looks for them (left out: every way of their buckets holds a flow seen more recently; failed: their ways stayed busy): their next packets take Maglev's pick"
            );
        }
    }
}
