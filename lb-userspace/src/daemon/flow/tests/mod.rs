//! Tests of a flow's lookup (which backend a client's flow goes to, and
//! why), one file per case; the VIP and fake data plane they share live
//! here.

use std::net::IpAddr;

use lb_common::consts::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};

use super::*;
use crate::api::route::parse_client;
use crate::{
    config::Config,
    dataplane::FakeMaps,
    health::Health,
    model::{AdminState, Model},
    reconcile::Balancer,
};

mod flow_ends;
mod half_open;
mod key_and_route;
mod nat_translations;
mod tracked_flows;

const VIP: &str = "198.18.0.100:80/tcp";
const UDP_VIP: &str = "198.18.0.100:80/udp";
const SECOND: u64 = 1_000_000_000;
const NOW: u64 = 1_000 * SECOND;

/// A VIP with three backends, MACs known, TCP checks on (the default).
fn config() -> Config {
    config_of("tcp")
}

/// As `config`, the VIP serving `protocol` (a UDP VIP: no checks).
fn config_of(protocol: &str) -> Config {
    let mut text = format!("interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nprotocol = \"{protocol}\"\ntable_size = 1009\n");
    for last in 11..=13 {
        text.push_str(&format!(
            "[[vip.backend]]\naddress = \"198.18.0.{last}\"\nmac = \"02:00:00:00:00:{last}\"\n"
        ));
    }
    Config::from_toml_str(&text, "test").unwrap()
}

/// The model and the balancer that applied it to fake maps.
struct World {
    model: Model,
    balancer: Balancer,
    maps: FakeMaps,
    /// The VIP.
    vip: VipId,
}

impl World {
    fn new() -> Self {
        Self::of(&config(), vip())
    }

    /// The VIP serving UDP (`UDP_VIP`).
    fn udp() -> Self {
        Self::of(&config_of("udp"), UDP_VIP.parse().unwrap())
    }

    fn of(config: &Config, vip: VipId) -> Self {
        let mut world = Self {
            model: Model::from_config(config),
            balancer: Balancer::new(4),
            maps: FakeMaps::default(),
            vip,
        };
        world.apply();
        world
    }

    fn apply(&mut self) {
        let desired = self.model.desired(&|_| None);
        self.balancer.apply(&mut self.maps, &desired).unwrap();
    }

    fn set_admin(&mut self, address: &str, admin: AdminState) {
        let id = self.vip;
        self.model
            .set_admin(&id, address.parse().unwrap(), admin)
            .unwrap();
        self.apply();
    }

    fn applied(&self) -> &AppliedVip {
        &self.balancer.vips()[&self.vip]
    }

    /// The data-plane id and generation of a backend.
    fn id(&self, address: &str) -> (u32, u32) {
        let b = &self.applied().backends[&address.parse::<IpAddr>().unwrap()];
        (b.id, b.generation)
    }

    /// The table as the (fake) maps hold it: what packets read.
    fn live_table(&self) -> Vec<u32> {
        self.maps.live_table(&self.vip.key()).unwrap()
    }

    fn explain(&self, client: &str, entry: Option<FlowEntry>) -> FlowExplanation {
        self.explain_with(client, entry, None)
    }

    /// As `explain`, with the flow's half-open entry.
    fn explain_with(
        &self,
        client: &str,
        entry: Option<FlowEntry>,
        half_open: Option<FlowEntry>,
    ) -> FlowExplanation {
        self.explain_at(client, entry, half_open, Duration::from_secs(900))
    }

    /// As `explain_with`, with the VIP's protocol's idle timeout
    /// `idle_timeout`.
    fn explain_at(
        &self,
        client: &str,
        entry: Option<FlowEntry>,
        half_open: Option<FlowEntry>,
        idle_timeout: Duration,
    ) -> FlowExplanation {
        let table = self.live_table();
        explain(&Facts {
            vip: self.vip,
            client: client.parse().unwrap(),
            model: self.model.vip(&self.vip).unwrap(),
            applied: self.applied(),
            table: &table,
            entry,
            half_open,
            now_ns: NOW,
            idle_timeout,
        })
    }

    /// A backend (address) other than the one Maglev gives `client`.
    fn not_maglevs(&self, client: &str) -> &'static str {
        ["198.18.0.11", "198.18.0.12", "198.18.0.13"]
            .into_iter()
            .find(|a| a.parse::<IpAddr>().unwrap() != self.maglev_address(client))
            .unwrap()
    }

    /// The backend (address) the fake maps' live table gives `client`.
    fn maglev_address(&self, client: &str) -> IpAddr {
        let key = flow_key(&self.vip, client.parse().unwrap());
        let table = self.live_table();
        let id = table[(flow_hash(&key) % table.len() as u32) as usize];
        *self
            .applied()
            .backends
            .iter()
            .find(|(_, b)| b.id == id)
            .unwrap()
            .0
    }
}

fn vip() -> VipId {
    VIP.parse().unwrap()
}

fn entry(id: (u32, u32), age_s: u64, flags: u32) -> FlowEntry {
    FlowEntry {
        backend_id: id.0,
        backend_generation: id.1,
        last_seen_ns: NOW - age_s * SECOND,
        flags,
        hash: 0,
    }
}
