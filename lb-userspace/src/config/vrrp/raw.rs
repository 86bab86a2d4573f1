//! A `[[vrrp]]` table as the file writes it, and where each of its values
//! sits, so later checks (here and in `validate`) point at the right key.

use serde::Deserialize;
use toml::{Spanned, Value};

use super::super::raw::{list_item, Items};

/// A `[[vrrp]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vrrp]] table")]
pub(in crate::config) struct RawVrrp {
    pub(in crate::config) vrid: Option<Spanned<Value>>,
    pub(in crate::config) priority: Option<Spanned<Value>>,
    pub(in crate::config) advert_interval_ms: Option<Spanned<Value>>,
    pub(in crate::config) preempt: Option<Spanned<Value>>,
    pub(in crate::config) preempt_delay_ms: Option<Spanned<Value>>,
    pub(in crate::config) addresses: Option<Spanned<Items>>,
    pub(in crate::config) unicast_peers: Option<Spanned<Items>>,
    pub(in crate::config) unicast_peer_hops: Option<Spanned<Value>>,
    pub(in crate::config) unicast_src_ip: Option<Spanned<Value>>,
    pub(in crate::config) announce_count: Option<Spanned<Value>>,
    pub(in crate::config) announce_interval_ms: Option<Spanned<Value>>,
    pub(in crate::config) announce_refresh_ms: Option<Spanned<Value>>,
    pub(in crate::config) notify: Option<Spanned<Value>>,
    pub(in crate::config) track_dataplane: Option<Spanned<Value>>,
    pub(in crate::config) track_interface: Option<Spanned<Value>>,
    pub(in crate::config) track_no_backend: Option<Spanned<Value>>,
    pub(in crate::config) sync_listen: Option<Spanned<Value>>,
    pub(in crate::config) sync_peer: Option<Spanned<Value>>,
    pub(in crate::config) sync_key_file: Option<Spanned<Value>>,
}

impl super::super::TableName for RawVrrp {
    const NAME: &'static str = "vrrp";
}

impl RawVrrp {
    /// Whether the table lists its addresses (else it takes every VIP
    /// address of its family).
    pub(in crate::config) fn lists_addresses(&self) -> bool {
        self.addresses.is_some()
    }

    /// Whether the table configures connection-table replication.
    pub(in crate::config) fn replicates(&self) -> bool {
        self.sync_listen.is_some() || self.sync_peer.is_some()
    }

    /// The first replication key written (sync_listen, sync_peer or
    /// sync_key_file), to point at when a second table replicates too.
    pub(in crate::config) fn replication_key(&self) -> Option<&Spanned<Value>> {
        self.sync_listen
            .as_ref()
            .or(self.sync_peer.as_ref())
            .or(self.sync_key_file.as_ref())
    }

    /// Item `index` of the written `addresses`, to point errors at it.
    pub(in crate::config) fn address_item(&self, index: usize) -> Option<&Spanned<Value>> {
        list_item(self.addresses.as_ref(), index)
    }

    /// Item `index` of `unicast_peers`, to point errors at it.
    pub(in crate::config) fn peer_item(&self, index: usize) -> Option<&Spanned<Value>> {
        list_item(self.unicast_peers.as_ref(), index)
    }
}
