//! lbd's side of the connection table (`FLOW_BUCKETS`): the array map
//! mapped into this process (`BPF_F_MMAPABLE`), read and written in place
//! with the protocol the data plane runs (`lb_common::flow_table`), so a
//! flow lbd installs (replication) or removes (`lbctl`, expiry) can never
//! collide with one the program inserts at the same moment, and
//! enumerating a million flows costs memory reads, not a syscall per flow.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use aya::maps::MapData;
use lb_common::{
    consts::{FLOW_F_HALF_OPEN, IPPROTO_UDP},
    flow_table::{
        self, class_of, fingerprint, rank_class, tag_fingerprint, tag_rank, ticks, FlowBucket,
        Placed, SecondBucket, CLASS_DATAGRAM, CLASS_ESTABLISHED, DEFAULT_IDLE_HORIZONS,
        ESTABLISHED_IDLE_TICKS, FLOW_WAYS, HALF_OPEN_IDLE_TICKS, TICK_MASK, TICK_SHIFT,
    },
    hash::{flow_hash, table_hash},
    FlowEntry, FlowKey,
};

use crate::conntrack::bucket_map::BucketMap;
pub use crate::conntrack::bucket_map::FlowTableError;

/// What errors call a table placed by `placement`.
fn table_name(placement: Placement) -> &'static str {
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
    fn second(self) -> SecondBucket {
        match self {
            Placement::ByTableHash | Placement::ByFlowHash => SecondBucket::Nearby,
            Placement::ByTableHashAnywhere | Placement::ByFlowHashAnywhere => {
                SecondBucket::Anywhere
            }
        }
    }
}

/// What `FlowTable::re_place` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// Flows found where this release would not look for them.
    pub misplaced: u64,
    /// Of those, copied to their place (the others had a copy there
    /// already, seen at least as recently).
    pub copied: u64,
    /// Copies left out: every way of their buckets holds a flow seen more
    /// recently (`FlowTableError::Full`).
    pub full: u64,
    /// Copies that could not be written: their buckets' ways stayed busy
    /// (being written) through every retry.
    pub failed: u64,
    /// Misplaced copies taken out (`re_place` with `release`).
    pub released: u64,
}

/// The mapped table.
pub struct FlowTable {
    table: BucketMap<FlowEntry>,
    placement: Placement,
    /// The idle horizons lbd's inserts judge full buckets by, packed as
    /// `flow_table::DEFAULT_IDLE_HORIZONS` (`set_idle_horizons`): the data
    /// plane's, so a replica or a carried-over flow never evicts a flow
    /// the data plane holds live (a TCP flow idle past 15 minutes under a
    /// longer `tcp_idle_timeout_s`). Shared with `remapped` copies.
    idle_horizons: Arc<AtomicU64>,
}

impl FlowTable {
    /// Maps `map` (an mmapable array of `buckets` `FlowBucket`s holding
    /// flows as `placement` places them).
    pub fn new(map: MapData, buckets: u32, placement: Placement) -> Result<Self, FlowTableError> {
        Ok(Self {
            table: BucketMap::new(map, buckets, placement.second(), table_name(placement))?,
            placement,
            idle_horizons: Arc::new(AtomicU64::new(DEFAULT_IDLE_HORIZONS)),
        })
    }

    /// Judges full buckets by `horizons` from now on (packed as
    /// `flow_table::DEFAULT_IDLE_HORIZONS`: the data plane's, as
    /// `flow_table::idle_horizons_of` reads them), in this mapping and
    /// every `remapped` one: what lbd writes to `IDLE_HORIZONS`.
    pub fn set_idle_horizons(&self, horizons: u64) {
        self.idle_horizons.store(horizons, Ordering::Relaxed);
    }

    /// The same table mapped a second time, through a duplicate of its
    /// fd: a reader on another thread (a census) holds its own mapping
    /// and fd, so it outlives this one.
    pub fn remapped(&self) -> Result<Self, FlowTableError> {
        let buckets = self.buckets();
        let failed = |source: std::io::Error| FlowTableError::Map {
            table: table_name(self.placement),
            buckets,
            source,
        };
        let map = crate::shared_mapping::second_handle(self.map()).map_err(failed)?;
        Ok(Self {
            idle_horizons: Arc::clone(&self.idle_horizons),
            ..Self::new(map, buckets, self.placement)?
        })
    }

    /// Empties the ways a writer that died left held (see
    /// `BucketMap::reclaim_abandoned`); how many.
    pub fn reclaim_abandoned(&self, grace: std::time::Duration) -> u64 {
        self.table.reclaim_abandoned(grace)
    }

    /// Buckets in the table.
    pub fn buckets(&self) -> u32 {
        self.table.buckets()
    }

    /// Flows the table can hold (its slots: `FLOW_HEADROOM` per
    /// configured flow, rounded up).
    pub fn capacity(&self) -> u64 {
        self.table.capacity()
    }

    /// The map, for pinning.
    pub fn map(&self) -> &MapData {
        self.table.map()
    }

    /// The hash that places `key` in this table.
    fn place_hash(&self, key: &FlowKey) -> u32 {
        match self.placement {
            Placement::ByTableHash | Placement::ByTableHashAnywhere => table_hash(key),
            Placement::ByFlowHash | Placement::ByFlowHashAnywhere => flow_hash(key),
        }
    }

    /// The flow's two buckets and the hash that placed it there.
    fn buckets_of(&self, key: &FlowKey) -> (*mut FlowBucket, *mut FlowBucket, u32) {
        let hash = self.place_hash(key);
        let (first, second) = self.table.buckets_of(hash);
        (first, second, hash)
    }

    /// Whether a flow `key` read in bucket `index` under tag `tag` is
    /// where this release looks for it: in one of its two buckets, under
    /// its fingerprint.
    fn in_place(&self, index: u32, tag: u64, key: &FlowKey) -> bool {
        let hash = self.place_hash(key);
        self.table.is_candidate(index, hash) && tag_fingerprint(tag) == fingerprint(hash)
    }

    /// Puts the flows a previous release placed elsewhere where this one
    /// looks for them, so they keep their backends: an upgrade across a
    /// change of `table_hash` (the releases before it placed IPv6 flows by
    /// `flow_hash`) or of where second buckets lie (the releases before
    /// `SecondBucket::Nearby` put them anywhere in the table). Each
    /// misplaced flow is copied to its place, unless a copy there was
    /// seen at least as recently; with `release`, its misplaced copy is
    /// then taken out. lbd runs it twice on a table a
    /// previous lbd left: without `release` right after loading (the old
    /// program, still running, keeps finding the old copies), and with it
    /// once this lbd's program runs (what the old one changed meanwhile
    /// is copied again, then the old copies go).
    pub fn re_place(&self, release: bool) -> Replaced {
        let mut done = Replaced::default();
        for index in 0..self.table.buckets() {
            let bucket = self.table.bucket(index);
            for way in 0..FLOW_WAYS {
                // SAFETY: a live bucket of the mapping.
                let Some((key, seen)) = (unsafe { flow_table::read_way(bucket, way) }) else {
                    continue;
                };
                if self.in_place(index, seen.tag, &key) {
                    continue;
                }
                done.misplaced += 1;
                // Aged by the way's tag, read before the clock: the way's
                // own age at the data plane's tick, so a way it takes for
                // expired stays expired.
                let now = crate::clock::monotonic_ns();
                let rank = tag_rank(seen.tag);
                let age = flow_table::lead_age(ticks(now), rank >> 2)
                    .saturating_sub(flow_table::RANK_AHEAD_TICKS);
                let rank = aged_rank(u64::from(age), rank_class(rank), ticks(now));
                // Judged in the write, on the entry it would replace: a
                // copy at the flow's place that the running program
                // refreshes (or inserts) after a first look is never
                // overwritten with the older misplaced one.
                match self.put_unless(&key, &seen.entry, rank, in_place_wins(&seen.entry)) {
                    Ok(None) => done.copied += 1,
                    Ok(Some(_)) => {}
                    Err(FlowTableError::Full(_)) => {
                        done.full += 1;
                        continue;
                    }
                    Err(_) => {
                        done.failed += 1;
                        continue;
                    }
                }
                // SAFETY: as above; a CAS from the tag read, so a way
                // that changed hands meanwhile is left alone.
                if release && unsafe { flow_table::release(bucket, &seen) } {
                    done.released += 1;
                }
            }
        }
        done
    }

    /// Every tracked flow, read bucket by bucket (each copy consistent;
    /// the table changes while it is read).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, FlowEntry)> + '_ {
        self.table.iter()
    }

    /// Flows in the table now.
    pub fn count(&self) -> u64 {
        self.table.count()
    }

    /// The entry of one flow, if tracked.
    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry> {
        self.table.get(key, self.place_hash(key))
    }

    /// Puts a flow into the table (a replica from a peer, a flow carried
    /// over): its entry replaced if tracked, else inserted as an
    /// established flow (closed with FIN or RST marks, half-open with
    /// `FLOW_F_HALF_OPEN`, as the data plane ranks them) last seen at
    /// `entry.last_seen_ns` (ranked by `rank_at`: a time ahead of the
    /// clock as now, one idle past its class's timeout as expired). In a
    /// full bucket it takes only a way that would be evicted before it
    /// now (`flow_table::find_or_insert_at_within`, by the data plane's
    /// idle horizons: `set_idle_horizons`): never one of a flow seen more
    /// recently, nor one the data plane holds live for a flow it holds
    /// over; with none, `FlowTableError::Full`.
    pub fn install(&self, key: &FlowKey, entry: &FlowEntry) -> Result<(), FlowTableError> {
        let rank = stamp_rank(entry.last_seen_ns, install_class(key, entry.flags));
        self.put(key, entry, rank)
    }

    /// `install`, unless `keep` holds of the entry the table holds for
    /// the flow (replication: one seen more recently than the peer's
    /// copy). Decided in the write, on the copy it would replace: the
    /// rewrite's CAS is from the tag that copy was read under, so an
    /// entry the data plane refreshes or another writer changes after
    /// `keep` judged it is read and judged again, and a flow a lookup
    /// missed for a moment (its way held, or inserted meanwhile) is
    /// judged once found. The entry kept, or None once `entry` is in.
    pub fn install_unless(
        &self,
        key: &FlowKey,
        entry: &FlowEntry,
        keep: impl FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, FlowTableError> {
        let rank = stamp_rank(entry.last_seen_ns, install_class(key, entry.flags));
        self.put_unless(key, entry, rank, keep)
    }

    /// `install` with rank word `rank` (its tick not ahead of the clock:
    /// `rank_at`, `aged_rank`). The entry keeps the flow's
    /// `flow_hash` (Maglev's), whatever hash places it. Ways are aged at
    /// the current tick (read here, per attempt) plus one: a way the data
    /// plane stamps between the clock read and the insert must not look
    /// aged past the tick wrap (expired).
    fn put(&self, key: &FlowKey, entry: &FlowEntry, rank: u32) -> Result<(), FlowTableError> {
        self.put_unless(key, entry, rank, |_| false).map(|_| ())
    }

    /// `put`, unless `keep` holds of the entry held for the flow (see
    /// `install_unless`); the entry kept, or None once `entry` is in.
    fn put_unless(
        &self,
        key: &FlowKey,
        entry: &FlowEntry,
        rank: u32,
        keep: impl FnMut(&FlowEntry) -> bool,
    ) -> Result<Option<FlowEntry>, FlowTableError> {
        let (first, second, hash) = self.buckets_of(key);
        let entry = FlowEntry {
            hash: flow_hash(key),
            ..*entry
        };
        let now_ticks = || ticks(crate::clock::monotonic_ns().saturating_add(1 << TICK_SHIFT));
        let place = (first, second, hash);
        let horizons = self.idle_horizons.load(Ordering::Relaxed);
        // SAFETY: live buckets of the mapping.
        unsafe {
            put_in(
                place,
                key,
                &entry,
                (rank, now_ticks, horizons),
                keep,
                self.table.name(),
            )
        }
    }

    /// Removes a flow; true if it was there.
    pub fn remove(&self, key: &FlowKey) -> bool {
        self.table.remove(key, self.place_hash(key))
    }
}

/// `FlowTable::put_unless` on the flow's buckets and table hash `place`
/// (`first`, `second`, `hash`): `entry` (its hash set) written with rank
/// word `rank`, ways aged at `now_ticks()` (read per attempt) and judged
/// by the idle horizons `horizons` (the data plane's), unless
/// `keep` holds of the entry found, judged right before the rewrite whose
/// CAS is from the tag that entry was read under (a lost CAS reads and
/// judges again). `table` names the table in errors. Apart from the
/// mapping so that the tests run it on buckets of their own.
///
/// # Safety
/// `first` and `second` must point to live buckets of the table.
unsafe fn put_in(
    (first, second, hash): (*mut FlowBucket, *mut FlowBucket, u32),
    key: &FlowKey,
    entry: &FlowEntry,
    (rank, mut now_ticks, horizons): (u32, impl FnMut() -> u32, u64),
    mut keep: impl FnMut(&FlowEntry) -> bool,
    table: &'static str,
) -> Result<Option<FlowEntry>, FlowTableError> {
    for _ in 0..4 {
        // SAFETY: per the caller's contract.
        if let Some((bucket, seen)) = unsafe { flow_table::find_in(first, second, key, hash) } {
            if keep(&seen.entry) {
                return Ok(Some(seen.entry));
            }
            // SAFETY: as above.
            if unsafe { flow_table::rewrite(bucket, &seen, entry, rank) } {
                return Ok(None);
            }
            continue;
        }
        let now = now_ticks();
        // SAFETY: as above.
        let placed = unsafe {
            flow_table::find_or_insert_at_within(
                first,
                second,
                key,
                entry,
                (rank, now),
                hash,
                horizons,
            )
        };
        match placed {
            Placed::Inserted(_) => return Ok(None),
            Placed::Found(_) => continue,
            Placed::Contended
                // SAFETY: as above.
                if !unsafe {
                    flow_table::has_room_at_within(first, second, rank, now, horizons)
                } =>
            {
                return Err(FlowTableError::Full(table));
            }
            Placed::Contended => continue,
        }
    }
    Err(FlowTableError::Contended(table))
}

/// `FlowTable::re_place`'s test of the copy a misplaced flow's
/// `misplaced` entry would replace at the flow's place: that copy stays
/// when it was seen at least as recently (the running program's, met
/// since the old program wrote the misplaced one).
fn in_place_wins(misplaced: &FlowEntry) -> impl FnMut(&FlowEntry) -> bool {
    let seen = misplaced.last_seen_ns;
    move |held: &FlowEntry| held.last_seen_ns >= seen
}

/// The age (ticks) lbd's inserts rank a flow idle at least this long at:
/// past both classes' timeouts (expired: it evicts no live flow, and is
/// evicted before any), and the age past which `victim_order` ranks ways
/// alike. A 64-bit age is known only here: a rank word's 30-bit tick
/// wraps after 208 days, so a flow idle more than 104 of them would look
/// stamped ahead of the clock, and one idle 208 days as seen now. Capped,
/// the way it takes stays expired for 156 days more.
const AGE_CAP_TICKS: u64 = 0x0fff_ffff;

const _: () = assert!(
    AGE_CAP_TICKS > ESTABLISHED_IDLE_TICKS as u64 && AGE_CAP_TICKS > HALF_OPEN_IDLE_TICKS as u64
);

/// The rank word of a flow of class `class` idle `age_ticks` at tick
/// `now_ticks`, the age capped at `AGE_CAP_TICKS`.
fn aged_rank(age_ticks: u64, class: u32, now_ticks: u32) -> u32 {
    // At most `AGE_CAP_TICKS`: fits.
    let age = age_ticks.min(AGE_CAP_TICKS) as u32;
    ((now_ticks.wrapping_sub(age) & TICK_MASK) << 2) | rank_class(class)
}

/// The rank word lbd inserts a flow of class `class` last seen at
/// `seen_ns` with when the clock (`CLOCK_MONOTONIC`) reads `now_ns`: the
/// data plane's (`rank_word`) for a flow seen up to 52 days ago, a time
/// ahead of the clock (a peer's, a copy stamped after the clock was read)
/// taken as now, and a flow idle longer ranked as idle 52 days (expired,
/// `AGE_CAP_TICKS`), not by a tick that wrapped.
fn rank_at(seen_ns: u64, class: u32, now_ns: u64) -> u32 {
    let age = (now_ns >> TICK_SHIFT).saturating_sub(seen_ns >> TICK_SHIFT);
    aged_rank(age, class, ticks(now_ns))
}

/// The rank class of a flow lbd installs with entry flags `flags`, as
/// the data plane ranks it: closed, half-open, established, and a UDP
/// flow in the datagram class, so the data plane's eviction judges a
/// replica by `udp_idle_timeout_s` before its first packet here too.
fn install_class(key: &FlowKey, flags: u32) -> u32 {
    match class_of(flags, flags & FLOW_F_HALF_OPEN == 0) {
        CLASS_ESTABLISHED if key.proto == IPPROTO_UDP => CLASS_DATAGRAM,
        class => class,
    }
}

/// `rank_at` now, by the data plane's own clock (the coarse one): a flow
/// lbd installs as seen just now (a replica, stamped by the precise
/// clock) gets the data plane's current tick, never the next one: a
/// rank's tick is then never ahead of the clock that judges it (which
/// takes a tick up to `RANK_AHEAD_TICKS` ahead as seen now,
/// `flow_table::lead_age`, but no further).
fn stamp_rank(seen_ns: u64, class: u32) -> u32 {
    rank_at(seen_ns, class, crate::clock::monotonic_coarse_ns())
}

#[cfg(test)]
mod tests {
    use lb_common::flow_table::{
        evict_limit, rank_word, victim_order, CLASS_CLOSED, CLASS_ESTABLISHED, CLASS_HALF_OPEN,
    };

    use super::*;

    /// The order `victim_order` gives a valid way of rank word `rank`.
    fn order(rank: u32, now_ticks: u32) -> u32 {
        victim_order((u64::from(rank) << 32) | 2, now_ticks)
    }

    /// The tier (`victim_order`'s top bits: 1 closed or expired, 2
    /// half-open, 3 an open connection idle past the TCP horizon, 4 live)
    /// of a way of rank word `rank`.
    fn tier(rank: u32, now_ticks: u32) -> u32 {
        order(rank, now_ticks) >> 28
    }

    /// A flow installed as seen now (a replica stamped with the precise
    /// clock) is ranked at the data plane's tick, not the next one: for
    /// up to a kernel tick after each rank tick begins, the precise clock
    /// is a rank tick ahead of the coarse one the data plane reads. 60 ms
    /// of stamps cross three rank ticks.
    #[test]
    fn a_flow_seen_now_is_never_stamped_ahead_of_the_data_planes_clock() {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(60);
        let mut stamps = 0u64;
        while std::time::Instant::now() < until {
            let rank = stamp_rank(crate::clock::monotonic_ns(), CLASS_ESTABLISHED);
            let data_plane_now = ticks(crate::clock::monotonic_coarse_ns());
            assert_eq!(
                tier(rank, data_plane_now),
                4,
                "a flow seen now is live to the data plane (rank tick {}, its clock's {data_plane_now})",
                rank >> 2
            );
            stamps += 1;
        }
        assert!(stamps > 0);
    }

    /// A UDP replica goes in the datagram class (judged by the UDP
    /// horizon), a TCP one by its flags.
    #[test]
    fn installed_flows_are_classed_as_the_data_plane_classes_them() {
        use lb_common::consts::{FLOW_F_FIN, IPPROTO_TCP};
        let key = |proto| FlowKey {
            proto,
            ..FlowKey::default()
        };
        let udp = key(IPPROTO_UDP);
        let tcp = key(IPPROTO_TCP);
        assert_eq!(install_class(&udp, 0), CLASS_DATAGRAM);
        assert_eq!(install_class(&tcp, 0), CLASS_ESTABLISHED);
        assert_eq!(install_class(&tcp, FLOW_F_HALF_OPEN), CLASS_HALF_OPEN);
        assert_eq!(install_class(&tcp, FLOW_F_FIN), CLASS_CLOSED);
    }

    /// A one-bucket table (both of every flow's buckets) holding `key`
    /// with `entry`, as the data plane inserted it; the bucket and its
    /// `put_in` place.
    fn table_with(
        key: &FlowKey,
        entry: &FlowEntry,
    ) -> (Box<FlowBucket>, (*mut FlowBucket, *mut FlowBucket, u32)) {
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let hash = table_hash(key);
        let rank = rank_word(entry.last_seen_ns, CLASS_ESTABLISHED);
        let placed = unsafe { flow_table::find_or_insert(b, b, key, entry, rank, hash) };
        assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
        (bucket, (b, b, hash))
    }

    /// A TCP flow, this node's entry of it (backend 1, seen at 20 s) and
    /// a peer's older copy (backend 2, seen at 10 s).
    fn local_and_older_peer() -> (FlowKey, FlowEntry, FlowEntry) {
        let key = FlowKey {
            src: [0x0a00_0001u32.to_be(), 0, 0, 0],
            dst: [0xc612_0064u32.to_be(), 0, 0, 0],
            sport: 40_000u16.to_be(),
            dport: 80u16.to_be(),
            proto: lb_common::consts::IPPROTO_TCP,
            family: lb_common::consts::AF_INET,
            _pad: 0,
        };
        let s = 1_000_000_000;
        let local = FlowEntry {
            backend_id: 1,
            backend_generation: 1,
            last_seen_ns: 20 * s,
            flags: 0,
            hash: flow_hash(&key),
        };
        let peer = FlowEntry {
            backend_id: 2,
            last_seen_ns: 10 * s,
            ..local
        };
        (key, local, peer)
    }

    /// Replication's test: the held entry seen after the peer's copy.
    fn fresher(peer: FlowEntry) -> impl FnMut(&FlowEntry) -> bool {
        move |held: &FlowEntry| held.last_seen_ns > peer.last_seen_ns
    }

    /// The data plane is writing new flags into this node's flow (an ACL
    /// mark: the way held) when a peer's older copy of it comes in: the
    /// write's first lookup misses the flow, which is published again
    /// before the write's insert looks (here, at its clock read). The
    /// fresher local entry is kept: the write judges the entry it finds,
    /// not the miss. (Replication judged a lookup before the write: it
    /// missed, and the write then replaced the flow found published,
    /// moving the connection to the peer's backend.)
    #[test]
    fn a_fresher_local_entry_is_kept_even_when_the_first_lookup_misses() {
        let (key, local, peer) = local_and_older_peer();
        let (_bucket, place) = table_with(&key, &local);
        let (b, _, hash) = place;
        let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the local flow");
        let marked = local.flags | lb_common::consts::FLOW_F_ACL_MARK;
        let rank = rank_word(local.last_seen_ns, CLASS_ESTABLISHED);
        let started =
            unsafe { flow_table::begin_refresh(b, &seen, (local.last_seen_ns, marked), rank) };
        let mut started = Some(started.expect("the data plane's claim"));
        assert!(
            unsafe { flow_table::find(b, &key, hash) }.is_none(),
            "held: a miss"
        );
        let clock = || {
            if let Some(refresh) = started.take() {
                unsafe { flow_table::finish_refresh(b, refresh) };
            }
            ticks(30 * 1_000_000_000)
        };
        let rank = rank_word(peer.last_seen_ns, CLASS_ESTABLISHED);
        let done = unsafe {
            put_in(
                place,
                &key,
                &peer,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                fresher(peer),
                "test",
            )
        };
        let kept = done.expect("no error").expect("the local entry kept");
        assert_eq!(kept.backend_id, local.backend_id);
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(
            (
                held.entry.backend_id,
                held.entry.last_seen_ns,
                held.entry.flags
            ),
            (local.backend_id, local.last_seen_ns, marked),
            "this node's entry, with the data plane's new flags"
        );
    }

    /// The data plane refreshes this node's flow right after the write
    /// judged it older than the peer's copy: the write's CAS from the tag
    /// it judged fails, and the entry is read and judged again, now
    /// fresher, and kept.
    #[test]
    fn a_local_entry_refreshed_between_the_judgement_and_the_write_is_judged_again() {
        let s = 1_000_000_000;
        let (key, local, peer) = local_and_older_peer();
        let local = FlowEntry {
            last_seen_ns: 5 * s,
            ..local
        };
        let (_bucket, place) = table_with(&key, &local);
        let (b, _, hash) = place;
        let mut judged = Vec::new();
        let keep = |held: &FlowEntry| {
            judged.push(held.last_seen_ns);
            if judged.len() == 1 {
                // The data plane's touch of the flow (its age alone).
                let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
                let rank = rank_word(20 * s, CLASS_ESTABLISHED);
                let touched = (20 * s, seen.entry.flags);
                assert!(unsafe { flow_table::refresh(b, &seen, touched, rank) });
            }
            held.last_seen_ns > peer.last_seen_ns
        };
        let clock = || ticks(30 * s);
        let rank = rank_word(peer.last_seen_ns, CLASS_ESTABLISHED);
        let done = unsafe {
            put_in(
                place,
                &key,
                &peer,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                keep,
                "test",
            )
        };
        let kept = done.expect("no error").expect("the local entry kept");
        assert_eq!((kept.backend_id, kept.last_seen_ns), (1, 20 * s));
        assert_eq!(judged, [5 * s, 20 * s], "judged again after the lost CAS");
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(held.entry.backend_id, local.backend_id);
    }

    /// `re_place` copying a flow an older release put elsewhere (its copy
    /// last seen at 10 s) while the running program refreshes the flow at
    /// its place (seen at 20 s, the way held for its new flags): the
    /// copy's first lookup misses the held way, which is published again
    /// before the copy's insert looks. The program's fresher entry stays,
    /// with its flags: the copy judges the entry it would replace, in the
    /// write. (`re_place` looked first and then wrote unconditionally: the
    /// older copy replaced the entry published between the two, losing
    /// its flags, and its last-seen time went back.) A copy there seen
    /// as recently stays too; an older one is replaced.
    #[test]
    fn moving_a_misplaced_flow_keeps_the_entry_refreshed_at_its_place_meanwhile() {
        let s = 1_000_000_000;
        let (key, local, misplaced) = local_and_older_peer();
        let (_bucket, place) = table_with(&key, &local);
        let (b, _, hash) = place;
        let seen = unsafe { flow_table::find(b, &key, hash) }.expect("the flow at its place");
        let marked = local.flags | lb_common::consts::FLOW_F_FIN;
        let rank = rank_word(local.last_seen_ns, CLASS_ESTABLISHED);
        let started =
            unsafe { flow_table::begin_refresh(b, &seen, (local.last_seen_ns, marked), rank) };
        let mut started = Some(started.expect("the data plane's claim"));
        let clock = || {
            if let Some(refresh) = started.take() {
                unsafe { flow_table::finish_refresh(b, refresh) };
            }
            ticks(30 * s)
        };
        let rank = rank_word(misplaced.last_seen_ns, CLASS_ESTABLISHED);
        let keep = in_place_wins(&misplaced);
        let done = unsafe {
            put_in(
                place,
                &key,
                &misplaced,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                keep,
                "test",
            )
        };
        let kept = done
            .expect("no error")
            .expect("the entry at its place kept");
        assert_eq!(kept.last_seen_ns, local.last_seen_ns);
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(
            (
                held.entry.backend_id,
                held.entry.last_seen_ns,
                held.entry.flags
            ),
            (local.backend_id, local.last_seen_ns, marked),
            "the program's entry, with its new flags"
        );
        // Seen as recently: kept. Seen before the misplaced copy: replaced.
        let clock = || ticks(30 * s);
        let same = FlowEntry {
            backend_id: 3,
            ..held.entry
        };
        let done = unsafe {
            put_in(
                place,
                &key,
                &same,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                in_place_wins(&same),
                "test",
            )
        };
        assert!(matches!(done, Ok(Some(_))), "{done:?}");
        let later = FlowEntry {
            backend_id: 4,
            last_seen_ns: 25 * s,
            ..held.entry
        };
        let done = unsafe {
            put_in(
                place,
                &key,
                &later,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                in_place_wins(&later),
                "test",
            )
        };
        assert_eq!(done.expect("no error"), None, "replaced");
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(held.entry.backend_id, 4);
    }

    /// What `put` did stays: an older local entry is replaced, an absent
    /// flow inserted.
    #[test]
    fn a_write_unless_fresher_replaces_an_older_entry_and_inserts_an_absent_one() {
        let (key, local, peer) = local_and_older_peer();
        let newer = FlowEntry {
            last_seen_ns: 30 * 1_000_000_000,
            ..peer
        };
        let (_bucket, place) = table_with(&key, &local);
        let (b, _, hash) = place;
        let clock = || ticks(40 * 1_000_000_000);
        let rank = rank_word(newer.last_seen_ns, CLASS_ESTABLISHED);
        let done = unsafe {
            put_in(
                place,
                &key,
                &newer,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                fresher(newer),
                "test",
            )
        };
        assert_eq!(done.expect("no error"), None, "replaced");
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(held.entry, newer);
        assert!(unsafe { flow_table::remove(b, &key, hash) });
        let done = unsafe {
            put_in(
                place,
                &key,
                &peer,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                fresher(peer),
                "test",
            )
        };
        assert_eq!(done.expect("no error"), None, "inserted");
        let held = unsafe { flow_table::find(b, &key, hash) }.expect("the flow");
        assert_eq!(held.entry, peer);
    }

    /// A one-bucket table whose eight ways hold TCP flows (`tcp`, to
    /// `proto` per way) last seen `ago` seconds before `now` (s), each in
    /// the class the data plane gives it; the bucket, its `put_in` place
    /// and the keys.
    fn full_bucket(
        now: u64,
        ways: [(u8, u64); FLOW_WAYS],
    ) -> (
        Box<FlowBucket>,
        (*mut FlowBucket, *mut FlowBucket, u32),
        Vec<FlowKey>,
    ) {
        let s = 1_000_000_000;
        let mut bucket = Box::<FlowBucket>::default();
        let b: *mut FlowBucket = &mut *bucket;
        let mut keys = Vec::new();
        for (n, (proto, ago)) in ways.into_iter().enumerate() {
            let key = FlowKey {
                src: [(0x0a00_0001u32 + n as u32).to_be(), 0, 0, 0],
                proto,
                ..local_and_older_peer().0
            };
            let entry = FlowEntry {
                last_seen_ns: (now - ago) * s,
                hash: flow_hash(&key),
                ..FlowEntry::default()
            };
            let rank = rank_word(entry.last_seen_ns, install_class(&key, 0));
            // One bucket: any hash places the flow there.
            let placed = unsafe { flow_table::find_or_insert(b, b, &key, &entry, rank, 0) };
            assert!(matches!(placed, Placed::Inserted(_)), "{placed:?}");
            keys.push(key);
        }
        (bucket, (b, b, 0), keys)
    }

    /// The horizons lbd writes for `tcp` and `udp` seconds, as the
    /// connection table's inserts take them.
    fn horizons(tcp: u64, udp: u64) -> u64 {
        let ticks = |secs: u64| flow_table::horizon_ticks(secs * 1_000_000_000);
        flow_table::idle_horizons_of(flow_table::idle_horizons_word(ticks(tcp), ticks(udp)))
    }

    /// With `tcp_idle_timeout_s` = 2 h a TCP flow idle 20 minutes is live
    /// to the data plane: a replica of a closed flow (one that saw a FIN,
    /// seen a second ago) finds the bucket full rather than evicting it.
    /// By the default 15 minutes it is an open connection idle past the
    /// horizon, which a closed flow never evicts either (it goes only
    /// before live flows; before, it was taken for over).
    #[test]
    fn a_replica_keeps_a_tcp_flow_live_under_a_long_configured_horizon() {
        use lb_common::consts::{FLOW_F_FIN, IPPROTO_TCP};
        let s = 1_000_000_000;
        let now = 36_000;
        let (key, _, _) = local_and_older_peer();
        let key = FlowKey {
            sport: 50_000u16.to_be(),
            ..key
        };
        let closed = FlowEntry {
            backend_id: 2,
            last_seen_ns: (now - 1) * s,
            flags: FLOW_F_FIN,
            hash: flow_hash(&key),
            ..FlowEntry::default()
        };
        let rank = rank_word(closed.last_seen_ns, install_class(&key, closed.flags));
        let clock = || ticks(now * s);
        let (mut bucket, place, keys) = full_bucket(now, [(IPPROTO_TCP, 1_200); FLOW_WAYS]);
        let long = (rank, clock, horizons(7_200, 30));
        let done = unsafe { put_in(place, &key, &closed, long, |_| false, "test") };
        assert!(matches!(done, Err(FlowTableError::Full(_))), "{done:?}");
        let held: Vec<FlowKey> = bucket_keys(&mut bucket);
        assert_eq!(held, keys, "nothing evicted");
        // By the defaults too.
        let done = unsafe {
            put_in(
                place,
                &key,
                &closed,
                (rank, clock, DEFAULT_IDLE_HORIZONS),
                |_| false,
                "test",
            )
        };
        assert!(matches!(done, Err(FlowTableError::Full(_))), "{done:?}");
        assert_eq!(bucket_keys(&mut bucket), keys, "nothing evicted");
    }

    /// With `udp_idle_timeout_s` = 30 s a UDP flow idle 60 s is over: a
    /// replica takes its way before the TCP flows', though they are older
    /// (by the defaults, a live UDP flow, the oldest TCP flow would go).
    #[test]
    fn a_replica_takes_the_way_of_a_udp_flow_past_its_configured_horizon() {
        use lb_common::consts::{IPPROTO_TCP, IPPROTO_UDP};
        let s = 1_000_000_000;
        let now = 36_000;
        let mut ways = [(IPPROTO_TCP, 0); FLOW_WAYS];
        for (n, way) in ways.iter_mut().enumerate() {
            *way = (IPPROTO_TCP, 100 + 10 * n as u64);
        }
        ways[5] = (IPPROTO_UDP, 60);
        let (key, replica, _) = local_and_older_peer();
        let key = FlowKey {
            sport: 50_000u16.to_be(),
            ..key
        };
        let replica = FlowEntry {
            last_seen_ns: now * s,
            hash: flow_hash(&key),
            ..replica
        };
        let rank = rank_word(replica.last_seen_ns, install_class(&key, 0));
        let clock = || ticks(now * s);
        for (horizons, gone) in [(horizons(7_200, 30), 5), (DEFAULT_IDLE_HORIZONS, 7)] {
            let (mut bucket, place, keys) = full_bucket(now, ways);
            let done = unsafe {
                put_in(
                    place,
                    &key,
                    &replica,
                    (rank, clock, horizons),
                    |_| false,
                    "test",
                )
            };
            assert_eq!(done.expect("inserted"), None);
            let held = bucket_keys(&mut bucket);
            assert!(!held.contains(&keys[gone]), "way {gone} taken");
            assert!(held.contains(&key));
        }
    }

    /// The keys `bucket`'s ways hold, way by way.
    fn bucket_keys(bucket: &mut FlowBucket) -> Vec<FlowKey> {
        (0..FLOW_WAYS)
            .filter_map(|way| unsafe { flow_table::read_way(bucket, way) }.map(|(k, _)| k))
            .collect()
    }

    #[test]
    fn lbd_ranks_a_flow_by_its_64_bit_age_clamped_to_the_clock() {
        let s = 1_000_000_000u64;
        let day = 86_400 * s;
        // Past the tick wrap (208.5 days) itself.
        let now = 300 * day;
        let at = ticks(now);
        // Seen within 52 days: the data plane's own rank word.
        for ago in [0, s, 30 * s, 3_600 * s, 50 * day] {
            for class in [CLASS_CLOSED, CLASS_HALF_OPEN, CLASS_ESTABLISHED] {
                assert_eq!(
                    rank_at(now - ago, class, now),
                    rank_word(now - ago, class),
                    "{ago} ns ago, class {class}"
                );
            }
        }
        // Ahead of the clock (5 s, past `RANK_AHEAD_TICKS`): seen now, a
        // live flow, not one aged nearly the whole wrap.
        let ahead = rank_at(now + 5 * s, CLASS_ESTABLISHED, now);
        assert_eq!(ahead, rank_word(now, CLASS_ESTABLISHED));
        assert_eq!(tier(ahead, at), 4);
        // Idle 150 days, and 208.5 days plus 10 s (the 30-bit tick has
        // wrapped: the data plane's rank would read 10 s old): expired,
        // and an insert of it evicts no live way (one seen 1 s ago).
        // (An open connection idle that long is idle-open, tier 3: below
        // every live flow, above handshakes.)
        let live = order(rank_word(now - s, CLASS_ESTABLISHED), at);
        for ago in [150 * day, (1u64 << (30 + TICK_SHIFT)) + 10 * s] {
            for (class, expired) in [(CLASS_HALF_OPEN, 1), (CLASS_ESTABLISHED, 3)] {
                let rank = rank_at(now - ago, class, now);
                assert_eq!(tier(rank, at), expired, "{ago} ns ago, class {class}");
                assert!(evict_limit(rank, at) < live, "{ago} ns ago, class {class}");
                // And stays expired for 150 days more.
                assert_eq!(tier(rank, ticks(now + 150 * day)), expired);
            }
        }
    }
}
