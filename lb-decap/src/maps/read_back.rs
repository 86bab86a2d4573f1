//! What the maps hold, read back for `status` (and the tests): the
//! counters summed over CPUs, the addresses, VIPs and source prefixes
//! sorted, the config entry.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::maps::MapData;
use lb_common::decap::{names, DecapConfig, DecapCounter};

use super::{ip_of, Maps};
use crate::{config::Vip, sources::Prefix};

impl<T: std::borrow::BorrowMut<MapData>> Maps<T> {
    /// Every counter, summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<(DecapCounter, u64)>> {
        DecapCounter::ALL
            .iter()
            .map(|c| {
                let values = self
                    .counters
                    .get(&(*c as u32), 0)
                    .with_context(|| format!("reading counter {}", c.name()))?;
                Ok((*c, values.iter().sum()))
            })
            .collect()
    }

    /// The addresses in `DECAP_ADDRS`.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut list: Vec<IpAddr> = self
            .addrs
            .keys()
            .filter_map(Result::ok)
            .filter_map(|a| ip_of(a.family, a.addr))
            .collect();
        list.sort();
        list
    }

    /// The VIPs in `DECAP_VIPS`.
    pub fn vips(&self) -> Vec<Vip> {
        let mut list: Vec<Vip> = self
            .vips
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| {
                Some(Vip {
                    addr: ip_of(k.family, k.addr)?,
                    port: u16::from_be(k.port),
                    proto: k.proto,
                })
            })
            .collect();
        list.sort();
        list
    }

    /// The prefixes in `DECAP_SOURCES_V4` and `DECAP_SOURCES_V6`.
    pub fn sources(&self) -> Vec<Prefix> {
        let v4 = self.sources4.keys().filter_map(Result::ok).map(|k| Prefix {
            addr: IpAddr::from(k.data()),
            len: k.prefix_len() as u8,
        });
        let v6 = self.sources6.keys().filter_map(Result::ok).map(|k| Prefix {
            addr: IpAddr::from(k.data()),
            len: k.prefix_len() as u8,
        });
        let mut list: Vec<Prefix> = v4.chain(v6).collect();
        list.sort();
        list
    }

    /// `DECAP_CONFIG`'s entry.
    pub fn config(&self) -> anyhow::Result<DecapConfig> {
        self.config
            .get(&0, 0)
            .with_context(|| format!("reading {}", names::MAP_DECAP_CONFIG))
    }
}
