//! `lbctl status`: every VIP and backend at a glance.

use lb_userspace::api::{client::Client, schema::Status};

use crate::{output, Failure};

/// Arguments of `lbctl status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the status.
pub async fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    let status: Status = client.get("/v1/status", &[]).await?;
    if args.json {
        output::json(&status);
        return Ok(());
    }
    println!(
        "lbd on {} (XDP {}), config {}",
        status.interface, status.xdp_mode, status.config_file
    );
    for vrrp in &status.vrrp {
        let master = vrrp.master.map_or("unknown".to_owned(), |m| m.to_string());
        let ignored: Vec<String> = vrrp
            .ignored
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "VRRP vrid {}: {} (priority {} of {}), master {master}, adverts sent {} received {}{}",
            vrrp.vrid,
            vrrp.state,
            vrrp.priority,
            vrrp.configured_priority,
            vrrp.counters.adverts_sent,
            vrrp.counters.adverts_received,
            if ignored.is_empty() {
                String::new()
            } else {
                format!(", ignored {}", ignored.join(" "))
            }
        );
    }
    if let Some(r) = &status.replication {
        println!(
            "replication: {}, {} flows sent, {} installed from the peer ({} unknown)",
            if r.connected {
                "connected"
            } else {
                "not connected"
            },
            r.channel.records_sent,
            r.installed,
            r.unknown
        );
    }
    for vip in &status.vips {
        print_vip(vip);
    }
    let counters: Vec<String> = status
        .counters
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("counters: {}", counters.join(" "));
    Ok(())
}

/// Prints one VIP and its backends as a table.
pub fn print_vip(vip: &lb_userspace::api::schema::VipStatus) {
    let flags = match (vip.all_down, vip.runtime) {
        (true, _) => format!(" ALL BACKENDS DOWN (on_all_down={})", vip.on_all_down),
        (false, true) => " (added at run time)".to_owned(),
        _ => String::new(),
    };
    println!(
        "VIP {}  table {}  packets {}  bytes {}  new flows {}{flags}",
        vip.vip, vip.table_size, vip.packets, vip.bytes, vip.new_flows
    );
    println!(
        "  {:<28} {:<12} {:<9} {:>6} {:>7} {:>6} {:>7} {:>10} {:>10}",
        "backend", "state", "health", "weight", "share", "live", "closing", "packets", "new flows"
    );
    for b in &vip.backends {
        let state = match b.drain_remaining_s {
            Some(left) => format!("{} {left}s", b.state),
            None => b.state.clone(),
        };
        println!(
            "  {:<28} {:<12} {:<9} {:>6} {:>6.2}% {:>6} {:>7} {:>10} {:>10}",
            b.address.to_string(),
            state,
            b.health,
            b.weight,
            b.share * 100.0,
            b.flows.live,
            b.flows.closing,
            b.packets,
            b.new_flows
        );
    }
}
