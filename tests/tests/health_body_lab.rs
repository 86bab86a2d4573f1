//! HTTP checks with `expect_body` against real nginx backends: while
//! nginx's health page holds the text the backends are up and serve;
//! reloaded with a text the page lacks, they go down by the reason
//! `http_body` (status, `lbctl status`, metrics), though nginx answers
//! 200; reloaded back, they come up and serve again.

use std::{net::IpAddr, time::Duration};

use lb_tests::{
    lab::{http_get, Lab, HTTP_PORT, VIP4},
    shares::{metric_value, scrape},
    support::{lbctl_ok, vip_status, wait_every_backend_up, wait_until},
};
use lb_userspace::api::schema::HealthStatus;

/// Fast HTTP checks of nginx's `/health` (it answers 200 `ok`) that
/// expect `text` in the body.
fn checks(text: &str) -> String {
    format!(
        "[vip.health]\ncheck = \"http\"\npath = \"/health\"\nexpect_body = \"{text}\"\ninterval_ms = 500\nfast_interval_ms = 100\ntimeout_ms = 500\nrise = 2\nfall = 2\n"
    )
}

/// Whether every backend of the lab's VIP has `health`.
fn all(lab: &Lab, health: HealthStatus) -> bool {
    let status = lab.status().expect("status");
    vip_status(&status, IpAddr::V4(VIP4))
        .backends
        .iter()
        .all(|b| b.health == health)
}

/// A new request through the VIP: its status code.
fn request(lab: &Lab) -> u16 {
    http_get(&lab.client.netns, &format!("http://{VIP4}:{HTTP_PORT}/")).map_or(0, |(code, _)| code)
}

#[test]
fn a_health_page_without_the_text_takes_backends_down_by_reason_http_body() {
    let mut lab = Lab::start(2).expect("lab");
    let config = lab.lbd_config_for(&["b1", "b2"], &checks("ok"));
    lab.start_lbd(&config).expect("lbd");
    let vip = IpAddr::V4(VIP4);
    wait_every_backend_up(&lab, vip);
    assert_eq!(request(&lab), 200);

    // A text nginx's page lacks: both down, by the body, not the status.
    lab.write_lbd_config(&lab.lbd_config_for(&["b1", "b2"], &checks("ready")))
        .expect("config");
    lbctl_ok(&lab, &["reload"]);
    wait_until("every backend down", Duration::from_secs(10), || {
        all(&lab, HealthStatus::Down)
    });
    let status = lab.status().expect("status");
    for b in &vip_status(&status, vip).backends {
        let check = b.check.as_ref().expect("checked");
        assert_eq!(check.last_label.as_deref(), Some("http_body"), "{b:?}");
        assert!(
            check
                .failures_by_reason
                .get("http_body")
                .copied()
                .unwrap_or(0)
                >= 2,
            "{b:?}"
        );
        assert!(
            check
                .last
                .as_deref()
                .is_some_and(|l| l.contains("HTTP body lacks \"ready\"")),
            "{b:?}"
        );
        let failed = metric_value(
            &scrape(&lab),
            "lbd_health_check_failures_total",
            &[("backend", &b.address.to_string()), ("reason", "http_body")],
        );
        assert!(failed >= 2.0, "{} failed {failed} times", b.address);
    }
    let text = lbctl_ok(&lab, &["status"]);
    assert!(text.contains("http_body"), "{text}");
    assert_ne!(request(&lab), 200, "a VIP whose backends are down served");

    // The text back: up, serving.
    lab.write_lbd_config(&lab.lbd_config_for(&["b1", "b2"], &checks("ok")))
        .expect("config");
    lbctl_ok(&lab, &["reload"]);
    wait_until("every backend up again", Duration::from_secs(10), || {
        all(&lab, HealthStatus::Up)
    });
    assert_eq!(request(&lab), 200);
}
