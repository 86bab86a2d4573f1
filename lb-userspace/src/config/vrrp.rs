//! The `[[vrrp]]` tables: VRRPv3 instances that decide which node holds
//! the VIPs, how a node that cannot serve gives them away, and the
//! connection-table replication between the two nodes.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{raw::Items, value, Checker, ConfigError};
use crate::vrrp::notify_program::{check_notify_program, NotifyProblem};

/// The shortest `announce_refresh_ms` other than 0 (off): Linux takes a
/// gratuitous ARP for an address at most once per `locktime` (1 s).
const MIN_ANNOUNCE_REFRESH_MS: u32 = 1_000;

/// The longest `announce_refresh_ms`: a day (keepalived takes seconds).
const MAX_ANNOUNCE_REFRESH_MS: u32 = 86_400_000;

/// The longest `preempt_delay_ms`: the state machine's limit
/// (keepalived's), so what the file says is what runs.
const MAX_PREEMPT_DELAY_MS: u32 = 1_000_000;

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
    /// Routers between this node and its unicast peers, 0..=254 (0, the
    /// default: on the link): a peer's advert is taken from TTL 255 minus
    /// this up, anyone else's only at 255.
    pub unicast_peer_hops: u8,
    /// The node's own address adverts to `unicast_peers` go from, and no
    /// other (keepalived's `unicast_src_ip`): the one the peer's
    /// `unicast_peer` list names when the interface has several. `None`:
    /// the interface's primary IPv4 or first suitable global IPv6 address.
    pub unicast_src_ip: Option<IpAddr>,
    /// Gratuitous ARPs / neighbour advertisements sent on becoming master.
    pub announce_count: u32,
    /// Time between them.
    pub announce_interval: Duration,
    /// While master, one more round this often (keepalived's
    /// `garp_master_refresh`); `None` (0 in the file, the default): none.
    pub announce_refresh: Option<Duration>,
    /// Run on every transition: `notify STATE VRID FAMILY` (STATE is
    /// master, backup or stopped; FAMILY ipv4 or ipv6, also in
    /// `LBD_VRRP_FAMILY`, since one VRID may serve both families).
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

/// Warns about instances of priority 255 with tracking weights: tracking
/// never lowers 255 (the address owner's priority is fixed), so a node
/// that cannot serve keeps the VIPs, which the defaults (100, 100, 50)
/// would otherwise have given away. (With replication a 255 node still
/// waits for its peer's dump before taking the VIPs at start-up, like any
/// other: see `Machine::startup`.)
pub(super) fn owner_warnings(config: &super::Config, out: &mut Vec<super::Warning>) {
    for (index, instance) in config.vrrp.iter().enumerate() {
        if instance.priority != u8::MAX {
            continue;
        }
        let weights = [
            ("track_dataplane", instance.track_dataplane),
            ("track_interface", instance.track_interface),
            ("track_no_backend", instance.track_no_backend),
        ];
        let ignored: Vec<String> = weights
            .iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|(name, weight)| format!("{name} = {weight}"))
            .collect();
        if ignored.is_empty() {
            continue;
        }
        out.push(super::Warning {
            field: format!("vrrp[{index}].priority"),
            message: format!(
                "255 keeps this node master whatever it can serve: tracking is off ({} ignored, defaults included), so a node whose program is detached, whose link is down or whose VIPs have no healthy backend keeps the VIPs; use 254 or lower for tracking to work, or set the track_* weights to 0",
                ignored.join(", ")
            ),
        });
    }
}

/// A `[[vrrp]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vrrp]] table")]
pub(super) struct RawVrrp {
    pub(super) vrid: Option<Spanned<Value>>,
    pub(super) priority: Option<Spanned<Value>>,
    pub(super) advert_interval_ms: Option<Spanned<Value>>,
    pub(super) preempt: Option<Spanned<Value>>,
    pub(super) preempt_delay_ms: Option<Spanned<Value>>,
    pub(super) addresses: Option<Spanned<Items>>,
    pub(super) unicast_peers: Option<Spanned<Items>>,
    pub(super) unicast_peer_hops: Option<Spanned<Value>>,
    pub(super) unicast_src_ip: Option<Spanned<Value>>,
    pub(super) announce_count: Option<Spanned<Value>>,
    pub(super) announce_interval_ms: Option<Spanned<Value>>,
    pub(super) announce_refresh_ms: Option<Spanned<Value>>,
    pub(super) notify: Option<Spanned<Value>>,
    pub(super) track_dataplane: Option<Spanned<Value>>,
    pub(super) track_interface: Option<Spanned<Value>>,
    pub(super) track_no_backend: Option<Spanned<Value>>,
    pub(super) sync_listen: Option<Spanned<Value>>,
    pub(super) sync_peer: Option<Spanned<Value>>,
    pub(super) sync_key_file: Option<Spanned<Value>>,
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

    /// The first replication key written (sync_listen, sync_peer or
    /// sync_key_file), to point at when a second table replicates too.
    pub(super) fn replication_key(&self) -> Option<&Spanned<Value>> {
        self.sync_listen
            .as_ref()
            .or(self.sync_peer.as_ref())
            .or(self.sync_key_file.as_ref())
    }

    /// Item `index` of the written `addresses`, to point errors at it.
    pub(super) fn address_item(&self, index: usize) -> Option<&Spanned<Value>> {
        list_item(self.addresses.as_ref(), index)
    }

    /// Item `index` of `unicast_peers`, to point errors at it.
    pub(super) fn peer_item(&self, index: usize) -> Option<&Spanned<Value>> {
        list_item(self.unicast_peers.as_ref(), index)
    }
}

/// Item `index` of an array value, if it is an array that long.
pub(super) fn list_item(list: Option<&Spanned<Items>>, index: usize) -> Option<&Spanned<Value>> {
    match list?.get_ref() {
        Items::Array(items) => items.get(index),
        Items::Other(_) => None,
    }
}

impl Checker<'_> {
    /// An instance's `unicast_src_ip` is of its family (adverts of the
    /// other cannot leave) and an address of this node that never moves:
    /// not a VIP, a NAT address or one a `[[vrrp]]` moves (those leave
    /// with mastership, so the backup would send from an address it does
    /// not hold, and the peer's `unicast_peer` list names the node, not
    /// the VIP), nor one of its peers.
    pub(super) fn unicast_sources_are_own(
        &self,
        raw: &[Spanned<RawVrrp>],
        instances: &[VrrpConfig],
        vips: &[super::VipConfig],
        nat: &super::NatConfig,
    ) -> Result<(), ConfigError> {
        for (index, instance) in instances.iter().enumerate() {
            let (Some(source), Some(raw_vrrp)) = (instance.unicast_src_ip, raw.get(index)) else {
                continue;
            };
            let Some(v) = raw_vrrp.get_ref().unicast_src_ip.as_ref() else {
                continue;
            };
            let family_v4 = instance.addresses.first().is_none_or(IpAddr::is_ipv4);
            let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
            let moves = "which moves with VRRP: adverts go from an address of this node's own that never moves (the one the peer's unicast_peer list names)";
            let problem = if source.is_ipv4() != family_v4 {
                let why = if raw_vrrp.get_ref().lists_addresses() {
                    ""
                } else {
                    " (it lists no addresses, so it takes the family of the first VIP)"
                };
                format!(
                    "{source} is {} but vrrp[{index}] moves {} addresses{why}: adverts go from an address of the instance's family",
                    family(source.is_ipv4()),
                    family(family_v4)
                )
            } else if let Some(other) = instances.iter().position(|i| i.addresses.contains(&source))
            {
                format!("{source} is an address vrrp[{other}] moves, {moves}")
            } else if let Some(vip) = vips.iter().position(|vip| vip.address == source) {
                format!("{source} is vip[{vip}]'s address, {moves}")
            } else if let Some(vip) = vips
                .iter()
                .position(|vip| vip.nat.is_some_and(|n| n.source == source))
            {
                format!("{source} is the NAT address of vip[{vip}], {moves}")
            } else if nat.source_ipv4 == Some(source) || nat.source_ipv6 == Some(source) {
                let key = if source.is_ipv4() {
                    "source_ipv4"
                } else {
                    "source_ipv6"
                };
                format!("{source} is the [nat] {key}, {moves}")
            } else if instance.unicast_peers.contains(&source) {
                format!("{source} is one of vrrp[{index}]'s unicast_peers: give this node's own address")
            } else {
                continue;
            };
            return Err(self.bad_value(v, &format!("vrrp[{index}].unicast_src_ip"), problem));
        }
        Ok(())
    }

    /// A VRRP pair replicates only with both ends set (the daemon starts
    /// nothing otherwise, without a word), to another address than its own,
    /// and a key file is of use only then.
    fn pair_replication(
        &self,
        index: usize,
        raw: &RawVrrp,
        listen: Option<SocketAddr>,
        peer: Option<SocketAddr>,
    ) -> Result<(), ConfigError> {
        let field = |name: &str| format!("vrrp[{index}].{name}");
        match (&raw.sync_listen, &raw.sync_peer) {
            (Some(v), None) => {
                return Err(self.bad_value(
                    v,
                    &field("sync_peer"),
                    "sync_listen without sync_peer: replication needs both (sync_peer is the other node's sync_listen)",
                ))
            }
            (None, Some(v)) => {
                return Err(self.bad_value(
                    v,
                    &field("sync_listen"),
                    "sync_peer without sync_listen: replication needs both (sync_listen is where this node accepts the other's stream)",
                ))
            }
            (None, None) => {
                if let Some(v) = &raw.sync_key_file {
                    return Err(self.bad_value(
                        v,
                        &field("sync_key_file"),
                        "without sync_listen and sync_peer there is no replication to key: set them or remove sync_key_file",
                    ));
                }
            }
            (Some(_), Some(v)) => {
                if let (Some(listen), Some(peer)) = (listen, peer) {
                    if listen == peer {
                        return Err(self.bad_value(
                            v,
                            &field("sync_peer"),
                            format!("{peer} is this node's own sync_listen: sync_peer is the other node's"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn boolean(&self, value: &Spanned<Value>, field: &str) -> Result<bool, ConfigError> {
        match value.get_ref() {
            Value::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type(value, field, "true or false")),
        }
    }

    /// The items of a value meant to be an array, each with its own span
    /// (so an error points at the item), or a type error naming `expected`.
    pub(super) fn items<'v>(
        &self,
        value: &'v Spanned<Items>,
        field: &str,
        expected: &str,
    ) -> Result<&'v [Spanned<Value>], ConfigError> {
        match value.get_ref() {
            Items::Array(items) => Ok(items),
            Items::Other(other) => {
                Err(self.wrong_type(&Spanned::new(value.span(), other.clone()), field, expected))
            }
        }
    }

    /// An array of addresses, each a service address, none twice; errors
    /// name and point at the item (`vrrp[0].addresses[1]`).
    pub(super) fn address_list(
        &self,
        value: &Spanned<Items>,
        field: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let items = self.items(value, field, "an array of addresses")?;
        let mut out: Vec<IpAddr> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let name = format!("{field}[{i}]");
            if !matches!(item.get_ref(), Value::String(_)) || self.oversized(item).is_some() {
                return Err(self.wrong_type(item, &name, "an address string"));
            }
            let address = self.address(item, &name)?;
            if let Some(first) = out.iter().position(|a| *a == address) {
                return Err(self.bad_value(
                    item,
                    &name,
                    format!("{address} is listed twice (also {field}[{first}])"),
                ));
            }
            out.push(address);
        }
        Ok(out)
    }

    /// `ADDRESS:PORT` of a TCP endpoint this node listens on (`peer` false)
    /// or connects to (`peer` true), checked by [`value::socket_address`].
    pub(super) fn socket_address(
        &self,
        value: &Spanned<Value>,
        field: &str,
        peer: bool,
    ) -> Result<SocketAddr, ConfigError> {
        let s = self.string(value, field)?;
        let address: SocketAddr = s
            .parse()
            .map_err(|_| self.bad_value(value, field, format!("{s:?} is not ADDRESS:PORT")))?;
        self.checked(value, field, value::socket_address(address, peer))
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
        let preempt_delay = millis(
            &raw.preempt_delay_ms,
            "preempt_delay_ms",
            0,
            MAX_PREEMPT_DELAY_MS,
        )?;
        let addresses = match &raw.addresses {
            None => Vec::new(),
            Some(v) => {
                let list = self.address_list(v, &field("addresses"))?;
                // Refused as `bgp.addresses = []` is: taken as "every VIP
                // address", it would pass for a written list (see
                // `lists_addresses`) and slip past the rules on those.
                if list.is_empty() {
                    return Err(self.invalid(
                        v.span().start,
                        &field("addresses"),
                        "is empty: list the addresses to move, or leave it out to move every VIP address of the first VIP's family",
                    ));
                }
                list
            }
        };
        if addresses.len() > 255 {
            // At the first address past the cap, as a list's other errors.
            let (at, name) = match raw.address_item(255) {
                Some(item) => (item.span().start, field("addresses[255]")),
                None => (table, field("addresses")),
            };
            return Err(self.invalid(at, &name, "at most 255 addresses fit an advertisement"));
        }
        if let (Some(first), Some(v)) = (addresses.first(), &raw.addresses) {
            if let Some(k) = addresses
                .iter()
                .position(|a| a.is_ipv4() != first.is_ipv4())
            {
                let at = raw
                    .address_item(k)
                    .map_or(v.span().start, |i| i.span().start);
                return Err(self.invalid(
                    at,
                    &field(&format!("addresses[{k}]")),
                    format!(
                        "{} mixes IPv4 and IPv6 with {first}: use one [[vrrp]] per family",
                        addresses[k]
                    ),
                ));
            }
        }
        let unicast_peers = match &raw.unicast_peers {
            None => Vec::new(),
            Some(v) => self.address_list(v, &field("unicast_peers"))?,
        };
        let unicast_peer_hops = match &raw.unicast_peer_hops {
            None => 0,
            Some(v) => {
                let hops = self.integer(v, &field("unicast_peer_hops"), 0..=254u8)?;
                if hops > 0 && unicast_peers.is_empty() {
                    return Err(self.bad_value(
                        v,
                        &field("unicast_peer_hops"),
                        "applies to unicast_peers only: multicast adverts must arrive with TTL 255 (RFC 5798); list the peers, or leave unicast_peer_hops out",
                    ));
                }
                hops
            }
        };
        let unicast_src_ip = match &raw.unicast_src_ip {
            None => None,
            Some(v) => {
                if unicast_peers.is_empty() {
                    return Err(self.bad_value(
                        v,
                        &field("unicast_src_ip"),
                        "applies to unicast_peers only: multicast adverts go from the interface's primary (IPv4) or link-local (IPv6) address; list the peers, or leave unicast_src_ip out",
                    ));
                }
                Some(self.address(v, &field("unicast_src_ip"))?)
            }
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
        let announce_refresh = match &raw.announce_refresh_ms {
            None => None,
            Some(v) => {
                let ms: u32 = self.integer(
                    v,
                    &field("announce_refresh_ms"),
                    0..=MAX_ANNOUNCE_REFRESH_MS,
                )?;
                if ms != 0 && ms < MIN_ANNOUNCE_REFRESH_MS {
                    return Err(self.bad_value(
                        v,
                        &field("announce_refresh_ms"),
                        format!("{ms} ms is too often: 0 (off) or at least {MIN_ANNOUNCE_REFRESH_MS} ms (Linux ignores gratuitous ARPs within its 1 s locktime)"),
                    ));
                }
                (ms != 0).then(|| Duration::from_millis(ms.into()))
            }
        };
        let notify = match &raw.notify {
            None => None,
            Some(v) => {
                let program = self.absolute_path(v, &field("notify"))?;
                // Missing (not deployed yet, or a file checked elsewhere):
                // left to the same check before each run.
                if let Err(NotifyProblem::Unsafe(why)) = check_notify_program(&program) {
                    return Err(self.bad_value(
                        v,
                        &field("notify"),
                        format!("{why}: the notify program runs as root with lbd's capabilities, so only root may be able to change it or a directory above it (chown root, chmod go-w)"),
                    ));
                }
                Some(program)
            }
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
            Some(v) => Some(self.socket_address(v, &field("sync_listen"), false)?),
        };
        let sync_peer = match &raw.sync_peer {
            None => None,
            Some(v) => Some(self.socket_address(v, &field("sync_peer"), true)?),
        };
        let sync_key_file = match &raw.sync_key_file {
            None => None,
            Some(v) => Some(self.absolute_path(v, &field("sync_key_file"))?),
        };
        self.pair_replication(index, raw, sync_listen, sync_peer)?;
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
            unicast_peer_hops,
            unicast_src_ip,
            announce_count,
            announce_interval,
            announce_refresh,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
    use crate::test_scratch::ScratchDir;

    fn vrrp_with(line: &str) -> Result<Config, String> {
        let text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vrrp]]\nvrid = 51\n{line}\n"
        );
        Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
    }

    /// The warnings about `vrrp[...].priority`.
    fn priority_warnings(config: &Config) -> Vec<String> {
        super::super::warnings(config)
            .into_iter()
            .filter(|w| w.field.ends_with(".priority"))
            .map(|w| w.to_string())
            .collect()
    }

    #[test]
    fn priority_255_with_tracking_is_warned_about() {
        let config = vrrp_with("priority = 255").expect("valid");
        assert_eq!(
            priority_warnings(&config),
            ["vrrp[0].priority: 255 keeps this node master whatever it can serve: tracking is off (track_dataplane = 100, track_interface = 100, track_no_backend = 50 ignored, defaults included), so a node whose program is detached, whose link is down or whose VIPs have no healthy backend keeps the VIPs; use 254 or lower for tracking to work, or set the track_* weights to 0"]
        );
        let some = vrrp_with(
            "priority = 255
track_dataplane = 0
track_no_backend = 0",
        )
        .expect("valid");
        let warned = priority_warnings(&some);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("(track_interface = 100 ignored"),
            "{warned:?}"
        );
        // Tracking off by hand, or a priority tracking lowers: no warning.
        let off = vrrp_with(
            "priority = 255
track_dataplane = 0
track_interface = 0
track_no_backend = 0",
        )
        .expect("valid");
        assert_eq!(priority_warnings(&off), Vec::<String>::new());
        let tracked = vrrp_with("priority = 254").expect("valid");
        assert_eq!(priority_warnings(&tracked), Vec::<String>::new());
    }

    #[test]
    fn preempt_delay_is_refused_past_what_the_machine_runs() {
        assert_eq!(
            Duration::from_millis(super::MAX_PREEMPT_DELAY_MS.into()),
            crate::vrrp::machine::MAX_PREEMPT_DELAY
        );
        let config = vrrp_with("preempt_delay_ms = 1000000").expect("the limit is fine");
        assert_eq!(config.vrrp[0].preempt_delay, Duration::from_secs(1000));
        let error = vrrp_with("preempt_delay_ms = 1000001").expect_err("past the limit");
        assert!(
            error.contains("vrrp[0].preempt_delay_ms") && error.contains("1000000"),
            "{error}"
        );
        assert!(vrrp_with("preempt_delay_ms = 3600000").is_err());
    }

    /// A written list past the 255 an advertisement holds is refused at
    /// its 256th address, named by its index.
    #[test]
    fn a_written_list_past_the_cap_is_refused_at_the_first_extra_address() {
        let list = |n: usize| {
            let items: String = (0..n)
                .map(|i| format!("  \"198.18.{}.{}\",\n", 1 + i / 200, i % 200 + 1))
                .collect();
            format!("addresses = [\n{items}]")
        };
        assert_eq!(
            vrrp_with(&list(255)).expect("255 fit").vrrp[0]
                .addresses
                .len(),
            255
        );
        let error = vrrp_with(&list(256)).expect_err("past the cap");
        // The list opens on line 7; its 256th address is 256 lines on.
        assert!(
            error.starts_with(
                "lbd.toml:263:3: vrrp[0].addresses[255]: at most 255 addresses fit an advertisement"
            ),
            "{error}"
        );
    }

    /// An empty list is refused, as `[bgp]`'s is: read as "every VIP
    /// address", it passed for a written list and slipped past the rule
    /// that refuses a default-address `[[vrrp]]` beside a default `[bgp]`.
    #[test]
    fn an_empty_address_list_is_refused() {
        let error = vrrp_with("addresses = []").expect_err("empty");
        assert!(
            error.starts_with(
                "lbd.toml:7:13: vrrp[0].addresses: is empty: list the addresses to move"
            ),
            "{error}"
        );
        let beside_bgp = vrrp_with(
            "addresses = []
[bgp]",
        )
        .expect_err("empty");
        assert!(
            beside_bgp.starts_with("lbd.toml:7:13: vrrp[0].addresses: is empty"),
            "{beside_bgp}"
        );
    }

    #[test]
    fn announce_refresh_is_off_by_default_and_at_least_a_second() {
        let config = vrrp_with("").expect("valid");
        assert_eq!(config.vrrp[0].announce_refresh, None);
        let off = vrrp_with("announce_refresh_ms = 0").expect("0 is off");
        assert_eq!(off.vrrp[0].announce_refresh, None);
        let on = vrrp_with("announce_refresh_ms = 1000").expect("valid");
        assert_eq!(on.vrrp[0].announce_refresh, Some(Duration::from_secs(1)));
        let dumped = crate::config::to_toml(&on);
        assert!(dumped.contains("announce_refresh_ms = 1000"), "{dumped}");
        assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), on);
        assert!(!crate::config::to_toml(&config).contains("announce_refresh_ms"));
        let error = vrrp_with("announce_refresh_ms = 999").expect_err("too often");
        assert!(
            error.contains("vrrp[0].announce_refresh_ms") && error.contains("at least 1000 ms"),
            "{error}"
        );
        assert!(vrrp_with("announce_refresh_ms = 86400001").is_err());
        assert!(vrrp_with("announce_refresh_ms = \"1s\"").is_err());
    }

    /// A directory of its own under the temp dir (removed on drop), made
    /// by this (root) process with mode 0755, as the labs make theirs.
    struct TempDir(ScratchDir);

    impl TempDir {
        fn new(name: &str) -> Self {
            use std::os::unix::fs::PermissionsExt as _;
            let dir = ScratchDir::new(&format!("notify-check-{name}"));
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            Self(dir)
        }

        /// A script `name` in it with `mode`.
        fn script(&self, name: &str, mode: u32) -> std::path::PathBuf {
            use std::os::unix::fs::PermissionsExt as _;
            let path = self.0.join(name);
            std::fs::write(&path, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            path
        }
    }

    fn chmod(path: &std::path::Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// The notify program runs as root with lbd's capabilities: one that
    /// another user could change is refused at load, named with its mode.
    #[test]
    fn a_notify_program_writable_by_others_is_refused() {
        let dir = TempDir::new("mode");
        let script = dir.script("notify.sh", 0o777);
        let error = vrrp_with(&format!("notify = \"{}\"", script.display()))
            .expect_err("writable by others");
        assert!(
            error.contains("vrrp[0].notify")
                && error.contains(&script.display().to_string())
                && error.contains("writable by group or others")
                && error.contains("0777"),
            "{error}"
        );
        chmod(&script, 0o775);
        assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_err());
        // As the labs write theirs: a 0755 script in a 0755 (or 0700)
        // directory made by root under the sticky /tmp.
        chmod(&script, 0o755);
        let config =
            vrrp_with(&format!("notify = \"{}\"", script.display())).expect("a safe script");
        assert_eq!(config.vrrp[0].notify.as_deref(), Some(script.as_path()));
        chmod(dir.0.path(), 0o700);
        assert_eq!(
            crate::vrrp::notify_program::check_notify_program(&script),
            Ok(())
        );
    }

    /// A directory on the path that others may write lets them swap the
    /// program: refused, unless it is sticky (like /tmp) and what follows
    /// belongs to root.
    #[test]
    fn a_directory_others_may_write_is_refused_unless_sticky() {
        let dir = TempDir::new("dir");
        let sub = dir.0.join("bin");
        std::fs::create_dir(&sub).expect("mkdir");
        chmod(&sub, 0o755);
        let script = sub.join("notify.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        chmod(&script, 0o755);
        assert_eq!(
            crate::vrrp::notify_program::check_notify_program(&script),
            Ok(())
        );
        chmod(dir.0.path(), 0o777);
        let error = vrrp_with(&format!("notify = \"{}\"", script.display()))
            .expect_err("a directory writable by others");
        assert!(
            error.contains(&dir.0.path().display().to_string())
                && error.contains("writable by group or others")
                && error.contains("0777"),
            "{error}"
        );
        chmod(dir.0.path(), 0o1777);
        assert_eq!(
            crate::vrrp::notify_program::check_notify_program(&script),
            Ok(())
        );
        chmod(dir.0.path(), 0o775);
        assert!(matches!(
            crate::vrrp::notify_program::check_notify_program(&script),
            Err(crate::vrrp::notify_program::NotifyProblem::Unsafe(_))
        ));
    }

    /// Another user's program is refused (root may chown to test it).
    #[test]
    fn a_notify_program_of_another_user_is_refused() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = TempDir::new("owner");
        let script = dir.script("notify.sh", 0o755);
        std::os::unix::fs::chown(&script, Some(65534), Some(65534)).expect("chown");
        let error =
            vrrp_with(&format!("notify = \"{}\"", script.display())).expect_err("owned by nobody");
        assert!(
            error.contains(&script.display().to_string()) && error.contains("uid 65534"),
            "{error}"
        );
        // The same for a directory on its path.
        std::os::unix::fs::chown(&script, Some(0), Some(0)).expect("chown");
        std::os::unix::fs::chown(&dir.0, Some(65534), Some(65534)).expect("chown");
        let error = crate::vrrp::notify_program::check_notify_program(&script)
            .expect_err("a directory of nobody's");
        assert!(
            matches!(&error, crate::vrrp::notify_program::NotifyProblem::Unsafe(why) if why.contains("uid 65534")),
            "{error:?}"
        );
    }

    /// A program not there yet (deployed later, or a file checked on
    /// another host) is left to the check before each run; what exists
    /// of its path is checked now.
    #[test]
    fn a_missing_notify_program_is_left_to_the_run() {
        let dir = TempDir::new("missing");
        let script = dir.0.join("notify.sh");
        assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_ok());
        assert!(matches!(
            crate::vrrp::notify_program::check_notify_program(&script),
            Err(crate::vrrp::notify_program::NotifyProblem::Missing(_))
        ));
        chmod(dir.0.path(), 0o777);
        assert!(vrrp_with(&format!("notify = \"{}\"", script.display())).is_err());
    }

    /// A document with a NAT address, an IPv4 and an IPv6 VIP, an IPv4
    /// instance moving 198.18.0.100 and 198.18.0.60 with `extra` (line 13)
    /// and an IPv6 instance with a unicast peer.
    fn src_doc(extra: &str) -> Result<Config, String> {
        let text = format!(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
             [[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\", \"198.18.0.60\"]\n{extra}\n\
             [[vrrp]]\nvrid = 52\naddresses = [\"2001:2::100\"]\nunicast_peers = [\"2001:2::3\"]\n"
        );
        Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
    }

    /// `unicast_src_ip` names the node's own address adverts to unicast
    /// peers go from (keepalived's key): off by default, dumped when set,
    /// and refused, naming the key and the instance, without unicast
    /// peers, of the other family, or on an address that moves (a VIP, a
    /// NAT or `[[vrrp]]` address) or is a peer's.
    #[test]
    fn unicast_src_ip_is_an_own_fixed_address_of_the_instance_family() {
        let peers = "unicast_peers = [\"198.18.0.3\"]";
        let none = src_doc(peers).expect("valid");
        assert!(!crate::config::to_toml(&none).contains("unicast_src_ip"));
        let set = src_doc(&format!("{peers}\nunicast_src_ip = \"198.18.0.7\""))
            .expect("an address of this node that never moves");
        let dumped = crate::config::to_toml(&set);
        assert!(
            dumped.contains("unicast_src_ip = \"198.18.0.7\""),
            "{dumped}"
        );
        assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), set);
        // A restart setting, as the rest of [[vrrp]]: a reload says so.
        assert_eq!(none.restart_only_changes(&set), vec!["vrrp"]);
        assert_eq!(set.restart_only_changes(&set), Vec::<&str>::new());
        let error = src_doc("unicast_src_ip = \"198.18.0.7\"").expect_err("no peers");
        assert!(
            error.starts_with(
                "lbd.toml:13:18: vrrp[0].unicast_src_ip: applies to unicast_peers only"
            ),
            "{error}"
        );
        for (source, detail) in [
            (
                "2001:2::7",
                "2001:2::7 is IPv6 but vrrp[0] moves IPv4 addresses",
            ),
            ("198.18.0.100", "198.18.0.100 is an address vrrp[0] moves"),
            ("198.18.0.60", "198.18.0.60 is an address vrrp[0] moves"),
            ("198.18.0.50", "198.18.0.50 is the [nat] source_ipv4"),
            ("198.18.0.3", "198.18.0.3 is one of vrrp[0]'s unicast_peers"),
            ("0.0.0.0", "unspecified"),
            ("224.0.0.18", "multicast"),
        ] {
            let error =
                src_doc(&format!("{peers}\nunicast_src_ip = \"{source}\"")).expect_err(source);
            assert!(
                error.starts_with("lbd.toml:14:18: vrrp[0].unicast_src_ip: ")
                    && error.contains(detail),
                "{source}: {error}"
            );
        }
        // The other instance's VIP, and an IPv6 instance's own family.
        let error =
            src_doc(&format!("{peers}\nunicast_src_ip = \"198.18.0.100\"")).expect_err("a VIP");
        assert!(error.contains("moves with VRRP"), "{error}");
        let v6 = |source: &str| {
            let text = format!(
                "interface = \"eth0\"\n[[vip]]\naddress = \"2001:2::100\"\nport = 80\n\
                 [[vip]]\naddress = \"2001:2::101\"\nport = 80\n\
                 [[vrrp]]\nvrid = 52\nunicast_peers = [\"2001:2::3\"]\nunicast_src_ip = \"{source}\"\n"
            );
            Config::from_toml_str(&text, "lbd.toml").map_err(|e| e.to_string())
        };
        assert!(v6("2001:2::7").is_ok());
        let error = v6("198.18.0.7").expect_err("IPv4 for IPv6");
        assert!(
            error.contains("vrrp[0].unicast_src_ip: 198.18.0.7 is IPv4 but vrrp[0] moves IPv6 addresses (it lists no addresses, so it takes the family of the first VIP)"),
            "{error}"
        );
        let error = v6("2001:2::101").expect_err("a VIP");
        assert!(
            error.contains("vrrp[0].unicast_src_ip: 2001:2::101 is an address vrrp[0] moves"),
            "{error}"
        );
        assert!(src_doc(&format!("{peers}\nunicast_src_ip = 7")).is_err());
    }

    /// TTL 255 from unicast peers too by default; `unicast_peer_hops`
    /// allows routers between them, at most 254, and is dumped when set.
    #[test]
    fn unicast_peer_hops_defaults_to_0_and_is_at_most_254() {
        let config = vrrp_with("").expect("valid");
        assert_eq!(config.vrrp[0].unicast_peer_hops, 0);
        assert!(!crate::config::to_toml(&config).contains("unicast_peer_hops"));
        let peers = "unicast_peers = [\"198.18.0.3\"]";
        let two = vrrp_with(&format!("{peers}\nunicast_peer_hops = 2")).expect("valid");
        assert_eq!(two.vrrp[0].unicast_peer_hops, 2);
        let dumped = crate::config::to_toml(&two);
        assert!(dumped.contains("unicast_peer_hops = 2"), "{dumped}");
        assert_eq!(Config::from_toml_str(&dumped, "dump").expect("dump"), two);
        assert_eq!(
            vrrp_with(&format!("{peers}\nunicast_peer_hops = 254"))
                .expect("valid")
                .vrrp[0]
                .unicast_peer_hops,
            254
        );
        let error = vrrp_with(&format!("{peers}\nunicast_peer_hops = 255")).expect_err("too many");
        assert!(
            error.contains("vrrp[0].unicast_peer_hops") && error.contains("0..=254"),
            "{error}"
        );
        assert!(vrrp_with(&format!("{peers}\nunicast_peer_hops = -1")).is_err());
        assert!(vrrp_with(&format!("{peers}\nunicast_peer_hops = \"2\"")).is_err());
        // Multicast adverts keep TTL 255: hops without peers are refused.
        let error = vrrp_with("unicast_peer_hops = 1").expect_err("no peers");
        assert!(
            error.contains("vrrp[0].unicast_peer_hops: applies to unicast_peers only"),
            "{error}"
        );
        assert_eq!(
            vrrp_with("unicast_peer_hops = 0")
                .expect("0 is the default")
                .vrrp[0]
                .unicast_peer_hops,
            0
        );
    }
}
