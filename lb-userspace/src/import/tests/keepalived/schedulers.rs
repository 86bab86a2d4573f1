//! IPVS schedulers lbd's Maglev does not follow by itself: weights made
//! equal where IPVS ignored them, one server kept under a failover order,
//! source hashing as lbd's source affinity.

use super::*;
use lb_common::Affinity;

/// IPVS's rr, lc and dh schedulers ignore weights (but 0): the servers
/// had equal shares, which lbd's weighted Maglev keeps only with equal
/// weights; sh and mh hash the source: lbd's source affinity.
#[test]
fn schedulers_that_ignore_weights_give_equal_weights() {
    let text = |algo: &str| {
        format!("virtual_server 198.18.0.100 80 {{\n  lb_algo {algo}\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 1\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 3\n  }}\n  real_server 198.18.0.13 80 {{\n    weight 0\n  }}\n}}\n")
    };
    for algo in ["rr", "lc", "dh"] {
        let imported = ok(&[("k.conf", &text(algo))], &on_eth0());
        let shares: Vec<u32> = weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect();
        assert_eq!(shares[0], shares[1], "{algo}: {shares:?}");
        assert!(shares[0] > 0, "{algo}: {shares:?}");
        // Weight 0 still takes nothing.
        assert_eq!(shares[2], 0, "{algo}: {shares:?}");
        assert!(
            has_note(
                &imported,
                &format!("k.conf:2: lb_algo {algo}: IPVS gives every server of weight above 0 an equal share")
            ),
            "{:#?}",
            imported.notes
        );
    }
    // Weighted schedulers keep the weights.
    let imported = ok(&[("k.conf", &text("wrr"))], &on_eth0());
    assert_eq!(
        weights(&imported.config.vips[0])
            .iter()
            .map(|w| w.1)
            .collect::<Vec<_>>(),
        [100, 300, 0]
    );
    // Source hashing is lbd's source affinity, weights kept as IPVS's.
    for algo in ["sh", "mh"] {
        let imported = ok(&[("k.conf", &text(algo))], &on_eth0());
        let vip = &imported.config.vips[0];
        assert_eq!(vip.affinity, Affinity::Source, "{algo}");
        assert_eq!(
            weights(vip).iter().map(|w| w.1).collect::<Vec<_>>(),
            [100, 300, 0],
            "{algo}"
        );
        assert_eq!(
            affinity_lines(&imported),
            [format!("affinity = \"source\" # k.conf:2 (lb_algo {algo})")]
        );
        assert!(!has_note(&imported, "k.conf:2"), "{:#?}", imported.notes);
    }
}

#[test]
fn lb_algo_fo_keeps_the_highest_weight_and_warns_the_order_is_lost() {
    let text = format!("{INSTANCE}virtual_server 198.18.0.100 80 {{\n  lb_algo fo\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n    weight 5\n  }}\n  real_server 198.18.0.12 80 {{\n    weight 10\n  }}\n  real_server 198.18.0.13 80 {{\n    weight 10\n  }}\n  real_server 198.18.0.14 80 {{\n  }}\n}}\n");
    let imported = ok(&[("keepalived.conf", &text)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 1000),
            (ip("198.18.0.14"), 0)
        ]
    );
    // IPVS picks one server; of those tied at the top weight, the one at
    // the head of its list: the last keepalived gave it.
    assert!(has_note(&imported, "keepalived.conf:10: WARNING: lb_algo fo: IPVS sent every connection to the available real_server of highest weight and failed over to the next when it went down; lbd has no failover order: 198.18.0.13 (weight 10, the last of 2 tied, as IPVS picked the one given it last) takes all new flows"), "{:#?}", imported.notes);
    let ovf = text.replace("lb_algo fo", "lvs_sched ovf");
    let imported = ok(&[("keepalived.conf", &ovf)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0]),
        [
            (ip("198.18.0.11"), 0),
            (ip("198.18.0.12"), 0),
            (ip("198.18.0.13"), 1000),
            (ip("198.18.0.14"), 0)
        ]
    );
    assert!(has_note(
        &imported,
        "until its active connections passed its weight, then overflowed to the next"
    ));
    // Without a tie, the highest weight wherever it stands.
    let untied = text.replacen("weight 10", "weight 20", 1);
    let imported = ok(&[("keepalived.conf", &untied)], &Options::default());
    assert_eq!(
        weights(&imported.config.vips[0])[1],
        (ip("198.18.0.12"), 2000)
    );
    assert!(
        has_note(
            &imported,
            "lbd has no failover order: 198.18.0.12 (weight 20) takes all new flows"
        ),
        "{:#?}",
        imported.notes
    );
}
