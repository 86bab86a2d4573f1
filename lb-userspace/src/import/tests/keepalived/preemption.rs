//! Preemption: `preempt_delay`'s limit and keepalived's reconciliation of
//! nopreempt, preempt_delay, `state MASTER` and priority 255.

use std::time::Duration;

use super::*;

#[test]
fn a_preempt_delay_past_the_limit_is_refused_at_its_line() {
    let text = |delay: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  preempt_delay {delay}\n  virtual_ipaddress {{\n    198.18.0.100\n  }}\n}}\n")
    };
    let imported = ok(&[("k.conf", &text("1000"))], &Options::default());
    assert_eq!(
        imported.config.vrrp[0].preempt_delay,
        Duration::from_secs(1000)
    );
    assert_eq!(
        refused(&[("k.conf", &text("2000"))], &Options::default()),
        "k.conf:4: preempt_delay 2000: keepalived and lbd wait at most 1000 s before preempting"
    );
}

/// keepalived clears nopreempt with priority 255 or `state MASTER`, and
/// preempt_delay with `state MASTER` or nopreempt: the import does the
/// same (carried over as written, node 1 of a copied pair never took
/// its VIP back).
#[test]
fn nopreempt_and_preempt_delay_follow_keepalived_reconciliation() {
    let text = |body: &str| {
        format!("vrrp_instance A {{\n  interface eth0\n  virtual_router_id 5\n{body}  virtual_ipaddress {{ 198.18.0.100 }}\n}}\n")
    };
    let vrrp = |body: &str| {
        let imported = ok(&[("k.conf", &text(body))], &Options::default());
        let vrrp = imported.config.vrrp[0].clone();
        (vrrp.preempt, vrrp.preempt_delay, imported)
    };
    let (preempt, delay, imported) =
        vrrp("  state MASTER\n  priority 150\n  nopreempt\n  preempt_delay 30\n");
    assert_eq!(
        (preempt, delay),
        (true, Duration::ZERO),
        "{}",
        imported.text
    );
    assert!(
        has_note(
            &imported,
            "k.conf:6: nopreempt: keepalived clears it with state MASTER"
        ),
        "{:#?}",
        imported.notes
    );
    assert!(
        has_note(
            &imported,
            "k.conf:7: preempt_delay 30: keepalived clears it with state MASTER"
        ),
        "{:#?}",
        imported.notes
    );
    let (preempt, _, imported) = vrrp("  state BACKUP\n  priority 255\n  nopreempt\n");
    assert!(preempt, "{}", imported.text);
    assert!(has_note(
        &imported,
        "nopreempt: keepalived clears it with priority 255"
    ));
    let (preempt, delay, imported) =
        vrrp("  state BACKUP\n  priority 100\n  nopreempt\n  preempt_delay 30\n");
    assert_eq!(
        (preempt, delay),
        (false, Duration::ZERO),
        "{}",
        imported.text
    );
    assert!(has_note(
        &imported,
        "preempt_delay 30: keepalived clears it with nopreempt"
    ));
    let (preempt, delay, _) = vrrp("  state BACKUP\n  preempt_delay 30\n");
    assert_eq!((preempt, delay), (true, Duration::from_secs(30)));
}
