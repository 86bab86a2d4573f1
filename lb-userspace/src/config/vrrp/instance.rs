//! One `[[vrrp]]` table read into a [`VrrpConfig`]: each key's type, range
//! and default, and the notify program's safety.

use std::time::Duration;

use toml::{Spanned, Value};

use super::super::{Checker, ConfigError};
use super::{
    RawVrrp, VrrpConfig, MAX_ANNOUNCE_REFRESH_MS, MAX_PREEMPT_DELAY_MS, MIN_ANNOUNCE_REFRESH_MS,
};
use crate::vrrp::notify_program::{check_notify_program, NotifyProblem};

impl Checker<'_> {
    /// `[[vrrp]]` number `index` checked into a `VrrpConfig`, its
    /// settings' own rules only (the addresses it takes by default and the
    /// rules across instances and VIPs come after, in `validate`).
    pub(in crate::config) fn vrrp(
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
