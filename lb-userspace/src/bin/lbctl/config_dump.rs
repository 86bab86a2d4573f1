//! `lbctl config dump`: lbd's running configuration, runtime changes
//! included, as a config file to save.

use lb_userspace::api::{client::Client, schema::ConfigText};

use crate::Failure;

/// Prints the running config.
pub async fn run(client: &Client) -> Result<(), Failure> {
    let config: ConfigText = client.get("/v1/config", &[]).await?;
    print!("{}", config.toml);
    Ok(())
}
