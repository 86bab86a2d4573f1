//! Adding and removing the prefixes of one LPM trie (`DECAP_SOURCES_V4`,
//! `DECAP_SOURCES_V6`) in place, stale ones first when the new would not
//! fit next to them.

use std::{collections::HashSet, hash::Hash};

use anyhow::Context as _;
use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    MapData,
};
use aya::Pod;
use lb_common::decap::DECAP_SOURCES_MAX;

/// Adds to `trie` the prefixes of `want` it lacks. When they would not fit
/// next to the stale ones (more than `DECAP_SOURCES_MAX` at once) and
/// `check_on`, the stale ones are removed first.
pub(super) fn add_prefixes<T, K>(
    trie: &mut LpmTrie<T, K, u32>,
    want: &HashSet<(u32, K)>,
    check_on: bool,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let present: HashSet<(u32, K)> = trie
        .keys()
        .filter_map(Result::ok)
        .map(|k| (k.prefix_len(), k.data()))
        .collect();
    let add: Vec<&(u32, K)> = want.difference(&present).collect();
    if check_on && present.len() + add.len() > DECAP_SOURCES_MAX as usize {
        remove_stale_prefixes(trie, want, name)?;
    }
    for (len, data) in add {
        trie.insert(&Key::new(*len, *data), 1, 0).with_context(|| {
            format!("adding a prefix to {name} (it holds at most {DECAP_SOURCES_MAX})")
        })?;
    }
    Ok(())
}

/// Removes from `trie` the prefixes not in `want`.
pub(super) fn remove_stale_prefixes<T, K>(
    trie: &mut LpmTrie<T, K, u32>,
    want: &HashSet<(u32, K)>,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains(&(k.prefix_len(), k.data())))
        .collect();
    for key in stale {
        trie.remove(&key)
            .with_context(|| format!("removing a prefix from {name}"))?;
    }
    Ok(())
}
