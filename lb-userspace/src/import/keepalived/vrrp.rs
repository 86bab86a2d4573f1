//! A `vrrp_instance` block as lbd's `[[vrrp]]`: the same VRID, priority,
//! advert interval, preemption and addresses, so lbd can take keepalived's
//! place in the pair; tracking mapped to what lbd tracks itself (the
//! `vrrp_script`s a `track_script` names are read here too).

mod address_prefix;
mod preemption;
mod tracking;
mod vrrp_script;

use std::net::IpAddr;

use super::{duration, number, one};
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Sourced, Vrrp};
use crate::import::ImportError;

use address_prefix::prefix_note;
use preemption::reconcile_preemption;
use tracking::{raised_warning, track_interface, track_script};
pub(super) use vrrp_script::{script, Script};

/// The longest `preempt_delay`: keepalived's own limit (1000 s, it
/// refuses more) and lbd's (`preempt_delay_ms` at most 1_000_000), so a
/// longer one is refused at its line rather than in the generated file.
const MAX_PREEMPT_DELAY: std::time::Duration = std::time::Duration::from_secs(1000);

/// Reads one `vrrp_instance NAME { ... }`.
pub(super) fn instance(
    file: &str,
    statement: &Statement,
    scripts: &[Script],
) -> Result<Vrrp, ImportError> {
    let origin = Origin::new(file, statement.line);
    let name = statement
        .args()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::at(file, statement.line, "vrrp_instance needs a name"))?;
    let mut vrrp = Vrrp {
        name,
        origin,
        interface: None,
        vrid: None,
        priority: None,
        advert_interval: None,
        preempt: None,
        preempt_delay: None,
        announce_count: None,
        announce_refresh: None,
        addresses: Vec::new(),
        address_devs: Vec::new(),
        state: None,
        unicast_peers: Vec::new(),
        unicast_src_ip: None,
        notify: None,
        track_interface: None,
        track_dataplane: None,
        version: None,
        excluded: Vec::new(),
        raised: Vec::new(),
        notes: Vec::new(),
    };
    for child in statement.children() {
        let file = child.file_in(file);
        let at = Origin::new(file, child.line);
        let text = child.text();
        match child.name() {
            "interface" => vrrp.interface = Some(Sourced::new(one(file, child)?.to_owned(), &at, text)),
            "virtual_router_id" => vrrp.vrid = Some(Sourced::new(number(file, child, 1..=255u8)?, &at, text)),
            "priority" => vrrp.priority = Some(Sourced::new(number(file, child, 1..=255u8)?, &at, text)),
            "advert_int" => {
                let interval = duration(file, child)?;
                let centis = (interval.as_millis() + 5) / 10;
                if !(1..=4095).contains(&centis) {
                    return Err(ImportError::at(
                        file,
                        child.line,
                        format!("{text}: VRRPv3 adverts are 0.01 to 40.95 s apart"),
                    ));
                }
                let rounded = std::time::Duration::from_millis(u64::try_from(centis * 10).unwrap_or(1000));
                vrrp.advert_interval = Some(Sourced::new(rounded, &at, text));
            }
            "version" => vrrp.version = Some(Sourced::new(number(file, child, 2..=3u8)?, &at, text)),
            "state" => {
                vrrp.state = Some(Sourced::new(one(file, child)?.to_owned(), &at, text.clone()));
                vrrp.notes.push(Note::new(
                    &at,
                    format!("{text}: lbd has no start state; the node with the highest priority becomes master"),
                ))
            }
            "nopreempt" => vrrp.preempt = Some(Sourced::new(false, &at, text)),
            "preempt" => vrrp.preempt = Some(Sourced::new(true, &at, text)),
            "preempt_delay" => {
                let delay = duration(file, child)?;
                if delay > MAX_PREEMPT_DELAY {
                    return Err(ImportError::at(
                        file,
                        child.line,
                        format!("{text}: keepalived and lbd wait at most {} s before preempting", MAX_PREEMPT_DELAY.as_secs()),
                    ));
                }
                vrrp.preempt_delay = Some(Sourced::new(delay, &at, text));
            }
            "garp_master_repeat" => {
                let count = number(file, child, 0..=100u32)?;
                vrrp.announce_count = Some(Sourced::new(count, &at, text));
            }
            "garp_master_refresh" => {
                // Whole seconds, 0 off (keepalived's default).
                let every = number(file, child, 0..=86_400u32)?;
                if every > 0 {
                    let every = std::time::Duration::from_secs(u64::from(every));
                    vrrp.announce_refresh = Some(Sourced::new(every, &at, text));
                }
            }
            "garp_master_refresh_repeat" => {
                if number(file, child, 1..=100u32)? > 1 {
                    vrrp.notes.push(Note::new(
                        &at,
                        format!("{text}: lbd sends one round of gratuitous ARP / NA per refresh"),
                    ));
                }
            }
            "unicast_src_ip" => {
                let word = one(file, child)?;
                let source = word.parse().map_err(|_| {
                    ImportError::at(file, child.line, format!("{text}: {word:?} is not an IP address"))
                })?;
                // (join carries it over where lbd takes it.)
                vrrp.unicast_src_ip = Some(Sourced::new(source, &at, text));
            }
            "unicast_ttl" => {
                // keepalived's default 255 crosses no router: what lbd
                // expects. Below, the peers may be routed, and how many
                // routers lie between them is not in the file.
                if number(file, child, 1..=255u8)? < 255 {
                    vrrp.notes.push(Note::new(
                        &at,
                        format!("{text}: keepalived's unicast adverts may cross routers; lbd takes a unicast peer's advert only with TTL 255 unless unicast_peer_hops says how many routers lie between the peers: set unicast_peer_hops to that number (it cannot be derived from unicast_ttl) in this [[vrrp]] on each lbd node, or the peers never hear each other and both become master. lbd sends its own adverts with TTL 255"),
                    ));
                }
            }
            "unicast_peer" => {
                for peer in child.children() {
                    let file = peer.file_in(file);
                    let address = address(file, peer)?;
                    vrrp.unicast_peers.push(Sourced::new(address, &Origin::new(file, peer.line), peer.text()));
                }
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                for entry in child.children() {
                    let file = entry.file_in(file);
                    let entry_at = Origin::new(file, entry.line);
                    let address = address(file, entry)?;
                    let dev = entry.args().windows(2).find(|w| w[0] == "dev").map(|w| w[1].clone());
                    if let Some(dev) = &dev {
                        vrrp.address_devs.push((address, Sourced::new(dev.clone(), &entry_at, entry.text())));
                    }
                    // A prefix other than the host's is lost too (with its
                    // connected route), said even when nothing else follows.
                    if let Some(note) = prefix_note(entry, address, dev.as_deref().or(vrrp.interface.as_ref().map(|i| i.value.as_str()))) {
                        vrrp.notes.push(Note::new(&entry_at, note));
                    } else if entry.words.len() > 1 {
                        vrrp.notes.push(Note::new(
                            &entry_at,
                            format!("{}: lbd adds the address as /32 (/128) on its interface; the dev, label and scope are not carried over", entry.text()),
                        ));
                    }
                    vrrp.addresses.push(Sourced::new(address, &entry_at, format!("{} {}", child.name(), entry.text())));
                    if child.name() == "virtual_ipaddress_excluded" {
                        vrrp.excluded.push(address);
                    }
                }
                // (join says which addresses keepalived's adverts lack.)
            }
            "track_interface" => {
                for entry in child.children() {
                    let file = entry.file_in(file);
                    track_interface(file, entry, &mut vrrp)?;
                }
            }
            "track_script" => {
                for entry in child.children() {
                    let file = entry.file_in(file);
                    track_script(file, entry, scripts, &mut vrrp)?;
                }
            }
            "notify" => {
                vrrp.notify = Some(Sourced::new(one(file, child)?.to_owned(), &at, text.clone()));
                vrrp.notes.push(Note::new(
                    &at,
                    format!("{text}: lbd runs it as `notify STATE VRID FAMILY` (STATE master, backup or stopped; FAMILY ipv4 or ipv6), not with keepalived's `INSTANCE NAME STATE PRIORITY`: adapt the script"),
                ));
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => vrrp.notes.push(Note::new(
                &at,
                format!("{text}: lbd runs one notify script with the new state as argument; fold this one into it"),
            )),
            "authentication" => vrrp.notes.push(Note::new(
                &at,
                "authentication: VRRPv3 has none; lbd's adverts carry no password",
            )),
            _ => vrrp.notes.push(Note::new(&at, format!("{text}: not carried over"))),
        }
    }
    reconcile_preemption(&mut vrrp);
    vrrp.notes.extend(raised_warning(&vrrp));
    Ok(vrrp)
}

/// The address a `virtual_ipaddress` or `unicast_peer` line starts with
/// (`198.18.0.100/24 dev eth0` gives 198.18.0.100).
fn address(file: &str, entry: &Statement) -> Result<IpAddr, ImportError> {
    let word = entry.name();
    let bare = word.split_once('/').map_or(word, |(a, _)| a);
    bare.parse()
        .map_err(|_| ImportError::at(file, entry.line, format!("{word:?} is not an IP address")))
}

#[cfg(test)]
mod tests;
