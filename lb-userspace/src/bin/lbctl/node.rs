//! `lbctl node`: this node's part in an active-active group. `drain`
//! withdraws every BGP announcement so the routers move the node's flows
//! to the other nodes (which have them, replicated); with `--wait` it
//! returns once the node has forwarded nothing for `--quiet` seconds, so
//! the node can be stopped for maintenance without breaking a flow.
//! `undrain` announces again.

use std::time::{Duration, Instant};

use lb_userspace::{
    api::{client::Client, schema::NodeStatus},
    bgp::{NodeState, StartupStatus},
};

use crate::{output, Failure};

/// How often `drain --wait` asks lbd.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Exit code when `drain --wait` gave up before the node went quiet.
const EXIT_STILL_FORWARDING: u8 = 6;

/// `lbctl node ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The node's state, traffic and BGP announcements.
    Status(StatusArgs),
    /// Withdraw every announcement; the node keeps forwarding what still
    /// reaches it.
    Drain(DrainArgs),
    /// Announce again what the node can serve.
    Undrain(ChangeArgs),
}

/// Arguments of `lbctl node status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl node undrain`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChangeArgs {
    /// Show what would be announced; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl node drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    #[command(flatten)]
    change: ChangeArgs,
    /// Return only once the node has forwarded no packet for `--quiet`
    /// seconds: every flow moved to another node or ended.
    #[arg(long, conflicts_with = "dry_run")]
    wait: bool,
    /// Seconds without a forwarded packet that count as drained.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600), requires = "wait")]
    quiet: u64,
    /// Give up waiting after this many seconds (exit code 6; the node stays
    /// drained).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400), requires = "wait")]
    timeout: u64,
}

/// Runs `lbctl node ...`.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    match command {
        Command::Status(args) => {
            let status = client.node().await?;
            print(&status, args.json);
        }
        Command::Undrain(args) => {
            let status = client
                .set_node_state(NodeState::Active, args.dry_run)
                .await?;
            print(&status, args.json);
        }
        Command::Drain(args) => {
            let status = client
                .set_node_state(NodeState::Drained, args.change.dry_run)
                .await?;
            if !args.wait {
                print(&status, args.change.json);
                return Ok(());
            }
            let status = wait_quiet(client, &args).await?;
            print(&status, args.change.json);
        }
    }
    Ok(())
}

/// Polls until the node has been quiet for `--quiet` seconds.
async fn wait_quiet(client: &Client, args: &DrainArgs) -> Result<NodeStatus, Failure> {
    let quiet_ms = args.quiet.saturating_mul(1000);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    // Quiet counts from the drain on: traffic that stopped before it says
    // nothing about the flows the drain moves.
    let drained_at = Instant::now();
    loop {
        let status = client.node().await?;
        if status.state != NodeState::Drained {
            return Err(Failure::new(
                7,
                "the node was made active again while waiting for its drain",
            ));
        }
        let since_drain = u64::try_from(drained_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_for = status.idle_ms.unwrap_or(u64::MAX).min(since_drain);
        if quiet_for >= quiet_ms {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                EXIT_STILL_FORWARDING,
                format!(
                    "the node still forwarded packets {} ms ago after {} s; it stays drained",
                    status.idle_ms.unwrap_or(0),
                    args.timeout
                ),
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn print(status: &NodeStatus, as_json: bool) {
    if as_json {
        output::json(status);
        return;
    }
    if status.dry_run {
        println!("dry run: nothing changed; the node would be:");
    }
    println!("node: {}", status.state.name());
    match status.idle_ms {
        Some(ms) => println!(
            "forwarded: {} packets, the last {:.1} s ago",
            status.forwarded,
            ms as f64 / 1000.0
        ),
        None => println!(
            "forwarded: {} packets (none since lbd started)",
            status.forwarded
        ),
    }
    let Some(bgp) = &status.bgp else {
        println!("bgp: not configured");
        return;
    };
    let startup = match bgp.startup {
        StartupStatus::Waiting => "waiting for the peers' flows".to_owned(),
        StartupStatus::Open(reason) => format!("open ({})", reason.name()),
    };
    println!(
        "bgp: start-up {startup}, BIRD {}",
        if bgp.in_sync {
            "in sync"
        } else {
            "NOT in sync"
        }
    );
    for address in &bgp.announced {
        println!("  announced  {address}");
    }
    for withheld in &bgp.withheld {
        println!(
            "  withdrawn  {}  ({})",
            withheld.address,
            withheld.reason.name()
        );
    }
    if let Some(error) = &bgp.last_error {
        println!("  last error: {error}");
    }
}
