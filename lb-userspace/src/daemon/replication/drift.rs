//! Config drift in a full mesh: every node must build the same Maglev
//! table per VIP, or a flow the routers move to another node before its
//! copy got there lands on another backend. Each node sends its peers a
//! digest of every VIP's Maglev inputs (`model::digest`, over the sync
//! channel: `sync::wire::digest`) and compares theirs with its own here.
//! A mismatch starts and ends with a warning; while it lasts it shows in
//! the peer's status line and in
//! `lbd_replication_peer_config_mismatch{peer,vip,kind}`.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

use super::{Replication, Topology};
use crate::{
    api::schema::{ConfigMismatch, MismatchKind, ReplicationPeerStatus},
    config::Protocol,
    model::Model,
    reconcile::VipId,
    sync::wire::{digest::DIGEST_LEN, VipDigest},
};

/// How often a node digests its model and compares: a change reaches the
/// peers' comparison within about this plus a heartbeat (a second).
const COMPARE_INTERVAL: Duration = Duration::from_secs(1);

impl Replication {
    /// A full mesh's config check, at most every [`COMPARE_INTERVAL`]:
    /// gives every sender this node's digests of `model` (its sessions
    /// send them to the peers) and compares them with those the peers
    /// sent (see [`ConfigDrift::compare`]). A VRRP pair compares nothing
    /// (its nodes may serve different VIPs).
    pub(crate) fn compare_configs(&mut self, model: &Model) {
        let now = Instant::now();
        if self.topology != Topology::FullMesh
            || self
                .drift
                .compared_at
                .is_some_and(|at| now.duration_since(at) < COMPARE_INTERVAL)
        {
            return;
        }
        self.drift.compared_at = Some(now);
        let own: Arc<[VipDigest]> = model.maglev_digests().into();
        for peer in &self.peers {
            peer.sender().set_config_digests(Arc::clone(&own));
        }
        let theirs = self._listener.peer_digests().current(now);
        self.drift.compare(&own, &theirs);
    }
}

/// A VIP as digests name it: address, port, IP protocol number.
type VipKey = (IpAddr, u16, u8);

/// What differs, per peer node id and VIP.
#[derive(Debug, Default)]
pub(crate) struct ConfigDrift {
    /// The mismatches now, by peer node id (only peers whose digests are
    /// known: see [`ConfigDrift::compare`]).
    mismatches: BTreeMap<String, BTreeMap<VipKey, MismatchKind>>,
    /// When the last comparison ran.
    compared_at: Option<Instant>,
}

impl ConfigDrift {
    /// Compares this node's digests (`own`) with each peer's (`peers`,
    /// by node id; a peer absent from it is not known: its session is
    /// down, or it runs a release without digests). Logs each mismatch
    /// as it starts and as it ends.
    pub(crate) fn compare(&mut self, own: &[VipDigest], peers: &HashMap<String, Arc<[VipDigest]>>) {
        let own = by_vip(own);
        let mut next = BTreeMap::new();
        for (peer, theirs) in peers {
            let found = mismatches(&own, &by_vip(theirs));
            let before = self.mismatches.get(peer.as_str());
            for (vip, kind) in &found {
                if before.and_then(|b| b.get(vip)) != Some(kind) {
                    warn!(
                        peer_node = %peer,
                        vip = %vip_name(*vip),
                        kind = kind.as_str(),
                        "sync peer builds another Maglev table for this VIP ({}): flows moved between the nodes change backend; make the config and the lbctl changes (weights, drains, maintenance, backends, table_size) the same on every node",
                        kind.meaning()
                    );
                }
            }
            for vip in before.iter().flat_map(|b| b.keys()) {
                if !found.contains_key(vip) {
                    info!(peer_node = %peer, vip = %vip_name(*vip), "sync peer builds the same Maglev table for this VIP again");
                }
            }
            next.insert(peer.clone(), found);
        }
        for (peer, gone) in &self.mismatches {
            if !peers.contains_key(peer) && !gone.is_empty() {
                debug!(peer_node = %peer, vips = gone.len(), "sync peer's config digests no longer known (its session is down); its mismatches are not shown until it sends them again");
            }
        }
        self.mismatches = next;
    }

    /// `status` (a peer's line) with what the comparison found for its
    /// node.
    pub(crate) fn status(&self, mut status: ReplicationPeerStatus) -> ReplicationPeerStatus {
        if let Some(node) = status.node.as_deref() {
            status.config_compared = self.compared(node);
            status.config_mismatches = self.of_peer(node);
        }
        status
    }

    /// Whether `node`'s digests are known (it was compared).
    pub(crate) fn compared(&self, node: &str) -> bool {
        self.mismatches.contains_key(node)
    }

    /// What differs with `node`, in VIP order.
    pub(crate) fn of_peer(&self, node: &str) -> Vec<ConfigMismatch> {
        self.mismatches
            .get(node)
            .into_iter()
            .flatten()
            .map(|(vip, kind)| ConfigMismatch {
                vip: vip_name(*vip),
                kind: *kind,
            })
            .collect()
    }
}

fn by_vip(digests: &[VipDigest]) -> BTreeMap<VipKey, [u8; DIGEST_LEN]> {
    digests
        .iter()
        .map(|d| ((d.vip, d.port, d.protocol), d.digest))
        .collect()
}

/// Each VIP whose digests differ, or that only one side has.
fn mismatches(
    own: &BTreeMap<VipKey, [u8; DIGEST_LEN]>,
    theirs: &BTreeMap<VipKey, [u8; DIGEST_LEN]>,
) -> BTreeMap<VipKey, MismatchKind> {
    let mut found = BTreeMap::new();
    for (vip, digest) in own {
        match theirs.get(vip) {
            Some(other) if other == digest => {}
            Some(_) => {
                found.insert(*vip, MismatchKind::Differs);
            }
            None => {
                found.insert(*vip, MismatchKind::MissingOnPeer);
            }
        }
    }
    for vip in theirs.keys() {
        if !own.contains_key(vip) {
            found.insert(*vip, MismatchKind::OnlyOnPeer);
        }
    }
    found
}

/// `ADDRESS:PORT/PROTOCOL`, as VIPs are named elsewhere.
fn vip_name((address, port, protocol): VipKey) -> String {
    match Protocol::from_number(protocol) {
        Some(protocol) => VipId {
            address,
            port,
            protocol,
        }
        .to_string(),
        None => format!("{}/{protocol}", std::net::SocketAddr::new(address, port)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::Config;
    use crate::test_scratch::ScratchDir;

    fn digest(port: u16, byte: u8) -> VipDigest {
        VipDigest {
            vip: "198.18.0.100".parse().unwrap(),
            port,
            protocol: 6,
            digest: [byte; DIGEST_LEN],
        }
    }

    #[test]
    fn differing_missing_and_extra_vips_are_mismatches_until_they_agree() {
        let mut drift = ConfigDrift::default();
        let own = [digest(80, 1), digest(443, 2), digest(8080, 3)];
        let theirs: Arc<[VipDigest]> = Arc::from([digest(80, 1), digest(443, 9), digest(53, 4)]);
        drift.compare(&own, &HashMap::from([("b".to_owned(), theirs)]));
        assert!(drift.compared("b") && !drift.compared("c"));
        let kinds: Vec<(String, MismatchKind)> = drift
            .of_peer("b")
            .into_iter()
            .map(|m| (m.vip, m.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("198.18.0.100:53/tcp".to_owned(), MismatchKind::OnlyOnPeer),
                ("198.18.0.100:443/tcp".to_owned(), MismatchKind::Differs),
                (
                    "198.18.0.100:8080/tcp".to_owned(),
                    MismatchKind::MissingOnPeer
                ),
            ]
        );
        // The peer catches up: nothing differs.
        drift.compare(&own, &HashMap::from([("b".to_owned(), Arc::from(own))]));
        assert!(drift.compared("b") && drift.of_peer("b").is_empty());
        // Its digests no longer known: not compared.
        drift.compare(&own, &HashMap::new());
        assert!(!drift.compared("b"));
    }

    /// One VIP with two backends of weight 100.
    fn model() -> Model {
        let toml = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n[[vip.backend]]\naddress = \"198.18.0.12\"\n";
        Model::from_config(&Config::from_toml_str(toml, "test.toml").unwrap())
    }

    fn vip() -> VipId {
        VipId {
            address: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    /// Compares on both nodes (at once, whatever the interval) until
    /// each one's line for the other says `want`.
    async fn until_both_show(
        (a, model_a): (&mut Replication, &Model),
        (b, model_b): (&mut Replication, &Model),
        want: &[ConfigMismatch],
    ) {
        let start = Instant::now();
        loop {
            for (node, model) in [(&mut *a, model_a), (&mut *b, model_b)] {
                node.drift.compared_at = None;
                node.compare_configs(model);
            }
            let lines = [a.peer_status(), b.peer_status()];
            if lines
                .iter()
                .all(|l| l.len() == 1 && l[0].config_compared && l[0].config_mismatches == want)
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(8),
                "never {want:?}: {lines:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Two mesh nodes whose configs differ only in one backend's weight
    /// (an `lbctl backend weight` run on one of them) both report the
    /// VIP, until the weight is the same again.
    #[tokio::test]
    async fn two_nodes_whose_weights_differ_report_the_vip_until_they_agree() {
        let scratch = ScratchDir::new("lbr-drift");
        let key_file = scratch.join("sync.key");
        std::fs::write(&key_file, b"test-key-0123456789abcdef").unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (mut a, _a_in) = Replication::start(Topology::FullMesh, any, &[], &key_file, "lb-a")
            .await
            .unwrap();
        let a_addr = a._listener.local_addr();
        let (mut b, _b_in) =
            Replication::start(Topology::FullMesh, any, &[a_addr], &key_file, "lb-b")
                .await
                .unwrap();
        std::fs::remove_file(&key_file).unwrap();
        a.set_peers(&[b._listener.local_addr()]).unwrap();

        let model_a = model();
        let mut model_b = model();
        model_b
            .set_weight(&vip(), "198.18.0.12".parse().unwrap(), 50)
            .unwrap();
        let differs = [ConfigMismatch {
            vip: "198.18.0.100:80/tcp".into(),
            kind: MismatchKind::Differs,
        }];
        until_both_show((&mut a, &model_a), (&mut b, &model_b), &differs).await;

        model_b
            .set_weight(&vip(), "198.18.0.12".parse().unwrap(), 100)
            .unwrap();
        until_both_show((&mut a, &model_a), (&mut b, &model_b), &[]).await;
    }
}
