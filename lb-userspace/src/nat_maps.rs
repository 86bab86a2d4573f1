//! The NAT mode's maps as lbd sees them: the flow table (both directions
//! of every translated flow), the NAT source of each VIP id, and the
//! interfaces routed packets may be redirected to. Kept apart from
//! `dataplane` so each map family has one small home.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    maps::{xdp::DevMapHash, Array, HashMap, IterableMap as _, MapData, MapError},
    Ebpf,
};
use lb_common::{consts::names, FlowKey, NatEntry, NatSource};

use crate::dataplane::{map_error, take_map, DataplaneError};

type Result<T> = std::result::Result<T, DataplaneError>;

/// The map update flag "create only" (linux/bpf.h).
const BPF_NOEXIST: u64 = 1;

/// Typed handles on the NAT maps.
pub struct NatMaps {
    flows: HashMap<MapData, FlowKey, NatEntry>,
    sources: Array<MapData, NatSource>,
    tx_ports: DevMapHash<MapData>,
}

impl NatMaps {
    /// The NAT maps of a freshly loaded object.
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            flows: take_map(ebpf, names::MAP_NAT_FLOWS)?,
            sources: take_map(ebpf, names::MAP_NAT_SOURCES)?,
            tx_ports: take_map(ebpf, names::MAP_TX_PORTS)?,
        })
    }

    /// Every NAT flow entry (both directions), read one by one while the
    /// table changes under the reader.
    pub fn flows(&self) -> impl Iterator<Item = (FlowKey, NatEntry)> + '_ {
        self.flows.iter().filter_map(|r| r.ok())
    }

    /// The flow table itself, for whole-table reads in batches
    /// (`map_batch`, replication's scan).
    pub fn flows_map(&self) -> &MapData {
        aya::maps::IterableMap::map(&self.flows)
    }

    /// One entry, if present.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<NatEntry>> {
        match self.flows.get(key, 0) {
            Ok(entry) => Ok(Some(entry)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_error("reading", names::MAP_NAT_FLOWS, e)),
        }
    }

    /// Puts one entry in (replication from the peer).
    pub fn install_flow(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<()> {
        self.flows
            .insert(key, entry, 0)
            .map_err(|e| map_error("writing", names::MAP_NAT_FLOWS, e))
    }

    /// Puts one entry in only if its key is free (`BPF_NOEXIST`), so
    /// replication never overwrites another flow's entry the data plane
    /// created meanwhile; `false` when the key is taken.
    pub fn install_flow_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool> {
        match self.flows.insert(key, entry, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(e) => Err(map_error("writing", names::MAP_NAT_FLOWS, e)),
        }
    }

    /// Removes one entry (the reaper); one already gone is not an error.
    pub fn remove_flow(&mut self, key: &FlowKey) -> Result<()> {
        match self.flows.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("deleting from", names::MAP_NAT_FLOWS, e)),
        }
    }

    /// Writes VIP id `vip_id`'s NAT source.
    pub(crate) fn set_source(&mut self, vip_id: u32, source: &NatSource) -> Result<()> {
        self.sources
            .set(vip_id, source, 0)
            .map_err(|e| map_error("writing", names::MAP_NAT_SOURCES, e))
    }

    /// Lets the XDP program redirect routed packets out of `ifindex`.
    pub fn add_tx_port(&mut self, ifindex: u32) -> Result<()> {
        self.tx_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(|e| {
                map_error(
                    "writing",
                    names::MAP_TX_PORTS,
                    MapError::IoError(std::io::Error::other(e.to_string())),
                )
            })
    }

    /// Takes `ifindex` out of the redirect targets (the interface went
    /// away); one not there is not an error.
    pub fn remove_tx_port(&mut self, ifindex: u32) -> Result<()> {
        match self.tx_ports.remove(ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("deleting from", names::MAP_TX_PORTS, e)),
        }
    }

    /// The interfaces in the redirect map.
    pub fn tx_ports(&self) -> Vec<u32> {
        self.tx_ports.keys().filter_map(|k| k.ok()).collect()
    }
}

/// The reaper walks the real table in batches from a bucket cursor
/// (`BPF_MAP_LOOKUP_BATCH`): one system call per few thousand entries
/// instead of two per entry, and removals never move the cursor.
impl crate::nat_reaper::NatTable for NatMaps {
    type Cursor = u32;

    fn batch(
        &self,
        cursor: Option<u32>,
        max: usize,
        out: &mut Vec<(FlowKey, NatEntry)>,
    ) -> std::io::Result<Option<u32>> {
        lookup_batch(self.flows.map(), cursor, max, out)
    }

    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        match self.flow(key) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(%error, "reading a NAT flow failed");
                None
            }
        }
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        match self.remove_flow(key) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "removing a NAT flow failed");
                false
            }
        }
    }
}

/// One `BPF_MAP_LOOKUP_BATCH` call on the hash map `map`, whose key and
/// value types must be `K` and `V` (as a typed aya map checked when it was
/// made): appends up to `max` entries from bucket `cursor` (None: the
/// first) to `out`; returns the bucket to go on from, None when the
/// table's end was reached (Linux 5.6; an older kernel answers `EINVAL`).
pub(crate) fn lookup_batch<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &MapData,
    cursor: Option<u32>,
    max: usize,
    out: &mut Vec<(K, V)>,
) -> std::io::Result<Option<u32>> {
    /// The `bpf_attr` of the batch commands.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    let mut keys = vec![K::default(); max];
    let mut values = vec![V::default(); max];
    let in_batch = cursor.unwrap_or(0);
    let mut out_batch = 0u32;
    let mut attr = BatchAttr {
        in_batch: cursor.map_or(0, |_| std::ptr::from_ref(&in_batch) as u64),
        out_batch: std::ptr::from_mut(&mut out_batch) as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: u32::try_from(max).unwrap_or(u32::MAX),
        map_fd: u32::try_from(map.fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX),
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: the attribute points at buffers of `max` keys and values of
    // the map's key and value types (K, V, as the caller promises) and at two u32
    // batch tokens (a hash map's bucket), all alive across the call; the
    // kernel writes back `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    let end = if rc == 0 {
        false
    } else {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOENT) {
            return Err(error);
        }
        true
    };
    // SAFETY: read after the call that wrote it (the pointer escaped).
    let count = unsafe { std::ptr::read_volatile(&raw const attr.count) } as usize;
    let count = count.min(max);
    out.extend(
        keys[..count]
            .iter()
            .copied()
            .zip(values[..count].iter().copied()),
    );
    Ok((!end).then_some(out_batch))
}
