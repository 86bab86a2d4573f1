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

use super::{Checker, ConfigError};

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
    listen: Option<Spanned<Value>>,
    peers: Option<Spanned<Value>>,
    key_file: Option<Spanned<Value>>,
}

impl Checker<'_> {
    /// The `[sync]` table (None when absent).
    pub(super) fn sync(
        &self,
        raw: Option<&Spanned<RawSync>>,
    ) -> Result<Option<SyncSettings>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let table = raw.span().start;
        let raw = raw.get_ref();
        let listen = self.socket_address(
            self.required(&raw.listen, table, "sync.listen")?,
            "sync.listen",
        )?;
        let peers_value = self.required(&raw.peers, table, "sync.peers")?;
        let Value::Array(items) = peers_value.get_ref() else {
            return Err(self.wrong_type(peers_value, "sync.peers", "an array of ADDRESS:PORT"));
        };
        let mut peers = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("sync.peers[{i}]");
            let peer =
                self.socket_address(&Spanned::new(peers_value.span(), item.clone()), &field)?;
            if peers.contains(&peer) {
                return Err(self.bad_value(
                    peers_value,
                    "sync.peers",
                    format!("{peer} is listed twice"),
                ));
            }
            if peer == listen {
                return Err(self.bad_value(
                    peers_value,
                    "sync.peers",
                    format!("{peer} is this node's own sync.listen"),
                ));
            }
            peers.push(peer);
        }
        if peers.is_empty() {
            return Err(self.bad_value(
                peers_value,
                "sync.peers",
                "is empty: list the other nodes",
            ));
        }
        if peers.len() > MAX_SYNC_PEERS {
            return Err(self.bad_value(
                peers_value,
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
