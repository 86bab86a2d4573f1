//! The `log` filter: levels and targets that would turn lbd's own logs off.
use super::*;

#[test]
fn log_settings() {
    let config = parse("interface = \"eth0\"\nlog_level = \"warn,lb_userspace::vrrp=debug\"\nlog_format = \"json\"\n").unwrap();
    assert_eq!(
        (config.log_level.as_str(), config.log_format),
        ("warn,lb_userspace::vrrp=debug", LogFormat::Json)
    );
    assert_error(
        "interface = \"eth0\"\nlog_format = \"xml\"\n",
        "lbd.toml:2:14: log_format: ",
        "is not one of",
    );
    assert_error(
        "interface = \"eth0\"\nlog_level = \"=\"\n",
        "lbd.toml:2:13: log_level: ",
        "not a log filter",
    );
    // A bare word that is not a level is a target to tracing: lbd's own
    // logs would be off.
    for word in ["warning", "inof", "h2=debug,inof"] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{word}\"\n"),
            "lbd.toml:2:13: log_level: ",
            "is not a level (trace, debug, info, warn, error, off); tracing reads a bare word as a target to log, so lbd's own logs would be off",
        );
    }
    // A typo beside a level for one of lbd's modules only: the rest of
    // lbd's logs would be off.
    assert_error(
        "interface = \"eth0\"\nlog_level = \"warning,lb_userspace::vrrp=debug\"\n",
        "lbd.toml:2:13: log_level: ",
        "\"warning\" is not a level (trace, debug, info, warn, error, off); tracing reads a bare word as a target to log, so lbd's own logs would be off (but those of the modules named)",
    );
    // tracing matches a directive's target as a prefix of the event's:
    // these name targets that are not lbd's (lb_userspace::..., lbd).
    for other in ["h2=debug", "lbd_userspace=debug", "lb_userspace2=info"] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{other}\"\n"),
            "lbd.toml:2:13: log_level: ",
            &format!("\"{other}\" names no level for lbd's own logs (targets lb_userspace, lbd), so lbd would log nothing"),
        );
    }
    // tracing turns off every target a filter names no level for: a level
    // for the library alone leaves target `lbd` (the fatal start error,
    // the config's warnings) off, and one for `lbd` alone the library.
    for (one, missing, effect) in [
        (
            "lb_userspace=debug",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_user=debug",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace=info,h2",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lb_userspace=debug,lbd[x]=info",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
        (
            "lbd=info",
            "target lb_userspace",
            "all of lbd's work would log nothing",
        ),
        (
            "lbd=info,lb_userspace::vrrp=debug",
            "target lb_userspace",
            "all of lbd's work would log nothing",
        ),
        (
            "lb_userspace::vrrp=debug",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace::daemon=debug",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace[vrrp]=trace",
            "targets lb_userspace and lbd",
            "lbd would log nothing but the modules named",
        ),
        (
            "lb_userspace=off",
            "target lbd",
            "an lbd that fails to start would exit saying nothing",
        ),
    ] {
        assert_error(
            &format!("interface = \"eth0\"\nlog_level = \"{one}\"\n"),
            "lbd.toml:2:13: log_level: ",
            &format!("\"{one}\" names no level for all of lbd's {missing}, and tracing turns off every target a filter does not name, so {effect}"),
        );
    }
    // A typo beside a level for one of lbd's targets only: the target
    // left out is named.
    assert_error(
        "interface = \"eth0\"\nlog_level = \"inof,lb_userspace=debug\"\n",
        "lbd.toml:2:13: log_level: ",
        "\"inof,lb_userspace=debug\" names no level for all of lbd's target lbd",
    );
    for fine in [
        "info",
        "WARN",
        "3",
        "off",
        "info,lb_userspace=debug",
        "lb_userspace=debug,lbd=info",
        "lbd=info,lb_userspace=debug",
        "lb_userspace=off,lbd=off",
        "info,lb_userspace::vrrp=debug",
        "h2=debug,info",
        "lb_userspace,lbd",
        "error,lb_userspace[vrrp]=trace",
        // A level, and a target logged at every level.
        "warn,h2",
        "info,hyper",
        "info,verbose",
        "lb_userspace=info,lbd=info,h2",
        // A prefix of both of lbd's targets covers both, as tracing
        // matches it; one of lbd's target covers it.
        "lb=debug",
        "l=info",
        "lb_user=debug,lbd=warn",
        "lb_userspace::daemon=debug,lb_userspace=info,lbd=info",
    ] {
        let text = format!("interface = \"eth0\"\nlog_level = \"{fine}\"\n");
        match parse(&text) {
            Ok(config) => assert_eq!(config.log_level, fine, "{fine}"),
            Err(e) => panic!("{fine}: {e}"),
        }
    }
}
