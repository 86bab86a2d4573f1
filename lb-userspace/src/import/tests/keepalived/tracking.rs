//! `track_script` (and the `vrrp_script`s it names) as lbd tracking its
//! data plane: which scripts watch the proxy, and their weights.

use super::*;

#[test]
fn a_track_script_that_is_not_about_the_proxy_is_noted_not_mapped() {
    let text = "vrrp_script chk_disk {\n  script \"/usr/local/bin/disk-ok\"\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    198.18.0.100\n  }\n  track_script {\n    chk_disk\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 100);
    assert!(imported.notes.iter().any(|n| n.starts_with(
        "k.conf:11: track_script chk_disk (/usr/local/bin/disk-ok): lbd runs no scripts"
    )));
    // Without a weight, a failing proxy script gives mastership up (FAULT).
    let text = text.replace("/usr/local/bin/disk-ok", "pidof haproxy");
    let imported = ok(&[("k.conf", &text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 254);
    // A process check watches the proxy only when it names it: one of
    // another daemon is noted like any script, not mapped.
    for other in ["pidof bird", "killall -0 bird", "pgrep -x sshd"] {
        let text = text.replace("pidof haproxy", other);
        let imported = ok(&[("k.conf", &text)], &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 100, "{other}");
        assert!(
            has_note(
                &imported,
                &format!("k.conf:11: track_script chk_disk ({other}): lbd runs no scripts")
            ),
            "{other}: {:#?}",
            imported.notes
        );
        assert!(
            !has_note(&imported, "watched the proxy lbd replaces"),
            "{other}"
        );
    }
    for proxy in [
        "killall -0 haproxy",
        "pidof nginx",
        "pgrep -x haproxy",
        "/etc/keepalived/check_haproxy.sh",
    ] {
        let text = text.replace("pidof haproxy", proxy);
        let imported = ok(&[("k.conf", &text)], &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 254, "{proxy}");
    }
}

#[test]
fn a_track_script_may_use_a_vrrp_script_of_another_file() {
    let scripts = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 2\n}\n";
    let instance = "include /etc/keepalived/scripts.conf\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {\n    198.18.0.100\n  }\n  track_script {\n    chk_haproxy\n  }\n}\n";
    // Given before or after the file that uses it.
    for files in [
        [("keepalived.conf", instance), ("scripts.conf", scripts)],
        [("scripts.conf", scripts), ("keepalived.conf", instance)],
    ] {
        let imported = ok(&files, &Options::default());
        assert_eq!(imported.config.vrrp[0].track_dataplane, 2);
        assert!(
            imported.text.contains("(scripts.conf:1)"),
            "{}",
            imported.text
        );
    }
    // Not given at all: still refused at the track_script.
    assert_eq!(
        refused(&[("keepalived.conf", instance)], &Options::default()),
        "keepalived.conf:9: track_script chk_haproxy: no vrrp_script of that name"
    );
}

/// Several scripts watching the proxy all fail when it does; keepalived
/// adds up their weights (one without a weight means FAULT), so the
/// loss does not depend on which is tracked last.
#[test]
fn several_proxy_track_scripts_add_up_whatever_their_order() {
    let scripts = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 20\n}\nvrrp_script chk_pid {\n  script \"pidof haproxy\"\n  weight 30\n}\nvrrp_script chk_fault {\n  script \"pgrep haproxy\"\n}\n";
    let instance = |tracked: &[&str]| {
        format!(
            "{scripts}vrrp_instance A {{\n  interface eth0\n  virtual_router_id 7\n  virtual_ipaddress {{\n    198.18.0.100\n  }}\n  track_script {{\n{}  }}\n}}\n",
            tracked.iter().map(|t| format!("    {t}\n")).collect::<String>()
        )
    };
    let loss = |tracked: &[&str]| {
        ok(&[("k.conf", &instance(tracked))], &Options::default())
            .config
            .vrrp[0]
            .track_dataplane
    };
    assert_eq!(loss(&["chk_haproxy", "chk_pid"]), 50);
    assert_eq!(loss(&["chk_pid", "chk_haproxy"]), 50);
    // A weight on the track_script line overrides the script's.
    assert_eq!(loss(&["chk_haproxy weight -5", "chk_pid"]), 35);
    // FAULT (no weight) takes all of it, in either order.
    assert_eq!(loss(&["chk_fault", "chk_haproxy"]), 254);
    assert_eq!(loss(&["chk_haproxy", "chk_fault"]), 254);
    // Large weights saturate at 254.
    let big = instance(&["chk_haproxy weight 200", "chk_pid weight 200"]);
    let imported = ok(&[("k.conf", &big)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 254);
    // The comment names every script.
    let imported = ok(
        &[("k.conf", &instance(&["chk_haproxy", "chk_pid"]))],
        &Options::default(),
    );
    assert!(
        imported.text.contains("track_script chk_haproxy:")
            && imported.text.contains("track_script chk_pid:"),
        "{}",
        imported.text
    );
}

#[test]
fn a_positive_track_script_weight_is_warned_of_with_both_priorities() {
    let text = "vrrp_script chk_haproxy {\n  script \"killall -0 haproxy\"\n  weight 2\n}\nvrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  track_script {\n    chk_haproxy\n  }\n  priority 101\n  virtual_ipaddress {\n    198.18.0.100\n  }\n}\n";
    let imported = ok(&[("k.conf", text)], &Options::default());
    assert_eq!(imported.config.vrrp[0].track_dataplane, 2);
    assert!(has_note(&imported, "k.conf:9: WARNING: track_script chk_haproxy weight +2 (k.conf:9): keepalived added a positive weight to the priority while the proxy check succeeded (priority 103 while it ran, 101 when it failed); lbd takes it off while its data plane is down instead (priority 101 while it runs, 99 when it is down)"), "{:#?}", imported.notes);
    // A negative one means what lbd does: nothing to warn of.
    let negative = text.replace("weight 2", "weight -2");
    let imported = ok(&[("k.conf", &negative)], &Options::default());
    assert!(!has_note(&imported, "keepalived added a positive weight"));
}
