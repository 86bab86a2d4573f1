//! `tc_hc_encap` (the program that sends checks through a tunnel) loaded
//! before it is first needed, where a verifier refusal can still refuse
//! something whole: at start before the first commit and the program
//! swap (the start fails, and the previous lbd's program, pinned, keeps
//! forwarding with the backends it holds up), and at run time before a
//! change or reload that brings the first check through a tunnel (the
//! change is refused, nothing changed). Once some check went through a
//! tunnel without it (a refusal after the checks existed), the path is
//! retried as before (`sync_hc_path`: those checks fail with a warning).

use anyhow::Context as _;

use crate::config::CheckType;
use crate::model::Model;

use super::Engine;

/// Whether some check of `model` goes through its backend's tunnel
/// (`through_tunnel` on a tunnelled VIP, a check that is not `none`).
pub(super) fn checks_through_tunnel(model: &Model) -> bool {
    model.vips.values().any(|vip| {
        vip.config.forwarding.is_tunnel()
            && vip.backends.values().any(|backend| {
                let health = backend.config.health.as_ref().unwrap_or(&vip.config.health);
                health.through_tunnel && health.check != CheckType::None
            })
    })
}

/// When `tc_hc_encap` must be loaded before `next` is made current from
/// `current` (None: at start): when `next` checks through a tunnel and
/// `current` does not (a start, or a change that brings the first such
/// check). A running model that already checks through a tunnel is left
/// to `sync_hc_path`'s retries, so a refusal there does not refuse every
/// later change.
fn must_load_before(current: Option<&Model>, next: &Model) -> bool {
    checks_through_tunnel(next) && current.is_none_or(|current| !checks_through_tunnel(current))
}

/// Loads `tc_hc_encap` with `load` when [`must_load_before`] says so:
/// the error (the load's, kept in the chain) names the program, what the
/// refusal leaves (at start, `current` None: the start is refused, the
/// previous lbd's program forwarding; else the change is refused) and
/// what to do.
fn load_before(
    current: Option<&Model>,
    next: &Model,
    load: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if !must_load_before(current, next) {
        return Ok(());
    }
    let name = lb_common::consts::names::PROG_TC_HC_ENCAP;
    let left = match current {
        None => "this start is refused before the program swap, so the previous lbd's pinned program keeps forwarding and its backends stay up; run the previous build again, or set through_tunnel = false on those checks and start again",
        Some(_) => "nothing changed; set through_tunnel = false on those checks, or run a build whose program this kernel accepts",
    };
    load().with_context(|| {
        format!(
            "checks go through a tunnel (through_tunnel = true), and the {name} program that sends them cannot be loaded (without it every such check fails and its backends go down): {left}"
        )
    })
}

impl Engine {
    /// At start, before the first commit: `tc_hc_encap` loaded when
    /// `model` checks through a tunnel (see the module's doc); an error
    /// when it cannot be.
    pub(super) fn load_hc_program_for_start(&mut self, model: &Model) -> anyhow::Result<()> {
        let ebpf = self.dataplane.ebpf_mut();
        load_before(None, model, || super::tunnel::hc_program(ebpf).map(|_| ()))
    }

    /// Before a change or reload makes `next` current (not for a dry
    /// run, which changes nothing): `tc_hc_encap` loaded when `next`
    /// brings the first check through a tunnel; why the change must be
    /// refused when it cannot be.
    pub(super) fn load_hc_program_for(
        &mut self,
        next: &Model,
        dry_run: bool,
    ) -> Result<(), String> {
        if dry_run {
            return Ok(());
        }
        let ebpf = self.dataplane.ebpf_mut();
        load_before(Some(&self.model), next, || {
            super::tunnel::hc_program(ebpf).map(|_| ())
        })
        .map_err(|error| format!("{error:#}"))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::config::Config;

    /// A model of one VIP in `forwarding` mode with a TCP check,
    /// `through_tunnel` as given.
    fn model(forwarding: &str, through_tunnel: bool) -> Model {
        let text = format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n\
             [vip.health]\ncheck = \"tcp\"\nthrough_tunnel = {through_tunnel}\n\
             [[vip.backend]]\naddress = \"198.19.0.11\"\n"
        );
        Model::from_config(&Config::from_toml_str(&text, "test").unwrap())
    }

    /// The verifier's refusal, injected.
    fn refused() -> anyhow::Result<()> {
        Err(anyhow::anyhow!("the verifier refused it"))
    }

    #[test]
    fn only_checks_through_a_tunnel_need_the_program() {
        assert!(checks_through_tunnel(&model("ipip", true)));
        assert!(!checks_through_tunnel(&model("ipip", false)));
    }

    /// Finding 2: at start, a refusal of `tc_hc_encap` with checks
    /// through a tunnel fails the start (before the swap), naming the
    /// program and what to do; without such checks nothing is loaded.
    #[test]
    fn a_refused_program_fails_the_start_that_needs_it() {
        let why = format!(
            "{:#}",
            load_before(None, &model("ipip", true), refused).unwrap_err()
        );
        assert!(why.contains("tc_hc_encap"), "{why}");
        assert!(why.contains("the verifier refused it"), "{why}");
        assert!(
            why.contains("start is refused before the program swap"),
            "{why}"
        );
        assert!(why.contains("through_tunnel = false"), "{why}");
        let loaded = Cell::new(false);
        load_before(None, &model("ipip", false), || {
            loaded.set(true);
            refused()
        })
        .unwrap();
        assert!(!loaded.get(), "not needed: not loaded");
        load_before(None, &model("ipip", true), || Ok(())).unwrap();
    }

    /// The kernel's refusal stays in the start's error, so lbd exits with
    /// the status of a refused object (13), which the unit does not
    /// restart every 2 s.
    #[test]
    fn a_refusal_at_start_exits_as_a_refused_object() {
        let verifier = || -> anyhow::Result<()> {
            Err(crate::dataplane::DataplaneError::Program {
                action: "loading",
                program: "tc_hc_encap",
                source: Box::new(aya::programs::ProgramError::LoadError {
                    io_error: std::io::Error::from_raw_os_error(libc::EACCES),
                    verifier_log: aya_obj::VerifierLog::new("R1 invalid mem access".to_owned()),
                }),
            }
            .into())
        };
        let error = load_before(None, &model("ipip", true), verifier).unwrap_err();
        assert!(super::super::super::refused::object_refused(&error));
    }

    /// At run time a change that brings the first check through a tunnel
    /// is refused when the program is; one made while such checks run
    /// already is left to the path's retries (not refused).
    #[test]
    fn a_refused_program_refuses_the_change_that_brings_the_first_check() {
        let before = model("ipip", false);
        let why = format!(
            "{:#}",
            load_before(Some(&before), &model("ipip", true), refused).unwrap_err()
        );
        assert!(why.contains("nothing changed"), "{why}");
        let running = model("ipip", true);
        load_before(Some(&running), &model("ipip", true), refused).unwrap();
    }
}
