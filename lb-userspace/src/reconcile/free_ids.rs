//! The backend ids free to hand out, oldest-freed first: a removed
//! backend's id goes to the back of the line, so a backend added soon
//! after does not take it while the removed one's flows may still name it
//! (a NAT flow counts its packets by the id it was opened with until the
//! reaper's sweep takes it away).

use std::collections::{BTreeSet, VecDeque};

/// Free backend ids in the order they are handed out.
#[derive(Debug, Clone)]
pub(super) struct FreeBackendIds {
    line: VecDeque<u32>,
}

impl FreeBackendIds {
    /// Every id in `ids` (in their order) free.
    pub(super) fn new(ids: impl IntoIterator<Item = u32>) -> Self {
        Self {
            line: ids.into_iter().collect(),
        }
    }

    /// The id freed longest ago (never-used ids first, lowest first).
    pub(super) fn take(&mut self) -> Option<u32> {
        self.line.pop_front()
    }

    /// `id` free again, handed out after every id free before it.
    pub(super) fn give_back(&mut self, id: u32) {
        if !self.line.contains(&id) {
            self.line.push_back(id);
        }
    }

    /// `id` in use (an adopted backend's): no longer handed out.
    pub(super) fn remove(&mut self, id: u32) {
        self.line.retain(|free| *free != id);
    }

    /// The line a previous lbd would have had when it left `freed` (free
    /// ids whose `BACKENDS` entry it wrote, with that entry's generation):
    /// those go behind the ids never used, freed longest ago first. A
    /// retired entry's generation was taken when it was freed
    /// (`apply::retired_backend`), and generations only grow, so it orders
    /// them as their freeing did; an id retired just before a restart is
    /// then not the first handed out after it (its NAT flows, which carry
    /// no generation, would count as the new backend's). Ids not free are
    /// left as they are.
    pub(super) fn freed_before(&mut self, freed: impl IntoIterator<Item = (u32, u32)>) {
        let free: BTreeSet<u32> = self.line.iter().copied().collect();
        let mut freed: Vec<(u32, u32)> = freed
            .into_iter()
            .filter(|(id, _)| free.contains(id))
            .map(|(id, generation)| (generation, id))
            .collect();
        freed.sort_unstable();
        let last: BTreeSet<u32> = freed.iter().map(|(_, id)| *id).collect();
        self.line.retain(|id| !last.contains(id));
        self.line.extend(freed.into_iter().map(|(_, id)| id));
    }

    /// The ids free once the record holds only `used` (after a failed
    /// commit): this line's, in their order, then those of `held` (the ids
    /// the records held, before and staged) not in `used` at the back, in
    /// their order: freed by the failure, so freed last, and a removed
    /// backend's id stays the last handed out.
    pub(super) fn without(&self, used: &BTreeSet<u32>, held: &BTreeSet<u32>) -> Self {
        let mut line: VecDeque<u32> = self
            .line
            .iter()
            .copied()
            .filter(|id| !used.contains(id))
            .collect();
        let queued: BTreeSet<u32> = line.iter().copied().collect();
        line.extend(
            held.iter()
                .copied()
                .filter(|id| !used.contains(id) && !queued.contains(id)),
        );
        Self { line }
    }

    /// Whether `id` is free.
    #[cfg(test)]
    pub(super) fn contains(&self, id: &u32) -> bool {
        self.line.contains(id)
    }

    /// How many ids are free.
    pub(super) fn len(&self) -> usize {
        self.line.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_id_comes_back_only_after_the_others() {
        let mut ids = FreeBackendIds::new(1..5);
        assert_eq!(ids.take(), Some(1));
        assert_eq!(ids.take(), Some(2));
        ids.give_back(1);
        assert_eq!(ids.take(), Some(3));
        assert_eq!(ids.take(), Some(4));
        assert_eq!(ids.take(), Some(1));
        assert_eq!(ids.take(), None);
    }

    #[test]
    fn giving_back_twice_frees_once_and_removed_ids_are_not_handed_out() {
        let mut ids = FreeBackendIds::new(1..4);
        ids.remove(2);
        assert_eq!(ids.len(), 2);
        let first = ids.take().unwrap();
        ids.give_back(first);
        ids.give_back(first);
        assert_eq!(ids.len(), 2);
        assert_eq!(
            [ids.take(), ids.take(), ids.take()],
            [Some(3), Some(1), None]
        );
    }

    #[test]
    fn ids_freed_before_go_behind_the_never_used_by_when_they_were_freed() {
        let mut ids = FreeBackendIds::new(1..8);
        ids.remove(2);
        // 2 is in use (its entry is adopted): left as it is.
        ids.freed_before([(5, 40), (2, 10), (1, 90), (3, 20)]);
        assert_eq!(ids.line, [4, 6, 7, 3, 5, 1]);
    }

    #[test]
    fn ids_freed_by_a_failed_commit_go_behind_those_free_before() {
        let mut ids = FreeBackendIds::new(1..8);
        for _ in 0..4 {
            ids.take();
        }
        // 1..=4 were held, 5 staged; now 2, 4 and 5 are held.
        let ids = ids.without(&BTreeSet::from([2, 4, 5]), &BTreeSet::from([1, 2, 3, 4, 5]));
        assert_eq!(ids.line, [6, 7, 1, 3]);
    }
}
