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

use super::{raw::Items, Checker, ConfigError};

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
        super::vrrp::list_item(self.peers.as_ref(), index)
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
