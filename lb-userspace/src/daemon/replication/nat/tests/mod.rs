//! The NAT flows' tests, one file per side of `nat` (`scan`, `rebuild`,
//! `merge`); here what they share: a NAT flow table in memory (for
//! `nat_install`'s tests too), a NAT VIP and its flows.

mod merge;
mod rebuild;
mod scan;

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    consts::{
        IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_FIN, NAT_F_REPLIED, NAT_F_RST, NAT_F_SYN,
    },
    Mode,
};

use super::*;
use crate::{
    config::{BackendConfig, Protocol, VipConfig},
    daemon::replication::records::Scan,
    dataplane::FakeMaps,
    reconcile::{addr_words, Balancer, DesiredVip, VipId},
    sync::NatFlowRecord,
};

/// A table in memory (for `nat_install`'s tests too); its inserts
/// counted, the `n`-th failing with the error of `fail_at` if listed.
#[derive(Default)]
pub(in crate::daemon::replication) struct Table {
    pub(in crate::daemon::replication) entries: HashMap<FlowKey, NatEntry>,
    pub(in crate::daemon::replication) inserts: usize,
    pub(in crate::daemon::replication) fail_at: Vec<(usize, fn() -> DataplaneError)>,
}

impl ReplicaTable for Table {
    fn get(&self, key: &FlowKey) -> Option<NatEntry> {
        self.entries.get(key).copied()
    }
    fn insert_if_free(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<bool, DataplaneError> {
        self.inserts += 1;
        if let Some((_, error)) = self.fail_at.iter().find(|(n, _)| *n == self.inserts) {
            return Err(error());
        }
        if self.entries.contains_key(key) {
            return Ok(false);
        }
        self.entries.insert(*key, *entry);
        Ok(true)
    }
    fn overwrite(&mut self, key: &FlowKey, entry: &NatEntry) -> Result<(), DataplaneError> {
        self.entries.insert(*key, *entry);
        Ok(())
    }
    fn remove(&mut self, key: &FlowKey) -> Result<(), DataplaneError> {
        self.entries.remove(key);
        Ok(())
    }
}

const VIP: &str = "198.18.0.100";
const NAT: &str = "198.18.0.50";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// This node's NAT source for a NAT VIP (`NAT`, the records' address).
pub(in crate::daemon::replication) fn nat_source() -> crate::config::VipNat {
    crate::config::VipNat {
        source: ip(NAT),
        own_source: false,
        port_min: 1024,
        port_max: 65_535,
    }
}

/// A balancer with one NAT VIP (port 80, TCP) and `backends` on 8080.
fn balancer(backends: &[&str], mode: Mode) -> Balancer {
    let mut v = VipConfig::new(ip(VIP), 80, Protocol::Tcp);
    v.forwarding = mode;
    v.nat = (mode == Mode::Nat).then(nat_source);
    v.backends = backends
        .iter()
        .map(|a| BackendConfig {
            port: Some(8080),
            ..BackendConfig::new(ip(a))
        })
        .collect();
    let mut b = Balancer::new(4);
    b.apply(
        &mut FakeMaps::default(),
        &[DesiredVip::from_config(&v, &|_| None)],
    )
    .unwrap();
    b
}

fn key(src: &str, dst: &str, sport: u16, dport: u16) -> FlowKey {
    let (s, family) = addr_words(ip(src));
    let (d, _) = addr_words(ip(dst));
    FlowKey {
        src: s,
        dst: d,
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: IPPROTO_TCP,
        family,
        _pad: 0,
    }
}

/// Both entries of client:cport -> VIP:80 NAT'd from NAT:nport to
/// backend:8080, as the master's data plane writes them.
pub(in crate::daemon::replication) fn flow(
    client: &str,
    cport: u16,
    nport: u16,
    backend: &str,
    backend_id: u32,
) -> NatPair {
    let fk = key(client, VIP, cport, 80);
    let rk = key(backend, NAT, 8080, nport);
    let fe = NatEntry {
        src: rk.dst,
        dst: rk.src,
        sport: rk.dport,
        dport: rk.sport,
        backend_id,
        last_seen_ns: 9_000_000_000,
        ifindex: 7,
        dmac: [2, 0, 0, 0, 0, 9],
        smac: [2, 0, 0, 0, 0, 1],
        flags: NAT_F_SYN,
        direction: NAT_DIR_FORWARD,
        vip_id: 3,
        mtu: 0,
    };
    let re = NatEntry {
        src: fk.dst,
        dst: fk.src,
        sport: fk.dport,
        dport: fk.sport,
        last_seen_ns: 9_500_000_000,
        flags: NAT_F_SYN | NAT_F_REPLIED,
        direction: NAT_DIR_REPLY,
        ..fe
    };
    [(fk, fe), (rk, re)]
}

/// `flows` NAT'd flows of distinct clients and NAT ports (two entries
/// each), touched last at 9 s and 9.5 s.
fn many(flows: u32) -> Vec<(FlowKey, NatEntry)> {
    (0..flows)
        .flat_map(|i| {
            let client = format!("198.18.{}.{}", i / 250 % 250, 1 + i % 250);
            let nport = u16::try_from(1024 + i).unwrap();
            flow(&client, 40000, nport, "198.19.2.11", 1)
        })
        .collect()
}
