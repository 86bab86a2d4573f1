//! `lbctl reload`: lbd re-reads its config file and applies only the
//! difference; with `--dry-run` it says what that would change and which
//! runtime changes it would undo.

use lb_userspace::api::client::Client;

use crate::{output, Failure};

/// Arguments of `lbctl reload`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show what the reload would do; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Asks lbd to reload.
pub(crate) async fn run(client: &Client, args: &Args) -> Result<(), Failure> {
    let change = client.reload(args.dry_run).await?;
    output::change(&change, args.json);
    Ok(())
}
