//! A `vrrp_instance` block as lbd's `[[vrrp]]`: the same VRID, priority,
//! advert interval, preemption and addresses, so lbd can take keepalived's
//! place in the pair; tracking mapped to what lbd tracks itself (the
//! `vrrp_script`s a `track_script` names are read here too).

use std::net::IpAddr;

use super::{duration, number, one};
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Sourced, Vrrp};
use crate::import::ImportError;

/// Names in a track_script command that say it watches the proxy lbd
/// replaces (`killall -0 haproxy`, `pidof nginx`, `check_haproxy.sh`,
/// `ipvsadm`). Only the proxy's name counts: a process check as such
/// (`pidof`, `killall`, `pgrep`) may watch any daemon (`pidof bird`).
const PROXY_NAMES: &[&str] = &["haproxy", "nginx", "ipvs"];

/// The longest `preempt_delay`: keepalived's own limit (1000 s, it
/// refuses more) and lbd's (`preempt_delay_ms` at most 1_000_000), so a
/// longer one is refused at its line rather than in the generated file.
const MAX_PREEMPT_DELAY: std::time::Duration = std::time::Duration::from_secs(1000);

/// A `vrrp_script`: what it runs and its weight, for `track_script`.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    name: String,
    command: String,
    weight: Option<i32>,
    /// `weight N reverse`: the priority moves the other way (up while
    /// the script fails).
    reverse: bool,
    origin: Origin,
}

/// A `vrrp_script NAME { script ...; weight N }` block.
pub(super) fn script(file: &str, statement: &Statement) -> Result<Script, ImportError> {
    let name = statement
        .args()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::at(file, statement.line, "vrrp_script needs a name"))?;
    let mut out = Script {
        name,
        command: String::new(),
        weight: None,
        reverse: false,
        origin: Origin::new(file, statement.line),
    };
    for child in statement.children() {
        let file = child.file_in(file);
        match child.name() {
            "script" => out.command = child.args().join(" "),
            "weight" => match child.args() {
                [_, reverse] if reverse == "reverse" => {
                    let single = Statement {
                        words: child.words[..2].to_vec(),
                        line: child.line,
                        block: None,
                        file: None,
                    };
                    out.weight = Some(number(file, &single, -253..=253)?);
                    out.reverse = true;
                }
                _ => out.weight = Some(number(file, child, -253..=253)?),
            },
            _ => {}
        }
    }
    Ok(out)
}

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

/// The note on a `virtual_ipaddress` entry with a prefix other than the
/// host's (`203.0.113.10/24`): keepalived added the address with it,
/// which installed the connected route to its subnet on `dev` (its own,
/// else the instance's interface); lbd adds a host address and no route,
/// a WARNING, since a node whose own addresses are elsewhere then
/// reaches neither that subnet's gateway nor its clients. None for a
/// host prefix or none.
fn prefix_note(entry: &Statement, address: IpAddr, dev: Option<&str>) -> Option<String> {
    let (_, prefix) = entry.name().split_once('/')?;
    let host_prefix: u8 = if address.is_ipv4() { 32 } else { 128 };
    let on = dev.map_or(String::new(), |d| format!(" on {d}"));
    let Some(prefix) = prefix.parse::<u8>().ok().filter(|p| *p <= host_prefix) else {
        return Some(format!(
            "{}: lbd adds the address as /32 (/128) on its interface; the prefix, dev, label and scope are not carried over",
            entry.text()
        ));
    };
    if prefix == host_prefix {
        return None;
    }
    let network = match address {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Some(format!(
        "WARNING: {}: lbd adds the address as /{host_prefix} on its interface, without the /{prefix}: keepalived's address installed the connected route to {network}/{prefix}{on}, which lbd does not; unless another address of this node is in {network}/{prefix}, add one (or that route) yourself, or the node reaches neither that subnet's gateway nor its hosts{}",
        entry.text(),
        if entry.words.len() > 1 { ". Its label and scope are not carried over" } else { "" }
    ))
}

/// keepalived's own reconciliation of preemption (vrrp.c,
/// vrrp_complete_instance), with a note on each reset: priority 255
/// clears nopreempt; `state MASTER` (written, or derived from priority
/// 255 without a state) clears nopreempt and preempt_delay; nopreempt
/// clears preempt_delay. Carried over as written, a node keepalived let
/// preempt did not (a pair copied from one block, `state MASTER` and
/// `nopreempt` on node 1, never took its VIP back).
fn reconcile_preemption(vrrp: &mut Vrrp) {
    let owner = vrrp
        .priority
        .as_ref()
        .filter(|p| p.value == u8::MAX)
        .cloned();
    if let Some(p) = &owner {
        clear_nopreempt(vrrp, &format!("priority 255 ({})", p.origin));
    }
    let master = match (&vrrp.state, &owner) {
        (Some(state), _) if state.value == "MASTER" => {
            Some(format!("state MASTER ({})", state.origin))
        }
        (None, Some(p)) => Some(format!(
            "priority 255 ({}), its start state MASTER then",
            p.origin
        )),
        _ => None,
    };
    if let Some(why) = &master {
        clear_nopreempt(vrrp, why);
        if let Some(delay) = vrrp.preempt_delay.take() {
            vrrp.notes.push(Note::new(
                &delay.origin,
                format!(
                    "{}: keepalived clears it with {why}: not carried over",
                    delay.what
                ),
            ));
        }
    }
    if let (Some(was), Some(delay)) = (nopreempt(vrrp), vrrp.preempt_delay.clone()) {
        vrrp.preempt_delay = None;
        vrrp.notes.push(Note::new(
            &delay.origin,
            format!(
                "{}: keepalived clears it with nopreempt ({}): not carried over",
                delay.what, was.origin
            ),
        ));
    }
}

/// The instance's `nopreempt`, if written (and not cleared).
fn nopreempt(vrrp: &Vrrp) -> Option<Sourced<bool>> {
    vrrp.preempt.as_ref().filter(|p| !p.value).cloned()
}

/// Clears the instance's `nopreempt`, as keepalived does with `why`,
/// with a note: written as preempt = true.
fn clear_nopreempt(vrrp: &mut Vrrp, why: &str) {
    let Some(was) = nopreempt(vrrp) else {
        return;
    };
    vrrp.notes.push(Note::new(
        &was.origin,
        format!(
            "{}: keepalived clears it with {why}, so this node preempts: written as preempt = true",
            was.what
        ),
    ));
    vrrp.preempt = Some(Sourced::new(
        true,
        &was.origin,
        format!("{}, cleared by keepalived with {why}", was.what),
    ));
}

/// The address a `virtual_ipaddress` or `unicast_peer` line starts with
/// (`198.18.0.100/24 dev eth0` gives 198.18.0.100).
fn address(file: &str, entry: &Statement) -> Result<IpAddr, ImportError> {
    let word = entry.name();
    let bare = word.split_once('/').map_or(word, |(a, _)| a);
    bare.parse()
        .map_err(|_| ImportError::at(file, entry.line, format!("{word:?} is not an IP address")))
}

/// A `weight N` after a tracked name, with its sign: keepalived takes a
/// negative one from the priority while the tracked thing fails, and
/// adds a positive one while it is well.
fn weight(file: &str, entry: &Statement) -> Result<Option<i32>, ImportError> {
    match entry.args() {
        [] => Ok(None),
        [key, value] | [key, value, _]
            if key == "weight" && entry.args().get(2).is_none_or(|r| r == "reverse") =>
        {
            value
                .parse::<i32>()
                .ok()
                .filter(|w| (-254..=254).contains(w))
                .map(Some)
                .ok_or_else(|| {
                    ImportError::at(
                        file,
                        entry.line,
                        format!("weight {value}: not a number in -254..=254"),
                    )
                })
        }
        _ => Err(ImportError::at(
            file,
            entry.line,
            format!("{}: expected NAME [weight N [reverse]]", entry.text()),
        )),
    }
}

/// The priority a weight moves by (at most 254).
fn magnitude(weight: i32) -> u8 {
    u8::try_from(weight.unsigned_abs()).unwrap_or(254).min(254)
}

/// The WARNING for track_scripts whose positive weights (`raised`)
/// keepalived added to the priority while the proxy ran, where lbd takes
/// them off while its data plane is down: the effective priorities both
/// ways, which differ beside keepalived nodes (during a migration) though
/// their difference is the same.
fn raised_warning(vrrp: &Vrrp) -> Option<Note> {
    let (first, ..) = vrrp.raised.first()?;
    let base = vrrp.priority.as_ref().map_or(100, |p| u32::from(p.value));
    let raise: u32 = vrrp.raised.iter().map(|(_, _, w)| u32::from(*w)).sum();
    let loss = vrrp
        .track_dataplane
        .as_ref()
        .map_or(0, |t| u32::from(t.value));
    let names: Vec<String> = vrrp
        .raised
        .iter()
        .map(|(at, name, w)| format!("{name} weight +{w} ({at})"))
        .collect();
    // keepalived's and lbd's priorities stay in 1..=254 while tracking.
    let clamp = |p: u32| p.clamp(1, 254);
    let keepalived_up = clamp(base + raise);
    let keepalived_down = clamp((base + raise).saturating_sub(loss));
    let lbd_down = clamp(base.saturating_sub(loss));
    Some(Note::new(
        first,
        format!(
            "WARNING: track_script {}: keepalived added a positive weight to the priority while the proxy check succeeded (priority {keepalived_up} while it ran, {keepalived_down} when it failed); lbd takes it off while its data plane is down instead (priority {base} while it runs, {lbd_down} when it is down). lbd nodes keep keepalived's choice of master among themselves, but beside a keepalived node (while you migrate) this node advertises {base} where keepalived advertised {keepalived_up}: set priority = {keepalived_up} to advertise what keepalived did",
            names.join(", ")
        ),
    ))
}

fn track_interface(file: &str, entry: &Statement, vrrp: &mut Vrrp) -> Result<(), ImportError> {
    let at = Origin::new(file, entry.line);
    let name = entry.name();
    let own = vrrp.interface.as_ref().is_some_and(|i| i.value == name);
    if !own {
        vrrp.notes.push(Note::new(
            &at,
            format!("track_interface {name}: lbd tracks only the interface it serves on"),
        ));
        return Ok(());
    }
    let own = weight(file, entry)?.map(magnitude);
    if entry.args().len() == 3 {
        vrrp.notes.push(Note::new(
            &at,
            format!("WARNING: track_interface {}: `reverse` raised the priority while {name} was down; lbd only lowers it: not carried over", entry.text()),
        ));
        return Ok(());
    }
    // Without a weight keepalived gives up mastership (FAULT): lose it all.
    let loss = own.filter(|w| *w > 0).unwrap_or(254);
    vrrp.track_interface = Some(Sourced::new(
        loss,
        &at,
        format!("track_interface {}", entry.text()),
    ));
    Ok(())
}

fn track_script(
    file: &str,
    entry: &Statement,
    scripts: &[Script],
    vrrp: &mut Vrrp,
) -> Result<(), ImportError> {
    let at = Origin::new(file, entry.line);
    let name = entry.name();
    let Some(script) = scripts.iter().find(|s| s.name == name) else {
        return Err(ImportError::at(
            file,
            entry.line,
            format!("track_script {name}: no vrrp_script of that name"),
        ));
    };
    let watches_proxy = PROXY_NAMES.iter().any(|w| script.command.contains(w));
    if !watches_proxy {
        vrrp.notes.push(Note::new(
            &at,
            format!("track_script {name} ({}): lbd runs no scripts; it tracks its data plane, its interface and VIPs without healthy backends", script.command),
        ));
        return Ok(());
    }
    // (weight() refuses anything but `weight N [reverse]`.)
    let own = weight(file, entry)?;
    if script.reverse || entry.args().len() == 3 {
        vrrp.notes.push(Note::new(
            &at,
            format!("WARNING: track_script {name} ({}) has `reverse`: keepalived raised this node's priority while the proxy check failed; lbd only lowers it when its own data plane is down: not carried over", script.command),
        ));
        return Ok(());
    }
    let signed = own.or(script.weight);
    let loss = signed.map(magnitude).filter(|w| *w > 0).unwrap_or(254);
    // A positive weight raised keepalived's priority while the proxy
    // ran; lbd lowers it while its data plane is down instead (warned of
    // with the priorities, once the instance is read).
    if let Some(raise) = signed.filter(|w| *w > 0) {
        vrrp.raised
            .push((at.clone(), name.to_owned(), magnitude(raise)));
    }
    let what = format!(
        "track_script {name}: `{}` ({}) watched the proxy lbd replaces; lbd tracks its own data plane",
        script.command, script.origin
    );
    // Every script that watches the proxy fails when it does, and
    // keepalived adds up the weights of failing scripts (one without a
    // weight means FAULT: all of it): the loss is their sum, capped at
    // 254, the same in any order (a second script no longer replaces the
    // first's loss).
    vrrp.track_dataplane = Some(match vrrp.track_dataplane.take() {
        None => Sourced::new(loss, &at, what),
        Some(earlier) => Sourced::new(
            earlier.value.saturating_add(loss).min(254),
            &earlier.origin,
            format!("{}; {what}", earlier.what),
        ),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::blocks::{parse, Dialect};

    /// The notes of the one `vrrp_instance` in `text`.
    fn notes(text: &str) -> Vec<String> {
        let statements = parse("k.conf", text, Dialect::Keepalived).expect("parses");
        let vrrp = instance("k.conf", &statements[0], &[]).expect("an instance");
        vrrp.notes.into_iter().map(|n| n.text).collect()
    }

    /// keepalived's `unicast_ttl` below 255 sends adverts across routers;
    /// lbd takes a peer's advert only at TTL 255 unless
    /// `unicast_peer_hops` says how many routers lie between: the import
    /// says so (the number of routers cannot be derived from the TTL).
    #[test]
    fn a_unicast_ttl_below_255_says_to_set_unicast_peer_hops() {
        let routed = notes(
            "vrrp_instance A {\n  virtual_router_id 7\n  unicast_ttl 64\n  unicast_peer {\n    198.18.0.3\n  }\n}\n",
        );
        assert!(
            routed
                .iter()
                .any(|n| n.starts_with("unicast_ttl 64:") && n.contains("unicast_peer_hops")),
            "{routed:?}"
        );
        // 255, keepalived's default: nothing to say.
        let linked = notes("vrrp_instance A {\n  virtual_router_id 7\n  unicast_ttl 255\n}\n");
        assert!(
            linked.iter().all(|n| !n.contains("unicast_ttl")),
            "{linked:?}"
        );
    }
}
