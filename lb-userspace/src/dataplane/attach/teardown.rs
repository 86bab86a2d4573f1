//! What a stop or a switch leaves behind: removing a previous lbd's link
//! for another hook or interface, detaching, or releasing the program to
//! keep forwarding for the next lbd (also on drop).

use aya::programs::tc::SchedClassifierLinkId;
use lb_common::consts::names;
use tracing::{info, warn};

use super::super::{program_error, Dataplane, DataplaneError, Released, Result};
use crate::{config::Attach, pinning::PinError};

use super::{tc_program, xdp::lbd_link, xdp_program, Attachment};

impl Dataplane {
    /// Removes the pinned link of the hook other than `kept` on
    /// `interface`, if a previous lbd left one: switching `attach` across
    /// a restart. Called once the new hook is attached, so the two
    /// overlap for a moment (XDP runs before tc; both read the same maps)
    /// and no packet meets neither. Returns whether one was removed.
    pub fn remove_other_hook(&mut self, interface: &str, kept: Attach) -> Result<bool> {
        let Some(pins) = &self.pins else {
            return Ok(false);
        };
        let other = match kept {
            Attach::Xdp => pins.tc_link_path(interface),
            Attach::Tc => pins.link_path(interface),
        };
        if !other.exists() || !lbd_link(&other) {
            return Ok(false);
        }
        remove_pin(&other)?;
        info!(%interface, pin = %other.display(), attach = %kept, "the other hook's pinned link removed: the program there is detached");
        Ok(true)
    }

    /// Detaches the balancer, if attached, and removes every pin: packets
    /// take the normal stack path again and the maps are freed. The full
    /// stop (SIGINT, `lbd --cleanup`), and the undoing of a first start
    /// that failed after the attach (`Engine::undo_fresh_start`); never
    /// on drop (see `impl Drop for Dataplane`).
    pub fn detach(&mut self) -> Result<()> {
        self.detach_hook()?;
        if let Some(pins) = &self.pins {
            let removed = pins.remove_all()?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins removed");
        }
        Ok(())
    }

    /// Detaches the balancer, if attached, and removes the pins this
    /// start made (see `PinDir::remove_made_since`): the undoing of a
    /// first start that failed (`Engine::undo_fresh_start`). What a
    /// previous lbd left pinned (maps not adopted, another layout's, a
    /// link on another interface) stays as it was.
    pub fn detach_made_here(&mut self) -> Result<()> {
        self.detach_hook()?;
        if let Some(pins) = &self.pins {
            let removed = pins.remove_made_since(&self.found_pins)?;
            info!(pins = removed.len(), dir = %pins.root().display(), "pins this start made removed");
        }
        Ok(())
    }

    /// Detaches the balancer from its hook, if attached; the pinned maps
    /// stay.
    fn detach_hook(&mut self) -> Result<()> {
        match self.attached.take() {
            Some((interface, Attachment::Owned(link))) => {
                xdp_program(&mut self.ebpf, names::PROG_LB)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_LB, e))?;
                info!(%interface, "XDP program detached");
            }
            Some((interface, Attachment::OwnedTc(link))) => {
                tc_program(&mut self.ebpf)?
                    .detach(link)
                    .map_err(|e| program_error("detaching", names::PROG_TC_LB, e))?;
                info!(%interface, "tc program detached");
            }
            Some((interface, Attachment::Pinned { link, path, .. })) => {
                remove_pin(&path)?;
                drop(link);
                info!(%interface, pin = %path.display(), "program detached (pinned link removed)");
            }
            None => {}
        }
        Ok(())
    }

    /// Leaves the program attached and the maps pinned for the next lbd
    /// (SIGTERM: a restart or an upgrade). Without pins this is a detach.
    /// With nothing attached (the kernel dropped the hook, see
    /// `forget_hook`), or a cls_bpf filter that could not be kept (it goes
    /// with lbd), the pinned maps stay for the next lbd, which adopts them
    /// and attaches anew (`NothingAttached`). Says which happened.
    pub fn release(&mut self) -> Result<Released> {
        match self.attached.take() {
            Some((interface, Attachment::Pinned { link, path, .. })) => {
                drop(link);
                info!(%interface, pin = %path.display(), "program left running for the next lbd");
                Ok(Released::StillForwarding)
            }
            None if self.pins.is_some() => {
                info!("no program attached (its hook was lost); the maps stay pinned for the next lbd");
                Ok(Released::NothingAttached)
            }
            // A cls_bpf filter (no tcx) cannot be pinned, but it outlives
            // its process unless detached: left running on the pinned
            // maps, as a pinned link is; the next lbd attaches its own
            // filter, then removes this one (`ownership::cls_bpf`).
            Some((interface, Attachment::OwnedTc(id))) if self.pins.is_some() => {
                match self.keep_filter(id) {
                    Ok(()) => {
                        info!(%interface, "tc filter (cls_bpf) left running for the next lbd, which removes it once its own runs");
                        Ok(Released::StillForwarding)
                    }
                    // As on drop: the filter goes with lbd, the maps stay
                    // pinned, and the next lbd adopts them and attaches
                    // anew (removing them would lose the connection table
                    // for a stop that was to keep it).
                    Err(error) => {
                        warn!(%interface, %error, "keeping the tc filter (cls_bpf) for the next lbd failed: it goes with lbd, and the node forwards nothing until the next lbd attaches; the maps stay pinned for it");
                        Ok(Released::NothingAttached)
                    }
                }
            }
            other => {
                self.attached = other;
                self.detach()?;
                Ok(Released::Detached)
            }
        }
    }

    /// Leaves lbd's cls_bpf filter `id` running when this process exits
    /// (it is detached when its link is dropped otherwise): a filter
    /// cannot be pinned, so this is how it outlives lbd.
    fn keep_filter(&mut self, id: SchedClassifierLinkId) -> Result<()> {
        let link = tc_program(&mut self.ebpf)?
            .take_link(id)
            .map_err(|e| program_error("keeping the filter of", names::PROG_TC_LB, e))?;
        // Not dropped: the filter stays when lbd exits.
        std::mem::forget(link);
        Ok(())
    }

    /// Removes the links a previous lbd pinned in this pin directory for
    /// interfaces other than `interface` (the config's `interface` changed
    /// across a restart): the programs there share this lbd's maps and
    /// would go on forwarding with them. The pin directory is this lbd's
    /// alone (its lock), so they are a stopped lbd's. Returns the
    /// interfaces they were on.
    pub fn remove_other_interfaces(&mut self, interface: &str) -> Result<Vec<String>> {
        let Some(pins) = &self.pins else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for pin in pins.link_pins()? {
            if pin.interface == interface || !lbd_link(&pin.path) {
                continue;
            }
            remove_pin(&pin.path)?;
            info!(interface = %pin.interface, hook = %pin.hook, pin = %pin.path.display(), now = %interface, "a previous lbd's pinned link on another interface removed (the configured interface changed): the program there is detached");
            removed.push(pin.interface);
        }
        Ok(removed)
    }
}

impl Drop for Dataplane {
    /// A program attached through an owned link goes with its process; a
    /// pinned one stays (only `detach` removes it). Pins are never removed
    /// here: a drop without `release` or `detach` is a start that failed
    /// after the attach (a restart's too, which adopted the maps and
    /// removed the previous lbd's hook) or a panic, and that leaves the
    /// data plane as a crash does, forwarding on the pinned tables for the
    /// next lbd. So with pins, a cls_bpf filter (which cannot be pinned)
    /// is left running as `release` leaves it. A first start that fails
    /// is undone with an explicit `detach` (`Engine::undo_fresh_start`).
    /// A start that stops before its program ran leaves the previous lbd's
    /// pins as they were: the maps it staged in their place go.
    fn drop(&mut self) {
        if self.attached.is_none() {
            self.discard_staged();
        }
        match self.attached.take() {
            Some((interface, Attachment::OwnedTc(id))) if self.pins.is_some() => {
                match self.keep_filter(id) {
                    Ok(()) => {
                        info!(%interface, "tc filter (cls_bpf) left running on the pinned maps for the next lbd, which removes it once its own runs");
                    }
                    Err(error) => {
                        warn!(%interface, %error, "keeping the tc filter failed: it goes with lbd; the maps stay pinned for the next lbd");
                    }
                }
            }
            owned @ Some((_, Attachment::Owned(_) | Attachment::OwnedTc(_))) => {
                self.attached = owned;
                if let Err(error) = self.detach_hook() {
                    warn!(%error, "detaching on drop failed");
                }
            }
            other => self.attached = other,
        }
    }
}

/// Removes the pin at `path`; one already gone is not an error.
pub(crate) fn remove_pin(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Pin(PinError::Io {
            action: "removing",
            path: path.to_owned(),
            source,
        })),
    }
}
