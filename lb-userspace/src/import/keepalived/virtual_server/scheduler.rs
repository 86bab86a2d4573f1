//! IPVS schedulers (`lb_algo` / `lvs_sched`) whose shares lbd's Maglev
//! does not give by itself: weights made equal where IPVS ignored them,
//! one server kept where IPVS failed over in order.

use crate::import::model::{keep_only, Backend, Note, Service, Sourced};

/// Weight 1 for every real_server of weight > 0, under a scheduler
/// (`lb_algo rr|lc|dh`) for which IPVS ignores weights other than 0: the
/// servers had equal shares, and lbd's Maglev, which honours weights,
/// would otherwise give them the unequal shares the weights say.
pub(super) fn equalize(service: &mut Service, algo: &Sourced<()>) {
    let mut unequal = false;
    for backend in &mut service.backends {
        let Some(weight) = &backend.weight else {
            continue;
        };
        if weight.value == 0 {
            continue;
        }
        unequal |= weight.value != 1;
        backend.weight = Some(Sourced::new(
            1,
            &weight.origin,
            format!("{}, ignored by {}", weight.what, algo.what),
        ));
    }
    service.notes.push(Note::new(
        &algo.origin,
        match unequal {
            true => format!(
                "{}: IPVS gives every server of weight above 0 an equal share whatever its weight; lbd's Maglev hashing honours weights, so the servers are given equal weights",
                algo.what
            ),
            false => format!(
                "{}: lbd balances with Maglev consistent hashing of each connection, an equal share to each server as IPVS's",
                algo.what
            ),
        },
    ));
}

/// Under `lb_algo fo` (`ovf`), IPVS sent every connection to the one
/// available server of highest weight (until its connections passed its
/// weight), the others waiting in turn: that server keeps its weight,
/// the others get 0 and a WARNING that the failover order is lost (a
/// weighted split over all of them, as before, sent flows to servers
/// IPVS kept idle).
///
/// Of servers tied at the top weight IPVS takes the first on its list
/// (ip_vs_fo.c and ip_vs_ovf.c replace their pick only on a strictly
/// higher weight), and the kernel puts each server it is given at the
/// head of that list (list_add_rcu in __ip_vs_update_dest): keepalived
/// gives them in file order, so the last tied real_server is the one.
pub(super) fn highest_only(service: &mut Service, algo: &Sourced<()>) {
    // keepalived's default weight is 1.
    let weight = |b: &Backend| b.weight.as_ref().map_or(1, |w| w.value);
    let Some(top) = service
        .backends
        .iter()
        .filter(|b| b.usable())
        .map(weight)
        .max()
    else {
        return;
    };
    let tied: Vec<usize> = service
        .backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.usable() && weight(b) == top)
        .map(|(i, _)| i)
        .collect();
    let keep: Vec<usize> = tied.last().copied().into_iter().collect();
    let kept = keep_only(&mut service.backends, &keep, &algo.origin, &algo.what);
    let how = if algo.what.ends_with("ovf") {
        "until its active connections passed its weight, then overflowed to the next"
    } else {
        "and failed over to the next when it went down"
    };
    service.notes.push(Note::new(
        &algo.origin,
        format!(
            "WARNING: {}: IPVS sent every connection to the available real_server of highest weight {how}; lbd has no failover order: {} (weight {top}{}) {} all new flows and the other real_servers are written with weight 0, so nothing takes over when {} down: give another a weight then (`lbctl backend weight`)",
            algo.what,
            kept.join(", "),
            if tied.len() > 1 {
                format!(", the last of {} tied, as IPVS picked the one given it last", tied.len())
            } else {
                String::new()
            },
            if kept.len() == 1 { "takes" } else { "take" },
            if kept.len() == 1 { "it goes" } else { "they go" }
        ),
    ));
}
