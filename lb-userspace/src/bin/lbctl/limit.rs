//! `lbctl limit`: limits of new flows per source address and per source
//! prefix (a default for every VIP, or per VIP), changed at run time.
//! Packets of tracked flows are never limited. A reload puts the config
//! file's limits back.

use lb_userspace::{
    api::client::{Client, ClientError},
    guard::{Limits, RateLimit, Scope},
    vip_id::VipId,
};

use crate::{acl, output, Failure};

/// `lbctl limit ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// The limits in force (and the deny/allow rules), of every scope.
    List(ListArgs),
    /// Set the limits of every VIP (without limits of its own) or of one.
    Set(SetArgs),
    /// Remove the limits of every VIP (the default) or of one.
    Clear(ScopeArgs),
}

/// Arguments of `lbctl limit list`: it shows every scope, and changes
/// nothing (so it takes neither `--vip` nor `--dry-run`).
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments naming a scope.
#[derive(Debug, clap::Args)]
pub(crate) struct ScopeArgs {
    /// Only this VIP (`ADDRESS:PORT[/tcp|udp]`); without it, the default of
    /// every VIP.
    #[arg(long)]
    vip: Option<VipId>,
    /// Check and show the result; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lbctl limit set`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// New flows per second per source address (1..=1000000).
    #[arg(long)]
    source_rate: Option<u32>,
    /// At once per source address (default: the rate).
    #[arg(long, requires = "source_rate")]
    source_burst: Option<u32>,
    /// New flows per second per source prefix.
    #[arg(long)]
    prefix_rate: Option<u32>,
    /// At once per source prefix (default: the rate).
    #[arg(long, requires = "prefix_rate")]
    prefix_burst: Option<u32>,
    /// Prefix length of IPv4 sources (1..=32).
    #[arg(long, default_value_t = 24)]
    prefix_v4: u8,
    /// Prefix length of IPv6 sources (1..=128).
    #[arg(long, default_value_t = 64)]
    prefix_v6: u8,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        self.vip.map_or(Scope::Global, Scope::Vip)
    }
}

/// Runs `lbctl limit ...`.
pub(crate) async fn run(client: &Client, command: Command) -> Result<(), Failure> {
    let bad =
        |e: lb_userspace::guard::GuardError| Failure::new(ClientError::EXIT_USAGE, e.to_string());
    let (status, json) = match command {
        Command::List(args) => (client.guard().await?, args.json),
        Command::Set(args) => {
            let source = args
                .source_rate
                .map(|r| RateLimit::new(r, args.source_burst, "source"))
                .transpose()
                .map_err(bad)?;
            let prefix = args
                .prefix_rate
                .map(|r| RateLimit::new(r, args.prefix_burst, "prefix"))
                .transpose()
                .map_err(bad)?;
            let limits = Limits {
                source,
                prefix,
                prefix_v4: args.prefix_v4,
                prefix_v6: args.prefix_v6,
            };
            limits.check().map_err(bad)?;
            if let Some((key, why)) = limits.unused_prefix_length(&args.scope.scope()) {
                return Err(Failure::new(
                    ClientError::EXIT_USAGE,
                    format!("--{}: {why}", key.replace('_', "-")),
                ));
            }
            let status = client
                .set_limits(args.scope.scope(), limits, args.scope.dry_run)
                .await?;
            (status, args.scope.json)
        }
        Command::Clear(args) => (
            client.clear_limits(args.scope(), args.dry_run).await?,
            args.json,
        ),
    };
    if json {
        output::json(&status);
    } else {
        acl::print(&status);
    }
    Ok(())
}
