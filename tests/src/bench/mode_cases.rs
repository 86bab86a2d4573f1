//! The per-packet cases of the forwarding modes beside DSR (`nat`,
//! `tunnel`): one shape for both sections of the results file, so the
//! report reads them alike.

use serde::{Deserialize, Serialize};

use super::Spread;

/// One measured case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeCase {
    /// What was measured.
    pub name: String,
    /// `xdp` or `tc`.
    pub hook: String,
    /// ns per packet over the rounds.
    pub ns_per_packet: Spread,
    /// Runs per round.
    pub repeat: u32,
    /// Rounds.
    pub rounds: u32,
    /// ns per packet of each round, in the order they ran (empty in older
    /// results): compared cases ran round by round, so a comparison can
    /// be made within each round (`paired`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_round: Vec<f64>,
}

impl ModeCase {
    /// `op(self, other)` round by round (the rounds ran side by side, see
    /// `interleaved`), if both cases kept as many rounds.
    pub fn paired(&self, other: &ModeCase, op: impl Fn(f64, f64) -> f64) -> Option<Spread> {
        if self.per_round.is_empty() || self.per_round.len() != other.per_round.len() {
            return None;
        }
        let values: Vec<f64> = self
            .per_round
            .iter()
            .zip(&other.per_round)
            .map(|(a, b)| op(*a, *b))
            .collect();
        Some(Spread::of(&values))
    }
}

/// One mode's cases (NAT's or the tunnels'), with DSR's measured beside
/// them in the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeResults {
    /// When it was measured (UTC): a partial `--only nat` or `--only
    /// tunnel` run leaves the other sections of the results file from
    /// their own runs.
    #[serde(default)]
    pub date: String,
    /// The cases.
    pub cases: Vec<ModeCase>,
}

impl ModeResults {
    /// The median of case `name` at `hook`, if measured.
    pub fn median(&self, name: &str, hook: &str) -> Option<f64> {
        self.case(name, hook).map(|c| c.ns_per_packet.median)
    }

    /// Case `name` at `hook`, if measured.
    pub fn case(&self, name: &str, hook: &str) -> Option<&ModeCase> {
        self.cases.iter().find(|c| c.name == name && c.hook == hook)
    }
}
