//! Applying the configuration: the file (one-shot `apply`, and `run`'s
//! start and SIGHUP) or the settings last applied (`run`'s re-apply after
//! an interface changed), with the VIPs checked for being local.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use anyhow::Context as _;
use lb_decap::{
    config::{Settings, Vip},
    dataplane, local,
    owner::Ownership,
    pins::PinDir,
    watch::{Snapshot, Watched},
};
use tracing::{info, warn};

/// What an apply did and was made against (for `run`'s watches).
pub(crate) struct Done {
    /// The interfaces and links, for the 2 s look.
    pub(super) snapshot: Snapshot,
    /// The VIPs applied, for the periodic local check.
    pub(super) vips: Vec<Vip>,
    /// Those found not local (warned about).
    pub(super) not_local: BTreeSet<IpAddr>,
    /// The settings applied: what a re-apply after an interface change
    /// starts from (only SIGHUP reads the file again).
    pub(super) settings: Settings,
}

/// Applies the file (with `owner`, as `run`, holding its interfaces);
/// returns what it was done against.
pub(crate) fn apply(
    config: &Path,
    pins: &PinDir,
    owner: Option<&mut Ownership>,
) -> anyhow::Result<Done> {
    let settings = Settings::load(config)?;
    for warning in settings.warnings() {
        warn!("{}: {warning}", config.display());
    }
    apply_settings(config, settings, pins, owner)
}

/// Applies `settings` (read from `config`, named in messages); returns
/// what it was done against.
pub(super) fn apply_settings(
    config: &Path,
    settings: Settings,
    pins: &PinDir,
    owner: Option<&mut Ownership>,
) -> anyhow::Result<Done> {
    // Read before the apply: a change during it is seen at the next look.
    let ifindexes = settings
        .interfaces
        .iter()
        .map(|name| lb_decap::interface::index(name).with_context(|| format!("interface {name}")))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let applied = match owner {
        Some(owner) => dataplane::apply_owned(&settings, pins, owner),
        None => dataplane::apply(&settings, pins),
    }
    .with_context(|| format!("applying {}", config.display()))?;
    info!(
        interfaces = %settings.interface_names(),
        attach = settings.attach.name(),
        addresses = settings.addresses.len(),
        sources = settings.sources.len(),
        vips = settings.vips.len(),
        ?applied,
        "configuration applied"
    );
    let not_local = warn_not_local(config, &settings.vips);
    // With `xdp_mode = "auto"`, the tc link if native XDP was unavailable.
    let watched = settings
        .interfaces
        .iter()
        .zip(ifindexes)
        .map(|(name, ifindex)| Watched {
            name: name.clone(),
            ifindex,
            link_path: dataplane::serving_link(&settings, pins, name),
        })
        .collect();
    Ok(Done {
        snapshot: Snapshot::new(&settings, watched),
        vips: settings.vips.clone(),
        not_local,
        settings,
    })
}

/// Warns about each VIP of `config` that is not local (`local`); returns
/// them.
pub(crate) fn warn_not_local(config: &Path, vips: &[Vip]) -> BTreeSet<IpAddr> {
    match local::not_local(vips) {
        Ok(missing) => {
            for address in &missing {
                warn!("{}: {}", config.display(), local::warning(*address));
            }
            missing
        }
        Err(error) => {
            warn!(
                error = format!("{error:#}"),
                "could not check whether the VIPs are local"
            );
            BTreeSet::new()
        }
    }
}
