//! `lbctl config dump`: lbd's running configuration, runtime changes
//! included, as a config file to save.

use lb_userspace::api::client::Client;

use crate::Failure;

/// Prints the running config, and on stderr (so a redirect to a file
/// keeps only the config) what it leaves out.
pub(crate) async fn run(client: &Client) -> Result<(), Failure> {
    let config = client.config().await?;
    print!("{}", config.toml);
    for note in &config.notes {
        eprintln!("lbctl: note: {note}");
    }
    Ok(())
}
