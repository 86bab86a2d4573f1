//! The running configuration as a TOML file (`lbctl config dump`), with
//! what a file cannot hold named, and a text lbd would refuse to start
//! with said so.

use crate::{api::schema::ConfigText, config, daemon::engine::Engine};

/// The dump's answer for `toml` (with `notes` on what it leaves out):
/// the text is loaded as a start loads a config file, and a refusal is
/// the answer's `load_error`, so `lbctl config dump` does not hand out a
/// file lbd would not start with (a `[bgp]` address whose VIP was removed
/// at run time, a runtime NAT VIP whose address an instance moves but
/// not its NAT address).
fn checked_dump(toml: String, notes: Vec<String>) -> ConfigText {
    let load_error = config::Config::from_toml_str(&toml, "the running configuration")
        .err()
        .map(|error| error.to_string());
    ConfigText {
        toml,
        notes,
        load_error,
    }
}

impl Engine {
    /// The running configuration (runtime changes included) as TOML.
    /// What a file cannot hold is left out and named in its notes, and a
    /// text the loader would still refuse says so.
    pub(crate) fn config_text(&self) -> ConfigText {
        let mut running = self.model.to_config(&self.config);
        let (guard, notes) = self
            .guard
            .config()
            .of_served(&|id| self.model.vips.contains_key(id));
        running.guard = guard;
        checked_dump(config::to_toml(&running), notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_that_would_not_load_says_why() {
        let vip = "interface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n";
        let fine = checked_dump(vip.to_owned(), vec!["left out".to_owned()]);
        assert_eq!(fine.load_error, None);
        assert_eq!(fine.notes, ["left out"]);
        // A runtime NAT VIP whose NAT address the [[vrrp]] does not move.
        let unmoved = vip.replace(
            "port = 80\n",
            "port = 80\nforwarding = \"nat\"\nnat_source = \"198.18.0.51\"\n",
        ) + "\n[[vrrp]]\nvrid = 51\npriority = 100\naddresses = [\"198.18.0.100\"]\n";
        let dumped = checked_dump(unmoved.clone(), Vec::new());
        let error = dumped.load_error.expect("refused");
        assert!(
            error.starts_with("the running configuration:") && error.contains("198.18.0.51"),
            "{error}\n{unmoved}"
        );
        assert_eq!(dumped.toml, unmoved);
    }
}
