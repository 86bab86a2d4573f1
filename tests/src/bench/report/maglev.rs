//! The Maglev tables: build time, balance and flows moved, for both
//! table modes.

use std::fmt::Write as _;

use crate::bench::{
    maglev::{MaglevCase, MaglevResults},
    maglev_writes::TableWrites,
    Spread,
};

/// Build and update costs and disruption by backend count.
pub(super) fn section(out: &mut String, maglev: &MaglevResults) {
    let _ = writeln!(out, "## Maglev tables\n");
    let _ = writeln!(out, "| backends N | table M | build (ms) min / median / max | heap per build | table | imbalance (max/mean) | moved on removal | × 1/N | moved on addition |");
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for c in &maglev.cases {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} / **{:.3}** / {:.3} | {} KiB | {} KiB | {:.3} | {:.4} | {:.2} | {:.4} |",
            c.backends,
            c.table_size,
            c.build_ms.min,
            c.build_ms.median,
            c.build_ms.max,
            c.build_heap_bytes / 1024,
            c.table_bytes / 1024,
            c.imbalance,
            c.moved_on_removal,
            c.moved_on_removal / c.ideal,
            c.moved_on_addition
        );
    }
    let _ = writeln!(out, "\nWith `maglev_mode = \"minimal\"`, a change updates the table in service instead of rebuilding it (only the slots that must move move; the table then depends on the history of changes, not only on the set):\n");
    let _ = writeln!(out, "| backends N | table M | update (ms) min / median / max | imbalance after | moved on removal | × 1/N | moved on addition | × 1/(N+1) |");
    let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|");
    for c in maglev.cases.iter().filter(|c| c.update_ms.is_some()) {
        let update = c.update_ms.unwrap_or(c.build_ms);
        let ideal_add = 1.0 / (f64::from(c.backends) + 1.0);
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} / **{:.3}** / {:.3} | {:.3} | {:.4} | **{:.2}** | {:.4} | {:.2} |",
            c.backends,
            c.table_size,
            update.min,
            update.median,
            update.max,
            c.imbalance_minimal,
            c.moved_on_removal_minimal,
            c.moved_on_removal_minimal / c.ideal,
            c.moved_on_addition_minimal,
            c.moved_on_addition_minimal / ideal_add
        );
    }
    targets(out, maglev);
    if let Some(writes) = &maglev.writes {
        writes_section(out, writes);
    }
}

/// The tables written into a loaded data plane, batched against one
/// syscall per slot.
fn writes_section(out: &mut String, writes: &TableWrites) {
    let _ = writeln!(out, "Into the data plane: {} VIPs (lbd's default `max_vips`) of {} backends each, tables of {} slots, reconciled through the real `Dataplane` (`Balancer::apply`: tables built, backends, VIP entries, the slots written as lbd writes them); then the slots that reconcile wrote, written again into the same map three ways in the same round: one update syscall per slot (lbd's way before), one `BPF_MAP_UPDATE_BATCH` per table (lbd's way for a `MAGLEV` an older release pinned without `BPF_F_MMAPABLE`) and in place through the mapped map (lbd's way); the last row reads every VIP's table back the same three ways:\n", writes.vips, writes.backends, writes.table_size);
    let _ = writeln!(out, "| change | slots | reconcile (ms) min / median / max | one by one (ms) | in batches (ms) | in place (ms) | in place / one by one |");
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|");
    // (A section measured before lbd wrote in place has no such column.)
    let cell = |spread: Option<Spread>| {
        spread.map_or_else(|| "–".to_owned(), |s| format!("{:.2}", s.median))
    };
    let ratio = |per_slot: Spread, in_place: Option<Spread>| match in_place {
        Some(fast) if per_slot.median > 0.0 => format!("{:.4}×", fast.median / per_slot.median),
        _ => "–".to_owned(),
    };
    for c in &writes.changes {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} / **{:.1}** / {:.1} | {:.1} | {:.1} | {} | {} |",
            c.change,
            c.slots,
            c.apply_ms.min,
            c.apply_ms.median,
            c.apply_ms.max,
            c.per_slot_ms.median,
            c.batched_ms.median,
            cell(c.in_place_ms),
            ratio(c.per_slot_ms, c.in_place_ms)
        );
    }
    if let Some(read) = &writes.read_back {
        let _ = writeln!(
            out,
            "| every VIP's table read back (a restart in `minimal` mode) | {} | – | {:.1} | {:.1} | {} | {} |",
            read.slots,
            read.per_slot_ms.median,
            read.batched_ms.median,
            cell(read.in_place_ms),
            ratio(read.per_slot_ms, read.in_place_ms)
        );
    }
    let _ = writeln!(out);
}

/// The build target's table: N backends in M slots.
const BUILD_TARGET_AT: (u32, u32) = (1_000, 65_537);
/// Longest build of that table, ms (median).
const BUILD_TARGET_MS: f64 = 1.5;
/// Most flows one removal may move, over 1/N.
const REMOVAL_TARGET: f64 = 1.1;

/// The worst removal's moved share over 1/N among `cases` (`minimal`:
/// the in-service updates'), and the N, M it was at.
fn worst_removal(cases: &[MaglevCase], minimal: bool) -> Option<(f64, u32, u32)> {
    cases
        .iter()
        .filter(|c| !minimal || c.update_ms.is_some())
        .filter(|c| c.ideal > 0.0)
        .map(|c| {
            let moved = if minimal {
                c.moved_on_removal_minimal
            } else {
                c.moved_on_removal
            };
            (moved / c.ideal, c.backends, c.table_size)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

/// The targets, judged on the rows above.
fn targets(out: &mut String, maglev: &MaglevResults) {
    let (n, m) = BUILD_TARGET_AT;
    let build = maglev
        .cases
        .iter()
        .find(|c| c.backends == n && c.table_size == m)
        .map_or_else(
            || "not measured".to_owned(),
            |c| {
                format!(
                    "median {} ms: {}",
                    super::beside_target(c.build_ms.median, BUILD_TARGET_MS, 3),
                    verdict(c.build_ms.median <= BUILD_TARGET_MS)
                )
            },
        );
    let removal = |minimal: bool| {
        worst_removal(&maglev.cases, minimal).map_or_else(
            || "not measured".to_owned(),
            |(ratio, n, m)| {
                format!(
                    "worst {} × 1/N (N = {n}, M = {m}): {}",
                    super::beside_target(ratio, REMOVAL_TARGET, 2),
                    verdict(ratio <= REMOVAL_TARGET)
                )
            },
        )
    };
    let _ = writeln!(
        out,
        "\nTargets: 1,000 backends at M = 65,537 built in ≤ {BUILD_TARGET_MS} ms ({build}); flows moved on one removal ≤ {REMOVAL_TARGET} × 1/N, every row: `consistent` {}; `minimal` {}.\n",
        removal(false),
        removal(true)
    );
    let _ = writeln!(out, "The default (`consistent`) keeps every table a pure function of the backend set, so two nodes with the same backends agree on every slot whatever happened before (a failover moves no untracked flow); none of the pure-function constructions we tried with Maglev's balance comes close to 1/N at N = 1,000. `minimal`'s tables drift apart between nodes that saw different sequences of changes, which only matters for flows the connection table does not hold.\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Spread;

    fn case(n: u32, m: u32, build: f64, moved: f64, moved_minimal: f64) -> MaglevCase {
        let ideal = 1.0 / f64::from(n);
        MaglevCase {
            backends: n,
            table_size: m,
            build_ms: Spread::of(&[build]),
            build_heap_bytes: 0,
            table_bytes: u64::from(m) * 4,
            imbalance: 1.0,
            moved_on_removal: moved * ideal,
            moved_on_removal_minimal: moved_minimal * ideal,
            moved_on_addition_minimal: ideal,
            update_ms: Some(Spread::of(&[0.1])),
            imbalance_minimal: 1.0,
            moved_on_addition: ideal,
            ideal,
        }
    }

    #[test]
    fn the_targets_are_judged_from_the_rows() {
        let mut out = String::new();
        let results = MaglevResults {
            cases: vec![
                case(100, 65_537, 0.2, 1.3, 1.0),
                case(1_000, 65_537, 1.2, 2.4, 1.02),
            ],
            writes: None,
        };
        section(&mut out, &results);
        assert!(out.contains("(median 1.200 ms: met)"), "{out}");
        assert!(
            out.contains("`consistent` worst 2.40 × 1/N (N = 1000, M = 65537): **not met**; `minimal` worst 1.02 × 1/N (N = 1000, M = 65537): met."),
            "{out}"
        );
        assert!(!out.contains("`minimal` meets the target"), "{out}");
        let mut out = String::new();
        let results = MaglevResults {
            cases: vec![case(1_000, 65_537, 1.9, 2.4, 1.25)],
            writes: None,
        };
        section(&mut out, &results);
        assert!(out.contains("(median 1.900 ms: **not met**)"), "{out}");
        assert!(
            out.contains("`minimal` worst 1.25 × 1/N (N = 1000, M = 65537): **not met**"),
            "{out}"
        );
        let mut out = String::new();
        section(
            &mut out,
            &MaglevResults {
                cases: vec![case(10, 65_537, 0.1, 1.0, 1.0)],
                writes: None,
            },
        );
        assert!(out.contains("built in ≤ 1.5 ms (not measured)"), "{out}");
    }

    #[test]
    fn a_value_just_over_its_target_is_not_printed_as_the_target() {
        let mut out = String::new();
        let results = MaglevResults {
            cases: vec![case(1_000, 65_537, 1.5004, 2.4, 1.1004)],
            writes: None,
        };
        section(&mut out, &results);
        assert!(out.contains("(median 1.5004 ms: **not met**)"), "{out}");
        assert!(
            out.contains("`minimal` worst 1.1004 × 1/N (N = 1000, M = 65537): **not met**"),
            "{out}"
        );
    }

    #[test]
    fn the_table_writes_are_shown_beside_their_per_slot_cost() {
        let mut out = String::new();
        let row = |change: &str, slots, apply, per_slot, batched| {
            crate::bench::maglev_writes::WriteCase {
                change: change.to_owned(),
                slots,
                apply_ms: Spread::of(&[apply]),
                per_slot_ms: Spread::of(&[per_slot]),
                batched_ms: Spread::of(&[batched]),
                in_place_ms: Some(Spread::of(&[batched / 100.0])),
            }
        };
        let results = MaglevResults {
            cases: vec![case(100, 65_537, 0.2, 1.3, 1.0)],
            writes: Some(TableWrites {
                vips: 16,
                backends: 3,
                table_size: 65_537,
                changes: vec![
                    row(
                        "every VIP added (whole tables)",
                        1_048_592,
                        120.0,
                        900.0,
                        90.0,
                    ),
                    row("it comes back", 0, 1.0, 0.0, 0.0),
                ],
                read_back: Some(crate::bench::maglev_writes::ReadCase {
                    slots: 1_048_592,
                    per_slot_ms: Spread::of(&[1000.0]),
                    batched_ms: Spread::of(&[50.0]),
                    in_place_ms: Some(Spread::of(&[2.0])),
                }),
            }),
        };
        section(&mut out, &results);
        assert!(out.contains("Into the data plane: 16 VIPs"), "{out}");
        for row in [
            "| every VIP added (whole tables) | 1048592 | 120.0 / **120.0** / 120.0 | 900.0 | 90.0 | 0.90 | 0.0010× |",
            "| it comes back | 0 | 1.0 / **1.0** / 1.0 | 0.0 | 0.0 | 0.00 | – |",
            "| every VIP's table read back (a restart in `minimal` mode) | 1048592 | – | 1000.0 | 50.0 | 2.00 | 0.0020× |",
        ] {
            assert!(out.contains(row), "{row}\n{out}");
        }
    }
}
