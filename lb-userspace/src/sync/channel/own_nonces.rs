//! The handshake nonces this process issued recently. A Hello carrying
//! one of them comes from this very process: its sender reached its own
//! listener (a templated config whose peer is the node itself). Both ends
//! of such a connection would authenticate (same key, same transcript),
//! so a node would look "connected" to itself and, in a mesh, its own
//! dump would count as a peer's; checking the nonce refuses that without
//! a change on the wire. A nonce counts as ours only with the node id it
//! was issued under: one lbd has one node id, so a self-connection
//! always matches, while tests that run both nodes in one process
//! (different ids) are not refused.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use crate::sync::wire::{self, Nonce};

/// How many recent nonces are kept: far more than the handshakes a
/// process has in flight at once (15 peers, a listener of 16 + 16), so a
/// nonce is still known when its own connection's other end reads it.
const KEPT: usize = 1024;

static ISSUED: Mutex<VecDeque<(Nonce, String)>> = Mutex::new(VecDeque::new());

/// A fresh nonce, marked with the `versions` its Hello's sender speaks
/// (see [`wire::version`]), remembered as this process's, sent by
/// `node_id`.
pub(super) fn issue(node_id: &str, versions: wire::Versions) -> Nonce {
    let mut nonce = wire::new_nonce();
    wire::mark_nonce(&mut nonce, versions);
    let mut issued = ISSUED.lock().unwrap_or_else(PoisonError::into_inner);
    if issued.len() >= KEPT {
        issued.pop_front();
    }
    issued.push_back((nonce, node_id.to_owned()));
    nonce
}

/// Whether this process issued `nonce` (recently) in a handshake of
/// `node_id`, i.e. of this very node.
pub(super) fn is_ours(nonce: &Nonce, node_id: &str) -> bool {
    ISSUED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|(n, id)| n == nonce && id == node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_nonces_are_recognised_and_bounded() {
        let first = issue("lb-x", wire::Versions::RELEASE);
        assert!(is_ours(&first, "lb-x"));
        assert!(!is_ours(&first, "lb-y"), "another node's");
        assert!(!is_ours(&wire::new_nonce(), "lb-x"));
        for _ in 0..KEPT {
            issue("lb-x", wire::Versions::RELEASE);
        }
        assert!(!is_ours(&first, "lb-x"), "the oldest are forgotten");
        assert!(ISSUED.lock().unwrap().len() <= KEPT);
    }
}
