//! `track_interface` and `track_script` as lbd's own tracking (its
//! interface, its data plane), with the weights keepalived moved the
//! priority by and the WARNINGs where lbd moves it otherwise.

use super::vrrp_script::Script;
use crate::import::blocks::Statement;
use crate::import::model::{Note, Origin, Sourced, Vrrp};
use crate::import::ImportError;

/// Names in a track_script command that say it watches the proxy lbd
/// replaces (`killall -0 haproxy`, `pidof nginx`, `check_haproxy.sh`,
/// `ipvsadm`). Only the proxy's name counts: a process check as such
/// (`pidof`, `killall`, `pgrep`) may watch any daemon (`pidof bird`).
const PROXY_NAMES: &[&str] = &["haproxy", "nginx", "ipvs"];

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
pub(super) fn raised_warning(vrrp: &Vrrp) -> Option<Note> {
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

/// One `track_interface` entry of `vrrp`: lbd tracks only the interface
/// it serves on, by lowering the priority (keepalived's weight, or all of
/// it where keepalived would go to FAULT); anything else becomes a note.
pub(super) fn track_interface(
    file: &str,
    entry: &Statement,
    vrrp: &mut Vrrp,
) -> Result<(), ImportError> {
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

/// One `track_script` entry of `vrrp`, naming one of `scripts`: a script
/// that checks the proxy lbd replaces becomes lbd's data-plane tracking;
/// an unknown name is an error.
pub(super) fn track_script(
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
