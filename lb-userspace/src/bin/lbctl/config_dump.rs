//! `lbctl config dump`: lbd's running configuration, runtime changes
//! included, as a config file to save.

use lb_userspace::api::{client::Client, schema::ConfigText};

use crate::Failure;

/// Prints the running config, and on stderr (so a redirect to a file
/// keeps only the config) what it leaves out; fails (exit 1, the text
/// still printed) when lbd says the text would not load as a config
/// file, so `lbctl config dump > lbd.toml && ...` stops there.
pub(crate) async fn run(client: &Client) -> Result<(), Failure> {
    let config = client.config().await?;
    print!("{}", config.toml);
    for note in &config.notes {
        eprintln!("lbctl: note: {note}");
    }
    outcome(&config)
}

/// The exit of a dump: a failure naming the load error, if any.
fn outcome(config: &ConfigText) -> Result<(), Failure> {
    match &config.load_error {
        None => Ok(()),
        Some(error) => Err(Failure::new(
            1,
            format!("the running configuration does not load as a config file as it is ({error}); fix that in the text before saving it as the file, or lbd will refuse it at the next start or reload"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_that_would_not_load_fails() {
        let mut config = ConfigText {
            toml: "interface = \"eth0\"\n".to_owned(),
            notes: vec!["left out".to_owned()],
            load_error: None,
        };
        assert!(outcome(&config).is_ok());
        config.load_error =
            Some("the running configuration:9:1: bgp.addresses[0]: no VIP".to_owned());
        let failure = outcome(&config).expect_err("fails");
        assert_eq!(failure.code, 1);
        assert!(
            failure.message.contains("bgp.addresses[0]: no VIP"),
            "{}",
            failure.message
        );
    }
}
