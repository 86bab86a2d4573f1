//! Connection-table replication of a VRRP pair: `sync_listen`, `sync_peer`
//! and `sync_key_file` make sense only together.

use std::net::SocketAddr;

use super::super::{Checker, ConfigError};
use super::RawVrrp;

impl Checker<'_> {
    /// A VRRP pair replicates only with both ends set (the daemon starts
    /// nothing otherwise, without a word), to another address than its own,
    /// and a key file is of use only then.
    pub(super) fn pair_replication(
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
}
