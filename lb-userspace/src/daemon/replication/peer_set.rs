//! The configured peers as a set: one sender started per peer (from this
//! node's listen address where that works), and a reload's changes of
//! `[sync] peers` applied to a running node. Apart from the driver: it is
//! the one place that starts and stops senders.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use tracing::{debug, info, warn};

use super::{peers::Peer, Replication};
use crate::sync::{self, SyncConfig, SyncStats};

/// Longest a sender to a peer a reload removed writes what is queued
/// before it closes.
const REMOVED_PEER_CLOSE: Duration = Duration::from_secs(5);

impl Replication {
    /// A reload's `[sync] peers` (a full mesh's: a pair's peer waits for
    /// a restart): starts a sender to each new peer and lets it shake
    /// hands, stops the senders of those no longer listed (each writes
    /// what is queued first) and refuses them from the next connection.
    /// A node thus joins or leaves a running mesh with a reload of the
    /// others, no restart. A new peer's session gets the full dump as any
    /// new session does. Returns what changed, for the log and the
    /// reload's answer (empty when nothing did).
    pub(crate) fn set_peers(&mut self, wanted: &[SocketAddr]) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut added = Vec::new();
        for &address in wanted {
            if !self.peers.iter().any(|p| p.address() == address) {
                added.push(start_peer(self.listen, address, &self.config)?);
            }
        }
        let (kept, removed): (Vec<Peer>, Vec<Peer>) = std::mem::take(&mut self.peers)
            .into_iter()
            .partition(|p| wanted.contains(&p.address()));
        self.peers = kept;
        for peer in &added {
            notes.push(format!(
                "sync peer {} added: this node streams its flows to it and lets it connect",
                peer.address()
            ));
        }
        self.peers.extend(added);
        for peer in removed {
            notes.push(format!(
                "sync peer {} removed: this node stops streaming to it and refuses its connections (a session it holds to this node ends when it stops or drops this node too)",
                peer.address()
            ));
            self.retired.absorb(&peer.stats());
            tokio::spawn(async move {
                let (address, closed) = peer.close(REMOVED_PEER_CLOSE).await;
                debug!(peer = %address, ?closed, "connection-table sync to a removed peer closed");
            });
        }
        if !notes.is_empty() {
            let addresses: Vec<IpAddr> = self.peers.iter().map(|p| p.address().ip()).collect();
            self._listener.set_sources(sync::Sources::Peers(addresses));
            for note in &notes {
                info!("{note}");
            }
        }
        Ok(notes)
    }

    /// The configured peers' addresses, in order.
    pub(crate) fn peer_addresses(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(Peer::address).collect()
    }
}

/// Starts the sender to `address`, from `listen`'s address where that
/// works (see [`sender_source`]).
pub(super) fn start_peer(
    listen: SocketAddr,
    address: SocketAddr,
    config: &SyncConfig,
) -> anyhow::Result<Peer> {
    if is_own_address(address.ip()) {
        warn!(peer = %address, "a connection-table sync peer is one of this node's own addresses: this node would sync with itself (its listener refuses it); check sync_peer / sync.peers");
    }
    let stats = Arc::new(SyncStats::new());
    let sender = match sender_source(listen, address) {
        Some(source) => sync::Sender::start_from(address, source, config.clone(), stats.clone()),
        None => sync::Sender::start(address, config.clone(), stats.clone()),
    }
    .with_context(|| format!("connection-table sync to {address}"))?;
    Ok(Peer::new(address, sender, stats))
}

/// The address a sender to `peer` connects from: this node's listen
/// address, which the peer lists as this node's (its listener admits
/// only those), when it is one address of the peer's family; else the
/// route's pick (`sync_listen = "0.0.0.0:…"`). The port is the kernel's
/// pick; an IPv6 listen address keeps its scope (`[fe80::1%2]`), without
/// which Linux refuses to bind a link-local address.
pub(super) fn sender_source(listen: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    let ip = listen.ip();
    if ip.is_unspecified() || ip.is_ipv4() != peer.is_ipv4() {
        return None;
    }
    Some(match listen {
        SocketAddr::V4(v4) => SocketAddr::V4(std::net::SocketAddrV4::new(*v4.ip(), 0)),
        SocketAddr::V6(v6) => {
            SocketAddr::V6(std::net::SocketAddrV6::new(*v6.ip(), 0, 0, v6.scope_id()))
        }
    })
}

/// Whether `ip` is one of this host's addresses (binding it works; no
/// packet is sent): a peer there is this node itself.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}
