//! Loading, attaching and adopting the decap program. `apply` is the one
//! way the configuration reaches the kernel: the first time it loads the
//! object, fills and pins its maps, attaches the program and pins the
//! link; afterwards (a restart, a reload) it finds the pinned link still
//! attached and only updates the pinned maps in place, so decapsulation
//! never stops (an XDP link keeps the mode it was attached in: a changed
//! `xdp_mode` is warned about, and applied by a cleanup and a start).
//! `xdp_mode = "auto"` attaches native XDP, else at tc ingress, never
//! generic XDP ([`choose_hook`]); "generic" is refused.
//! Several interfaces share one program and one set of maps, a link on
//! each. Switching the hook or the interfaces attaches the new links
//! before the old ones are removed; a link on an interface the config
//! does not name is removed only when no other running lb-decap serves
//! it (`owner`: otherwise the apply is refused, nothing changed). A live
//! link whose program does not read the pinned maps (an older
//! lb-decap's, with fewer maps, or one left by an lb-decap before the
//! lock) or is another build's (an upgrade; compared by the kernel's
//! program tag) keeps its place: the new program is loaded and verified
//! first, then swapped into that link atomically (`BPF_LINK_UPDATE`), so
//! a failed load leaves the old program unwrapping. Any new link or swap
//! puts the new program into every link, so all read one set of maps.
//! Another build's program is swapped only by the start of `run` or by
//! a one-shot apply no running lb-decap holds the interfaces against
//! ([`Takeover`](takeover::Takeover)): a re-apply of `run`, or a one-shot apply beside a
//! live `run`, leaves it and updates the maps (an old binary still
//! running after `dpkg -i` put its program back over the new one).
//! One lb-decap at a time does this per pin directory (`lock`).
//!
//! The parts: [`hook`] (which hook), [`load`] and [`tag`] (the object,
//! its programs, a build's identity), [`reconcile`] (the apply under the
//! lock), [`attach`] (new links and swaps), [`pinned_links`] (what a pin
//! holds), [`stale_program`] and [`takeover`] (whether to swap), and
//! [`warnings`].

mod attach;
mod hook;
mod load;
mod pinned_links;
mod reconcile;
mod stale_program;
mod tag;
mod takeover;
mod warnings;

pub use hook::{choose_hook, refuse_generic, HookChoice, GENERIC_REFUSED};
pub use load::{load_object, tc_program, xdp_program};
pub use pinned_links::{link_program, serving_link};
pub use tag::{build_tag, format_tag, program_tag};

use anyhow::bail;
use tracing::{info, warn};

use crate::{config::Settings, object::DECAP_OBJECT, owner::Ownership, pins::PinDir};

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Every pinned link was still attached, running this build's
    /// program on the pinned maps: only the maps were updated.
    Updated,
    /// The program was loaded and attached (first start, or after a
    /// cleanup, a change of hook or interfaces, or a stale pin), or put
    /// into the live links in place of one that did not read the pinned
    /// maps or was another build's.
    Attached,
}

/// Makes the kernel do what `settings` says (see the module doc).
pub fn apply(settings: &Settings, pins: &PinDir) -> anyhow::Result<Applied> {
    apply_with(settings, pins, DECAP_OBJECT, None)
}

/// [`apply`] for `lb-decap run`: the interfaces it serves stay locked in
/// `owner` for its lifetime (see `owner`), so another lb-decap on the
/// same pin directory cannot take them for stale.
pub fn apply_owned(
    settings: &Settings,
    pins: &PinDir,
    owner: &mut Ownership,
) -> anyhow::Result<Applied> {
    apply_with(settings, pins, DECAP_OBJECT, Some(owner))
}

/// [`apply`] with the decap object `object` ([`DECAP_OBJECT`]); the tests
/// pass one that does not load, to see that a failed load leaves the
/// attached program in place.
pub fn apply_object(settings: &Settings, pins: &PinDir, object: &[u8]) -> anyhow::Result<Applied> {
    apply_with(settings, pins, object, None)
}

/// [`apply_object`], holding the interfaces in `owner` when given
/// ([`apply_owned`]).
pub fn apply_with(
    settings: &Settings,
    pins: &PinDir,
    object: &[u8],
    owner: Option<&mut Ownership>,
) -> anyhow::Result<Applied> {
    refuse_generic(settings.attach, settings.xdp_mode)?;
    let Some(_lock) = crate::lock::lock(pins.root(), || pins.prepare())? else {
        bail!("the pin directory {} vanished", pins.root().display());
    };
    match reconcile::apply_locked(settings, pins, object, owner.as_deref()) {
        Ok((applied, claim)) => {
            if let Some(owner) = owner {
                owner.commit(pins, claim, &settings.interfaces);
            }
            Ok(applied)
        }
        Err(error) => {
            // Leave no empty directories behind a failed first start.
            if pins.links().is_empty()
                && !pins.maps_pinned()
                && crate::owner::live_interfaces(pins).is_empty()
            {
                let _ = pins.remove_owner_dirs();
                let _ = std::fs::remove_dir(pins.maps_dir());
                let _ = std::fs::remove_dir(pins.root());
            }
            Err(error)
        }
    }
}

/// Detaches the program and removes every pin (`lb-decap cleanup`).
/// Returns how many pins were removed.
pub fn cleanup(pins: &PinDir) -> anyhow::Result<usize> {
    if !pins.root().exists() {
        return Ok(0);
    }
    let Some(_lock) = crate::lock::lock(pins.root(), || Ok(()))? else {
        // Removed meanwhile (another cleanup): nothing left here.
        return Ok(0);
    };
    let live = crate::owner::live_interfaces(pins);
    if !live.is_empty() {
        warn!(interfaces = %live.join(", "), dir = %pins.root().display(), "a running lb-decap serves these interfaces from this pin directory: it sees its link gone and attaches again within seconds; stop it first (systemctl stop lb-decap)");
    }
    let removed = pins.remove_all()?;
    for path in &removed {
        info!(pin = %path.display(), "removed");
    }
    Ok(removed.len())
}
