//! `lbctl status --watch`: the status refreshed like a stats page, with
//! rates between frames, and an lbd that stops answering waited for
//! rather than ending the watch.

use lb_userspace::api::{
    client::{Client, ClientError},
    schema::{BackendStatus, Status, VipStatus},
};

use super::{
    backend_columns::{backend_name, check_text, flow_columns, state_text},
    data_plane::conntrack_lines,
    fetch,
    header::hook,
    unread::{any_unread, Unread},
    vip_table::Widths,
    vrrp::watch_vrrp_line,
    Args,
};
use crate::Failure;

/// A rate between two snapshots, per VIP and backend, as shown: `-` with
/// no earlier snapshot to measure from (the first frame, or the first
/// after lbd was not answering) or a counter that either snapshot could
/// not read (see [`Unread`]), never a 0 (or a leap from one) that was not
/// measured.
pub(super) fn rate(
    now: Option<u64>,
    before: Option<u64>,
    seconds: f64,
    scale: f64,
    decimals: usize,
) -> String {
    match (now, before) {
        (Some(n), Some(b)) => format!(
            "{:.decimals$}",
            n.saturating_sub(b) as f64 / seconds * scale
        ),
        _ => "-".to_owned(),
    }
}

/// A VIP's lines in `--watch`: its rates since `before` (the previous
/// frame, `seconds` ago), then its backends'. `unread` and `unread_before`
/// are the counters the two frames could not read: no rate from those.
pub(super) fn watch_vip_lines(
    vip: &VipStatus,
    unread: Unread<'_>,
    before: Option<(&VipStatus, Unread<'_>)>,
    seconds: f64,
    vip_width: usize,
) -> Vec<String> {
    let read = unread.vip(vip);
    let now = |f: fn(&VipStatus) -> u64| read.then(|| f(vip));
    let old = |f: fn(&VipStatus) -> u64| {
        before
            .filter(|(o, unread)| unread.vip(o))
            .map(|(o, _)| f(o))
    };
    let mut lines = vec![format!(
        "VIP {:<vip_width$} {:>10} pkt/s {:>12} bit/s {:>8} conn/s{}",
        vip.vip,
        rate(now(|v| v.packets), old(|v| v.packets), seconds, 1.0, 0),
        rate(now(|v| v.bytes), old(|v| v.bytes), seconds, 8.0, 0),
        rate(now(|v| v.new_flows), old(|v| v.new_flows), seconds, 1.0, 1),
        if vip.all_down {
            "  ALL BACKENDS DOWN"
        } else {
            ""
        }
    )];
    let width = Widths::of(vip);
    let (bw, sw, cw) = (width.backend, width.state, width.check);
    lines.push(format!(
        "  {:<bw$} {:<sw$} {:<9} {:<cw$} {:>6} {:>7} {:>10} {:>8} {:>7} {:>7}",
        "backend", "state", "health", "check", "weight", "share", "pkt/s", "conn/s", "live", "idle"
    ));
    for b in &vip.backends {
        let read = unread.backend(&vip.vip, b);
        let now = |f: fn(&BackendStatus) -> u64| read.then(|| f(b));
        let old = |f: fn(&BackendStatus) -> u64| {
            before
                .and_then(|(o, unread)| {
                    let ob = o.backends.iter().find(|x| x.address == b.address)?;
                    unread.backend(&o.vip, ob).then_some(ob)
                })
                .map(f)
        };
        let (live, _, idle) = flow_columns(b);
        lines.push(format!(
            "  {:<bw$} {:<sw$} {:<9} {:<cw$} {:>6} {:>6.2}% {:>10} {:>8} {:>7} {:>7}",
            backend_name(b),
            state_text(b),
            b.health.as_str(),
            check_text(b),
            b.weight,
            b.share * 100.0,
            rate(now(|b| b.packets), old(|b| b.packets), seconds, 1.0, 0),
            rate(now(|b| b.new_flows), old(|b| b.new_flows), seconds, 1.0, 1),
            live,
            idle
        ));
    }
    lines
}

/// Whether the watch waits for lbd after `failure`, having shown `shown`
/// frames: once watching, an lbd that stops answering or answers that it
/// is shutting down (a restart: exit code 5, unavailable) is waited for,
/// not the end of the watch. Before the first frame, the failure is the
/// answer.
pub(super) fn waits_for_lbd(failure: &Failure, shown: u64) -> bool {
    shown > 0 && failure.code == ClientError::EXIT_UNAVAILABLE
}

/// How far a `--watch` has come: the refreshes made, answered (a frame
/// shown) or not, and since when lbd has not answered. A refresh lbd did
/// not answer counts towards `--count` too, so an lbd gone for good does
/// not keep a counted watch running for ever.
#[derive(Debug, Default)]
pub(super) struct Refreshes {
    /// Refreshes made, answered or not.
    pub(super) made: u64,
    /// Refreshes that showed a frame.
    pub(super) shown: u64,
    /// Since when lbd has not answered (None: it answered the last one).
    unanswered: Option<std::time::Instant>,
}

impl Refreshes {
    /// Counts a refresh that showed a frame: any outage is over.
    pub(super) fn answered(&mut self) {
        self.made += 1;
        self.shown += 1;
        self.unanswered = None;
    }

    /// Counts a refresh lbd did not answer; whether it began an outage
    /// (the refresh that says so: once an outage, not once a refresh).
    pub(super) fn unanswered(&mut self) -> bool {
        self.made += 1;
        crate::wait::begins_outage(&mut self.unanswered)
    }

    /// Whether `--count` (None: no end) refreshes were made.
    pub(super) fn done(&self, count: Option<u64>) -> bool {
        count.is_some_and(|c| self.made >= c)
    }
}

/// `lbctl status --watch`: a frame per refresh until `--count` frames
/// (or for ever), waiting through lbd's restarts instead of failing.
pub(super) async fn watch(client: &Client, args: &Args) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(std::time::Instant, Status)> = None;
    let mut refreshes = Refreshes::default();
    loop {
        let status = match fetch(client, args.vip).await {
            Ok(status) => status,
            Err(failure) if waits_for_lbd(&failure, refreshes.shown) => {
                if refreshes.unanswered() {
                    eprintln!(
                        "lbctl: lbd is not answering ({}); still watching: the next frame comes once it answers",
                        failure.message
                    );
                }
                previous = None;
                if refreshes.done(args.count) {
                    return Err(Failure::new(
                        ClientError::EXIT_UNAVAILABLE,
                        format!(
                            "lbd did not answer the last refresh ({}); {} of --count {} refreshes showed a frame",
                            failure.message,
                            refreshes.shown,
                            refreshes.made
                        ),
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_secs(args.interval)).await;
                continue;
            }
            Err(failure) => return Err(failure),
        };
        let now = std::time::Instant::now();
        if terminal {
            out!("\x1b[2J\x1b[H");
        }
        let seconds = previous.as_ref().map_or(1.0, |(t, _)| {
            now.duration_since(*t).as_secs_f64().max(0.001)
        });
        let before = previous.as_ref().map(|(_, s)| s);
        outln!(
            "lbd on {} ({}), version {} — every {}s, rates over the last interval",
            status.interface,
            hook(&status),
            status.version,
            args.interval
        );
        for vrrp in &status.vrrp {
            outln!("{}", watch_vrrp_line(vrrp));
        }
        for line in conntrack_lines(&status) {
            outln!("{line}");
        }
        let vip_width = status
            .vips
            .iter()
            .map(|v| v.vip.len())
            .max()
            .unwrap_or(0)
            .max(28);
        let unread = Unread(&status.traffic_unread);
        for vip in &status.vips {
            let old = before.and_then(|b| {
                let o = b.vips.iter().find(|v| v.vip == vip.vip)?;
                Some((o, Unread(&b.traffic_unread)))
            });
            for line in watch_vip_lines(vip, unread, old, seconds, vip_width) {
                outln!("{line}");
            }
        }
        if any_unread(&status) {
            outln!("(-: traffic counters lbd could not read this time)");
        }
        if !terminal {
            outln!();
        }
        refreshes.answered();
        if refreshes.done(args.count) {
            return Ok(());
        }
        previous = Some((now, status));
        tokio::time::sleep(std::time::Duration::from_secs(args.interval)).await;
    }
}
