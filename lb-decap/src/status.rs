//! `lb-decap status`: what the pinned program does (attachment, addresses,
//! VIPs, encapsulations) and its counters, read from the pins alone (no
//! running lb-decap needed).

use std::{fmt::Write as _, net::IpAddr};

use anyhow::bail;
use lb_common::decap::{DecapConfig, DECAP_F_GUE, DECAP_F_IPIP, DECAP_F_SOURCES};

use crate::{
    config::{Attach, Vip},
    dataplane::link_program,
    maps::Maps,
    pins::PinDir,
    sources::Prefix,
};

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
                "attached: {} on {interface} (program id {id}{})",
                attach.name(),
                running_mode(attach, &path, id)
            )?,
            Err(error) => writeln!(
                out,
                "attached: no ({} link on {interface}: {error:#})",
                attach.name()
            )?,
        }
    }
    out.push_str(&describe(
        &maps.config()?,
        &maps.addresses(),
        &maps.sources(),
        &maps.vips(),
    ));
    for (counter, value) in maps.counters()? {
        writeln!(out, "counter {} {value}", counter.name())?;
    }
    Ok(out)
}

/// For an XDP link, `, mode native` (or `generic`, `offload`): the mode
/// the program was attached in, which a changed `xdp_mode` does not alter
/// (`lb-decap cleanup` and a start do); nothing for tc.
fn running_mode(attach: Attach, link: &std::path::Path, program_id: u32) -> String {
    if attach != Attach::Xdp {
        return String::new();
    }
    let mode = crate::link::pinned_target(link)
        .and_then(|t| crate::interface::xdp_running(t.ifindex, program_id));
    match mode {
        Ok(Some(mode)) => format!(", mode {}", mode.name()),
        Ok(None) => ", mode unknown: the interface does not list the program".to_owned(),
        Err(error) => format!(", mode unknown: {error:#}"),
    }
}

/// What the program unwraps, one `key: value` per line (`ipip`, `gue`,
/// then an `address` line per accepted outer destination, a `source` line
/// per accepted outer source prefix or `sources: any (not checked)`, and a
/// `vip` line per VIP): the maps' contents for `status`, a file's for
/// `check`, so the two read alike.
pub fn describe(
    config: &DecapConfig,
    addresses: &[IpAddr],
    sources: &[Prefix],
    vips: &[Vip],
) -> String {
    let mut out = String::new();
    let ipip = if config.flags & DECAP_F_IPIP != 0 {
        "on"
    } else {
        "off"
    };
    out.push_str(&format!("ipip: {ipip}\n"));
    if config.flags & DECAP_F_GUE != 0 {
        out.push_str(&format!(
            "gue: on, port {}\n",
            u16::from_be(config.gue_port)
        ));
    } else {
        out.push_str("gue: off\n");
    }
    for address in addresses {
        out.push_str(&format!("address: {address}\n"));
    }
    if config.flags & DECAP_F_SOURCES == 0 {
        out.push_str("sources: any (not checked)\n");
    } else {
        for source in sources {
            out.push_str(&format!("source: {source}\n"));
        }
    }
    for vip in vips {
        out.push_str(&format!("vip: {vip}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use lb_common::consts::IPPROTO_TCP;

    use super::*;

    #[test]
    fn the_description_names_each_setting_in_host_order() {
        let config = DecapConfig {
            gue_port: 6080u16.to_be(),
            flags: DECAP_F_GUE,
        };
        let vip = Vip {
            addr: "2001:2::100".parse().expect("address"),
            port: 443,
            proto: IPPROTO_TCP,
        };
        let address: IpAddr = "198.19.2.11".parse().expect("address");
        assert_eq!(
            describe(&config, &[address], &[], &[vip]),
            "ipip: off\ngue: on, port 6080\naddress: 198.19.2.11\nsources: any (not checked)\nvip: [2001:2::100]:443/tcp\n"
        );
        let checked = DecapConfig {
            flags: DECAP_F_GUE | DECAP_F_SOURCES,
            ..config
        };
        let source: Prefix = "198.19.200.0/24".parse().expect("prefix");
        assert_eq!(
            describe(&checked, &[address], &[source], &[vip]),
            "ipip: off\ngue: on, port 6080\naddress: 198.19.2.11\nsource: 198.19.200.0/24\nvip: [2001:2::100]:443/tcp\n"
        );
    }
}
