//! `lbctl config dump`: lbd's running configuration, runtime changes
//! included, as a config file to save.

use lb_userspace::api::{
    client::{Client, ClientError},
    schema::ConfigText,
};

use crate::Failure;

/// Prints the running config, and on stderr (so a redirect to a file
/// keeps only the config) what it leaves out; fails (exit 1, the text
/// still printed, to be fixed by hand) when lbd says the text would not
/// load as a config file. The shell has truncated a redirect's file
/// before lbctl runs, so the exit code protects the config file only
/// when the dump goes to a temporary file moved over it on success
/// (`lbctl config dump > lbd.toml.new && mv lbd.toml.new lbd.toml`), as
/// `--help` and the README say.
pub(crate) async fn run(client: &Client) -> Result<(), Failure> {
    let config = client.config().await?;
    out!("{}", config.toml);
    for note in &config.notes {
        crate::output::note(note);
    }
    outcome(&config)
}

/// The exit of a dump: a failure naming the load error, if any.
fn outcome(config: &ConfigText) -> Result<(), Failure> {
    match &config.load_error {
        None => Ok(()),
        Some(error) => Err(Failure::new(
            ClientError::EXIT_OTHER,
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

    /// `--help` tells how to save the dump so that a failure leaves the
    /// config file as it was: a redirect straight onto it has emptied it
    /// before lbctl even runs.
    #[test]
    fn the_help_says_to_save_through_a_temporary_file() {
        use clap::CommandFactory as _;
        let mut command = crate::Cli::command();
        let dump = command
            .find_subcommand_mut("config")
            .and_then(|c| c.find_subcommand_mut("dump"))
            .expect("config dump");
        let help = dump.render_long_help().to_string();
        assert!(help.contains("Exits 1, the text still printed"), "{help}");
        assert!(
            help.contains("lbctl config dump > lbd.toml.new && mv lbd.toml.new lbd.toml"),
            "{help}"
        );
    }
}
