//! Printing answers: tables for people, JSON with `--json`.

use lb_userspace::api::schema::Change;
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
        println!(
            "VIP {} ({}): {verb}; {:.2}% of new flows move",
            vip.vip,
            vip.change,
            vip.moved_fraction * 100.0
        );
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
    for note in &change.undone {
        println!("note: {note}");
    }
    if change.dry_run {
        println!("(dry run: nothing was changed)");
    }
}

/// Sends a change (with `dry_run=true` when asked) and returns lbd's plan.
pub async fn send_change(
    client: &lb_userspace::api::client::Client,
    method: lb_userspace::api::Method,
    path: &str,
    body: Option<&impl Serialize>,
    dry_run: bool,
) -> Result<Change, crate::Failure> {
    let body = match body {
        Some(body) => Some(
            serde_json::to_value(body)
                .map_err(|e| crate::Failure::new(1, format!("encoding the request: {e}")))?,
        ),
        None => None,
    };
    let query: &[(&str, &str)] = if dry_run { &[("dry_run", "true")] } else { &[] };
    Ok(client.call_as(method, path, query, body.as_ref()).await?)
}
