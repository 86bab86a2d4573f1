//! The node-wide settings the program reads (`CONFIG`: the MAC frames
//! leave from and the node flags; `IDLE_HORIZONS`), written keeping what
//! the maps hold.

use lb_common::{
    consts::{names, CONFIG_F_SYN_FLOOD},
    flow_table,
};

use super::{flows::FlowStore, map_error, Dataplane, MapWriter as _, Result};

impl Dataplane {
    /// Sets the MAC forwarded frames leave from, keeping the node flags
    /// the maps hold (adopted ones included).
    pub fn set_iface_mac(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut config = self
            .config
            .get(&0, 0)
            .map_err(|e| map_error("reading", names::MAP_CONFIG, e))?;
        config.iface_mac = mac;
        self.set_config(&config)
    }

    /// Sets the connection table's idle horizons (`tcp_idle_timeout_s`,
    /// `udp_idle_timeout_s`): a TCP flow idle past `tcp` is over for a SYN
    /// on its tuple and for eviction, a UDP flow idle past `udp` is over
    /// for its next packet (which takes Maglev's pick of now) and for
    /// eviction. Takes effect at the next packet; until lbd writes them
    /// the data plane keeps 15 minutes for both. At least 2 s each
    /// (`flow_table::MIN_IDLE_HORIZON_NS`).
    pub fn set_idle_horizons(
        &mut self,
        tcp: std::time::Duration,
        udp: std::time::Duration,
    ) -> Result<()> {
        let ticks = |d: std::time::Duration| {
            flow_table::horizon_ticks(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        };
        let word = flow_table::idle_horizons_word(ticks(tcp), ticks(udp));
        self.idle_horizons
            .set(0, word, 0)
            .map_err(|e| map_error("writing", names::MAP_IDLE_HORIZONS, e))?;
        // lbd's own inserts (replicas, carried-over and re-placed flows)
        // judge full buckets as the data plane now does.
        if let FlowStore::Buckets(table) = &self.flows {
            table.set_idle_horizons(flow_table::idle_horizons_of(word));
        }
        Ok(())
    }

    /// Sets or clears SYN-flood mode (`CONFIG_F_SYN_FLOOD`: SYNs to the
    /// half-open table alone), keeping the other node flags.
    pub fn set_syn_flood(&mut self, flood: bool) -> Result<()> {
        self.set_config_flag(CONFIG_F_SYN_FLOOD, flood)
    }

    /// Sets or clears node flag `flag` (`CONFIG_F_*`) in the maps,
    /// keeping the others.
    pub(super) fn set_config_flag(&mut self, flag: u8, on: bool) -> Result<()> {
        let mut config = self
            .config
            .get(&0, 0)
            .map_err(|e| map_error("reading", names::MAP_CONFIG, e))?;
        if on {
            config.flags |= flag;
        } else {
            config.flags &= !flag;
        }
        self.set_config(&config)
    }
}
