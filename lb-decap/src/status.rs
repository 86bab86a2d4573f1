//! `lb-decap status`: what the pinned program does (attachment, addresses,
//! VIPs, encapsulations) and its counters, read from the pins alone (no
//! running lb-decap needed).

use std::fmt::Write as _;

use anyhow::bail;
use lb_common::decap::{DECAP_F_GUE, DECAP_F_IPIP};

use crate::{dataplane::link_program, maps::Maps, pins::PinDir};

/// The status report as text (one `key: value` per line; counters as
/// `counter NAME VALUE`, stable for scripts).
pub fn report(pins: &PinDir) -> anyhow::Result<String> {
    if !pins.maps_pinned() {
        bail!(
            "nothing pinned under {}: lb-decap is not set up here (run `lb-decap apply` or `lb-decap run`)",
            pins.root().display()
        );
    }
    let maps = Maps::from_pins(pins)?;
    let mut out = String::new();
    let links = pins.links();
    if links.is_empty() {
        out.push_str("attached: no (no link pinned)\n");
    }
    for (attach, interface, path) in links {
        match link_program(&path) {
            Ok(id) => writeln!(
                out,
                "attached: {} on {interface} (program id {id})",
                attach.name()
            )?,
            Err(error) => writeln!(
                out,
                "attached: no ({} link on {interface}: {error:#})",
                attach.name()
            )?,
        }
    }
    let config = maps.config()?;
    writeln!(
        out,
        "ipip: {}",
        if config.flags & DECAP_F_IPIP != 0 {
            "on"
        } else {
            "off"
        }
    )?;
    if config.flags & DECAP_F_GUE != 0 {
        writeln!(out, "gue: on, port {}", u16::from_be(config.gue_port))?;
    } else {
        out.push_str("gue: off\n");
    }
    for address in maps.addresses() {
        writeln!(out, "address: {address}")?;
    }
    for vip in maps.vips() {
        writeln!(out, "vip: {vip}")?;
    }
    for (counter, value) in maps.counters()? {
        writeln!(out, "counter {} {value}", counter.name())?;
    }
    Ok(out)
}
