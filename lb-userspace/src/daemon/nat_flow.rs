//! `lbctl flow` for a NAT VIP: the flow's translation as the NAT table
//! holds it (both directions, state, age). A pure function of the
//! explanation the DSR rules give (Maglev's pick for a flow the table does
//! not hold), the flow's forward and reply entries and the time, following
//! the data plane: a packet whose forward entry exists follows it; the
//! connection and half-open tables play no part.

use std::{net::SocketAddr, time::Duration};

use lb_common::{nat::NatFlowState, FlowKey, NatEntry};

use super::flow::{backend_by_id, explain, Facts};
use crate::{
    api::flow_schema::{FlowDecision, FlowExplanation, NatTranslation, NatTuple},
    reconcile::words_addr,
};

/// The socket address of `words`/`port` (network order) in `family`.
fn socket(words: [u32; 4], port: u16, family: u8) -> SocketAddr {
    SocketAddr::new(words_addr(words, family), u16::from_be(port))
}

/// The translation of the flow keyed `key` whose forward entry is
/// `forward` and reply entry `reply` (None: missing), at `now_ns`.
pub fn translation(
    key: &FlowKey,
    forward: &NatEntry,
    reply: Option<&NatEntry>,
    now_ns: u64,
) -> NatTranslation {
    let translated = NatTuple {
        src: socket(forward.src, forward.sport, key.family),
        dst: socket(forward.dst, forward.dport, key.family),
    };
    let reply_flags = reply.map_or(0, |r| r.flags);
    let newest = reply.map_or(forward.last_seen_ns, |r| {
        r.last_seen_ns.max(forward.last_seen_ns)
    });
    NatTranslation {
        forward: translated,
        reply: NatTuple {
            src: translated.dst,
            dst: translated.src,
        },
        state: NatFlowState::of(key.proto, forward.flags, reply_flags),
        age_s: Duration::from_nanos(now_ns.saturating_sub(newest)).as_secs_f64(),
        backend_id: forward.backend_id,
        reply_entry: reply.is_some(),
    }
}

/// `explanation` (the DSR rules' answer for the same flow) for a NAT VIP:
/// a flow whose translation exists goes where it says; one without gets
/// Maglev's pick (its first packet, a SYN for TCP, would be translated to
/// that backend; any other TCP packet is dropped as `drop_nat_no_flow`).
/// The connection and half-open tables play no part for a NAT VIP: an
/// entry there (left from before the VIP switched to NAT) is not followed.
pub fn with_translation(
    mut explanation: FlowExplanation,
    facts: &Facts<'_>,
    key: &FlowKey,
    forward: Option<&NatEntry>,
    reply: Option<&NatEntry>,
) -> FlowExplanation {
    let Some(forward) = forward else {
        // The DSR rules' answer without either table: Maglev's pick.
        return explain(&Facts {
            entry: None,
            half_open: None,
            ..*facts
        });
    };
    explanation.entry = None;
    explanation.half_open = None;
    explanation.new_connection = None;
    let nat = translation(key, forward, reply, facts.now_ns);
    explanation.decision = FlowDecision::Tracked;
    // The entry's id, if it still names the backend the flow goes to: a
    // removed backend's id may have gone to the next backend added while
    // the reaper has not yet freed its flows.
    let sent_to = words_addr(forward.dst, key.family);
    explanation.backend =
        backend_by_id(facts, nat.backend_id, None).filter(|b| b.address == sent_to);
    explanation.maglev = None;
    explanation.dropped = None;
    explanation.nat = Some(nat);
    explanation
}

#[cfg(test)]
mod tests {
    use lb_common::consts::{
        IPPROTO_TCP, NAT_DIR_FORWARD, NAT_DIR_REPLY, NAT_F_REPLIED, NAT_F_SYN,
    };

    use super::*;
    use crate::reconcile::addr_words;

    fn words(a: &str) -> [u32; 4] {
        addr_words(a.parse().unwrap()).0
    }

    #[test]
    fn a_translation_shows_both_directions_state_and_age() {
        let key = FlowKey {
            src: words("198.18.1.10"),
            dst: words("198.18.0.100"),
            sport: 40_000u16.to_be(),
            dport: 80u16.to_be(),
            proto: IPPROTO_TCP,
            family: 4,
            _pad: 0,
        };
        let forward = NatEntry {
            src: words("198.18.0.50"),
            dst: words("198.19.2.11"),
            sport: 2_001u16.to_be(),
            dport: 8_080u16.to_be(),
            backend_id: 4,
            last_seen_ns: 10_000_000_000,
            flags: NAT_F_SYN,
            direction: NAT_DIR_FORWARD,
            ..NatEntry::default()
        };
        let reply = NatEntry {
            last_seen_ns: 11_000_000_000,
            flags: NAT_F_SYN | NAT_F_REPLIED,
            direction: NAT_DIR_REPLY,
            ..NatEntry::default()
        };
        let t = translation(&key, &forward, Some(&reply), 13_500_000_000);
        assert_eq!(t.forward.src, "198.18.0.50:2001".parse().unwrap());
        assert_eq!(t.forward.dst, "198.19.2.11:8080".parse().unwrap());
        assert_eq!(t.reply.src, "198.19.2.11:8080".parse().unwrap());
        assert_eq!(t.reply.dst, "198.18.0.50:2001".parse().unwrap());
        assert_eq!(t.state, NatFlowState::TcpEstablished);
        assert!((t.age_s - 2.5).abs() < 1e-9, "{}", t.age_s);
        assert!(t.reply_entry);
        let half = translation(&key, &forward, None, 13_500_000_000);
        assert_eq!(
            (half.state, half.reply_entry),
            (NatFlowState::TcpSynSent, false)
        );
        assert!((half.age_s - 3.5).abs() < 1e-9);
    }
}
