//! The handshake nonces this process issued. A Hello carrying one of
//! them comes from this very process: its sender reached its own
//! listener (a templated config whose peer is the node itself), or a man
//! in the middle replays the node's own Hello at its listener to have it
//! authenticate itself. Both ends of such a connection would authenticate
//! (same key, same transcript), so a node would look "connected" to
//! itself and, in a mesh, its own dump would count as a peer's; checking
//! the nonce refuses that without a change on the wire. A nonce counts as
//! ours only with the node id it was issued under: one lbd has one node
//! id, so a self-connection always matches, while tests that run both
//! nodes in one process (different ids) are not refused.
//!
//! Nothing is remembered: each nonce carries a tag, keyed by a secret of
//! this process, over the node id and the rest of the nonce. A history
//! of recent nonces would be flushed by anyone who reaches the listener
//! (every connection issues one), after which a replayed Hello would
//! pass.

use std::{io::Read, ops::Range, sync::OnceLock};

use sha2::{Digest, Sha256};

use crate::sync::wire::{self, version::MARK_AT, Nonce};

/// Where the tag sits in a nonce: the 8 bytes before the version mark
/// (which stays readable); the 12 bytes before it stay random. A nonce of
/// another process matches by chance once in 2^64.
const TAG: Range<usize> = MARK_AT - 8..MARK_AT;

/// This process's secret for the tags: from the OS, or (should
/// `/dev/urandom` be unreadable) from the handshake nonce generator.
fn secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut secret));
        if read.is_err() {
            secret = wire::new_nonce();
        }
        secret
    })
}

/// The tag of `nonce` (its bytes outside [`TAG`]) issued by `node_id`.
fn tag(nonce: &Nonce, node_id: &str) -> [u8; TAG.end - TAG.start] {
    let mut digest = Sha256::new();
    digest.update(b"lbd-sync own nonce\0");
    digest.update(secret());
    digest.update(
        u64::try_from(node_id.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    digest.update(node_id.as_bytes());
    digest.update(nonce.get(..TAG.start).unwrap_or_default());
    digest.update(nonce.get(TAG.end..).unwrap_or_default());
    let mut tag = [0; TAG.end - TAG.start];
    for (byte, value) in tag.iter_mut().zip(digest.finalize()) {
        *byte = value;
    }
    tag
}

/// A fresh nonce, marked with the `versions` its Hello's sender speaks
/// (see [`wire::version`]), tagged as this process's, sent by `node_id`.
pub(super) fn issue(node_id: &str, versions: wire::Versions) -> Nonce {
    let mut nonce = wire::new_nonce();
    wire::mark_nonce(&mut nonce, versions);
    let tag = tag(&nonce, node_id);
    if let Some(at) = nonce.get_mut(TAG) {
        at.copy_from_slice(&tag);
    }
    nonce
}

/// Whether this process issued `nonce` in a handshake of `node_id`,
/// i.e. of this very node.
pub(super) fn is_ours(nonce: &Nonce, node_id: &str) -> bool {
    nonce.get(TAG) == Some(&tag(nonce, node_id)[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_nonces_are_recognised_by_their_node_id() {
        let first = issue("lb-x", wire::Versions::RELEASE);
        assert!(is_ours(&first, "lb-x"));
        assert!(!is_ours(&first, "lb-y"), "another node's");
        assert!(!is_ours(&wire::new_nonce(), "lb-x"));
        let mut marked = wire::new_nonce();
        wire::mark_nonce(&mut marked, wire::Versions::RELEASE);
        assert!(!is_ours(&marked, "lb-x"), "a peer's nonce");
    }

    /// Anyone who reaches the listener makes this process issue a nonce
    /// per connection: a history of the last ones would be flushed by a
    /// burst of connections, and the node's own Hello, replayed at its
    /// own listener afterwards, would pass for a peer's. A nonce is
    /// recognised however many were issued since.
    #[test]
    fn own_nonces_are_recognised_however_many_were_issued_since() {
        let first = issue("lb-flush", wire::Versions::RELEASE);
        for _ in 0..4 * 1024 {
            issue("lb-flush", wire::Versions::RELEASE);
        }
        assert!(is_ours(&first, "lb-flush"));
        assert!(!is_ours(&first, "lb-flush2"), "another node id's");
        assert_eq!(
            wire::nonce_versions(&first),
            Some(wire::Versions::RELEASE),
            "the version mark is kept"
        );
        for byte in 0..wire::NONCE_LEN {
            let mut changed = first;
            changed[byte] ^= 1;
            assert!(!is_ours(&changed, "lb-flush"), "byte {byte} changed");
        }
    }
}
