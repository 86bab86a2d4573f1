//! Per VIP, a digest of what its Maglev table is built from on every
//! node of a mesh alike: the table size and, for each backend (sorted by
//! address, as the table build sorts them), its address, port, configured
//! weight, admin state (enabled, draining, maintenance) and whether it
//! is a backup, and the VIP's client affinity (what Maglev hashes). Full-mesh
//! peers exchange them (`sync::wire::digest`): equal digests mean the
//! nodes build the same table once their health checks agree.
//!
//! Health is left out on purpose: each node's own checks decide it, and
//! nodes see a flapping backend go down and up a moment apart, which
//! would raise a mismatch at every flap. Slow starts (`slow_start_s`)
//! are left out with it: a ramp follows a node's own view of health and
//! ends at the weights digested. What is in is what an operator
//! sets and what must be the same everywhere: the file's VIPs and
//! weights, and the runtime changes of `lbctl` (weights, backends added
//! or removed, drains, maintenance), which act on one node only.

use sha2::{Digest as _, Sha256};

use super::{AdminState, Model, VipModel};
use crate::sync::wire::{digest::DIGEST_LEN, VipDigest};

/// What starts every digest: a change of what is digested changes it,
/// so two releases that digest differently never compare equal by chance.
const LABEL: &[u8] = b"lbd maglev inputs v1\0";

impl Model {
    /// Every VIP's digest (see the module's doc), in VIP order.
    pub(crate) fn maglev_digests(&self) -> Vec<VipDigest> {
        self.vips
            .iter()
            .map(|(id, vip)| VipDigest {
                vip: id.address,
                port: id.port,
                protocol: id.protocol.number(),
                digest: vip.maglev_digest(),
            })
            .collect()
    }
}

impl VipModel {
    /// The digest of this VIP's Maglev inputs (see the module's doc).
    pub(crate) fn maglev_digest(&self) -> [u8; DIGEST_LEN] {
        let mut hash = Sha256::new();
        hash.update(LABEL);
        hash.update(self.config.table_size.to_be_bytes());
        // By address: `backends` is a BTreeMap, in the table build's order.
        for (address, backend) in &self.backends {
            let mut addr = [0u8; 17];
            match address {
                std::net::IpAddr::V4(a) => {
                    addr[0] = 4;
                    addr[1..5].copy_from_slice(&a.octets());
                }
                std::net::IpAddr::V6(a) => {
                    addr[0] = 6;
                    addr[1..].copy_from_slice(&a.octets());
                }
            }
            hash.update(addr);
            let port = backend.config.port.map_or([0, 0, 0], |p| {
                let [hi, lo] = p.to_be_bytes();
                [1, hi, lo]
            });
            hash.update(port);
            hash.update(backend.config.weight.to_be_bytes());
            hash.update([admin_byte(&backend.admin)]);
            // Only when set: a mesh without backups digests as releases
            // before them did, so nodes of both compare equal.
            if backend.config.backup {
                hash.update(b"backup");
            }
        }
        // Only when set, as backups: nodes of a mesh must hash new flows
        // alike, or the same client goes to different backends.
        if self.config.affinity != lb_common::Affinity::default() {
            hash.update(b"affinity ");
            hash.update(self.config.affinity.name());
        }
        let full: [u8; 32] = hash.finalize().into();
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(&full[..DIGEST_LEN]);
        digest
    }
}

/// An admin state as digested: its kind, not its times (two nodes drain
/// a backend a moment apart).
fn admin_byte(admin: &AdminState) -> u8 {
    match admin {
        AdminState::Enabled => 0,
        AdminState::Draining { .. } => 1,
        AdminState::Maintenance => 2,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, time::Instant};

    use super::*;
    use crate::{
        config::{Config, Protocol},
        health::Health,
        reconcile::VipId,
    };

    fn model(backends: &[&str], table_size: u32) -> Model {
        let mut toml = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = {table_size}\n"
        );
        for b in backends {
            toml.push_str(&format!("[[vip.backend]]\naddress = \"{b}\"\n"));
        }
        Model::from_config(&Config::from_toml_str(&toml, "test.toml").unwrap())
    }

    fn vip() -> VipId {
        VipId {
            address: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn digest(model: &Model) -> [u8; DIGEST_LEN] {
        let digests = model.maglev_digests();
        assert_eq!(digests.len(), 1);
        assert_eq!(
            (digests[0].vip, digests[0].port, digests[0].protocol),
            (addr("198.18.0.100"), 80, 6)
        );
        digests[0].digest
    }

    const BACKENDS: [&str; 3] = ["198.18.0.12", "198.18.0.9", "198.18.0.11"];

    #[test]
    fn the_digest_ignores_the_order_backends_are_listed_in() {
        let base = digest(&model(&BACKENDS, 1009));
        let reversed: Vec<&str> = BACKENDS.iter().rev().copied().collect();
        assert_eq!(digest(&model(&reversed, 1009)), base);
        // Added at run time in another order: the same set.
        let mut late = model(&BACKENDS[..1], 1009);
        for b in BACKENDS[1..].iter().rev() {
            late.add_backend(&vip(), crate::config::BackendConfig::new(addr(b)))
                .unwrap();
        }
        assert_eq!(digest(&late), base);
    }

    #[test]
    fn the_digest_follows_weights_table_size_backends_and_admin_states() {
        let base = digest(&model(&BACKENDS, 1009));
        assert_ne!(digest(&model(&BACKENDS, 2039)), base, "table_size");
        assert_ne!(
            digest(&model(&BACKENDS[..2], 1009)),
            base,
            "a backend fewer"
        );

        let mut weighted = model(&BACKENDS, 1009);
        weighted
            .set_weight(&vip(), addr("198.18.0.12"), 50)
            .unwrap();
        assert_ne!(digest(&weighted), base, "a weight");
        weighted
            .set_weight(&vip(), addr("198.18.0.12"), crate::config::DEFAULT_WEIGHT)
            .unwrap();
        assert_eq!(digest(&weighted), base, "the weight back");

        let now = Instant::now();
        let mut draining = model(&BACKENDS, 1009);
        let drain = |since| AdminState::Draining {
            since,
            deadline: None,
        };
        draining
            .set_admin(&vip(), addr("198.18.0.11"), drain(now))
            .unwrap();
        let drained = digest(&draining);
        assert_ne!(drained, base, "a drain");
        // Another node drains a moment later: the same state.
        let mut later = model(&BACKENDS, 1009);
        later
            .set_admin(
                &vip(),
                addr("198.18.0.11"),
                drain(now + std::time::Duration::from_secs(3)),
            )
            .unwrap();
        assert_eq!(digest(&later), drained);
        let mut maintenance = model(&BACKENDS, 1009);
        maintenance
            .set_admin(&vip(), addr("198.18.0.11"), AdminState::Maintenance)
            .unwrap();
        assert_ne!(digest(&maintenance), base, "maintenance");
        assert_ne!(digest(&maintenance), drained, "maintenance is no drain");
    }

    #[test]
    fn health_leaves_the_digest_alone() {
        let base = digest(&model(&BACKENDS, 1009));
        let mut flapping = model(&BACKENDS, 1009);
        flapping.set_health(&vip(), addr("198.18.0.11"), Health::Down);
        assert_eq!(digest(&flapping), base);
        flapping.set_health(&vip(), addr("198.18.0.11"), Health::Up);
        assert_eq!(digest(&flapping), base);
    }
}
