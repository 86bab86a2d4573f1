//! Where a new NAT flow's source-port search probes: one function for the
//! data plane's search (`lb-ebpf` `nat::ports`) and the model test below
//! that says why it probes this way.
//!
//! A range of at most [`LINEAR_MAX`] ports is probed linearly from the
//! flow's hash, so every attempt tries another port (and a range of at
//! most `NAT_PORT_ATTEMPTS` is searched completely); scattered attempts
//! would meet the same port again too often there (16 draws from 17
//! ports reach about 11). A larger range is probed at offsets scattered
//! by the hash and the attempt: linear probes would
//! meet the runs of taken ports earlier flows left behind (primary
//! clustering). In the model (a range kept 70 % used, the oldest flow
//! freed for each new one) 1.5 % of new flows found no free port among
//! 16 linear probes and about 0.25 % among scattered ones, which is what
//! 16 independent probes give (0.7^16 ≈ 0.33 %; the checksum-neutral
//! port tried first makes 17).

use crate::consts::NAT_PORT_ATTEMPTS;

/// The largest range probed linearly: four times the attempts.
pub const LINEAR_MAX: u32 = 4 * NAT_PORT_ATTEMPTS;

/// Offset in a range of `range` ports (1..=65536) of the search's attempt
/// `attempt` for a flow of `hash`.
#[inline(always)]
pub fn probe_offset(hash: u32, attempt: u32, range: u32) -> u32 {
    // In 64 bits: a wrapped sum would skip ports of a range that does not
    // divide 2^32.
    let at = if range <= LINEAR_MAX {
        u64::from(hash) + u64::from(attempt)
    } else {
        u64::from(scattered(hash, attempt))
    };
    (at % u64::from(range.max(1))) as u32
}

/// The hash and the attempt mixed (murmur3's finaliser after a golden-ratio
/// multiply), so one flow's attempts land apart and flows with near hashes
/// do not follow each other.
#[inline(always)]
fn scattered(hash: u32, attempt: u32) -> u32 {
    let x = (hash ^ attempt.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
    let x = (x ^ (x >> 13)).wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::{collections::VecDeque, vec, vec::Vec};

    use super::*;

    #[test]
    fn a_small_range_is_searched_completely() {
        for range in 1..=NAT_PORT_ATTEMPTS {
            for hash in [0, 1, 7, 0xffff_fffe, 0xdead_beef] {
                let mut seen: Vec<u32> = (0..range).map(|i| probe_offset(hash, i, range)).collect();
                seen.sort_unstable();
                assert_eq!(
                    seen,
                    (0..range).collect::<Vec<_>>(),
                    "range {range} hash {hash}"
                );
            }
        }
    }

    #[test]
    fn every_attempt_tries_another_port_in_a_small_range() {
        for range in NAT_PORT_ATTEMPTS + 1..=LINEAR_MAX {
            for hash in [0, 1, 7, 0xffff_fffe, 0xdead_beef] {
                let mut seen: Vec<u32> = (0..NAT_PORT_ATTEMPTS)
                    .map(|i| probe_offset(hash, i, range))
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), NAT_PORT_ATTEMPTS as usize, "range {range}");
            }
        }
    }

    #[test]
    fn offsets_stay_in_the_range() {
        for range in [17, 1000, 64_512, 65_536] {
            for hash in (0..10_000u32).map(|h| h.wrapping_mul(2_654_435_761)) {
                for attempt in 0..NAT_PORT_ATTEMPTS {
                    assert!(probe_offset(hash, attempt, range) < range);
                }
            }
        }
    }

    /// xorshift64: the model's flows' hashes and neutral ports.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u32
        }
    }

    /// Share (per 100,000) of new flows that found no port in a range of
    /// `range` kept `per_cent` used, the oldest flow leaving for each new
    /// one: the neutral port (here random) first, then 16 attempts at
    /// `offset(hash, attempt)`.
    fn failures(range: u32, per_cent: u32, offset: impl Fn(u32, u32) -> u32) -> u64 {
        let target = (range * per_cent / 100) as usize;
        let mut used = vec![false; range as usize];
        let mut held = VecDeque::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut tried, mut failed) = (0u64, 0u64);
        for step in 0..400_000u32 {
            while held.len() >= target {
                if let Some(port) = held.pop_front() {
                    used[port as usize] = false;
                }
            }
            let hash = rng.next();
            let neutral = rng.next() % range;
            let found = core::iter::once(neutral)
                .chain((0..NAT_PORT_ATTEMPTS).map(|i| offset(hash, i)))
                .find(|&port| !used[port as usize]);
            if step >= 200_000 {
                tried += 1;
                failed += u64::from(found.is_none());
            }
            if let Some(port) = found {
                used[port as usize] = true;
                held.push_back(port);
            }
        }
        failed * 100_000 / tried
    }

    #[test]
    fn scattered_probes_fail_as_seldom_as_independent_ones() {
        let range = 64_512;
        let linear = failures(range, 70, |hash, i| hash.wrapping_add(i) % range);
        let scattered = failures(range, 70, |hash, i| probe_offset(hash, i, range));
        // 0.7^17 ≈ 233 per 100,000; linear probing clusters.
        assert!(scattered < 400, "scattered: {scattered} per 100,000");
        assert!(linear > 1000, "linear: {linear} per 100,000");
    }
}
