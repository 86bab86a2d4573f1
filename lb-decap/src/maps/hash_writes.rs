//! Adding and removing the keys of one hash map (`DECAP_ADDRS`,
//! `DECAP_VIPS`) in place: preallocated, a full map refuses a new key, so
//! stale keys go first when the new ones would not fit.

use std::{collections::HashSet, hash::Hash};

use anyhow::{bail, Context as _};
use aya::maps::{HashMap, MapData};
use aya::Pod;

/// Adds to the hash map `map` (at most `max` entries, preallocated: a new
/// key does not fit in a full one) the keys of `want` it lacks. When they
/// would not fit next to the stale ones, the stale ones are removed first
/// (nothing wanted is ever missing meanwhile). More than `max` wanted is
/// refused before anything changes.
pub(super) fn add_keys<T, K>(
    map: &mut HashMap<T, K, u32>,
    want: &HashSet<K>,
    max: u32,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    if want.len() > max as usize {
        bail!(
            "{} entries wanted in {name}, which holds at most {max}",
            want.len()
        );
    }
    let present: HashSet<K> = map
        .keys()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {name}"))?;
    let add: Vec<&K> = want.difference(&present).collect();
    if present.len() + add.len() > max as usize {
        remove_stale_keys(map, want, name)?;
    }
    for key in add {
        map.insert(key, 1, 0).with_context(|| {
            format!(
                "adding an entry to {name} (it holds at most {max}; {} wanted)",
                want.len()
            )
        })?;
    }
    Ok(())
}

/// Removes from the hash map `map` the keys not in `want`.
pub(super) fn remove_stale_keys<T, K>(
    map: &mut HashMap<T, K, u32>,
    want: &HashSet<K>,
    name: &str,
) -> anyhow::Result<()>
where
    T: std::borrow::BorrowMut<MapData>,
    K: Pod + Eq + Hash,
{
    let stale: Vec<K> = map
        .keys()
        .collect::<Result<Vec<K>, _>>()
        .with_context(|| format!("reading {name}"))?
        .into_iter()
        .filter(|k| !want.contains(k))
        .collect();
    for key in stale {
        map.remove(&key)
            .with_context(|| format!("removing an entry from {name}"))?;
    }
    Ok(())
}
