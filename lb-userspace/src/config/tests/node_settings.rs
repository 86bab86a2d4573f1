//! The node's own top-level settings: interface, attach hook and XDP mode,
//! table sizes, flood thresholds, pin directory, Maglev mode.
use super::*;

#[test]
fn interface_is_required() {
    assert_error(
        "xdp_mode = \"auto\"\n",
        "lbd.toml:1:1: interface: ",
        "required field is missing",
    );
}

#[test]
fn interface_must_be_a_valid_name() {
    assert_error(
        "interface = \"\"\n",
        "lbd.toml:1:13: interface: ",
        "must not be empty",
    );
    assert_error(
        "\ninterface = \"abcdefghijklmnop\"\n",
        "lbd.toml:2:13: interface: ",
        "is 16 bytes long",
    );
    assert_error(
        "interface = \"eth/0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains '/'",
    );
    assert_error(
        "interface = \"eth 0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains ' '",
    );
    assert_error(
        "interface = \"eth\\t0\"\n",
        "lbd.toml:1:13: interface: ",
        "contains '\\t'",
    );
    assert_error(
        "interface = \"eth0:1\"\n",
        "lbd.toml:1:13: interface: ",
        "contains ':'",
    );
    assert_error(
        "interface = \"..\"\n",
        "lbd.toml:1:13: interface: ",
        "not an interface name",
    );
    assert_error(
        "interface = 5\n",
        "lbd.toml:1:13: interface: ",
        "expected a string, found an integer",
    );
    assert_eq!(
        parse("interface = \"abcdefghijklmno\"\n")
            .unwrap()
            .interface
            .len(),
        15
    );
}

#[test]
fn attach_picks_the_hook_and_defaults_to_xdp() {
    assert_eq!(parse("interface = \"eth0\"\n").unwrap().attach, Attach::Xdp);
    for (name, hook) in [("xdp", Attach::Xdp), ("tc", Attach::Tc)] {
        let text = format!("interface = \"eth0\"\nattach = \"{name}\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.attach, hook);
        assert_eq!(hook.to_string(), name);
        // The dump says it, and reads back the same.
        assert_eq!(parse(&dump::to_toml(&config)).unwrap().attach, hook);
    }
    assert_error(
        "interface = \"eth0\"\nattach = \"ebpf\"\n",
        "lbd.toml:2:10: attach: ",
        "",
    );
}

#[test]
fn xdp_mode_must_be_known() {
    assert_error(
        "interface = \"eth0\"\nxdp_mode = \"turbo\"\n",
        "lbd.toml:2:12: xdp_mode: ",
        r#""turbo" is not one of "auto", "native", "generic""#,
    );
    assert_error(
        "interface = \"eth0\"\nxdp_mode = true\n",
        "lbd.toml:2:12: xdp_mode: ",
        "expected a string, found a boolean",
    );
    for (name, mode) in [
        ("auto", XdpMode::Auto),
        ("native", XdpMode::Native),
        ("generic", XdpMode::Generic),
    ] {
        let text = format!("interface = \"eth0\"\nxdp_mode = \"{name}\"\n");
        assert_eq!(parse(&text).unwrap().xdp_mode, mode);
    }
}

#[test]
fn conntrack_size_must_be_in_range() {
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 1023\n",
        "lbd.toml:2:18: conntrack_size: ",
        "1023 is out of range 1024..=16777216",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 16777217\n",
        "lbd.toml:2:18: conntrack_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = -1\n",
        "lbd.toml:2:18: conntrack_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nconntrack_size = 1.5\n",
        "lbd.toml:2:18: conntrack_size: ",
        "expected an integer, found a float",
    );
    let text = "interface = \"eth0\"\nconntrack_size = 16777216\n";
    assert_eq!(parse(text).unwrap().conntrack_size, MAX_CONNTRACK_SIZE);
}

#[test]
fn half_open_size_has_a_default_and_must_be_in_range() {
    let config = parse("interface = \"eth0\"\n").unwrap();
    assert_eq!(config.half_open_size, 32_768);
    assert_eq!(
        lb_common::flow_table::half_open_buckets_for(config.half_open_size),
        lb_common::consts::HALF_OPEN_BUCKETS
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = 1023\n",
        "lbd.toml:2:18: half_open_size: ",
        "1023 is out of range 1024..=4194304",
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = 4194305\n",
        "lbd.toml:2:18: half_open_size: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\nhalf_open_size = \"big\"\n",
        "lbd.toml:2:18: half_open_size: ",
        "expected an integer",
    );
    for (size, buckets) in [(1024, 128), (4_194_304, 524_288), (5000, 1024)] {
        let text = format!("interface = \"eth0\"\nhalf_open_size = {size}\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.half_open_size, size);
        assert_eq!(
            lb_common::flow_table::half_open_buckets_for(size),
            buckets,
            "{size} flows: a power of two of buckets"
        );
        assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    }
}

#[test]
fn flood_thresholds_have_defaults_and_must_be_in_range() {
    use crate::flood::machine::FloodThresholds;
    let config = parse("interface = \"eth0\"\n").unwrap();
    assert_eq!(config.flood, FloodThresholds::default());
    let text = "interface = \"eth0\"\n[flood]\nunanswered_syn_per_s = 20000\n\
                half_open_evicted_per_s = 2000\ncalm_s = 10\n";
    let config = parse(text).unwrap();
    assert_eq!(
        config.flood,
        FloodThresholds {
            unanswered_per_s: 20_000,
            evicted_per_s: 2_000,
            calm: Duration::from_secs(10),
        }
    );
    assert_eq!(parse(&to_toml(&config)).unwrap(), config, "dump round trip");
    // One key alone keeps the others' defaults.
    let config = parse("interface = \"eth0\"\n[flood]\ncalm_s = 60\n").unwrap();
    assert_eq!(config.flood.calm, Duration::from_secs(60));
    assert_eq!(
        config.flood.unanswered_per_s,
        FloodThresholds::default().unanswered_per_s
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\nunanswered_syn_per_s = 0\n",
        "lbd.toml:3:24: flood.unanswered_syn_per_s: ",
        "0 is out of range 1..=1000000000",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\nhalf_open_evicted_per_s = -5\n",
        "lbd.toml:3:27: flood.half_open_evicted_per_s: ",
        "out of range",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\ncalm_s = 3601\n",
        "lbd.toml:3:10: flood.calm_s: ",
        "3601 is out of range 1..=3600",
    );
    assert_error(
        "interface = \"eth0\"\n[flood]\ncalm = 3\n",
        "lbd.toml:3:1: unknown field `calm`",
        "`calm_s`",
    );
}

#[test]
fn pin_dir_defaults_can_be_moved_or_turned_off() {
    assert_eq!(
        parse("interface = \"eth0\"\n").unwrap().pin_dir,
        Some(PathBuf::from(DEFAULT_PIN_DIR))
    );
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"/sys/fs/bpf/lb2\"\n")
            .unwrap()
            .pin_dir,
        Some(PathBuf::from("/sys/fs/bpf/lb2"))
    );
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"off\"\n")
            .unwrap()
            .pin_dir,
        None
    );
    let long = format!("/sys/fs/bpf/{}", "a".repeat(190));
    for (bad, why) in [
        ("relative", "is not an absolute path"),
        ("/sys/fs/bpf/../etc", "has a \"..\" component"),
        ("/sys/fs/bpf/lb/..", "has a \"..\" component"),
        (long.as_str(), "at most 200 are allowed"),
    ] {
        let error = parse(&format!("interface = \"eth0\"\npin_dir = \"{bad}\"\n"))
            .expect_err("refused")
            .to_string();
        assert!(error.starts_with("lbd.toml:2:11: pin_dir: "), "{error}");
        assert!(error.contains(why), "{bad}: {error}");
    }
    // Two dots inside a name climb nowhere.
    assert_eq!(
        parse("interface = \"eth0\"\npin_dir = \"/sys/fs/bpf/lb..2\"\n")
            .unwrap()
            .pin_dir,
        Some(PathBuf::from("/sys/fs/bpf/lb..2"))
    );
}

#[test]
fn maglev_mode_is_consistent_unless_minimal_is_asked_for() {
    assert_eq!(
        parse("interface = \"eth0\"\n").unwrap().maglev_mode,
        MaglevMode::Consistent
    );
    assert_eq!(
        parse("interface = \"eth0\"\nmaglev_mode = \"minimal\"\n")
            .unwrap()
            .maglev_mode,
        MaglevMode::Minimal
    );
    let error = parse("interface = \"eth0\"\nmaglev_mode = \"fast\"\n")
        .expect_err("refused")
        .to_string();
    assert!(error.starts_with("lbd.toml:2:15: maglev_mode: "), "{error}");
}

/// Generic XDP cannot translate partial-checksum or GSO skbs: a NAT or
/// tunnelled VIP with `xdp_mode = "generic"` is refused by the file's
/// check (`lbctl config check`, a reload), not only at lbd's start.
#[test]
fn generic_xdp_serves_dsr_l2_vips_only() {
    let file = |mode: &str, forwarding: &str| {
        format!(
            "interface = \"eth0\"\nxdp_mode = \"{mode}\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
             [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n\
             [[vip.backend]]\naddress = \"198.18.1.11\"\n"
        )
    };
    assert_error(
        &file("generic", "nat"),
        "lbd.toml:2:12: xdp_mode: ",
        "xdp_mode = \"generic\" serves DSR-L2 VIPs only: generic (skb) XDP cannot translate packets",
    );
    assert!(error(&file("generic", "nat")).contains("198.18.0.100:80/tcp (nat)"));
    for (mode, forwarding) in [("generic", "dsr-l2"), ("auto", "nat"), ("native", "nat")] {
        assert!(
            parse(&file(mode, forwarding)).is_ok(),
            "{mode} with {forwarding}"
        );
    }
}

#[test]
fn xdp_mode_belongs_to_attach_xdp() {
    for mode in ["native", "generic"] {
        assert_error(
            &format!("interface = \"eth0\"\nattach = \"tc\"\nxdp_mode = \"{mode}\"\n"),
            "lbd.toml:3:12: xdp_mode: ",
            "is for attach = \"xdp\"; with attach = \"tc\" there is no XDP program to attach: remove xdp_mode",
        );
        let xdp = format!("interface = \"eth0\"\nattach = \"xdp\"\nxdp_mode = \"{mode}\"\n");
        assert!(parse(&xdp).is_ok());
    }
    // "auto", the default a dump writes, is let by.
    let config = parse("interface = \"eth0\"\nattach = \"tc\"\nxdp_mode = \"auto\"\n").unwrap();
    assert_eq!(config.attach, Attach::Tc);
}
