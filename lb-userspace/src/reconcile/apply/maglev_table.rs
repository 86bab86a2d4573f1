//! A VIP's Maglev table: built from its backends (or updated from the
//! table packets read, in minimal mode), and its changed slots written
//! into one copy.

use super::super::{AppliedBackend, AppliedVip, MapWriter, ReconcileError, VipId};
use crate::{
    config::MaglevMode,
    maglev::{self, MaglevBackend},
    vip_id::address_bytes,
};

/// Writes into copy `copy` of VIP `vip_id` the slots where `new` differs
/// from `old` (every slot when `old` is unknown); returns the count.
pub(super) fn write_changes(
    maps: &mut dyn MapWriter,
    vip_id: u32,
    copy: u32,
    old: Option<&[u32]>,
    new: &[u32],
) -> Result<usize, ReconcileError> {
    let written = match old {
        Some(old) => maps.write_table(vip_id, copy, &mut maglev::changed_slots(old, new))?,
        None => maps.write_table(
            vip_id,
            copy,
            &mut new.iter().enumerate().map(|(slot, b)| (slot as u32, *b)),
        )?,
    };
    Ok(written)
}

/// The Maglev table of a VIP: backends with a weight and a known MAC. In
/// minimal mode, an update of the table packets read now, if known.
pub(super) fn build_table(
    id: &VipId,
    vip: &AppliedVip,
    mode: MaglevMode,
) -> Result<Vec<u32>, ReconcileError> {
    let keys: Vec<(Vec<u8>, &AppliedBackend)> = vip
        .backends
        .iter()
        .filter(|(_, b)| b.alive && b.weight > 0)
        .map(|(address, b)| (address_bytes(*address), b))
        .collect();
    let members: Vec<MaglevBackend<'_>> = keys
        .iter()
        .map(|(key, b)| MaglevBackend {
            key,
            weight: b.weight,
            id: b.id,
        })
        .collect();
    let previous = vip.table.as_deref().or(vip.basis.as_deref());
    let built = match (mode, previous) {
        (MaglevMode::Minimal, Some(previous)) => {
            crate::maglev::update::update_table(previous, &members, vip.table_size)
        }
        _ => maglev::build_table(&members, vip.table_size),
    };
    built.map_err(|source| ReconcileError::Maglev {
        vip: id.to_string(),
        source,
    })
}
