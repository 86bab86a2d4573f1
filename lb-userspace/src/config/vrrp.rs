//! The `[[vrrp]]` tables: VRRPv3 instances that decide which node holds
//! the VIPs, how a node that cannot serve gives them away, and the
//! connection-table replication between the two nodes.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Checker, ConfigError};

/// One VRRP instance (one address family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// Virtual router id, 1..=255, the same on every node of the instance.
    pub vrid: u8,
    /// This node's priority, 1..=254 (255: it owns the addresses).
    pub priority: u8,
    /// Advertisement interval (a multiple of 10 ms, 10 ms..=40.95 s).
    pub advert_interval: Duration,
    /// Whether a higher-priority backup takes over from a live master.
    pub preempt: bool,
    /// How long after start a backup waits before preempting.
    pub preempt_delay: Duration,
    /// Addresses the instance moves (empty: every VIP address of the
    /// family of the first VIP... resolved by lbd as all VIP addresses of
    /// `family`).
    pub addresses: Vec<IpAddr>,
    /// Send adverts to these peers instead of the multicast group.
    pub unicast_peers: Vec<IpAddr>,
    /// Gratuitous ARPs / neighbour advertisements sent on becoming master.
    pub announce_count: u32,
    /// Time between them.
    pub announce_interval: Duration,
    /// Run on every transition: `notify STATE VRID` (STATE is master,
    /// backup or stopped).
    pub notify: Option<PathBuf>,
    /// Priority lost while the XDP program is not attached.
    pub track_dataplane: u8,
    /// Priority lost while the interface is down.
    pub track_interface: u8,
    /// Priority lost per VIP that has no healthy backend.
    pub track_no_backend: u8,
    /// Connection-table replication: where this node listens.
    pub sync_listen: Option<SocketAddr>,
    /// Connection-table replication: the other node.
    pub sync_peer: Option<SocketAddr>,
    /// Shared secret of the replication channel (at least 16 bytes).
    pub sync_key_file: Option<PathBuf>,
}

/// A `[[vrrp]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vrrp]] table")]
pub(super) struct RawVrrp {
    vrid: Option<Spanned<Value>>,
    priority: Option<Spanned<Value>>,
    advert_interval_ms: Option<Spanned<Value>>,
    preempt: Option<Spanned<Value>>,
    preempt_delay_ms: Option<Spanned<Value>>,
    addresses: Option<Spanned<Value>>,
    unicast_peers: Option<Spanned<Value>>,
    announce_count: Option<Spanned<Value>>,
    announce_interval_ms: Option<Spanned<Value>>,
    notify: Option<Spanned<Value>>,
    track_dataplane: Option<Spanned<Value>>,
    track_interface: Option<Spanned<Value>>,
    track_no_backend: Option<Spanned<Value>>,
    sync_listen: Option<Spanned<Value>>,
    sync_peer: Option<Spanned<Value>>,
    sync_key_file: Option<Spanned<Value>>,
}

impl super::TableName for RawVrrp {
    const NAME: &'static str = "vrrp";
}

impl RawVrrp {
    /// Whether the table lists its addresses (else it takes every VIP
    /// address of its family).
    pub(super) fn lists_addresses(&self) -> bool {
        self.addresses.is_some()
    }

    /// Whether the table configures connection-table replication.
    pub(super) fn replicates(&self) -> bool {
        self.sync_listen.is_some() || self.sync_peer.is_some()
    }
}

impl Checker<'_> {
    fn boolean(&self, value: &Spanned<Value>, field: &str) -> Result<bool, ConfigError> {
        match value.get_ref() {
            Value::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type(value, field, "true or false")),
        }
    }

    pub(super) fn address_list(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let Value::Array(items) = value.get_ref() else {
            return Err(self.wrong_type(value, field, "an array of addresses"));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let spanned = Spanned::new(value.span(), item.clone());
            let address = self.address(&spanned, &format!("{field}[{i}]"))?;
            if out.contains(&address) {
                return Err(self.bad_value(value, field, format!("{address} is listed twice")));
            }
            out.push(address);
        }
        Ok(out)
    }

    pub(super) fn socket_address(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let s = self.string(value, field)?;
        s.parse()
            .map_err(|_| self.bad_value(value, field, format!("{s:?} is not ADDRESS:PORT")))
    }

    pub(super) fn absolute_path(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<PathBuf, ConfigError> {
        let s = self.string(value, field)?;
        if !s.starts_with('/') {
            return Err(self.bad_value(value, field, format!("{s:?} is not an absolute path")));
        }
        Ok(PathBuf::from(s))
    }

    pub(super) fn vrrp(
        &self,
        index: usize,
        raw: &Spanned<RawVrrp>,
    ) -> Result<VrrpConfig, ConfigError> {
        let table = raw.span().start;
        let raw = raw.get_ref();
        let field = |name: &str| format!("vrrp[{index}].{name}");
        let vrid = self.integer(
            self.required(&raw.vrid, table, &field("vrid"))?,
            &field("vrid"),
            1..=255u8,
        )?;
        let priority = match &raw.priority {
            None => 100,
            Some(v) => self.integer(v, &field("priority"), 1..=255u8)?,
        };
        let advert_interval = match &raw.advert_interval_ms {
            None => Duration::from_secs(1),
            Some(v) => {
                let ms: u32 = self.integer(v, &field("advert_interval_ms"), 10..=40_950)?;
                if !ms.is_multiple_of(10) {
                    return Err(self.bad_value(
                        v,
                        &field("advert_interval_ms"),
                        format!("{ms} is not a multiple of 10 (VRRPv3 counts centiseconds)"),
                    ));
                }
                Duration::from_millis(ms.into())
            }
        };
        let preempt = match &raw.preempt {
            None => true,
            Some(v) => self.boolean(v, &field("preempt"))?,
        };
        let millis = |v: &Option<Spanned<Value>>,
                      name: &str,
                      default: u32,
                      max: u32|
         -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(
                match v {
                    None => default,
                    Some(v) => self.integer(v, &field(name), 0..=max)?,
                }
                .into(),
            ))
        };
        let preempt_delay = millis(&raw.preempt_delay_ms, "preempt_delay_ms", 0, 3_600_000)?;
        let addresses = match &raw.addresses {
            None => Vec::new(),
            Some(v) => self.address_list(v, &field("addresses"))?,
        };
        if addresses.len() > 255 {
            return Err(self.invalid(
                table,
                &field("addresses"),
                "at most 255 addresses fit an advertisement",
            ));
        }
        if let (Some(first), Some(v)) = (addresses.first(), &raw.addresses) {
            if addresses.iter().any(|a| a.is_ipv4() != first.is_ipv4()) {
                return Err(self.bad_value(
                    v,
                    &field("addresses"),
                    "mixes IPv4 and IPv6: use one [[vrrp]] per family",
                ));
            }
        }
        let unicast_peers = match &raw.unicast_peers {
            None => Vec::new(),
            Some(v) => self.address_list(v, &field("unicast_peers"))?,
        };
        let announce_count = match &raw.announce_count {
            None => 3,
            Some(v) => self.integer(v, &field("announce_count"), 0..=100u32)?,
        };
        let announce_interval = millis(
            &raw.announce_interval_ms,
            "announce_interval_ms",
            1000,
            10_000,
        )?;
        let notify = match &raw.notify {
            None => None,
            Some(v) => Some(self.absolute_path(v, &field("notify"))?),
        };
        let weight =
            |v: &Option<Spanned<Value>>, name: &str, default: u8| -> Result<u8, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(v) => self.integer(v, &field(name), 0..=254u8),
                }
            };
        let track_dataplane = weight(&raw.track_dataplane, "track_dataplane", 100)?;
        let track_interface = weight(&raw.track_interface, "track_interface", 100)?;
        let track_no_backend = weight(&raw.track_no_backend, "track_no_backend", 50)?;
        let sync_listen = match &raw.sync_listen {
            None => None,
            Some(v) => Some(self.socket_address(v, &field("sync_listen"))?),
        };
        let sync_peer = match &raw.sync_peer {
            None => None,
            Some(v) => Some(self.socket_address(v, &field("sync_peer"))?),
        };
        let sync_key_file = match &raw.sync_key_file {
            None => None,
            Some(v) => Some(self.absolute_path(v, &field("sync_key_file"))?),
        };
        if (sync_listen.is_some() || sync_peer.is_some()) && sync_key_file.is_none() {
            return Err(self.invalid(
                table,
                &field("sync_key_file"),
                "connection-table replication needs a shared key: set sync_key_file",
            ));
        }
        Ok(VrrpConfig {
            vrid,
            priority,
            advert_interval,
            preempt,
            preempt_delay,
            addresses,
            unicast_peers,
            announce_count,
            announce_interval,
            notify,
            track_dataplane,
            track_interface,
            track_no_backend,
            sync_listen,
            sync_peer,
            sync_key_file,
        })
    }
}
