//! How a table places its flows (`Placement`): by which hash, and where
//! second buckets lie. Apart because the object's two tables and the
//! connection tables of earlier releases each place flows their own way.

use lb_common::flow_table::SecondBucket;

/// What errors call a table placed by `placement`.
pub(super) fn table_name(placement: Placement) -> &'static str {
    match placement {
        Placement::ByFlowHash => "half-open table",
        Placement::ByTableHash | Placement::ByTableHashAnywhere | Placement::ByFlowHashAnywhere => {
            "connection table"
        }
    }
}

/// How a table of this layout places its flows: by which hash, and
/// where their second buckets lie. The object's two tables differ, and
/// connection tables that earlier releases left pinned were placed
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `hash::table_hash`, second buckets near the first
    /// (`SecondBucket::Nearby`): the connection table (`FLOW_BUCKETS`).
    ByTableHash,
    /// `hash::flow_hash`: the half-open table (`HALF_OPEN`; a SYN
    /// computes that hash anyway, for its Maglev pick; its flows stay in
    /// their first bucket).
    ByFlowHash,
    /// `hash::table_hash`, second buckets anywhere in the table
    /// (`SecondBucket::Anywhere`): the connection table of the releases
    /// between `table_hash` and `SecondBucket::Nearby`.
    ByTableHashAnywhere,
    /// `hash::flow_hash`, second buckets anywhere: the connection table
    /// of the releases before `table_hash`.
    ByFlowHashAnywhere,
}

impl Placement {
    /// Where this placement puts a flow's second bucket.
    pub(super) fn second(self) -> SecondBucket {
        match self {
            Placement::ByTableHash | Placement::ByFlowHash => SecondBucket::Nearby,
            Placement::ByTableHashAnywhere | Placement::ByFlowHashAnywhere => {
                SecondBucket::Anywhere
            }
        }
    }
}
