//! The `sync_frame` target: frames of the replication channel, after a
//! real handshake.

use super::*;

/// The shared key of the `sync_frame` target's session.
pub(super) const SYNC_KEY: &[u8] = b"lbd fuzz sync key, 32 bytes long";
/// The handshake of the `sync_frame` target's session.
pub(super) const SYNC_MASTER_NONCE: wire::Nonce = [1; wire::NONCE_LEN];
pub(super) const SYNC_BACKUP_NONCE: wire::Nonce = [2; wire::NONCE_LEN];

pub(super) fn sync_transcript() -> Transcript<'static> {
    Transcript {
        master_nonce: &SYNC_MASTER_NONCE,
        backup_nonce: &SYNC_BACKUP_NONCE,
        master_id: "lb-a",
        backup_id: "lb-b",
    }
}

/// The replication channel's decoder on an arbitrary byte stream: frames
/// are split off one by one; each body opens (as the backup's opener of the
/// fixed test session would) or fails without a panic, and decodes to a
/// message that encodes back to the same bytes, or fails; a decoded Batch,
/// NatBatch, Heartbeat, ConfigDigest or BackendStates sealed by the
/// master's side opens on the backup's side to the same message.
pub fn sync_frame(data: &[u8]) {
    let transcript = sync_transcript();
    let (mut sealer, _) = wire::session(SYNC_KEY, Role::Master, &transcript).expect("session");
    let (_, mut opener) = wire::session(SYNC_KEY, Role::Backup, &transcript).expect("session");
    let (_, mut reopener) = wire::session(SYNC_KEY, Role::Backup, &transcript).expect("session");
    let mut rest = data;
    while let Ok((body, after)) = wire::split_frame(rest) {
        rest = after;
        let _ = opener.open(body);
        let Ok(message) = Message::decode(body) else {
            continue;
        };
        assert_eq!(
            message.encode().as_deref(),
            Ok(body),
            "{} re-encodes differently",
            message.kind()
        );
        let sealed = match &message {
            Message::Batch {
                full_sync,
                last,
                records,
                ..
            } => sealer.batch(*full_sync, *last, records),
            Message::NatBatch {
                full_sync,
                last,
                records,
                ..
            } => sealer.nat_batch(*full_sync, *last, records),
            Message::Heartbeat { .. } => sealer.heartbeat(),
            Message::ConfigDigest { vips, .. } => sealer.config_digest(vips),
            Message::BackendStates { states, .. } => sealer.backend_states(states),
            Message::Hello { .. } | Message::HelloAck { .. } => continue,
        }
        .expect("a decoded message seals");
        let seq = sealer.next_seq() - 1;
        let (sealed_body, tail) = wire::split_frame(&sealed).expect("a sealed frame splits");
        assert!(tail.is_empty());
        let opened = reopener.open(sealed_body).expect("a sealed frame opens");
        let expected = match message {
            Message::Batch {
                full_sync,
                last,
                records,
                ..
            } => Message::Batch {
                seq,
                full_sync,
                last,
                records,
            },
            Message::NatBatch {
                full_sync,
                last,
                records,
                ..
            } => Message::NatBatch {
                seq,
                full_sync,
                last,
                records,
            },
            Message::ConfigDigest { vips, .. } => Message::ConfigDigest { seq, vips },
            Message::BackendStates { states, .. } => Message::BackendStates { seq, states },
            _ => Message::Heartbeat { seq },
        };
        assert_eq!(opened, expected);
    }
}
