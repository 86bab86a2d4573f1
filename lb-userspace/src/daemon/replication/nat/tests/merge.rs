//! The merge rules' tests, through `carry_pair`: another flow's entries
//! kept, this flow's merged (marks, next hop, what the data plane wrote
//! meanwhile), a half-done install undone.

use super::super::merge::merged;
use super::*;

#[test]
fn a_carried_flow_leaves_another_flows_entry_and_merges_with_its_own() {
    let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    // This lbd's program opened another flow on the same NAT port
    // towards the same backend: the same reply key.
    let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
    assert_eq!(ours[1].0, theirs[1].0);

    let mut table = Table::default();
    for (k, e) in theirs {
        table.entries.insert(k, e);
    }
    assert_eq!(
        carry_pair(&mut table, &ours, false).unwrap(),
        Carried::Conflict
    );
    assert_eq!(table.entries.len(), 2, "nothing of ours went in");
    assert_eq!(table.entries[&theirs[1].0], theirs[1].1, "theirs kept");

    // An empty table takes both; a second copy merges with them,
    // keeping the next hop this node found and the fresher entry.
    let mut table = Table::default();
    assert_eq!(carry_pair(&mut table, &ours, false).unwrap(), Carried::Yes);
    let mut looked_up = table.entries[&ours[0].0];
    looked_up.ifindex = 4;
    looked_up.mtu = 1400;
    looked_up.last_seen_ns = 99_000_000_000;
    table.entries.insert(ours[0].0, looked_up);
    let mut newer = ours;
    newer[0].1.flags |= NAT_F_REPLIED;
    newer[1].1.last_seen_ns = 100_000_000_000;
    newer[1].1.flags |= NAT_F_REPLIED;
    assert_eq!(carry_pair(&mut table, &newer, false).unwrap(), Carried::Yes);
    let fwd = table.entries[&ours[0].0];
    assert_eq!(
        (fwd.ifindex, fwd.mtu, fwd.last_seen_ns, fwd.flags),
        (4, 1400, 99_000_000_000, NAT_F_SYN),
        "this table's forward entry is the fresher one"
    );
    let reply = table.entries[&ours[1].0];
    assert_eq!(
        (reply.last_seen_ns, reply.flags & NAT_F_REPLIED),
        (100_000_000_000, NAT_F_REPLIED),
        "the carried reply entry is the fresher one"
    );
}

/// After the swap this lbd's program goes on marking the flows it
/// carried; the old table does not. A FIN it marked survives the
/// final copy, so the reaper frees the flow on the closed timeout
/// (not the established one).
#[test]
fn a_carried_flow_keeps_the_close_marks_this_program_made_since() {
    let old = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    let mut table = Table::default();
    for (key, entry) in old {
        let mut closed = entry;
        closed.flags |= NAT_F_FIN;
        closed.last_seen_ns = entry.last_seen_ns + 1_000_000;
        table.entries.insert(key, closed);
    }
    assert_eq!(carry_pair(&mut table, &old, false).unwrap(), Carried::Yes);
    for (key, _) in old {
        assert_ne!(table.entries[&key].flags & NAT_F_FIN, 0, "FIN kept");
    }
}

/// A flow the previous lbd's program forwarded after this lbd loaded
/// wins, after the swap, over the flow this lbd's program opened on
/// its NAT port meanwhile; both of that flow's entries go.
#[test]
fn a_carried_flow_forwarded_since_the_load_supersedes_this_programs_flow() {
    let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
    let mut table = Table::default();
    for (k, e) in theirs {
        table.entries.insert(k, e);
    }
    assert_eq!(
        carry_pair(&mut table, &ours, true).unwrap(),
        Carried::Superseded
    );
    assert_eq!(table.entries.len(), 2);
    for (key, entry) in ours {
        assert_eq!(table.entries[&key], entry);
    }
    assert!(!table.entries.contains_key(&theirs[0].0), "theirs gone");
}

#[test]
fn a_merge_keeps_this_nodes_next_hop_and_route_mtu() {
    let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    let existing = NatEntry {
        ifindex: 4,
        dmac: [2, 0, 0, 0, 0, 4],
        smac: [2, 0, 0, 0, 0, 5],
        mtu: 1400,
        last_seen_ns: 1_000,
        ..ours[0].1
    };
    // A fresher record (its next hop and MTU unset, as records carry).
    let record = NatEntry {
        last_seen_ns: 2_000,
        flags: ours[0].1.flags | NAT_F_REPLIED,
        ..ours[0].1
    };
    let got = merged(&existing, &record);
    assert_eq!(
        (got.ifindex, got.dmac, got.smac, got.mtu),
        (4, existing.dmac, existing.smac, 1400)
    );
    assert_eq!((got.last_seen_ns, got.flags), (2_000, record.flags));
}

/// A table whose data plane marks `key` RST and refreshes its next
/// hop right after lbd's first read of it (between lbd's read and its
/// write, as another CPU does).
struct MarkedAfterRead {
    table: std::cell::RefCell<Table>,
    key: FlowKey,
    reads: std::cell::Cell<usize>,
}

impl ReplicaTable for MarkedAfterRead {
    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        let mut table = self.table.borrow_mut();
        let got = table.get(key);
        if *key == self.key {
            self.reads.set(self.reads.get() + 1);
            if self.reads.get() == 1 {
                if let Some(live) = table.entries.get_mut(key) {
                    live.flags |= NAT_F_RST;
                    live.ifindex = 9;
                    live.mtu = 1400;
                }
            }
        }
        got
    }
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError> {
        self.table.get_mut().insert_if_free(key, entry)
    }
    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
        self.table.get_mut().overwrite(key, entry)
    }
    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        self.table.get_mut().remove(key)
    }
}

/// lbd merges a fresher copy into a flow this node forwards while the
/// data plane marks it: the RST and the next hop the data plane wrote
/// after lbd's read survive lbd's write.
#[test]
fn a_merge_keeps_what_the_data_plane_wrote_after_lbds_read() {
    let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    let mut table = Table::default();
    table.entries.extend(ours);
    let mut fresher = ours;
    fresher[0].1.last_seen_ns = 10_000_000_000;
    fresher[0].1.flags |= NAT_F_REPLIED;
    let mut racing = MarkedAfterRead {
        table: std::cell::RefCell::new(table),
        key: ours[0].0,
        reads: std::cell::Cell::new(0),
    };
    assert_eq!(
        carry_pair(&mut racing, &fresher, false).unwrap(),
        Carried::Yes
    );
    let forward = racing.table.get_mut().entries[&ours[0].0];
    assert_eq!(
        forward.flags,
        NAT_F_SYN | NAT_F_REPLIED | NAT_F_RST,
        "the RST the data plane marked meanwhile is kept"
    );
    assert_eq!(
        (forward.ifindex, forward.mtu),
        (9, 1400),
        "its next hop too"
    );
    assert_eq!(forward.last_seen_ns, 10_000_000_000, "the merge's time");
}

/// A table whose `which`-th insert finds `taken` put in just before it
/// (the data plane made a flow between look-up and write).
struct Racing {
    table: Table,
    taken: Option<(FlowKey, NatEntry)>,
    which: usize,
    inserts: usize,
}

impl ReplicaTable for Racing {
    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.table.get(key)
    }
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError> {
        self.inserts += 1;
        if self.inserts == self.which {
            if let Some((k, e)) = self.taken.take() {
                self.table.entries.insert(k, e);
            }
        }
        self.table.insert_if_free(key, entry)
    }
    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
        self.table.overwrite(key, entry)
    }
    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        self.table.remove(key)
    }
}

#[test]
fn a_key_taken_during_the_install_is_left_to_its_flow() {
    let ours = flow("198.18.1.10", 40000, 20001, "198.19.2.11", 1);
    let theirs = flow("198.18.1.77", 51000, 20001, "198.19.2.11", 1);
    // The forward entry goes in, then the reply key turns out taken:
    // ours is taken out again, theirs stays.
    let mut racing = Racing {
        table: Table::default(),
        taken: Some(theirs[1]),
        which: 2,
        inserts: 0,
    };
    assert_eq!(
        carry_pair(&mut racing, &ours, false).unwrap(),
        Carried::Conflict
    );
    let entries = &racing.table.entries;
    assert!(!entries.contains_key(&ours[0].0), "our half taken out");
    assert_eq!(entries.get(&theirs[1].0), Some(&theirs[1].1));
    assert_eq!(entries.len(), 1);
}
