//! The end-to-end sections: the L2 lab's systems, NAT against HAProxy in
//! the routed lab, the tunnelled modes; their tables' shared columns.

use std::fmt::Write as _;

use crate::bench::e2e::{E2eCase, E2eResults, Mode, System};

/// The L2 lab's comparison (`cores`: the machine's, which the whole lab
/// shares), one table per mode with the ratios and the target's verdict.
pub(super) fn l2_section(out: &mut String, e2e: &E2eResults, cores: usize) {
    let _ = writeln!(out, "## End to end in the namespace lab\n");
    let _ = writeln!(
        out,
        "Client → {{system}} → three nginx backends on one bridged segment (all namespaces on this one machine, so client, load balancer and backends share its {} cores). wrk, {} threads, {} connections, {} s per run, {}; medians. `direct` goes to one backend only; `xdp-forward` is a bare MAC-rewrite + XDP_TX forwarder spreading by source port over the same backends; HAProxy 2.6 `mode tcp` and nginx `stream` are full proxies on the LB node. CPU: the whole machine's busy share during the run (softirq is where XDP and the kernel's network path run). {KSOFTIRQD_NOTE} Proxy CPU: CPU-seconds per second of the proxy's own processes. For the new-connection runs the lab's hosts reuse ports (`tcp_tw_reuse` on the client, a small TIME_WAIT table on the servers), as busy load generators do.\n",
        cores,
        e2e.threads,
        e2e.connections,
        e2e.seconds,
        rounds_text(e2e)
    );
    let _ = writeln!(out, "{}\n", loss_note(e2e));
    for mode in Mode::ALL {
        let _ = writeln!(out, "### {mode}\n");
        let _ = writeln!(out, "| system | requests/s (min / median / max) | p50 ms | p99 ms | machine busy % | {KSOFTIRQD_HEAD} | softirq % | proxy CPU | {LOSS_HEAD} |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for c in e2e.cases.iter().filter(|c| c.mode == mode) {
            case_row(out, c, false, true);
        }
        let ratio = |other: System| {
            e2e.ratio(System::Lbd, other, mode)
                .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"))
        };
        // lbd against HAProxy: at least twice its requests/s with
        // keep-alive connections, 1.7 times with a new one per request.
        let haproxy_target = if mode == Mode::KeepAlive { 2.0 } else { 1.7 };
        let haproxy = throughput(e2e, System::Lbd, System::Haproxy, mode);
        // The developers' guide: end to end at least the bare XDP
        // forwarder measured in the same run.
        let forwarder = throughput(e2e, System::Lbd, System::XdpForward, mode);
        let _ = writeln!(
            out,
            "\nRatios are the median of the rounds' ratios (each round ran every system in turn); the targets' on good answers (requests/s less wrk's non-2xx answers). lbd vs HAProxy: **{}** (target ≥ {haproxy_target}×: {}), vs nginx stream: {}, vs the bare XDP forwarder: **{}** (target ≥ 1.0×: {}), vs direct to one backend: {}.\n",
            haproxy.value(haproxy_target),
            haproxy.verdict(haproxy_target),
            ratio(System::NginxStream),
            forwarder.value(1.0),
            forwarder.verdict(1.0),
            ratio(System::Direct)
        );
    }
}

/// NAT mode against HAProxy in the routed lab, with the target's ratio.
pub(super) fn nat_section(out: &mut String, e2e: &E2eResults) {
    let _ = writeln!(
        out,
        "## End to end, routed unmodified backends: NAT mode vs HAProxy\n"
    );
    let _ = writeln!(
        out,
        "Client → router → {{system}} on the LB node → router → three unmodified nginx backends on port 8080 (no VIP on `lo`, no sysctls): the fair comparison, as both serve backends that know nothing of the load balancer. lbd runs `forwarding = \"nat\"` at XDP (`lbd-nat`) and at tc (`lbd-nat-tc`); HAProxy 2.6 `mode tcp`. wrk, {} threads, {} connections, {} s per run, {}; medians. `direct` goes to one backend through both routers.\n",
        e2e.threads,
        e2e.connections,
        e2e.seconds,
        rounds_text(e2e)
    );
    e2e_mode_table(out, e2e, false);
    let _ = writeln!(out);
    for mode in Mode::ALL {
        for (system, hook) in [(System::LbdNat, "XDP"), (System::LbdNatTc, "tc")] {
            let judged = throughput(e2e, system, System::Haproxy, mode);
            let _ = writeln!(
                out,
                "- {mode}, NAT at {hook} / HAProxy{}.",
                judged.line(OVER_HAPROXY_TARGET)
            );
        }
        // For scale: the client, the routers and the backends share the
        // machine's cores with whatever runs on the LB node.
        if let Some(direct) = e2e.ratio(System::Direct, System::Haproxy, mode) {
            let nat = e2e
                .ratio(System::LbdNat, System::Direct, mode)
                .map_or_else(|| "–".to_owned(), |r| format!("{r:.2}×"));
            let _ = writeln!(
                out,
                "- {mode}, for scale: direct / HAProxy = {direct:.2}× (no load balancer, one backend; the client, the routers and the backends share the machine's cores with whatever runs on the LB node); NAT at XDP / direct = {nat}."
            );
        }
    }
    let _ = writeln!(out);
}

/// One row per (mode, system) of an end-to-end run; `softirq` adds the
/// machine's softirq share.
fn e2e_mode_table(out: &mut String, e2e: &E2eResults, softirq: bool) {
    let (head, rule) = if softirq {
        (" softirq % |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        out,
        "| mode | system | requests/s (min / median / max) | p50 ms | p99 ms | machine busy % | {KSOFTIRQD_HEAD} |{head} proxy CPU | {LOSS_HEAD} |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|{rule}---:|---:|");
    for c in &e2e.cases {
        case_row(out, c, true, softirq);
    }
    let _ = writeln!(out, "\n{} {KSOFTIRQD_NOTE}", loss_note(e2e));
}

/// One case's row of an end-to-end table: its mode first when
/// `with_mode` (the tables that hold both modes), the machine's softirq
/// share when `softirq`.
fn case_row(out: &mut String, c: &E2eCase, with_mode: bool, softirq: bool) {
    let mode = if with_mode {
        format!(" {} |", c.mode)
    } else {
        String::new()
    };
    let irq = if softirq {
        format!(" {:.0} |", c.softirq_pct.median)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "|{mode} {} | {:.0} / **{:.0}** / {:.0} | {:.2} | {:.2} | {:.0} | {} |{irq} {:.2} | {} |",
        c.system,
        c.rps.min,
        c.rps.median,
        c.rps.max,
        c.p50_ms.median,
        c.p99_ms.median,
        c.cpu_busy_pct.median,
        ksoftirqd_cell(c),
        c.proxy_cpu.median,
        loss_cell(c)
    );
}

/// The end-to-end tables' column for deferred softirq work.
const KSOFTIRQD_HEAD: &str = "ksoftirqd %";

/// What that column shows.
const KSOFTIRQD_NOTE: &str = "ksoftirqd: the share of the machine's CPU its per-CPU softirq threads ran (median of the rounds), part of softirq: receive work the kernel deferred because it had run too long inline. That work stays on its CPU (a veth's receive runs where it was scheduled and stays there while it has work), so a high share beside idle time means the path waited on one CPU while the other had nothing to do.";

/// The median share ksoftirqd ran (`–` in results from before it was
/// measured).
pub(super) fn ksoftirqd_cell(case: &E2eCase) -> String {
    case.ksoftirqd_pct
        .map_or_else(|| "–".to_owned(), |s| format!("{:.0}", s.median))
}

/// How the rounds ran: their number and the systems' order.
fn rounds_text(e2e: &E2eResults) -> String {
    if e2e.order_rotated {
        format!(
            "{} rounds, the order rotated each round (each system in each place once over as many rounds as systems, none always right after the same one)",
            e2e.rounds
        )
    } else {
        format!(
            "{} rounds interleaved system by system, in the listed order every round",
            e2e.rounds
        )
    }
}

/// The end-to-end tables' loss column: what `loss_cell` shows.
const LOSS_HEAD: &str =
    "dropped by lbd / retransmitted / wrk socket errors / wrk non-2xx (all rounds)";

/// What that column counts, as `e2e` measured it.
fn loss_note(e2e: &E2eResults) -> String {
    let namespaces = if e2e.retransmits_on_lb_nodes {
        "the client's, the LB nodes' (where HAProxy and nginx terminate TCP) and the backends' namespaces"
    } else {
        "the client's and the backends' namespaces only; not the LB nodes', where HAProxy and nginx terminate TCP, as these results predate counting them"
    };
    format!("Loss, summed over the rounds: packets lbd's data plane dropped (its `drop_*` verdict counters; the other systems have none); TCP segments retransmitted (`TcpRetransSegs`, any system's loss wherever it happened) in {namespaces}; and the requests wrk saw fail: its socket errors (connect, read, write, timeout) and answers neither 2xx nor 3xx (`–`: not counted in these results).")
}

/// An end-to-end case's loss over all its rounds (`–` in results from
/// before it was measured).
pub(super) fn loss_cell(case: &E2eCase) -> String {
    let count = |n: Option<u64>| n.map_or_else(|| "–".to_owned(), |n| n.to_string());
    case.total_loss().map_or_else(
        || "–".to_owned(),
        |loss| {
            format!(
                "{} / {} / {} / {}",
                loss.lb_drops,
                loss.retransmits,
                count(loss.socket_errors),
                count(loss.non_2xx)
            )
        },
    )
}

/// The tunnelled modes against `dsr-l2` and HAProxy, same lab, same run.
pub(super) fn tunnel_section(out: &mut String, e2e: &E2eResults) {
    let _ = writeln!(
        out,
        "## End to end, tunnelled DSR: ipip and gue vs dsr-l2 and HAProxy\n"
    );
    let _ = writeln!(
        out,
        "Client → {{system}} on the LB node → three nginx backends on the LB's segment (the only place `dsr-l2` reaches, so every system crosses the same links and only the forwarding differs). The backends hold the VIP on `lo` and run `lb-decap` at XDP throughout (the `dsr-l2` and HAProxy rows pay its pass-through check too). lbd at XDP: `lbd` is `dsr-l2` (MAC rewrite), `lbd-ipip` and `lbd-gue` encapsulate (outer sources from a /24, GUE on port {}); HAProxy 2.6 `mode tcp` proxies. wrk, {} threads, {} connections, {} s per run, {}; medians. `direct` goes to one backend.\n",
        crate::tunnel::GUE_PORT,
        e2e.threads,
        e2e.connections,
        e2e.seconds,
        rounds_text(e2e)
    );
    e2e_mode_table(out, e2e, true);
    let _ = writeln!(out);
    for mode in Mode::ALL {
        for system in [System::LbdIpip, System::LbdGue] {
            let judged = throughput(e2e, system, System::Haproxy, mode);
            let _ = writeln!(
                out,
                "- {mode}, {system} / HAProxy{}.",
                judged.line(OVER_HAPROXY_TARGET)
            );
            if let Some(dsr) = e2e.ratio(system, System::Lbd, mode) {
                let _ = writeln!(
                    out,
                    "- {mode}, {system} / dsr-l2 = **{dsr:.2}×** (median of the rounds' ratios)."
                );
            }
        }
    }
    let _ = writeln!(out);
}

/// The routed labs' target for lbd's NAT and tunnelled modes: at least
/// this many times HAProxy `mode tcp`'s good answers a second.
const OVER_HAPROXY_TARGET: f64 = 1.5;

/// What a throughput target is judged on: one system's good answers a
/// second over another's, round by round, with what was left out or
/// discounted said (a failed request is no throughput, and a round
/// dropped silently would make a median of fewer rounds read as all of
/// them).
#[derive(Debug, Clone, PartialEq)]
enum Throughput {
    /// One of the two systems is not in the results.
    NotMeasured,
    /// No round could be compared: why.
    NotJudged(String),
    /// The ratio, how it was taken, and notes (each starting "; ").
    Ratio {
        ratio: f64,
        how: String,
        notes: String,
    },
}

impl Throughput {
    /// The ratio beside the target's verdict (`–` when there is none).
    fn value(&self, target: f64) -> String {
        match self {
            Self::Ratio { ratio, .. } => format!("{}×", super::beside_target(*ratio, target, 2)),
            Self::NotMeasured | Self::NotJudged(_) => "–".to_owned(),
        }
    }

    /// The verdict on "at least `target`", with the notes.
    fn verdict(&self, target: f64) -> String {
        match self {
            Self::Ratio { ratio, notes, .. } => {
                let met = if *ratio >= target {
                    "met"
                } else {
                    "**not met**"
                };
                format!("{met}{notes}")
            }
            Self::NotJudged(why) => format!("not judged: {why}"),
            Self::NotMeasured => "not measured".to_owned(),
        }
    }

    /// The tail of a list item naming the ratio: " = **r×** (how; target
    /// ≥ t×: verdict)", or why there is no verdict.
    fn line(&self, target: f64) -> String {
        match self {
            Self::Ratio { how, .. } => format!(
                " = **{}** ({how}; target ≥ {target}×: {})",
                self.value(target),
                self.verdict(target)
            ),
            Self::NotJudged(why) => format!(": not judged ({why}; target ≥ {target}×)"),
            Self::NotMeasured => format!(": not measured (target ≥ {target}×)"),
        }
    }
}

/// `system`'s good answers a second over `other`'s in `mode`: the median
/// of the rounds' ratios, each round's requests/s less its non-2xx answers
/// a second (wrk counts those in its requests/s; its socket errors are not
/// in it); rounds in which `other` had no good answer are left out, and
/// said. Older results without rounds: the ratio of the medians.
fn throughput(e2e: &E2eResults, system: System, other: System, mode: Mode) -> Throughput {
    let case = |s: System| e2e.cases.iter().find(|c| c.system == s && c.mode == mode);
    let (Some(a), Some(b)) = (case(system), case(other)) else {
        return Throughput::NotMeasured;
    };
    let rounds = a.rps_per_round.len();
    if rounds == 0 || rounds != b.rps_per_round.len() {
        return if b.rps.median > 0.0 {
            Throughput::Ratio {
                ratio: a.rps.median / b.rps.median,
                how: "ratio of the medians".to_owned(),
                notes: String::new(),
            }
        } else {
            Throughput::NotJudged(format!("{other} had no answers"))
        };
    }
    let (good_a, good_b) = (
        good_per_round(a, e2e.seconds),
        good_per_round(b, e2e.seconds),
    );
    let mut ratios = Vec::new();
    let mut left_out = Vec::new();
    for (i, (x, y)) in good_a.iter().zip(&good_b).enumerate() {
        if *y > 0.0 && x.is_finite() && y.is_finite() {
            ratios.push(x / y);
        } else {
            left_out.push(i + 1);
        }
    }
    let left_out_text = (!left_out.is_empty()).then(|| {
        let which: Vec<String> = left_out.iter().map(usize::to_string).collect();
        format!(
            "round{} {} left out: {other} had no good answers",
            if left_out.len() == 1 { "" } else { "s" },
            which.join(", ")
        )
    });
    if ratios.is_empty() {
        return Throughput::NotJudged(left_out_text.unwrap_or_default());
    }
    let how = if left_out.is_empty() {
        "median of the rounds' ratios".to_owned()
    } else {
        format!("median of {} of the {rounds} rounds", ratios.len())
    };
    let mut notes = String::new();
    if let Some(text) = left_out_text {
        notes.push_str(&format!("; {text}"));
    }
    let failures: Vec<String> = [a, b].iter().flat_map(|c| failures(c)).collect();
    if !failures.is_empty() {
        notes.push_str(&format!(
            "; on good answers only (requests/s less the non-2xx answers a second): {}",
            failures.join(", ")
        ));
    }
    Throughput::Ratio {
        ratio: crate::bench::Spread::of(&ratios).median,
        how,
        notes,
    }
}

/// Each round's requests/s of `case` less its non-2xx answers a second
/// over the `seconds` of a run (none where they were not counted).
fn good_per_round(case: &E2eCase, seconds: u32) -> Vec<f64> {
    case.rps_per_round
        .iter()
        .enumerate()
        .map(|(i, rps)| {
            let non_2xx = case
                .loss_per_round
                .as_ref()
                .and_then(|rounds| rounds.get(i))
                .and_then(|loss| loss.non_2xx)
                .unwrap_or(0);
            (rps - non_2xx as f64 / f64::from(seconds.max(1))).max(0.0)
        })
        .collect()
}

/// `case`'s rounds in which wrk saw requests fail: "system round i: n
/// non-2xx, m socket errors".
fn failures(case: &E2eCase) -> Vec<String> {
    let Some(rounds) = &case.loss_per_round else {
        return Vec::new();
    };
    rounds
        .iter()
        .enumerate()
        .filter_map(|(i, loss)| {
            let mut kinds = Vec::new();
            if let Some(n) = loss.non_2xx.filter(|n| *n > 0) {
                kinds.push(format!("{n} non-2xx"));
            }
            if let Some(n) = loss.socket_errors.filter(|n| *n > 0) {
                kinds.push(format!("{n} socket errors"));
            }
            (!kinds.is_empty())
                .then(|| format!("{} round {}: {}", case.system, i + 1, kinds.join(", ")))
        })
        .collect()
}
