//! Maglev tables into the data plane: how long lbd's control plane takes to
//! make a change to its VIPs' tables (a reconcile through the real
//! `Dataplane`), and what writing those slots into the kernel's `MAGLEV`
//! map costs three ways, the same slots on the same map in the same round:
//! one update syscall per slot (lbd's way before), one
//! `BPF_MAP_UPDATE_BATCH` per table (lbd's way for a map an older release
//! pinned) and in place (lbd's way: the map is memory-mappable); and the
//! tables read back the three ways (a restart in `maglev_mode = "minimal"`
//! reads the live ones). The changes: every VIP added to an empty data
//! plane (whole tables: a start, a reload that adds them), one backend
//! shared by all of them leaving (a failed health check: about a third of
//! each table moves) and coming back.

use std::time::Instant;

use anyhow::Context as _;
use aya::maps::{Array, IterableMap as _, Map, MapData};
use lb_common::{
    consts::{maglev_index, names},
    Backend, LbConfig, NatSource, ServiceAddr, TunnelConfig, VipKey, VipMeta,
};
use lb_userspace::{
    config::{Protocol, VipConfig},
    dataplane::{DataplaneError, LoadOptions, MapSizes, MapWriter},
    map_batch,
    reconcile::DesiredVip,
};
use serde::{Deserialize, Serialize};

use super::{tables::map_of, Spread};
use crate::testbed::{backend, vip, Hook, TestBed};

/// What the pass measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableWrites {
    /// VIPs changed together (lbd's default `max_vips`).
    pub vips: u32,
    /// Backends per VIP (all VIPs share them).
    pub backends: u32,
    /// Slots per table.
    pub table_size: u32,
    /// One row per change.
    pub changes: Vec<WriteCase>,
    /// Every VIP's table read back, as a restarted lbd in `maglev_mode =
    /// "minimal"` reads the live tables it adopts (None in results from
    /// before this was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_back: Option<ReadCase>,
}

/// Every VIP's table read back, every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadCase {
    /// Slots read (all VIPs).
    pub slots: u64,
    /// One lookup syscall per slot, ms.
    pub per_slot_ms: Spread,
    /// In batches (`map_batch::lookup_array`, lbd's way for an older
    /// release's adopted map), ms.
    pub batched_ms: Spread,
    /// As lbd reads them (`Dataplane::read_table`: in place), ms; None in
    /// results from before lbd read in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_ms: Option<Spread>,
}

/// One change, every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteCase {
    /// What changed.
    pub change: String,
    /// Maglev slots the change wrote (all VIPs).
    pub slots: u64,
    /// The whole reconcile (tables built, backends, VIP entries, the
    /// slots written as lbd writes them), ms.
    pub apply_ms: Spread,
    /// The same slots written one update syscall per slot, ms.
    pub per_slot_ms: Spread,
    /// The same slots written in batches (`map_batch::update_array`, lbd's
    /// way for an older release's adopted map), ms.
    pub batched_ms: Spread,
    /// The same slots written as lbd writes them (`Dataplane::write_table`:
    /// in place, the map being memory-mappable), ms; None in results from
    /// before lbd wrote in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place_ms: Option<Spread>,
}

/// One change's samples over the rounds, ms (`WriteCase`'s fields).
#[derive(Debug, Clone, Default)]
struct Samples {
    slots: u64,
    apply: Vec<f64>,
    per_slot: Vec<f64>,
    batched: Vec<f64>,
    in_place: Vec<f64>,
}

/// The table writes of a reconcile, recorded as they pass to the data
/// plane, so they can be made again both ways.
struct Recorder<'a> {
    inner: &'a mut dyn MapWriter,
    tables: Tables,
}

impl MapWriter for Recorder<'_> {
    fn set_config(&mut self, config: &LbConfig) -> Result<(), DataplaneError> {
        self.inner.set_config(config)
    }

    fn set_backend(&mut self, id: u32, backend: &Backend) -> Result<(), DataplaneError> {
        self.inner.set_backend(id, backend)
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let slots: Vec<(u32, u32)> = slots.collect();
        let written = self
            .inner
            .write_table(vip_id, table, &mut slots.iter().copied())?;
        self.tables.push((vip_id, table, slots));
        Ok(written)
    }

    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), DataplaneError> {
        self.inner.set_vip(key, meta)
    }

    fn remove_vip(&mut self, key: &VipKey) -> Result<(), DataplaneError> {
        self.inner.remove_vip(key)
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<(), DataplaneError> {
        self.inner.clear_vip_traffic(vip_id)
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.inner.clear_backend_traffic(id)
    }

    fn set_nat_source(&mut self, vip_id: u32, source: &NatSource) -> Result<(), DataplaneError> {
        self.inner.set_nat_source(vip_id, source)
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<(), DataplaneError> {
        self.inner.set_nat_enabled(enabled)
    }

    fn set_tunnel_config(&mut self, config: &TunnelConfig) -> Result<(), DataplaneError> {
        self.inner.set_tunnel_config(config)
    }

    fn set_service_addrs(
        &mut self,
        addrs: &std::collections::BTreeMap<ServiceAddr, u32>,
    ) -> Result<(), DataplaneError> {
        self.inner.set_service_addrs(addrs)
    }
}

/// `vips` VIPs on port 80, each served by the backends numbered in
/// `members` (of 198.19.0.1 to .N, shared by all VIPs).
fn configs(vips: u32, members: &[u8]) -> Vec<VipConfig> {
    (0..vips)
        .map(|v| {
            let backends = members
                .iter()
                .map(|&b| backend(&format!("198.19.0.{b}"), b, 100))
                .collect();
            vip(&format!("198.18.1.{}", v + 1), 80, Protocol::Tcp, backends)
        })
        .collect()
}

/// Table writes: VIP id, table copy, `(slot, backend id)` pairs.
type Tables = Vec<(u32, u32, Vec<(u32, u32)>)>;

/// Reconciles `bed` to `vips`; returns the time it took and the table
/// writes it made.
fn apply(bed: &mut TestBed, vips: &[VipConfig]) -> anyhow::Result<(f64, Tables)> {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, &|_| None))
        .collect();
    let mut recorder = Recorder {
        inner: &mut bed.dataplane,
        tables: Vec::new(),
    };
    let started = Instant::now();
    bed.balancer.apply(&mut recorder, &desired)?;
    Ok((ms(started), recorder.tables))
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Measures `rounds` rounds of the three changes on `vips` VIPs of three
/// backends each.
pub fn run(vips: u32, rounds: u32) -> anyhow::Result<TableWrites> {
    let sizes = MapSizes {
        max_vips: vips,
        conntrack: 4096,
        nat_flows: lb_common::consts::NAT_FLOWS_SIZE_DEFAULT,
        half_open: lb_common::consts::HALF_OPEN_SIZE_DEFAULT,
    };
    let mut bed = TestBed::with_sizes(&[], Hook::Xdp, sizes, &LoadOptions::default())
        .context("loading the data plane (are you root?)")?;
    let (maglev, _) = map_of(&mut bed.dataplane, names::MAP_MAGLEV)?;
    let mut maglev: Array<MapData, u32> = Array::try_from(Map::Array(maglev))?;
    let all = configs(vips, &[1, 2, 3]);
    let changes = [
        ("every VIP added (whole tables)", all.clone()),
        ("one backend of 3 leaves every VIP", configs(vips, &[1, 3])),
        ("it comes back", all),
    ];
    let mut cases = vec![Samples::default(); changes.len()];
    for _ in 0..rounds {
        // From an empty data plane: the first change writes whole tables.
        apply(&mut bed, &[])?;
        for ((_, vips), case) in changes.iter().zip(&mut cases) {
            let (took, tables) = apply(&mut bed, vips)?;
            case.slots = tables.iter().map(|(_, _, s)| s.len() as u64).sum();
            case.apply.push(took);
            // The same values into the same slots: the maps stay as the
            // reconcile left them.
            let started = Instant::now();
            for (vip_id, copy, slots) in &tables {
                for (slot, backend_id) in slots {
                    maglev.set(maglev_index(*vip_id, *copy, *slot), backend_id, 0)?;
                }
            }
            case.per_slot.push(ms(started));
            let started = Instant::now();
            for (vip_id, copy, slots) in &tables {
                let indexed: Vec<(u32, u32)> = slots
                    .iter()
                    .map(|(slot, b)| (maglev_index(*vip_id, *copy, *slot), *b))
                    .collect();
                map_batch::update_array(maglev.map(), &indexed)?;
            }
            case.batched.push(ms(started));
            let started = Instant::now();
            for (vip_id, copy, slots) in &tables {
                bed.dataplane
                    .write_table(*vip_id, *copy, &mut slots.iter().copied())?;
            }
            case.in_place.push(ms(started));
        }
    }
    let read_back = read_back(&bed, &maglev, vips, rounds)?;
    let changes: Vec<WriteCase> = changes
        .iter()
        .zip(cases)
        .map(|((change, _), samples)| WriteCase {
            change: (*change).to_owned(),
            slots: samples.slots,
            apply_ms: Spread::of(&samples.apply),
            per_slot_ms: Spread::of(&samples.per_slot),
            batched_ms: Spread::of(&samples.batched),
            in_place_ms: Some(Spread::of(&samples.in_place)),
        })
        .collect();
    let in_place = |spread: &Option<Spread>| spread.map_or(0.0, |s| s.median);
    for c in &changes {
        eprintln!(
            "bench: maglev writes, {vips} VIPs, {}: {} slots, reconcile {:.1} ms; slots one by one {:.1} ms, in batches {:.1} ms, in place {:.2} ms",
            c.change, c.slots, c.apply_ms.median, c.per_slot_ms.median, c.batched_ms.median, in_place(&c.in_place_ms)
        );
    }
    eprintln!(
        "bench: maglev tables read back, {vips} VIPs: {} slots, one by one {:.1} ms, in batches {:.1} ms, in place {:.2} ms",
        read_back.slots, read_back.per_slot_ms.median, read_back.batched_ms.median, in_place(&read_back.in_place_ms)
    );
    Ok(TableWrites {
        vips,
        backends: 3,
        table_size: lb_common::consts::MAGLEV_SIZE_DEFAULT,
        changes,
        read_back: Some(read_back),
    })
}

/// Reads one copy of every VIP's table the three ways, `rounds` times,
/// and checks that all read the same.
fn read_back(
    bed: &TestBed,
    maglev: &Array<MapData, u32>,
    vips: u32,
    rounds: u32,
) -> anyhow::Result<ReadCase> {
    let size = lb_common::consts::MAGLEV_SIZE_DEFAULT;
    let (mut per_slot, mut batched, mut in_place) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let mut one_by_one = Vec::new();
        for vip_id in 0..vips {
            for slot in 0..size {
                one_by_one.push(maglev.get(&maglev_index(vip_id, 0, slot), 0)?);
            }
        }
        per_slot.push(ms(started));
        let started = Instant::now();
        let mut in_batches = Vec::new();
        for vip_id in 0..vips {
            let first = maglev_index(vip_id, 0, 0);
            let table = map_batch::lookup_array::<u32>(maglev.map(), first, size as usize)?
                .context("the kernel has no batch lookup")?;
            in_batches.extend(table);
        }
        batched.push(ms(started));
        let started = Instant::now();
        let mut as_lbd = Vec::new();
        for vip_id in 0..vips {
            as_lbd.extend(bed.dataplane.read_table(vip_id, 0, size)?);
        }
        in_place.push(ms(started));
        anyhow::ensure!(one_by_one == in_batches, "the batches read other slots");
        anyhow::ensure!(one_by_one == as_lbd, "lbd read other slots");
    }
    Ok(ReadCase {
        slots: u64::from(vips) * u64::from(size),
        per_slot_ms: Spread::of(&per_slot),
        batched_ms: Spread::of(&batched),
        in_place_ms: Some(Spread::of(&in_place)),
    })
}
