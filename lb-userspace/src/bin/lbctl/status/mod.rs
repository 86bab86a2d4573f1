//! `lbctl status`: every VIP and backend at a glance.
//!
//! This module holds the command (its arguments, one fetch, the plain
//! status's order of sections); each section's lines, and `--watch`, are
//! in the files beside it.

mod backend_columns;
mod data_plane;
mod header;
mod replication;
#[cfg(test)]
mod tests;
mod unread;
mod vip_table;
mod vrrp;
mod watch;

use lb_userspace::{
    api::{
        client::{Client, ClientError},
        schema::Status,
    },
    vip_id::VipId,
};

pub(crate) use self::vip_table::print_vip;
use self::{
    data_plane::{conntrack_lines, nat_table_line, tunnel_line},
    header::{header_line, hook_line, node_line},
    replication::replication_lines,
    unread::{any_unread, Unread},
    vip_table::print_vip_read,
    vrrp::vrrp_line,
    watch::watch,
};
use crate::{output, Failure};

/// Arguments of `lbctl status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show only this VIP (ADDRESS:PORT[/tcp|udp]).
    vip: Option<VipId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Refresh like a stats page, with rates (Ctrl-C to stop).
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "watch")]
    interval: u64,
    /// Stop after this many refreshes with --watch (at least 1). A refresh
    /// lbd does not answer (stopped, restarting) counts too, with no
    /// frame, so the watch ends after about that many intervals whatever
    /// lbd does: exit 5 if lbd did not answer the last one. Without
    /// --count, the watch waits for lbd to answer again.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true, requires = "watch")]
    count: Option<u64>,
}

/// A `--count` of refreshes: a whole number, at least 1 (a watch shows
/// its first frame whatever the count, so 0 would not mean "none").
fn parse_count(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("a watch shows at least 1 refresh".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!(
            "{text:?} is not a whole number of refreshes (1 or more)"
        )),
    }
}

/// Prints the status (once, or refreshing with rates).
pub(crate) async fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    if args.watch {
        return watch(client, args).await;
    }
    let status = fetch(client, args.vip).await?;
    if args.json {
        output::json(&status);
        return Ok(());
    }
    print_status(&status);
    Ok(())
}

/// The status, with only `vip` among its VIPs when one is asked for (exit
/// 3 when lbd has no such VIP).
async fn fetch(client: &Client, vip: Option<VipId>) -> Result<Status, Failure> {
    let mut status = client.status().await?;
    if let Some(vip) = vip {
        let wanted = vip.to_string();
        status.vips.retain(|v| v.vip == wanted);
        if status.vips.is_empty() {
            return Err(Failure::new(
                ClientError::EXIT_NOT_FOUND,
                format!("no VIP {wanted}"),
            ));
        }
    }
    Ok(status)
}

/// Prints one status as tables.
fn print_status(status: &Status) {
    outln!("{}", header_line(status));
    if let Some(line) = hook_line(status) {
        outln!("{line}");
    }
    outln!(
        "data plane: {}{}; Maglev {}",
        status.pin_dir.as_ref().map_or_else(
            || "not pinned (goes with lbd)".to_owned(),
            |dir| format!("pinned at {dir}")
        ),
        if status.adopted {
            ", adopted from the previous lbd"
        } else {
            ""
        },
        status
            .maglev_mode
            .map(|mode| mode.to_string())
            .unwrap_or_default()
    );
    if let Some(line) = status.node.as_ref().and_then(node_line) {
        outln!("{line}");
    }
    for vrrp in &status.vrrp {
        outln!("{}", vrrp_line(vrrp));
    }
    if let Some(r) = &status.replication {
        for line in replication_lines(r) {
            outln!("{line}");
        }
    }
    if let Some(nat) = &status.nat {
        outln!("{}", nat_table_line(nat));
    }
    if let Some(tunnel) = &status.tunnel {
        outln!("{}", tunnel_line(tunnel, &status.interface));
    }
    for line in conntrack_lines(status) {
        outln!("{line}");
    }
    for vip in &status.vips {
        print_vip_read(vip, Unread(&status.traffic_unread));
    }
    if any_unread(status) {
        outln!("(-: traffic counters lbd could not read this time)");
    }
    if let Some(guard) = &status.guard {
        crate::acl::print(guard);
    }
    let counters: Vec<String> = status
        .counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    outln!("counters: {}", counters.join(" "));
}
