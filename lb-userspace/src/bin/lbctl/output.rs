//! Printing answers: tables for people, JSON with `--json`.

use std::{collections::BTreeMap, fmt::Write as _, net::IpAddr};

use lb_userspace::{
    api::schema::{Change, DrainPlan},
    model::{DrainTimeoutSource, PlanChange, VipPlan},
};
use serde::Serialize;

/// Prints `value` as pretty JSON.
pub(crate) fn json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => outln!("{text}"),
        Err(error) => eprintln!("lbctl: encoding JSON: {error}"),
    }
}

/// `value` as compact JSON on one line: one record of a stream of lines
/// (NDJSON, as `backend drain --wait --json` writes), which pretty JSON's
/// several lines would break. A value that cannot be encoded is a
/// one-line `{"error": ...}` record, so the stream stays JSON.
pub(crate) fn json_line(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|error| {
        serde_json::json!({ "error": format!("encoding JSON: {error}") }).to_string()
    })
}

/// A warning for the operator: on stderr, in text and JSON mode alike,
/// so stdout carries only results (a script reading it gets clean data;
/// with `--json` the warning is in the JSON's `warnings` as well).
pub(crate) fn warning(text: &str) {
    eprintln!("{}", warning_line(text));
}

/// A note for the operator (what to know, not something wrong): on
/// stderr, as [`warning`] is.
pub(crate) fn note(text: &str) {
    eprintln!("{}", note_line(text));
}

/// The stderr line of a [`warning`].
pub(crate) fn warning_line(text: &str) -> String {
    format!("lbctl: warning: {text}")
}

/// The stderr line of a [`note`].
pub(crate) fn note_line(text: &str) -> String {
    format!("lbctl: note: {text}")
}

/// `value` as JSON with a `warnings` array (empty when there are none)
/// holding `warnings`, after any it has: every `--json` answer of a
/// command that can warn has the key, so a script need not tell "no
/// warning" from "an older lbctl". A value that is not an object is
/// returned as it is.
pub(crate) fn with_warnings(value: &impl Serialize, warnings: &[String]) -> serde_json::Value {
    let mut value = serde_json::to_value(value)
        .unwrap_or_else(|error| serde_json::json!({ "error": format!("encoding JSON: {error}") }));
    if let Some(object) = value.as_object_mut() {
        let entry = object
            .entry("warnings")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(list) = entry.as_array_mut() {
            list.extend(warnings.iter().cloned().map(serde_json::Value::String));
        }
    }
    value
}

/// Prints what a change does (or would do): the result on stdout (JSON
/// with `--json`, its `warnings` always there), its warnings on stderr
/// too (see [`warning`]).
pub(crate) fn change(change: &Change, as_json: bool) {
    let (stdout, stderr) = change_output(change, as_json);
    out!("{stdout}");
    for line in stderr {
        eprintln!("{line}");
    }
}

/// What [`change`] prints: stdout's text, and stderr's lines (the
/// change's warnings).
fn change_output(change: &Change, as_json: bool) -> (String, Vec<String>) {
    let stderr = change.warnings.iter().map(|w| warning_line(w)).collect();
    if as_json {
        let text = serde_json::to_string_pretty(&with_warnings(change, &[]))
            .unwrap_or_else(|error| format!("{{\"error\": \"encoding JSON: {error}\"}}"));
        return (text + "\n", stderr);
    }
    (change_text(change), stderr)
}

/// A change's result as text: the plan, a drain's deadline, what a
/// reload undoes (its answer: on stdout), and whether it was a dry run.
fn change_text(change: &Change) -> String {
    let mut out = String::new();
    let verb = if change.dry_run {
        "would change"
    } else {
        "changed"
    };
    if change.plan.is_empty() {
        out.push_str("no VIP's new flows change\n");
    }
    for vip in &change.plan {
        out.push_str(&plan_text(vip, verb));
    }
    if let Some(drain) = &change.drain {
        let _ = writeln!(out, "{}", drain_deadline(drain));
    }
    if !change.undone.is_empty() {
        out.push_str(if change.dry_run {
            "the reload would undo or apply:\n"
        } else {
            "the reload undid or applied:\n"
        });
        for undone in &change.undone {
            let _ = writeln!(out, "  {undone}");
        }
    }
    if change.dry_run {
        out.push_str("(dry run: nothing was changed)\n");
    }
    out
}

/// What a change does to one VIP, as lines of text: for a VIP that stays,
/// the fraction of new flows that move and each backend's share before and
/// after; for a new or removed VIP, its backends and their shares (no flow
/// moves from one backend to another).
fn plan_text(vip: &VipPlan, verb: &str) -> String {
    let percent = |share: f64| format!("{:.2}%", share * 100.0);
    let listed = |shares: &BTreeMap<IpAddr, f64>| {
        shares
            .iter()
            .map(|(address, share)| format!("{address} {}", percent(*share)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let backends = |n: usize| if n == 1 { "backend" } else { "backends" };
    let mut out = String::new();
    match vip.change {
        PlanChange::Added => {
            let n = vip.after.len();
            let _ = write!(
                out,
                "VIP {} (added): {verb}; new VIP: {n} {}",
                vip.vip,
                backends(n)
            );
            if n > 0 {
                let _ = write!(out, ", shares {}", listed(&vip.after));
            }
            out.push('\n');
        }
        PlanChange::Removed => {
            let n = vip.before.len();
            let _ = writeln!(
                out,
                "VIP {} (removed): {verb}; removed VIP: no new flows to its {n} {}",
                vip.vip,
                backends(n)
            );
        }
        PlanChange::Changed => {
            // No backend takes new flows after it (an empty table): they
            // do not move anywhere, they are dropped.
            let what = if vip.after.values().all(|share| *share <= 0.0) {
                "new flows are dropped (no backend takes them)".to_owned()
            } else {
                let moved = vip
                    .moved_fraction
                    .map_or("an unknown share".to_owned(), percent);
                match vip.affinity {
                    // Hashed by another key: which flows move is not
                    // known, only how many do.
                    Some(change) => format!(
                        "affinity {} -> {}: about {moved} of new flows move ({})",
                        change.before.name(),
                        change.after.name(),
                        match change.after {
                            lb_common::Affinity::Source =>
                                "each client's next connections go to one backend",
                            lb_common::Affinity::Connection =>
                                "each client's next connections spread over the backends",
                        }
                    ),
                    None => format!("{moved} of new flows move"),
                }
            };
            let _ = writeln!(out, "VIP {} (changed): {verb}; {what}", vip.vip);
            let mut addresses: Vec<_> = vip.before.keys().chain(vip.after.keys()).collect();
            addresses.sort();
            addresses.dedup();
            let _ = writeln!(out, "  {:<40} {:>8} {:>8}", "backend", "before", "after");
            for address in addresses {
                let share = |m: &BTreeMap<IpAddr, f64>| {
                    m.get(address).map_or("-".to_owned(), |s| percent(*s))
                };
                let _ = writeln!(
                    out,
                    "  {:<40} {:>8} {:>8}",
                    address.to_string(),
                    share(&vip.before),
                    share(&vip.after)
                );
            }
        }
    }
    if let Some(ramp) = &vip.slow_start {
        out.push_str(&slow_start_text(ramp, verb));
    }
    out
}

/// The line of a plan's slow starts: which backends ramp, for how long,
/// and whether `after` is their first step (a change) or their full
/// weight (a dry run, whose verb is conditional).
fn slow_start_text(ramp: &lb_userspace::model::SlowStartPlan, verb: &str) -> String {
    let names: Vec<String> = ramp.backends.iter().map(ToString::to_string).collect();
    let when = if verb.starts_with("would") {
        "after: where it leads"
    } else {
        "after: its first step"
    };
    format!(
        "  slow start: {} reach{} full weight over {}s ({when})\n",
        names.join(", "),
        if names.len() == 1 { "es its" } else { " their" },
        ramp.seconds
    )
}

/// The effective deadline of a drain, in words; for a backend that was
/// draining already, that it was and whether its deadline was kept.
pub(crate) fn drain_deadline(drain: &DrainPlan) -> String {
    let from = match drain.from {
        DrainTimeoutSource::Request => "from --timeout",
        DrainTimeoutSource::VipDefault => "the VIP's drain_timeout_s",
        DrainTimeoutSource::None => "no --timeout and no drain_timeout_s on the VIP",
        DrainTimeoutSource::Kept => {
            let since = drain
                .draining_for_s
                .map_or("already draining".to_owned(), |s| {
                    format!("already draining since {s} s ago")
                });
            return match (drain.timeout_s, drain.cuts_flows) {
                (Some(left), true) => format!(
                    "{since}, deadline kept ({left} s left): established flows are cut then"
                ),
                (Some(left), false) => format!(
                    "{since}, deadline kept ({left} s left): the backend then goes to maintenance; its NAT'd connections stay on it until they end or it is removed"
                ),
                (None, _) => format!(
                    "{since}, deadline kept (none): established flows are never cut (--timeout sets one)"
                ),
            };
        }
    };
    if let Some(s) = drain.draining_for_s {
        return format!(
            "already draining since {s} s ago; its deadline is now this one: {}",
            deadline_text(drain, from)
        );
    }
    deadline_text(drain, from)
}

/// A drain's deadline set by `from`, in words.
fn deadline_text(drain: &DrainPlan, from: &str) -> String {
    match (drain.timeout_s, drain.cuts_flows) {
        (Some(seconds), true) => {
            format!("drain deadline: established flows are cut after {seconds}s ({from})")
        }
        // A NAT VIP: a translation cannot move, so the deadline only ends
        // the drain.
        (Some(seconds), false) => format!(
            "drain deadline: after {seconds}s the backend goes to maintenance ({from}); its NAT'd connections stay on it until they end or it is removed"
        ),
        (None, _) => format!("drain deadline: none, established flows are never cut ({from})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_userspace::model::AffinityChange;

    fn plan(
        change: PlanChange,
        before: &[(&str, f64)],
        after: &[(&str, f64)],
        moved: Option<f64>,
    ) -> VipPlan {
        let shares =
            |list: &[(&str, f64)]| list.iter().map(|(a, s)| (a.parse().unwrap(), *s)).collect();
        VipPlan {
            vip: "198.18.0.101:80/tcp".into(),
            change,
            before: shares(before),
            after: shares(after),
            moved_fraction: moved,
            affinity: None,
            slow_start: None,
        }
    }

    #[test]
    fn a_slow_start_says_who_ramps_and_what_after_shows() {
        let mut ramping = plan(
            PlanChange::Changed,
            &[("198.18.0.11", 1.0), ("198.18.0.12", 0.0)],
            &[("198.18.0.11", 0.95), ("198.18.0.12", 0.05)],
            Some(0.05),
        );
        ramping.slow_start = Some(lb_userspace::model::SlowStartPlan {
            seconds: 30,
            backends: vec!["198.18.0.12".parse().unwrap()],
        });
        let text = plan_text(&ramping, "changed");
        assert!(
            text.ends_with("  slow start: 198.18.0.12 reaches its full weight over 30s (after: its first step)\n"),
            "{text}"
        );
        let text = plan_text(&ramping, "would change");
        assert!(
            text.ends_with("  slow start: 198.18.0.12 reaches its full weight over 30s (after: where it leads)\n"),
            "{text}"
        );
        ramping.slow_start = None;
        assert!(!plan_text(&ramping, "changed").contains("slow start"));
    }

    #[test]
    fn a_new_vip_lists_its_shares_and_claims_no_move() {
        let text = plan_text(
            &plan(
                PlanChange::Added,
                &[],
                &[("198.18.0.11", 0.5), ("198.18.0.12", 0.5)],
                None,
            ),
            "would change",
        );
        assert_eq!(
            text,
            "VIP 198.18.0.101:80/tcp (added): would change; new VIP: 2 backends, shares 198.18.0.11 50.00%, 198.18.0.12 50.00%\n"
        );
        assert!(!text.contains("flows move"), "{text}");
        let text = plan_text(&plan(PlanChange::Added, &[], &[], None), "changed");
        assert_eq!(
            text,
            "VIP 198.18.0.101:80/tcp (added): changed; new VIP: 0 backends\n"
        );
        let text = plan_text(
            &plan(PlanChange::Removed, &[("198.18.0.11", 1.0)], &[], None),
            "changed",
        );
        assert_eq!(
            text,
            "VIP 198.18.0.101:80/tcp (removed): changed; removed VIP: no new flows to its 1 backend\n"
        );
    }

    #[test]
    fn an_affinity_change_says_how_many_new_flows_move_and_where_a_clients_go() {
        let shares = [("198.18.0.11", 0.5), ("198.18.0.12", 0.5)];
        let mut sticky = plan(PlanChange::Changed, &shares, &shares, Some(0.5));
        sticky.affinity =
            AffinityChange::of(lb_common::Affinity::Connection, lb_common::Affinity::Source);
        let text = plan_text(&sticky, "changed");
        assert!(
            text.starts_with("VIP 198.18.0.101:80/tcp (changed): changed; affinity connection -> source: about 50.00% of new flows move (each client's next connections go to one backend)\n"),
            "{text}"
        );
        sticky.affinity =
            AffinityChange::of(lb_common::Affinity::Source, lb_common::Affinity::Connection);
        assert!(plan_text(&sticky, "changed")
            .contains("affinity source -> connection: about 50.00% of new flows move (each client's next connections spread over the backends)"));
        // An lbd before affinity sends none.
        let old: VipPlan = serde_json::from_str(
            r#"{"vip": "198.18.0.101:80/tcp", "change": "changed", "before": {}, "after": {}}"#,
        )
        .unwrap();
        assert_eq!(old.affinity, None);
    }

    #[test]
    fn a_changed_vip_says_what_moves() {
        let text = plan_text(
            &plan(
                PlanChange::Changed,
                &[("198.18.0.11", 1.0)],
                &[("198.18.0.11", 0.5), ("198.18.0.12", 0.5)],
                Some(0.5),
            ),
            "would change",
        );
        assert!(
            text.starts_with(
                "VIP 198.18.0.101:80/tcp (changed): would change; 50.00% of new flows move\n"
            ),
            "{text}"
        );
        assert!(text.contains("198.18.0.12"), "{text}");
    }

    /// A change after which no backend takes new flows (weight 0 on the
    /// last, the last removed, drained or in maintenance) says they are
    /// dropped, not that they "move".
    #[test]
    fn a_vip_left_without_backends_for_new_flows_says_they_are_dropped() {
        for after in [&[("198.18.0.11", 0.0)][..], &[]] {
            let text = plan_text(
                &plan(
                    PlanChange::Changed,
                    &[("198.18.0.11", 1.0)],
                    after,
                    Some(1.0),
                ),
                "changed",
            );
            assert!(!text.contains("of new flows move"), "{text}");
            assert!(
                text.starts_with(
                    "VIP 198.18.0.101:80/tcp (changed): changed; new flows are dropped (no backend takes them)\n"
                ),
                "{text}"
            );
        }
    }

    /// A drain of a backend already draining says so: the deadline kept
    /// (and how much of it is left), or the new one from --timeout.
    #[test]
    fn a_drain_again_says_whether_it_kept_the_deadline() {
        let again = |timeout_s, from| DrainPlan {
            timeout_s,
            from,
            cuts_flows: true,
            draining_for_s: Some(120),
        };
        let kept = drain_deadline(&again(Some(180), DrainTimeoutSource::Kept));
        assert_eq!(
            kept,
            "already draining since 120 s ago, deadline kept (180 s left): established flows are cut then"
        );
        let never = drain_deadline(&again(None, DrainTimeoutSource::Kept));
        assert!(
            never.starts_with("already draining since 120 s ago, deadline kept (none)"),
            "{never}"
        );
        let moved = drain_deadline(&again(Some(300), DrainTimeoutSource::Request));
        assert!(
            moved.starts_with("already draining since 120 s ago; its deadline is now this one: "),
            "{moved}"
        );
        assert!(moved.contains("cut after 300s (from --timeout)"), "{moved}");
    }

    fn warned_change(dry_run: bool) -> Change {
        Change {
            dry_run,
            plan: vec![plan(
                PlanChange::Changed,
                &[("198.18.0.11", 1.0)],
                &[("198.18.0.11", 0.0)],
                Some(1.0),
            )],
            undone: vec![
                "backend 198.18.0.12 of 198.18.0.101:80/tcp is not in the file: removed".into(),
            ],
            drain: None,
            warnings: vec![
                "VIP 198.18.0.101:80/tcp: this VIP has no backend taking new flows".into(),
            ],
        }
    }

    /// A change's warnings go to stderr (`lbctl: warning: ...`), never
    /// to stdout, which has only its result: the plan and what a reload
    /// undoes, so a script reading stdout gets clean data.
    #[test]
    fn a_changes_warnings_go_to_stderr_and_its_result_to_stdout() {
        for dry_run in [false, true] {
            let (stdout, stderr) = change_output(&warned_change(dry_run), false);
            assert!(!stdout.contains("warning"), "{stdout}");
            assert!(!stdout.contains("no backend taking new flows"), "{stdout}");
            assert_eq!(
                stderr,
                ["lbctl: warning: VIP 198.18.0.101:80/tcp: this VIP has no backend taking new flows"]
            );
            assert!(stdout.contains("new flows are dropped"), "{stdout}");
            assert!(
                stdout.contains(
                    "\n  backend 198.18.0.12 of 198.18.0.101:80/tcp is not in the file: removed\n"
                ),
                "{stdout}"
            );
            assert!(!stdout.contains("note:"), "{stdout}");
        }
    }

    /// With `--json` the warnings are on stderr and in the JSON's
    /// `warnings`, which is there (empty) when there are none.
    #[test]
    fn a_changes_json_always_has_its_warnings() {
        let (stdout, stderr) = change_output(&warned_change(false), true);
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            value["warnings"],
            serde_json::json!([
                "VIP 198.18.0.101:80/tcp: this VIP has no backend taking new flows"
            ])
        );
        assert_eq!(stderr.len(), 1);
        let mut quiet = warned_change(false);
        quiet.warnings.clear();
        let (stdout, stderr) = change_output(&quiet, true);
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(value["warnings"], serde_json::json!([]));
        assert!(stderr.is_empty());
        let back: Change = serde_json::from_value(value).unwrap();
        assert_eq!(back, quiet);
    }

    #[test]
    fn a_nat_drain_deadline_does_not_claim_to_cut_flows() {
        let drain = |cuts_flows| DrainPlan {
            timeout_s: Some(30),
            from: DrainTimeoutSource::Request,
            cuts_flows,
            draining_for_s: None,
        };
        let dsr = drain_deadline(&drain(true));
        assert!(dsr.contains("established flows are cut after 30s"), "{dsr}");
        let nat = drain_deadline(&drain(false));
        assert!(!nat.contains("cut"), "{nat}");
        assert!(
            nat.contains("after 30s the backend goes to maintenance"),
            "{nat}"
        );
        assert!(nat.contains("stay on it until they end"), "{nat}");
    }
}
