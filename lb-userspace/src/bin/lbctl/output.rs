//! Printing answers: tables for people, JSON with `--json`.

use lb_userspace::{
    api::schema::{Change, DrainPlan},
    model::DrainTimeoutSource,
};
use serde::Serialize;

/// Prints `value` as pretty JSON.
pub fn json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("lbctl: encoding JSON: {error}"),
    }
}

/// Prints what a change does (or would do).
pub fn change(change: &Change, as_json: bool) {
    if as_json {
        json(change);
        return;
    }
    let verb = if change.dry_run {
        "would change"
    } else {
        "changed"
    };
    if change.plan.is_empty() {
        println!("no VIP's new flows change");
    }
    for vip in &change.plan {
        match vip.moved_fraction {
            Some(moved) => println!(
                "VIP {} ({}): {verb}; {:.2}% of new flows move",
                vip.vip,
                vip.change,
                moved * 100.0
            ),
            None => println!("VIP {} ({}): {verb}", vip.vip, vip.change),
        }
        let mut addresses: Vec<_> = vip.before.keys().chain(vip.after.keys()).collect();
        addresses.sort();
        addresses.dedup();
        println!("  {:<40} {:>8} {:>8}", "backend", "before", "after");
        for address in addresses {
            let share = |m: &std::collections::BTreeMap<std::net::IpAddr, f64>| {
                m.get(address)
                    .map_or("-".to_owned(), |s| format!("{:.2}%", s * 100.0))
            };
            println!(
                "  {:<40} {:>8} {:>8}",
                address.to_string(),
                share(&vip.before),
                share(&vip.after)
            );
        }
    }
    if let Some(drain) = &change.drain {
        println!("{}", drain_deadline(drain));
    }
    for note in &change.undone {
        println!("note: {note}");
    }
    if change.dry_run {
        println!("(dry run: nothing was changed)");
    }
}

/// The effective deadline of a drain, in words.
pub fn drain_deadline(drain: &DrainPlan) -> String {
    let from = match drain.from {
        DrainTimeoutSource::Request => "from --timeout",
        DrainTimeoutSource::VipDefault => "the VIP's drain_timeout_s",
        DrainTimeoutSource::None => "no --timeout and no drain_timeout_s on the VIP",
    };
    match drain.timeout_s {
        Some(seconds) => {
            format!("drain deadline: established flows are cut after {seconds}s ({from})")
        }
        None => format!("drain deadline: none, established flows are never cut ({from})"),
    }
}
