//! `run`'s loop: apply, then wait for signals, looking at the interfaces
//! and the VIPs between them. The parts it calls (applies, re-applies,
//! the VIP check, a failed reload's words) are modules of their own.

use std::{path::Path, time::Instant};

use anyhow::Context as _;
use lb_decap::{
    local::VipWatch,
    owner::Ownership,
    pins::PinDir,
    signals::{Request, Signals},
    watch::{self, Seen},
};
use tracing::{error, info, warn};

use super::{
    apply_file::{apply, apply_settings},
    early_signals::stop_requested_before_start,
    reapply::{reapply, Reapplied},
    reload_failure::reload_failed,
    vip_recheck::recheck_vips,
};

/// `run`: apply (unless a stop came during start-up: then nothing), then
/// wait for signals, looking at the interfaces every
/// `watch::INTERVAL` between them (and at the VIPs every
/// `local::VIP_INTERVAL`). A failing SIGHUP reload is logged and the
/// running configuration kept; after an interface changed, the settings
/// last applied are applied again with the interfaces read anew (the
/// file is read only on SIGHUP, so a pending edit neither goes live nor
/// stops `run`); a failing re-apply after an interface changed is an
/// error (exit non-zero: decapsulation has stopped, and
/// systemd's Restart=on-failure tries again), unless the interface went
/// away meanwhile: that is waited for. The interfaces stay held
/// (`owner`) until it exits.
pub(crate) fn foreground(config: &Path, pins: &PinDir, signals: Signals) -> anyhow::Result<()> {
    if stop_requested_before_start(&signals)? {
        info!("stopped before applying anything; nothing changed");
        return Ok(());
    }
    let mut owner = Ownership::new();
    let mut done = apply(config, pins, Some(&mut owner))?;
    let mut vips = VipWatch::new(done.not_local.clone(), Instant::now());
    info!(
        "running; SIGHUP reloads {}, SIGTERM exits (the program stays attached)",
        config.display()
    );
    // The last "not ready" said, so a long wait is logged once.
    let mut waiting: Option<String> = None;
    loop {
        match signals.next_within(watch::INTERVAL)? {
            Some(Request::Reload) => {
                info!("SIGHUP: reloading");
                match apply(config, pins, Some(&mut owner)) {
                    Ok(applied) => {
                        vips = VipWatch::new(applied.not_local.clone(), Instant::now());
                        done = applied;
                    }
                    Err(e) => error!(error = format!("{e:#}"), "{}", reload_failed(&e)),
                }
            }
            Some(Request::Stop) => {
                info!("stopping; the decap program stays attached (`lb-decap cleanup` removes it)");
                return Ok(());
            }
            None => {
                match done.snapshot.look() {
                    Seen::Same => {}
                    Seen::NotReady(what) => {
                        if waiting.as_ref() != Some(&what) {
                            warn!(%what, "waiting for the interface before applying again");
                            waiting = Some(what);
                        }
                    }
                    Seen::Changed(what) => {
                        waiting = None;
                        warn!(%what, "interface changed; applying the configuration in force again (the file is read again only on SIGHUP)");
                        let last = &done.settings;
                        let again = reapply(
                            &what,
                            || {
                                let settings = last.refreshed().with_context(|| {
                                    format!(
                                        "re-reading the interfaces of the configuration applied from {}",
                                        config.display()
                                    )
                                })?;
                                apply_settings(config, settings, pins, Some(&mut owner))
                            },
                            || done.snapshot.look(),
                        )?;
                        match again {
                            Reapplied::Done(applied) => {
                                vips = VipWatch::new(applied.not_local.clone(), Instant::now());
                                done = applied;
                            }
                            Reapplied::NotReady(now) => waiting = Some(now),
                        }
                    }
                }
                recheck_vips(&mut vips, &done.vips);
            }
        }
    }
}
