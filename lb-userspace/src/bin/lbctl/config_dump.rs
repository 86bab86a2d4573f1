//! `lbctl config dump`: lbd's running configuration, runtime changes
//! included, as a config file to save.

use lb_userspace::api::client::Client;

use crate::Failure;

/// Prints the running config.
pub(crate) async fn run(client: &Client) -> Result<(), Failure> {
    let config = client.config().await?;
    print!("{}", config.toml);
    Ok(())
}
