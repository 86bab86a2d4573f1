//! Whether an apply may swap this build's program into a live link that
//! runs another build's (only the start of `run` or a lone one-shot
//! apply may), and holding that program in place when it may not.

use anyhow::bail;
use tracing::{debug, info, warn};

use super::{
    load::{loaded, Ready},
    pinned_links::link_program,
    reconcile::Plan,
    stale_program::unread_map,
    tag::{format_tag, program_tag},
};
use crate::{
    config::{Attach, Settings},
    owner::Ownership,
    pins::PinDir,
};

/// Whether this apply may swap this build's program into a live link
/// that runs another build's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Takeover {
    /// The start of `lb-decap run`, or a one-shot apply no running
    /// lb-decap holds the interfaces against.
    Allowed,
    /// A one-shot apply while a running lb-decap holds these interfaces:
    /// its next re-apply would see this build's program as another's, so
    /// the swap is left to its restart (an upgrade: `dpkg -i`, then
    /// `systemctl restart lb-decap`).
    Running(Vec<String>),
    /// A re-apply of `run` (SIGHUP, a changed interface): the program
    /// attached is not the one it loaded (a newer build's, say), and an
    /// older binary still running must not put its own back.
    Reapply,
}

/// Which [`Takeover`] an apply with `owner` (`run`) or without (one-shot)
/// of `interfaces` has.
pub(super) fn takeover(
    pins: &PinDir,
    interfaces: &[String],
    owner: Option<&Ownership>,
) -> anyhow::Result<Takeover> {
    match owner {
        Some(owner) if owner.started() => Ok(Takeover::Reapply),
        Some(_) => Ok(Takeover::Allowed),
        None => {
            let mut held = Vec::new();
            for interface in interfaces {
                if crate::owner::held_elsewhere(pins, interface)? {
                    held.push(interface.clone());
                }
            }
            Ok(if held.is_empty() {
                Takeover::Allowed
            } else {
                Takeover::Running(held)
            })
        }
    }
}

/// What to do instead of a swap that `takeover` forbids, in words.
fn restart_advice(takeover: &Takeover) -> String {
    match takeover {
        Takeover::Running(held) => format!(
            "a running lb-decap serves {}, so this one-shot apply swaps no program (that lb-decap's next reload would swap its own back): restart lb-decap (systemctl restart lb-decap) to swap this build's in (no gap)",
            held.join(", ")
        ),
        _ => "this running lb-decap did not load it and swaps only at its start: restart lb-decap (systemctl restart lb-decap) for the installed build's program to take over (no gap)".to_owned(),
    }
}

/// When `takeover` forbids swapping and a kept live link runs another
/// build's program: whether to hold it (only the maps updated; a retry
/// of native XDP given up, as it would put this build's program in
/// every link), or an error when the maps cannot be updated safely
/// (missing, or not read by that program) or a new link is needed (it
/// would carry this build's program into every link). False otherwise.
pub(super) fn hold_foreign(
    settings: &Settings,
    pins: &PinDir,
    takeover: &Takeover,
    plans: &mut [(String, u32, Plan)],
    ready: &mut Option<Ready>,
    object: &[u8],
) -> anyhow::Result<bool> {
    if *takeover == Takeover::Allowed {
        return Ok(false);
    }
    let mut foreign = Vec::new();
    for (interface, _, plan) in plans.iter() {
        let attach = match plan {
            Plan::Keep(attach) => *attach,
            Plan::RetryNative => Attach::Tc,
            Plan::New(_) => continue,
        };
        let path = pins.link_path(attach, interface);
        let attached = program_tag(link_program(&path)?)?;
        // Unloadable, it cannot be swapped in either: the apply goes on
        // as before (and fails where it needs the program).
        let build = match loaded(ready, settings, object).and_then(|r| r.tag(attach)) {
            Ok(build) => build,
            Err(error) => {
                debug!(
                    error = format!("{error:#}"),
                    "this build's program did not load; not compared with the attached one"
                );
                return Ok(false);
            }
        };
        if attached != build {
            foreign.push((interface.clone(), attach, path, attached, build));
        }
    }
    let Some((interface, attach, _, attached, build)) = foreign.first() else {
        return Ok(false);
    };
    let whose = format!(
        "the {} program on {interface} is another lb-decap build's (tag {}, this lb-decap's {})",
        attach.name(),
        format_tag(*attached),
        format_tag(*build)
    );
    let advice = restart_advice(takeover);
    if let Some((new, _, _)) = plans.iter().find(|(_, _, p)| matches!(p, Plan::New(_))) {
        bail!("{whose} and {new} needs a new link, which would put this build's program into every link; {advice}");
    }
    let missing = pins.missing_maps();
    if !missing.is_empty() {
        bail!(
            "{whose} and the pin directory lacks maps this build uses ({}); {advice}",
            missing.join(", ")
        );
    }
    for (interface, _, path, _, _) in &foreign {
        if unread_map(path, pins)?.is_some() {
            bail!("{whose} and the program on {interface} does not read the pinned maps, so updating them would not reach it; {advice}");
        }
    }
    for (interface, _, plan) in plans.iter_mut() {
        if *plan == Plan::RetryNative {
            info!(%interface, "native XDP not retried: it would swap this build's program into every link");
            *plan = Plan::Keep(Attach::Tc);
        }
    }
    warn!("{whose}: left in place and the maps updated; {advice}");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who may swap another build's program for this one's: the start of
    /// `run` and a one-shot apply nobody runs beside; not a one-shot apply
    /// beside a running lb-decap (whose reload would swap its own back)
    /// nor a re-apply of `run`.
    #[test]
    fn only_a_start_or_a_lone_apply_takes_over_another_builds_program() {
        let root = std::env::temp_dir().join(format!("lb-decap-takeover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pins = PinDir::new(&root);
        let eth0 = vec!["eth0".to_owned()];
        let mut run = Ownership::new();
        assert_eq!(
            takeover(&pins, &eth0, Some(&run)).expect("start"),
            Takeover::Allowed
        );
        assert_eq!(
            takeover(&pins, &eth0, None).expect("alone"),
            Takeover::Allowed
        );
        let claim = crate::owner::claim(&pins, &eth0, Some(&run)).expect("claim");
        run.commit(&pins, claim, &eth0);
        assert_eq!(
            takeover(&pins, &eth0, Some(&run)).expect("re-apply"),
            Takeover::Reapply
        );
        assert_eq!(
            takeover(&pins, &eth0, None).expect("beside"),
            Takeover::Running(eth0.clone())
        );
        assert!(restart_advice(&Takeover::Reapply).contains("systemctl restart lb-decap"));
        drop(run);
        assert_eq!(
            takeover(&pins, &eth0, None).expect("stopped"),
            Takeover::Allowed
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
