//! The exit statuses of a start that cannot succeed however often it is
//! tried: the config refused, or this build's data plane object refused
//! by this kernel. The systemd unit lists them in
//! `RestartPreventExitStatus=`, so such a start leaves the unit failed
//! (seen in `systemctl status`, the error in the journal) instead of a
//! restart every `RestartSec=` that runs the verifier each time on the
//! cores that forward the traffic (the pinned program of the previous lbd
//! keeps forwarding either way). systemd 252 (Debian bookworm) has no
//! `RestartSteps=`/`RestartMaxDelaySec=` (254) to back off instead.

use crate::{config::ConfigError, dataplane::DataplaneError};

/// lbd's exit status when it refuses its config file (it does not parse,
/// or breaks a rule: what `lbctl config check` says). Not for a file that
/// cannot be read (exit 1: it may be there at the next try).
pub const EXIT_CONFIG_REFUSED: u8 = 12;

/// lbd's exit status when the kernel refuses a program of this build's
/// data plane object (the verifier, or a feature this kernel lacks): the
/// same object on the same kernel is refused again. Not for a refusal
/// that may pass at the next try (memory, a busy resource: exit 1).
pub const EXIT_OBJECT_REFUSED: u8 = 13;

/// The exit status for a config `error` at start: [`EXIT_CONFIG_REFUSED`]
/// for a refusal of the file's text, 1 for a file not read.
pub fn config_exit_status(error: &ConfigError) -> u8 {
    match error {
        ConfigError::Io { .. } => 1,
        _ => EXIT_CONFIG_REFUSED,
    }
}

/// Whether `error`'s chain holds the kernel's refusal to load a program
/// of the data plane object, one that would come again at the next try.
pub(crate) fn object_refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let Some(DataplaneError::Program { action, source, .. }) =
            cause.downcast_ref::<DataplaneError>()
        else {
            return false;
        };
        let aya::programs::ProgramError::LoadError { io_error, .. } = source.as_ref() else {
            return false;
        };
        let transient = [libc::ENOMEM, libc::EAGAIN, libc::EINTR, libc::EBUSY];
        *action == "loading"
            && !io_error
                .raw_os_error()
                .is_some_and(|errno| transient.contains(&errno))
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    fn load_error(errno: i32) -> anyhow::Error {
        let refused = aya::programs::ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(errno),
            verifier_log: aya_obj::VerifierLog::new("R1 invalid mem access".to_owned()),
        };
        anyhow::Error::new(DataplaneError::Program {
            action: "loading",
            program: "xdp_lb",
            source: Box::new(refused),
        })
        .context("loading the data plane")
    }

    /// The verifier's refusal of the object exits with the status the
    /// unit does not restart; a failure that may pass next time (no
    /// memory) and any other failure exit 1.
    #[test]
    fn a_refused_object_exits_with_its_own_status() {
        let status = super::super::exit_status;
        assert_eq!(status(&load_error(libc::EACCES)), EXIT_OBJECT_REFUSED);
        assert_eq!(status(&load_error(libc::EINVAL)), EXIT_OBJECT_REFUSED);
        assert_eq!(status(&load_error(libc::ENOMEM)), 1);
        let other = Err::<(), _>(std::io::Error::other("no such interface"))
            .context("attaching")
            .expect_err("an error");
        assert_eq!(status(&other), 1);
    }

    /// A config lbd refuses exits with the status the unit does not
    /// restart; one it cannot read exits 1.
    #[test]
    fn a_refused_config_exits_with_its_own_status() {
        let refused = crate::config::Config::from_toml_str("interface = 3\n", "lbd.toml")
            .expect_err("refused");
        assert_eq!(config_exit_status(&refused), EXIT_CONFIG_REFUSED);
        let unread = crate::config::Config::load(std::path::Path::new("/nonexistent/lbd.toml"))
            .expect_err("not read");
        assert_eq!(config_exit_status(&unread), 1);
    }
}
