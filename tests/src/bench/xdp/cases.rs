//! The cases: each a frame, the path it takes through the program, and
//! the outcome and counter N runs must give.

use super::*;

fn flow(src: &str, dst: &str, dport: u16) -> Flow {
    Flow {
        src: src.parse().expect("address"),
        dst: dst.parse().expect("address"),
        sport: 40000,
        dport,
    }
}

/// A case: which program, which packet, what every run must do.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) path: &'static str,
    pub(crate) target: &'static str,
    pub(crate) frame: Vec<u8>,
    pub(crate) vary_offset: u32,
    pub(crate) action: u32,
    pub(crate) counter: Option<Counter>,
    /// Counters the case's runs must leave as they were (the paths it
    /// names rule them out: a first ACK's "half-open miss" promotes no
    /// half-open flow).
    pub(crate) untouched: &'static [Counter],
}

/// What a new flow's SYN may not do to the half-open table: take the
/// place of a flow held there (the case measures a pick and an insert,
/// not an eviction).
pub(crate) const NO_EVICTION: &[Counter] = &[
    Counter::ConntrackHalfOpenEvicted,
    Counter::ConntrackHalfOpenExpired,
];

impl Case {
    /// Runs per batch when the case's SYNs are held half-open and may
    /// evict nothing (`NO_EVICTION` among its untouched counters): its
    /// rounds run in batches of `SYN_BATCH`, each from an empty half-open
    /// table (`Bench::measure_batched`), as a round of all its SYNs at
    /// once would fill that table on the shared LRU. None for the others
    /// (the SYN-flood case's evictions are what it measures).
    pub(crate) fn half_open_batch(&self) -> Option<u32> {
        let no_eviction = NO_EVICTION.iter().all(|c| self.untouched.contains(c));
        (self.vary_offset != 0
            && self.counter == Some(Counter::ConntrackHalfOpenNew)
            && no_eviction)
            .then_some(SYN_BATCH)
    }

    pub(crate) fn new_flow(&self) -> bool {
        self.vary_offset != 0
            && matches!(
                self.counter,
                Some(Counter::ConntrackNew | Counter::ConntrackHalfOpenNew)
            )
    }

    /// The same case with the client's ACK instead of its SYN: a flow
    /// first seen mid-handshake goes straight into the connection table
    /// (a SYN is held as a handshake, apart from the LRU), so the designs of the
    /// connection table are compared on these.
    pub(crate) fn into_first_ack(mut self) -> Self {
        const FLAGS: usize = 13;
        let ip_len = if self.frame[12..14] == [0x86, 0xdd] {
            40
        } else {
            20
        };
        // ACK only; the checksum changes by the flags word's difference.
        let at = 14 + ip_len + FLAGS;
        let (old, new) = (u16::from(self.frame[at]), u16::from(ACK_FLAGS));
        self.frame[at] = ACK_FLAGS;
        let csum_at = 14 + ip_len + 16;
        let csum = u16::from_be_bytes([self.frame[csum_at], self.frame[csum_at + 1]]);
        let sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        self.frame[csum_at..csum_at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        self.name = match self.name {
            NEW_V4 => FIRST_ACK_V4,
            NEW_V6 => FIRST_ACK_V6,
            other => other,
        };
        self.path = "parse, VIP hit, conntrack miss, half-open miss, Maglev, conntrack insert, TX";
        self.counter = Some(Counter::ConntrackNew);
        self.untouched = &[Counter::ConntrackHalfOpenPromoted];
        self
    }
}

/// The TCP flags byte of a bare ACK.
const ACK_FLAGS: u8 = 0x10;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
pub(crate) const XDP_TX: u32 = 3;

pub(crate) fn cases() -> Vec<Case> {
    let v4 = flow("198.18.0.10", VIP4, 80);
    let v6 = flow("2001:2::10", VIP6, 80);
    let udp = flow("198.18.0.10", VIP4, 53);
    let other = flow("198.18.0.10", "198.18.0.2", 80);
    // Offsets of the source address: a new flow on every run.
    const V4_SRC: u32 = 14 + 12;
    const V6_SRC_LOW: u32 = 14 + 8 + 12;
    vec![
        Case {
            name: WRAPPER_FLOOR,
            path: "restore + tail call to XDP_PASS",
            target: names::PROG_PASS,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: 0,
            action: XDP_PASS,
            counter: None,
            untouched: &[],
        },
        Case {
            name: "MAC swap + XDP_TX floor",
            path: "restore + tail call to a MAC swap",
            target: names::PROG_SWAP,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: None,
            untouched: &[],
        },
        Case {
            name: NEW_V4,
            path: "parse, VIP hit, conntrack miss, half-open miss, Maglev, handshake insert (buckets: a free way of the connection table; LRU: the half-open table, evicting none), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, SYN, None, b""),
            vary_offset: V4_SRC,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
            untouched: NO_EVICTION,
        },
        Case {
            name: TRACKED_V4,
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
            untouched: &[],
        },
        Case {
            name: "UDP v4 to a VIP, tracked",
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::udp(&udp, None, b"query"),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
            untouched: &[],
        },
        Case {
            name: NEW_V6,
            path: "parse, VIP hit, conntrack miss, half-open miss, Maglev, handshake insert (buckets: a free way of the connection table; LRU: the half-open table, evicting none), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, SYN, None, b""),
            vary_offset: V6_SRC_LOW,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
            untouched: NO_EVICTION,
        },
        Case {
            name: TRACKED_V6,
            path: "parse, VIP hit, conntrack hit, TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
            untouched: &[],
        },
        Case {
            name: NON_VIP,
            path: "parse, VIP miss, PASS",
            target: names::PROG_LB,
            frame: packet::tcp(&other, ACK, None, b""),
            vary_offset: 0,
            action: XDP_PASS,
            counter: Some(Counter::PassNotVip),
            untouched: &[],
        },
    ]
}

/// The guards' cases (run after `Bench::guard`).
pub(crate) fn guarded_cases() -> Vec<Case> {
    let v4 = flow("198.18.0.10", VIP4, 80);
    let v6 = flow("2001:2::10", VIP6, 80);
    let denied = flow("198.18.66.7", VIP4, 80);
    const V4_SRC: u32 = 14 + 12;
    const V6_SRC_LOW: u32 = 14 + 8 + 12;
    vec![
        Case {
            name: DENIED_V4,
            path: "parse, VIP hit, cached deny verdict, DROP",
            target: names::PROG_LB,
            frame: packet::tcp(&denied, SYN, None, b""),
            vary_offset: 0,
            action: XDP_DROP,
            counter: Some(Counter::DropAclDenied),
            untouched: &[],
        },
        Case {
            name: DENIED_V4_FLOOD,
            path: "parse, VIP hit, cache miss, deny rule hit, DROP",
            target: names::PROG_LB,
            // The varied source is the run counter: 0.x.y.z, denied.
            frame: packet::tcp(&denied, SYN, None, b""),
            vary_offset: V4_SRC,
            action: XDP_DROP,
            counter: Some(Counter::DropAclDenied),
            untouched: &[],
        },
        Case {
            name: TRACKED_V4_GUARDED,
            path: "parse, VIP hit, conntrack hit (its ACL mark current: lists skipped), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v4, ACK, None, b""),
            vary_offset: 0,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHit),
            untouched: &[],
        },
        Case {
            name: NEW_V6_GUARDED,
            path: "parse, VIP hit, cache miss, deny miss, allow hit, conntrack miss, half-open miss, Maglev, 2 new token buckets, handshake insert (evicting none), TX",
            target: names::PROG_LB,
            frame: packet::tcp(&v6, SYN, None, b""),
            vary_offset: V6_SRC_LOW,
            action: XDP_TX,
            counter: Some(Counter::ConntrackHalfOpenNew),
            untouched: NO_EVICTION,
        },
    ]
}

/// The new-flow v4 case's flow with ACK instead of SYN (the same varied
/// field, so a replayed round sends the ACKs of a SYN round's flows).
pub(crate) fn ack_frame() -> Vec<u8> {
    packet::tcp(&flow("198.18.0.10", VIP4, 80), ACK, None, b"")
}

/// The main pass's cases: `cases()` and, after each new-flow SYN, the
/// same flow's first ACK (an insert into the connection table, which the
/// SYN's half-open hold leaves to it: where the designs differ).
pub(super) fn pass_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for case in cases() {
        let first_ack = (case.name == NEW_V4 || case.name == NEW_V6).then(|| case.clone());
        out.push(case);
        if let Some(ack) = first_ack {
            out.push(ack.into_first_ack());
        }
    }
    out
}

/// `NEW_V4`'s SYN as a flood SYN in SYN-flood mode (`NEW_V4_SYN_FLOOD`;
/// the mode is put on around the case, `runs::run_syn_flood`).
pub(super) fn syn_flood_case() -> anyhow::Result<Case> {
    let syn = cases()
        .into_iter()
        .find(|c| c.name == NEW_V4)
        .ok_or_else(|| anyhow!("no case {NEW_V4}"))?;
    Ok(Case {
        name: NEW_V4_SYN_FLOOD,
        path: "SYN-flood mode (`CONFIG_F_SYN_FLOOD`): parse, VIP hit, conntrack miss, half-open miss, Maglev, half-open table insert (never the connection table: its flow count checked unchanged; the round fills the half-open table, then each SYN evicts one), TX",
        untouched: &[Counter::ConntrackNew, Counter::ConntrackHalfOpenPromoted],
        ..syn
    })
}
