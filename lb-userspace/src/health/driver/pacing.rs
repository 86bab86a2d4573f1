//! When probes run: the start delay spread over the interval by the key's
//! hash, and the jitter that keeps checks begun together from probing in
//! lockstep.

use std::{
    fmt::Debug,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use super::super::machine::HealthMachine;

/// How long a task sleeps after a probe: the wait the machine asks for,
/// moved by the jitter, so checks that began together (a restart, a
/// reload, many backends added at once) drift apart rather than probe in
/// lockstep forever.
pub(super) fn next_wait(machine: &HealthMachine, jitter: &mut Jitter) -> Duration {
    jitter.spread(machine.next_check_in())
}

/// How far the jitter moves a wait, either way, in thousandths of it.
const JITTER_PER_MILLE: u128 = 100;

/// A small pseudo-random source for the jitter (SplitMix64): no
/// cryptographic need, and seeded, so tests can fix it.
#[derive(Debug, Clone)]
pub(super) struct Jitter {
    state: u64,
}

impl Jitter {
    pub(super) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next number of the sequence.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `wait` moved by an amount drawn evenly within ±10 % of it.
    fn spread(&mut self, wait: Duration) -> Duration {
        let nanos = wait.as_nanos();
        let reach = nanos * JITTER_PER_MILLE / 1000;
        if reach == 0 {
            return wait;
        }
        let offset = u128::from(self.next_u64()) % (2 * reach + 1);
        Duration::from_nanos(u64::try_from(nanos - reach + offset).unwrap_or(u64::MAX))
    }
}

/// The delay before a task's first probe: a fixed spread over the whole
/// of `interval` (the wait the machine asks for next: short while health
/// is unknown or in doubt) taken from the key's hash, so many backends
/// set up at once are probed evenly over it rather than bunched, and a
/// restart spreads them the same way, yet none waits longer than its
/// checks would.
pub(super) fn start_delay<K: Hash>(key: &K, interval: Duration) -> Duration {
    let spread = interval.as_nanos();
    if spread == 0 {
        return Duration::ZERO;
    }
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let nanos = u128::from(hasher.finish()) % spread;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}
