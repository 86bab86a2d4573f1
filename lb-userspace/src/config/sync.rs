//! The `[sync]` table: connection-table replication between every node
//! of an active-active group (with `[bgp]`). Each node streams its new and
//! active flows to every peer and installs what the peers send, so a flow
//! the routers move to another node keeps its backend.
//!
//! ```toml
//! [sync]
//! listen = "198.18.2.11:7946"
//! peers = ["198.18.2.12:7946", "198.18.2.13:7946"]
//! key_file = "/etc/lbd/sync.key"
//! ```
//!
//! A VRRP pair keeps its own `sync_listen` / `sync_peer` / `sync_key_file`
//! in `[[vrrp]]` (one direction at a time, master to backup); a node
//! configures replication in one place only.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{raw::Items, Checker, Config, ConfigError, Warning};

/// Most peers one node replicates to: a full mesh of this many + 1 nodes.
pub(crate) const MAX_SYNC_PEERS: usize = 15;

/// Full-mesh replication settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// Where this node accepts its peers' streams.
    pub listen: SocketAddr,
    /// Every other node of the group (their `listen`).
    pub peers: Vec<SocketAddr>,
    /// Shared secret of the channel (at least 16 bytes).
    pub key_file: PathBuf,
}

/// The `[sync]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [sync] table")]
pub(super) struct RawSync {
    pub(super) listen: Option<Spanned<Value>>,
    peers: Option<Spanned<Items>>,
    key_file: Option<Spanned<Value>>,
}

impl RawSync {
    /// Item `index` of the written `peers`, to point errors at it.
    pub(super) fn peer_item(&self, index: usize) -> Option<&Spanned<Value>> {
        super::raw::list_item(self.peers.as_ref(), index)
    }
}

impl super::TableName for RawSync {
    const NAME: &'static str = "sync";
}

impl Checker<'_> {
    /// The `[sync]` table (None when absent).
    pub(super) fn sync(
        &self,
        raw: Option<&Spanned<super::raw::OneTable<RawSync>>>,
    ) -> Result<Option<SyncSettings>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let table = raw.span().start;
        let raw = raw.get_ref().get();
        let listen_value = self.required(&raw.listen, table, "sync.listen")?;
        let listen = self.socket_address(listen_value, "sync.listen", false)?;
        if listen.ip().is_unspecified() {
            // The node id is built from it: cloned nodes listening on
            // the unspecified address would share one id, and a mesh
            // tells its peers apart (and counts their dumps) by id.
            return Err(self.bad_value(
                listen_value,
                "sync.listen",
                format!(
                    "{} is the unspecified address: give this node's own address (its peers list it, and it names this node to them)",
                    listen.ip()
                ),
            ));
        }
        let Some(peers_value) = &raw.peers else {
            return Err(self.invalid(table, "sync.peers", "required field is missing"));
        };
        let items = self.items(peers_value, "sync.peers", "an array of ADDRESS:PORT")?;
        let mut peers: Vec<SocketAddr> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("sync.peers[{i}]");
            if !matches!(item.get_ref(), Value::String(_)) || self.oversized(item).is_some() {
                return Err(self.wrong_type(item, &field, "an ADDRESS:PORT string"));
            }
            let peer = self.socket_address(item, &field, true)?;
            if let Some(first) = peers.iter().position(|p| *p == peer) {
                return Err(self.bad_value(
                    item,
                    &field,
                    format!("{peer} is listed twice (also sync.peers[{first}])"),
                ));
            }
            if peer == listen {
                return Err(self.bad_value(
                    item,
                    &field,
                    format!("{peer} is this node's own sync.listen"),
                ));
            }
            peers.push(peer);
        }
        if peers.is_empty() {
            return Err(self.invalid(
                peers_value.span().start,
                "sync.peers",
                "is empty: list the other nodes",
            ));
        }
        if peers.len() > MAX_SYNC_PEERS {
            return Err(self.invalid(
                peers_value.span().start,
                "sync.peers",
                format!(
                    "{} peers; at most {MAX_SYNC_PEERS} are allowed",
                    peers.len()
                ),
            ));
        }
        let key_file = self.absolute_path(
            self.required(&raw.key_file, table, "sync.key_file")?,
            "sync.key_file",
        )?;
        Ok(Some(SyncSettings {
            listen,
            peers,
            key_file,
        }))
    }
}

/// A note for every `[sync]` node: its connection table holds the flows
/// of the whole mesh (its own and every peer's copies), so
/// `conntrack_size` sized for one node's share is too small by the
/// number of nodes, and copies and own flows then evict each other. Said
/// with the figures of this config (`lbctl config check`, and the log at
/// start).
pub(super) fn sizing_warnings(config: &Config, out: &mut Vec<Warning>) {
    let Some(sync) = &config.sync else {
        return;
    };
    let nodes = sync.peers.len() + 1;
    let size = config.conntrack_size;
    out.push(Warning {
        field: "sync.peers".to_owned(),
        message: format!(
            "every node of this mesh of {nodes} holds the flows of all {nodes} (its own, and its peers' as copies): conntrack_size = {size} holds about {} live flows per node without evicting one; size it for the whole mesh's live flows ({nodes} x one node's), on every node",
            size / u32::try_from(nodes).unwrap_or(u32::MAX).max(1)
        ),
    });
}

/// Records a second one node receives and installs from its peers'
/// dumps, all peers together (BENCHMARKS.md "Full-mesh replication":
/// about 3 M delivered to one peer, each installed on lbd's one loop).
const INSTALL_RATE: u64 = 3_000_000;

/// A note for a `[bgp]` and `[sync]` node whose start-up gate may open
/// before its peers' dumps have arrived: a fresh node waits for every
/// peer's full dump (each up to `conntrack_size` records: a mesh node's
/// table holds the whole mesh's flows, copies included) at most
/// `startup_wait_ms`; when receiving them all may take longer at
/// [`INSTALL_RATE`], the gate may open before they all arrived (at the
/// wait when none is arriving yet, else when one stalls or at
/// `bgp::announce::DUMP_CAP_FACTOR` × the wait) and the node announces
/// without the flows still on their way (connections the routers move
/// to it reset where their backend is not its Maglev pick).
pub(super) fn startup_wait_warnings(config: &Config, out: &mut Vec<Warning>) {
    out.extend(startup_wait_warning(config));
}

/// [`startup_wait_warnings`]'s one warning, if any (a reload that
/// changes `[sync] peers` gives it too: the node's next start waits for
/// that many peers' dumps).
pub(crate) fn startup_wait_warning(config: &Config) -> Option<Warning> {
    let (Some(sync), Some(bgp)) = (&config.sync, &config.bgp) else {
        return None;
    };
    let peers = u64::try_from(sync.peers.len()).unwrap_or(u64::MAX);
    let records = u64::from(config.conntrack_size).saturating_mul(peers);
    let needed_ms = records.saturating_mul(1000) / INSTALL_RATE;
    let wait_ms = u64::try_from(bgp.startup_wait.as_millis()).unwrap_or(u64::MAX);
    if needed_ms <= wait_ms {
        return None;
    }
    // Rounded up to whole seconds, with room for the walks and the links.
    let suggested_ms = (needed_ms.saturating_mul(2))
        .div_ceil(1000)
        .saturating_mul(1000);
    Some(Warning {
        field: "bgp.startup_wait_ms".to_owned(),
        message: format!(
            "a fresh node of this mesh may receive up to {records} records from its {peers} peers' full dumps (conntrack_size = {} each), about {} s at {} M records/s, longer than startup_wait_ms = {wait_ms}: the start-up gate may then open before they all arrived (\"wait-elapsed\" when none is arriving at the wait; it waits on while one is, at most {cap} × startup_wait_ms: \"dump-stalled\", \"cap-elapsed\") and the node announces without the flows still on their way; set startup_wait_ms = {} or more on every node (the gate still opens as soon as every peer's dump is in)",
            config.conntrack_size,
            needed_ms.div_ceil(1000),
            INSTALL_RATE / 1_000_000,
            suggested_ms.min(600_000),
            cap = crate::bgp::announce::DUMP_CAP_FACTOR,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{warnings, Config};

    /// A start-up wait shorter than the peers' dumps take at the install
    /// rate is warned of, with the wait to set; a long enough one, or a
    /// node without `[bgp]`, is not.
    #[test]
    fn a_start_up_wait_shorter_than_the_peers_dumps_is_warned_of() {
        let mesh = |conntrack: u32, wait_ms: u32| {
            format!("interface = \"eth0\"\nconntrack_size = {conntrack}\n[bgp]\nstartup_wait_ms = {wait_ms}\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\", \"198.18.2.13:7946\", \"198.18.2.14:7946\"]\nkey_file = \"/k\"\n")
        };
        let wait_warnings = |text: &str| -> Vec<String> {
            warnings(&Config::from_toml_str(text, "test").unwrap())
                .iter()
                .filter(|w| w.field == "bgp.startup_wait_ms")
                .map(ToString::to_string)
                .collect()
        };
        // 3 peers of 16 M entries: about 17 s at 3 M records/s.
        assert_eq!(
            wait_warnings(&mesh(16_777_216, 10_000)),
            ["bgp.startup_wait_ms: a fresh node of this mesh may receive up to 50331648 records from its 3 peers' full dumps (conntrack_size = 16777216 each), about 17 s at 3 M records/s, longer than startup_wait_ms = 10000: the start-up gate may then open before they all arrived (\"wait-elapsed\" when none is arriving at the wait; it waits on while one is, at most 4 × startup_wait_ms: \"dump-stalled\", \"cap-elapsed\") and the node announces without the flows still on their way; set startup_wait_ms = 34000 or more on every node (the gate still opens as soon as every peer's dump is in)"]
        );
        assert!(wait_warnings(&mesh(16_777_216, 34_000)).is_empty());
        assert!(wait_warnings(&mesh(262_144, 10_000)).is_empty());
        let no_bgp = "interface = \"eth0\"\nconntrack_size = 16777216\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n";
        assert!(wait_warnings(no_bgp).is_empty());
    }

    /// `[sync]` brings a sizing note with this mesh's figures; a node
    /// without it gets none.
    #[test]
    fn a_mesh_node_is_told_its_table_holds_every_nodes_flows() {
        let text = "interface = \"eth0\"\nconntrack_size = 262144\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\", \"198.18.2.13:7946\", \"198.18.2.14:7946\"]\nkey_file = \"/k\"\n";
        let config = Config::from_toml_str(text, "test").unwrap();
        let shown: Vec<String> = warnings(&config).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["sync.peers: every node of this mesh of 4 holds the flows of all 4 (its own, and its peers' as copies): conntrack_size = 262144 holds about 65536 live flows per node without evicting one; size it for the whole mesh's live flows (4 x one node's), on every node"]
        );
        let alone = Config::from_toml_str("interface = \"eth0\"\n", "test").unwrap();
        assert!(warnings(&alone).is_empty());
    }
}
