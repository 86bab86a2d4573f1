//! What the balancer writes for NAT-mode VIPs: the mode in the VIP's
//! meta, the NAT source before the VIP names it, backend ports, the node
//! flag, and routed backends alive without a MAC.

use std::net::IpAddr;

use lb_common::{consts::CONFIG_F_NAT, Mode};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig, VipNat},
    dataplane::{DataplaneError, FakeMaps},
};

const NO_MAC: &dyn Fn(IpAddr) -> Option<[u8; 6]> = &|_| None;

fn nat_vip() -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.100".parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    vip.forwarding = Mode::Nat;
    vip.nat = Some(VipNat {
        source: "198.18.0.50".parse().unwrap(),
        own_source: false,
        port_min: 2000,
        port_max: 2999,
    });
    for (address, port) in [("198.19.2.11", Some(8080)), ("198.19.2.12", None)] {
        vip.backends.push(BackendConfig {
            port,
            ..BackendConfig::new(address.parse().unwrap())
        });
    }
    vip
}

fn apply(balancer: &mut Balancer, maps: &mut FakeMaps, vips: &[VipConfig]) {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, NO_MAC))
        .collect();
    balancer.apply(maps, &desired).unwrap();
}

#[test]
fn a_nat_vip_is_written_with_its_mode_source_ports_and_the_node_flag() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let vip = nat_vip();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));

    let meta = maps.vips[&VipId::of(&vip).key()];
    assert_eq!(meta.mode(), Mode::Nat as u32);
    let source = maps.nat_sources[&meta.id];
    assert_eq!(source.addr, addr_words("198.18.0.50".parse().unwrap()).0);
    assert_eq!((source.port_min, source.port_max), (2000, 2999));
    assert_eq!(source.family, lb_common::consts::AF_INET);
    let source_at = maps.log.iter().position(|l| l.starts_with("nat source"));
    let vip_at = maps.log.iter().position(|l| l.starts_with("vip"));
    assert!(
        source_at < vip_at,
        "the source is written first: {:?}",
        maps.log
    );
    assert_ne!(maps.config.flags & CONFIG_F_NAT, 0);

    // Routed backends need no MAC to be alive; ports in network order.
    let mut ports: Vec<u16> = maps
        .backends
        .values()
        .filter(|b| b.flags & lb_common::consts::BACKEND_F_ALIVE != 0)
        .map(|b| u16::from_be(b.port))
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, [0, 8080]);
    assert!(maps
        .live_table(&VipId::of(&vip).key())
        .unwrap()
        .iter()
        .all(|id| *id != 0));
}

#[test]
fn switching_mode_rewrites_the_meta_and_the_last_nat_vip_clears_the_flag() {
    let mut balancer = Balancer::new(4);
    let mut maps = FakeMaps::default();
    let mut vip = nat_vip();
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    let key = VipId::of(&vip).key();

    vip.forwarding = Mode::DsrL2;
    vip.nat = None;
    for backend in &mut vip.backends {
        backend.port = None;
        backend.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
    }
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    assert_eq!(maps.vips[&key].mode(), Mode::DsrL2 as u32);
    assert_eq!(maps.config.flags & CONFIG_F_NAT, 0);

    vip.forwarding = Mode::Nat;
    vip.nat = nat_vip().nat;
    apply(&mut balancer, &mut maps, std::slice::from_ref(&vip));
    assert_eq!(maps.vips[&key].mode(), Mode::Nat as u32);
    assert_ne!(maps.config.flags & CONFIG_F_NAT, 0);

    apply(&mut balancer, &mut maps, &[]);
    assert_eq!(maps.config.flags & CONFIG_F_NAT, 0);
}

/// A write as the ordering tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// `CONFIG_F_NAT` set or cleared.
    NatEnabled(bool),
    /// `SERVICE_ADDRS` written: the addresses it holds.
    ServiceAddrs(Vec<IpAddr>),
    /// A table copy of VIP id `.0` written.
    Table(u32),
    /// A VIP's entry written: its id and mode.
    SetVip(u32, u32),
    /// A VIP's entry removed.
    RemoveVip(lb_common::VipKey),
    /// Anything else (backends, counters, NAT sources, tunnel).
    Other,
}

/// `FakeMaps` that records every write in order (`FakeMaps::log` leaves
/// out the flag and table writes) and checks after each that the maps
/// serve every VIP they hold: a NAT VIP's replies need the flag, and each
/// VIP's and NAT address needs its `SERVICE_ADDRS` entry.
#[derive(Default)]
struct Ordered {
    maps: FakeMaps,
    writes: Vec<Write>,
}

impl Ordered {
    /// Records `write`, makes it, then checks what packets would meet.
    fn record(
        &mut self,
        write: Write,
        make: impl FnOnce(&mut FakeMaps) -> Result<(), crate::dataplane::DataplaneError>,
    ) -> Result<(), crate::dataplane::DataplaneError> {
        make(&mut self.maps)?;
        self.writes.push(write);
        self.check();
        Ok(())
    }

    /// Every VIP the maps hold is served by the node-wide entries.
    fn check(&self) {
        let held: Vec<IpAddr> = held(&self.maps);
        for (key, meta) in &self.maps.vips {
            let address = words_addr(key.addr, key.family);
            assert!(
                held.contains(&address),
                "VIP {address} served without its SERVICE_ADDRS entry after {:?}",
                self.writes
            );
            if meta.mode() == Mode::Nat as u32 {
                assert_ne!(
                    self.maps.config.flags & CONFIG_F_NAT,
                    0,
                    "NAT VIP {address} served without CONFIG_F_NAT after {:?}",
                    self.writes
                );
                if let Some(source) = self.maps.nat_sources.get(&meta.id) {
                    let nat = words_addr(source.addr, source.family);
                    assert!(
                        held.contains(&nat),
                        "NAT address {nat} served without its entry after {:?}",
                        self.writes
                    );
                }
            }
        }
    }

    /// The index of the first write `matches` picks.
    fn first(&self, matches: impl Fn(&Write) -> bool) -> usize {
        self.writes
            .iter()
            .position(matches)
            .unwrap_or_else(|| panic!("no such write in {:?}", self.writes))
    }

    /// The index of the last write `matches` picks.
    fn last(&self, matches: impl Fn(&Write) -> bool) -> usize {
        self.writes
            .iter()
            .rposition(matches)
            .unwrap_or_else(|| panic!("no such write in {:?}", self.writes))
    }
}

/// The addresses `SERVICE_ADDRS` holds.
fn held(maps: &FakeMaps) -> Vec<IpAddr> {
    maps.service_addrs
        .keys()
        .map(|key| words_addr(key.addr, key.family))
        .collect()
}

impl MapWriter for Ordered {
    fn set_config(&mut self, config: &lb_common::LbConfig) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.set_config(config))
    }

    fn set_backend(&mut self, id: u32, backend: &lb_common::Backend) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.set_backend(id, backend))
    }

    fn write_table(
        &mut self,
        vip_id: u32,
        table: u32,
        slots: &mut dyn Iterator<Item = (u32, u32)>,
    ) -> Result<usize, DataplaneError> {
        let mut written = 0;
        self.record(Write::Table(vip_id), |maps| {
            written = maps.write_table(vip_id, table, slots)?;
            Ok(())
        })?;
        Ok(written)
    }

    fn set_vip(
        &mut self,
        key: &lb_common::VipKey,
        meta: &lb_common::VipMeta,
    ) -> Result<(), DataplaneError> {
        self.record(Write::SetVip(meta.id, meta.mode()), |maps| {
            maps.set_vip(key, meta)
        })
    }

    fn remove_vip(&mut self, key: &lb_common::VipKey) -> Result<(), DataplaneError> {
        self.record(Write::RemoveVip(*key), |maps| maps.remove_vip(key))
    }

    fn clear_vip_traffic(&mut self, vip_id: u32) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.clear_vip_traffic(vip_id))
    }

    fn clear_backend_traffic(&mut self, id: u32) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.clear_backend_traffic(id))
    }

    fn set_nat_source(
        &mut self,
        vip_id: u32,
        source: &lb_common::NatSource,
    ) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.set_nat_source(vip_id, source))
    }

    fn set_nat_enabled(&mut self, enabled: bool) -> Result<(), DataplaneError> {
        self.record(Write::NatEnabled(enabled), |maps| {
            maps.set_nat_enabled(enabled)
        })
    }

    fn set_tunnel_config(
        &mut self,
        config: &lb_common::TunnelConfig,
    ) -> Result<(), DataplaneError> {
        self.record(Write::Other, |maps| maps.set_tunnel_config(config))
    }

    fn set_service_addrs(
        &mut self,
        addrs: &BTreeMap<lb_common::ServiceAddr, u32>,
    ) -> Result<(), DataplaneError> {
        let listed = addrs
            .keys()
            .map(|key| words_addr(key.addr, key.family))
            .collect();
        self.record(Write::ServiceAddrs(listed), |maps| {
            maps.set_service_addrs(addrs)
        })
    }
}

/// A DSR-at-L2 VIP on another address, its backends' MACs known.
fn dsr_vip() -> VipConfig {
    let mut vip = VipConfig::new("198.18.0.200".parse().unwrap(), 80, Protocol::Tcp);
    vip.table_size = 13;
    for address in ["198.19.3.11", "198.19.3.12"] {
        vip.backends.push(BackendConfig {
            mac: Some(crate::mac::Mac([2, 0, 0, 0, 0, 7])),
            ..BackendConfig::new(address.parse().unwrap())
        });
    }
    vip
}

/// Stages the change to `vips` and commits it to `maps` (the daemon's
/// path: the writes are recorded, then replayed in order), from a clean
/// list of writes.
fn commit(balancer: &mut Balancer, maps: &mut Ordered, vips: &[VipConfig]) {
    let desired: Vec<DesiredVip> = vips
        .iter()
        .map(|v| DesiredVip::from_config(v, NO_MAC))
        .collect();
    maps.writes.clear();
    let staged = balancer.stage(&desired).unwrap();
    balancer.commit(maps, staged).unwrap();
}

/// A node serving only DSR VIPs is reloaded with its first NAT VIP: the
/// flag and the VIP's addresses are in place before any of its table or
/// its entry is written, so a backend's SYN-ACK to the NAT address is
/// never passed up to a kernel that resets it.
#[test]
fn the_first_nat_vip_finds_the_flag_and_its_addresses_already_written() {
    let mut balancer = Balancer::new(4);
    let mut maps = Ordered::default();
    let dsr = dsr_vip();
    commit(&mut balancer, &mut maps, std::slice::from_ref(&dsr));
    assert_eq!(maps.maps.config.flags & CONFIG_F_NAT, 0);

    let nat = nat_vip();
    commit(&mut balancer, &mut maps, &[dsr, nat.clone()]);
    let id = maps.maps.vips[&VipId::of(&nat).key()].id;
    let vip_address: IpAddr = "198.18.0.100".parse().unwrap();
    let nat_address: IpAddr = "198.18.0.50".parse().unwrap();

    let first_of_vip =
        maps.first(|w| matches!(w, Write::Table(v) | Write::SetVip(v, _) if *v == id));
    let flag = maps.first(|w| *w == Write::NatEnabled(true));
    let addrs = maps.first(
        |w| matches!(w, Write::ServiceAddrs(a) if a.contains(&vip_address) && a.contains(&nat_address)),
    );
    assert!(flag < first_of_vip, "flag first: {:?}", maps.writes);
    assert!(addrs < first_of_vip, "addresses first: {:?}", maps.writes);
    assert_ne!(maps.maps.config.flags & CONFIG_F_NAT, 0);
}

/// A VIP switched from DSR at L2 to NAT: its entry names NAT mode only
/// once the flag is set.
#[test]
fn a_vip_switched_to_nat_finds_the_flag_already_set() {
    let mut balancer = Balancer::new(4);
    let mut maps = Ordered::default();
    let mut vip = nat_vip();
    vip.forwarding = Mode::DsrL2;
    vip.nat = None;
    for backend in &mut vip.backends {
        backend.port = None;
        backend.mac = Some(crate::mac::Mac([2, 0, 0, 0, 0, 9]));
    }
    commit(&mut balancer, &mut maps, std::slice::from_ref(&vip));

    commit(&mut balancer, &mut maps, &[nat_vip()]);
    let as_nat = maps.first(|w| matches!(w, Write::SetVip(_, mode) if *mode == Mode::Nat as u32));
    let flag = maps.first(|w| *w == Write::NatEnabled(true));
    assert!(flag < as_nat, "flag first: {:?}", maps.writes);
}

/// Removing the last NAT VIP clears the flag, and drops its addresses,
/// only once the VIP is gone.
#[test]
fn the_last_nat_vip_is_gone_before_the_flag_is_cleared() {
    let mut balancer = Balancer::new(4);
    let mut maps = Ordered::default();
    let (dsr, nat) = (dsr_vip(), nat_vip());
    commit(&mut balancer, &mut maps, &[dsr.clone(), nat.clone()]);
    assert_ne!(maps.maps.config.flags & CONFIG_F_NAT, 0);

    commit(&mut balancer, &mut maps, std::slice::from_ref(&dsr));
    let key = VipId::of(&nat).key();
    let removed = maps.last(|w| *w == Write::RemoveVip(key));
    let cleared = maps.first(|w| *w == Write::NatEnabled(false));
    let nat_address: IpAddr = "198.18.0.50".parse().unwrap();
    let dropped = maps.first(|w| matches!(w, Write::ServiceAddrs(a) if !a.contains(&nat_address)));
    assert!(removed < cleared, "VIP first: {:?}", maps.writes);
    assert!(removed < dropped, "VIP first: {:?}", maps.writes);
    assert_eq!(maps.maps.config.flags & CONFIG_F_NAT, 0);
    assert!(!maps.maps.vips.contains_key(&key));
}
