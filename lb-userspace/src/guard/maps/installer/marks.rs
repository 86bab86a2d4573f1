//! Where the generations start when the maps held none (`VIP_GUARDS` made
//! afresh) under an adopted connection table: clear of the ACL marks the
//! adopted flows carry, so no flow skips the lists this lbd writes.

use lb_common::consts::FLOW_F_ACL_MARK;

use super::Installer;

impl Installer {
    /// When the maps held no generation (`VIP_GUARDS` made afresh, e.g.
    /// its layout changed) but the connection table was adopted, goes on
    /// from a generation chosen by the ACL marks of the adopted flows
    /// (`flags`: their entries' flags; read only then): counting from 0,
    /// the first apply's generation would carry the mark a previous lbd's
    /// generation 1 left on its flows, and those would skip a new deny
    /// list. Returns the generation taken (None: none needed).
    pub fn clear_of_marks(&mut self, flags: impl IntoIterator<Item = u32>) -> Option<u32> {
        if self.generation != 0 {
            return None;
        }
        let generation = clear_of_marks(flags)?;
        self.generation = generation;
        Some(generation)
    }
}

/// A generation the next ones after which (`next_generation`) carry no
/// ACL mark that `flags` (flow entries' flags) carry, for as many rule
/// changes as the marks allow: the marked one just before the longest run
/// of marks no flow carries, wrapping (a mark is the generation's low 24
/// bits, see `acl_mark`; 0 is none). None when no flow is marked.
fn clear_of_marks(flags: impl IntoIterator<Item = u32>) -> Option<u32> {
    const WORD: u32 = u64::BITS;
    let shift = FLOW_F_ACL_MARK.trailing_zeros();
    // The largest mark, as a generation; 1 is the smallest.
    let last = FLOW_F_ACL_MARK >> shift;
    let mut used = vec![0u64; (last / WORD + 1) as usize];
    for f in flags {
        let mark = (f & FLOW_F_ACL_MARK) >> shift;
        if mark != 0 {
            used[(mark / WORD) as usize] |= 1 << (mark % WORD);
        }
    }
    // (run of free marks after it, the marked generation it follows)
    let mut best: Option<(u32, u32)> = None;
    let (mut first, mut previous) = (None, 0);
    for (w, word) in (0u32..).zip(&used) {
        let mut bits = *word;
        while bits != 0 {
            let mark = w * WORD + bits.trailing_zeros();
            bits &= bits - 1;
            if first.is_none() {
                first = Some(mark);
            } else if best.is_none_or(|(run, _)| mark - previous - 1 > run) {
                best = Some((mark - previous - 1, previous));
            }
            previous = mark;
        }
    }
    let first = first?;
    // The run from the largest mark round to the smallest.
    let wrapped = (last - previous) + (first - 1);
    match best {
        Some((run, _)) if run > wrapped => best.map(|(_, after)| after),
        _ => Some(previous),
    }
}

#[cfg(test)]
mod tests;
