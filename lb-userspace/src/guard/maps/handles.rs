//! Typed handles on the guards' maps (`VIP_GUARDS`, the two ACL tries,
//! the per-rule hit counters): the only code that reads or writes the maps
//! themselves, so the installer above them can be tested without them.

use std::collections::BTreeMap;

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use lb_common::{
    consts::names,
    guard::{AclData4, AclData6, VipGuard},
};

use super::{GuardWrites, Result, TrieKey};
use crate::dataplane::{map_error, take_map};

/// Typed handles on the guards' maps.
pub struct GuardMaps {
    pub(super) guards: Array<MapData, VipGuard>,
    v4: LpmTrie<MapData, AclData4, u32>,
    v6: LpmTrie<MapData, AclData6, u32>,
    hits: PerCpuArray<MapData, u64>,
}

impl GuardMaps {
    /// The guards' maps of a freshly loaded object.
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            guards: take_map(ebpf, names::MAP_VIP_GUARDS)?,
            v4: take_map(ebpf, names::MAP_ACL_V4)?,
            v6: take_map(ebpf, names::MAP_ACL_V6)?,
            hits: take_map(ebpf, names::MAP_ACL_HITS)?,
        })
    }

    /// Packets rule `id` matched, summed over the CPUs.
    pub(super) fn hits(&self, id: u32) -> Result<u64> {
        let values = self
            .hits
            .get(&id, 0)
            .map_err(|e| map_error("reading", names::MAP_ACL_HITS, e))?;
        Ok(values.iter().sum())
    }

    fn zero_hits(&mut self, id: u32) -> Result<()> {
        let zero = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .and_then(|cpus| PerCpuValues::try_from(vec![0u64; cpus]))
            .map_err(|e| map_error("zeroing", names::MAP_ACL_HITS, MapError::IoError(e)))?;
        self.hits
            .set(id, zero, 0)
            .map_err(|e| map_error("zeroing", names::MAP_ACL_HITS, e))
    }

    fn insert_rule(&mut self, key: &TrieKey, id: u32) -> Result<()> {
        match key {
            TrieKey::V4(len, data) => self.v4.insert(&Key::new(*len, *data), id, 0),
            TrieKey::V6(len, data) => self.v6.insert(&Key::new(*len, *data), id, 0),
        }
        .map_err(|e| map_error("writing", acl_map(key), e))
    }

    fn remove_rule(&mut self, key: &TrieKey) -> Result<()> {
        match key {
            TrieKey::V4(len, data) => self.v4.remove(&Key::new(*len, *data)),
            TrieKey::V6(len, data) => self.v6.remove(&Key::new(*len, *data)),
        }
        .map_err(|e| map_error("removing from", acl_map(key), e))
    }

    /// Every rule the tries hold (a previous lbd's, when pinned).
    pub(super) fn installed(&self) -> Result<BTreeMap<TrieKey, u32>> {
        let mut out = BTreeMap::new();
        for entry in self.v4.iter() {
            let (key, id) = entry.map_err(|e| map_error("reading", names::MAP_ACL_V4, e))?;
            out.insert(TrieKey::V4(key.prefix_len(), key.data()), id);
        }
        for entry in self.v6.iter() {
            let (key, id) = entry.map_err(|e| map_error("reading", names::MAP_ACL_V6, e))?;
            out.insert(TrieKey::V6(key.prefix_len(), key.data()), id);
        }
        Ok(out)
    }
}

impl GuardWrites for GuardMaps {
    fn clear_hits(&mut self, id: u32) -> Result<()> {
        self.zero_hits(id)
    }

    fn insert(&mut self, key: &TrieKey, id: u32) -> Result<()> {
        self.insert_rule(key, id)
    }

    fn remove(&mut self, key: &TrieKey) -> Result<()> {
        self.remove_rule(key)
    }

    fn set_guard(&mut self, n: u32, guard: VipGuard) -> Result<()> {
        self.guards
            .set(n, guard, 0)
            .map_err(|e| map_error("writing", names::MAP_VIP_GUARDS, e))
    }
}

fn acl_map(key: &TrieKey) -> &'static str {
    match key {
        TrieKey::V4(..) => names::MAP_ACL_V4,
        TrieKey::V6(..) => names::MAP_ACL_V6,
    }
}
