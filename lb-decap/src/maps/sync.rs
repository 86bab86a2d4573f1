//! `Maps::sync`: the maps made to say what the settings say, written in
//! place in an order that never opens a gap, and put back as they were if
//! a write fails. Apart from the per-map writes it orders (`hash_writes`,
//! `trie_writes`).

use std::{collections::HashSet, net::IpAddr};

use anyhow::Context as _;
use aya::maps::MapData;
use lb_common::{
    decap::{names, DecapAddr, DecapConfig, DECAP_ADDRS_MAX, DECAP_F_SOURCES, DECAP_VIPS_MAX},
    VipKey,
};

use super::{
    decap_addr,
    hash_writes::{add_keys, remove_stale_keys},
    trie_writes::{add_prefixes, remove_stale_prefixes},
    vip_key, Maps, PartlyApplied,
};
use crate::config::Settings;

impl<T: std::borrow::BorrowMut<MapData>> Maps<T> {
    /// Makes the maps say what `settings` says: entries added first, then
    /// the config, then stale entries removed (so sources turned on are in
    /// their tries before the flag, and the flag is off before the tries
    /// empty). A map that cannot hold its new entries next to its stale
    /// ones (a change near `DECAP_ADDRS_MAX`/`DECAP_VIPS_MAX`/
    /// `DECAP_SOURCES_MAX`) loses its stale entries first. If a write
    /// fails, the maps are put back as they were (the error says so) or,
    /// if that fails too, the error is a [`PartlyApplied`].
    pub fn sync(&mut self, settings: &Settings) -> anyhow::Result<()> {
        let want = Contents::of(settings);
        let before = self
            .contents()
            .context("reading the maps before changing them (nothing changed)")?;
        let Err(error) = self.write(&want) else {
            return Ok(());
        };
        match self.write(&before) {
            Ok(()) => Err(error.context(
                "updating the maps failed; they were put back as they were (the previous configuration stays in force)",
            )),
            Err(restore) => Err(anyhow::Error::new(PartlyApplied { error, restore })),
        }
    }

    /// What the maps hold now.
    pub(super) fn contents(&self) -> anyhow::Result<Contents> {
        let keys4 = self.sources4.keys().collect::<Result<Vec<_>, _>>();
        let keys6 = self.sources6.keys().collect::<Result<Vec<_>, _>>();
        Ok(Contents {
            addrs: self
                .addrs
                .keys()
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", names::MAP_DECAP_ADDRS))?,
            vips: self
                .vips
                .keys()
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", names::MAP_DECAP_VIPS))?,
            config: self.config()?,
            sources4: keys4
                .with_context(|| format!("reading {}", names::MAP_DECAP_SOURCES_V4))?
                .iter()
                .map(|k| (k.prefix_len(), k.data()))
                .collect(),
            sources6: keys6
                .with_context(|| format!("reading {}", names::MAP_DECAP_SOURCES_V6))?
                .iter()
                .map(|k| (k.prefix_len(), k.data()))
                .collect(),
        })
    }

    /// Writes `want` in the order `sync` describes.
    fn write(&mut self, want: &Contents) -> anyhow::Result<()> {
        add_keys(
            &mut self.addrs,
            &want.addrs,
            DECAP_ADDRS_MAX,
            names::MAP_DECAP_ADDRS,
        )?;
        add_keys(
            &mut self.vips,
            &want.vips,
            DECAP_VIPS_MAX,
            names::MAP_DECAP_VIPS,
        )?;
        // The tries hold at most DECAP_SOURCES_MAX prefixes each: an entry
        // already there is not added again, and when the new ones would not
        // fit next to the stale ones, the stale ones go first (only while
        // the check stays on: turned off, the flag goes before the tries
        // empty).
        let check_on = want.config.flags & DECAP_F_SOURCES != 0;
        add_prefixes(
            &mut self.sources4,
            &want.sources4,
            check_on,
            names::MAP_DECAP_SOURCES_V4,
        )?;
        add_prefixes(
            &mut self.sources6,
            &want.sources6,
            check_on,
            names::MAP_DECAP_SOURCES_V6,
        )?;
        self.config
            .set(0, want.config, 0)
            .with_context(|| format!("writing {}", names::MAP_DECAP_CONFIG))?;
        remove_stale_prefixes(
            &mut self.sources4,
            &want.sources4,
            names::MAP_DECAP_SOURCES_V4,
        )?;
        remove_stale_prefixes(
            &mut self.sources6,
            &want.sources6,
            names::MAP_DECAP_SOURCES_V6,
        )?;
        remove_stale_keys(&mut self.addrs, &want.addrs, names::MAP_DECAP_ADDRS)?;
        remove_stale_keys(&mut self.vips, &want.vips, names::MAP_DECAP_VIPS)?;
        Ok(())
    }
}

/// Everything `sync` writes: what the maps are to hold, or held before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Contents {
    addrs: HashSet<DecapAddr>,
    vips: HashSet<VipKey>,
    config: DecapConfig,
    sources4: HashSet<(u32, [u8; 4])>,
    sources6: HashSet<(u32, [u8; 16])>,
}

impl Contents {
    /// What `settings` asks the maps to hold.
    fn of(settings: &Settings) -> Self {
        Self {
            addrs: settings.addresses.iter().map(|a| decap_addr(*a)).collect(),
            vips: settings.vips.iter().map(vip_key).collect(),
            config: settings.config,
            sources4: settings
                .sources
                .iter()
                .filter_map(|p| match p.addr {
                    IpAddr::V4(a) => Some((u32::from(p.len), a.octets())),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            sources6: settings
                .sources
                .iter()
                .filter_map(|p| match p.addr {
                    IpAddr::V6(a) => Some((u32::from(p.len), a.octets())),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        }
    }
}
