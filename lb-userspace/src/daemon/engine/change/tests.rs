use super::{
    mac_wait::{mac_refusal, mac_warnings},
    *,
};
use crate::vip_id::VipId;

fn config(forwarding: &str) -> Config {
    let nat = if forwarding == "nat" {
        "[nat]\nsource_ipv4 = \"198.18.0.50\"\n"
    } else {
        ""
    };
    let text = format!(
        "interface = \"eth0\"\n{nat}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\n"
    );
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

/// A NAT VIP whose backend listens on 8080 (`vip`, `backend`: more
/// keys of each, the VIP's before its backend's).
fn nat_config(vip: &str, backend: &str) -> Config {
    let text = format!(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n{vip}[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n{backend}"
    );
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

/// What a reload of `file` undoes in `running`.
fn undone(running: &Model, file: &Config) -> Vec<String> {
    undone_by_reload(running, &running.reloaded(file), file, file, &|_| true)
}

/// A backend removed and added again on another port at run time: a
/// reload writes the file's port back, and says so.
#[test]
fn a_reload_says_it_puts_a_backends_port_back() {
    let file = nat_config("", "");
    let id = VipId::of(&file.vips[0]);
    let address: std::net::IpAddr = "198.19.2.11".parse().unwrap();
    let mut running = Model::from_config(&file);
    running.remove_backend(&id, address).unwrap();
    let moved = crate::config::BackendConfig {
        port: Some(9090),
        ..crate::config::BackendConfig::new(address)
    };
    running.add_backend(&id, moved).unwrap();
    assert_eq!(
        undone(&running, &file),
        ["port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 9090 -> 8080 (the file's)"]
    );
    assert!(undone(&Model::from_config(&file), &file).is_empty());
}

/// A backend added again at run time as a backup: a reload makes it one
/// of the backends meant to serve again, as the file says, and says so.
#[test]
fn a_reload_says_it_puts_a_backends_role_back() {
    let file = nat_config("", "");
    let id = VipId::of(&file.vips[0]);
    let address: std::net::IpAddr = "198.19.2.11".parse().unwrap();
    let mut running = Model::from_config(&file);
    running.remove_backend(&id, address).unwrap();
    let backup = crate::config::BackendConfig {
        port: Some(8080),
        backup: true,
        ..crate::config::BackendConfig::new(address)
    };
    running.add_backend(&id, backup).unwrap();
    assert_eq!(
        undone(&running, &file),
        ["backup of backend 198.19.2.11 of 198.18.0.100:80/tcp: true -> false (the file's)"]
    );
}

/// A VIP added again at run time without checks: a reload turns the
/// file's checks back on, and says so.
#[test]
fn a_reload_says_it_turns_a_vips_checks_back_on() {
    let file = nat_config("", "");
    let mut vip = file.vips[0].clone();
    vip.health.check = crate::config::CheckType::None;
    let mut running = Model::from_config(&file);
    running.remove_vip(&VipId::of(&vip)).unwrap();
    running.add_vip(&vip).unwrap();
    assert_eq!(
        undone(&running, &file),
        ["health.check of VIP 198.18.0.100:80/tcp: none -> tcp (the file's)"]
    );
}

/// Every other setting a runtime `vip add` can give a VIP, and a
/// backend's own checks, are named too.
#[test]
fn a_reload_names_each_vip_setting_it_puts_back() {
    let file = nat_config("", "");
    let runtime = nat_config(
        "table_size = 1021\non_all_down = \"keep\"\naffinity = \"source\"\ndrain_timeout_s = 60\nnat_source = \"198.18.0.51\"\n[vip.health]\nrise = 5\n",
        "",
    );
    let mut notes = undone(&Model::from_config(&runtime), &file);
    notes.sort();
    let vip = "of VIP 198.18.0.100:80/tcp";
    let mut expected = vec![
        format!("affinity {vip}: source -> connection (the file's)"),
        format!("drain_timeout_s {vip}: 60 -> never (the file's)"),
        format!("health.rise {vip}: 5 -> 2 (the file's)"),
        format!("nat_source {vip}: 198.18.0.51 -> the node's (198.18.0.50) (the file's): established connections keep 198.18.0.51, which must stay on the node until they end; new flows take 198.18.0.50"),
        format!("on_all_down {vip}: keep -> drop (the file's)"),
        format!("table_size {vip}: 1021 -> 65537 (the file's)"),
    ];
    expected.sort();
    assert_eq!(notes, expected);

    let runtime = nat_config("", "[vip.backend.health]\nport = 8081\n");
    assert_eq!(
        undone(&Model::from_config(&runtime), &file),
        ["health.port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 8081 -> default (the file's)"]
    );
}

/// An HTTP check's `expect_body` given or changed at run time is named
/// when a reload puts the file's back, quoted as the file writes it.
#[test]
fn a_reload_names_the_expect_body_it_puts_back() {
    let http = |extra: &str| format!("[vip.health]\ncheck = \"http\"\n{extra}");
    let file = nat_config(&http(""), "");
    let runtime = nat_config(&http("expect_body = \"ready\"\n"), "");
    assert_eq!(
        undone(&Model::from_config(&runtime), &file),
        ["health.expect_body of VIP 198.18.0.100:80/tcp: \"ready\" -> none (the file's)"]
    );
    let file = nat_config(&http("expect_body = \"OK\"\n"), "");
    let runtime = nat_config(
        &http("expect_body = \"OK\"\n"),
        "[vip.backend.health]\nexpect_body = \"up\"\n",
    );
    assert_eq!(
        undone(&Model::from_config(&runtime), &file),
        ["health.expect_body of backend 198.19.2.11 of 198.18.0.100:80/tcp: \"up\" -> \"OK\" (the file's)"]
    );
}

/// A check's `tls` turned on at run time is named when a reload puts
/// the file's back.
#[test]
fn a_reload_names_the_tls_it_puts_back() {
    let file = nat_config("[vip.health]\ncheck = \"http\"\n", "");
    let runtime = nat_config("[vip.health]\ncheck = \"http\"\ntls = true\n", "");
    assert_eq!(
        undone(&Model::from_config(&runtime), &file),
        ["health.tls of VIP 198.18.0.100:80/tcp: true -> false (the file's)"]
    );
}

/// A pgsql check's `user` and `database` set at run time are named
/// when a reload puts the file's back, as every other key is.
#[test]
fn a_reload_names_the_pgsql_keys_it_puts_back() {
    let file = nat_config(
        "[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\ndatabase = \"app\"\n",
        "",
    );
    let runtime = nat_config("[vip.health]\ncheck = \"pgsql\"\nuser = \"other\"\n", "");
    let mut notes = undone(&Model::from_config(&runtime), &file);
    notes.sort();
    let vip = "of VIP 198.18.0.100:80/tcp";
    assert_eq!(
        notes,
        [
            format!("health.database {vip}: default (the user's name, other) -> app (the file's)"),
            format!("health.user {vip}: other -> lb (the file's)"),
        ]
    );
    let runtime = nat_config(
        "[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\ndatabase = \"app\"\n",
        "[vip.backend.health]\ndatabase = \"other\"\n",
    );
    assert_eq!(
        undone(&Model::from_config(&runtime), &file),
        ["health.database of backend 198.19.2.11 of 198.18.0.100:80/tcp: other -> app (the file's)"]
    );
    // Unset, the server takes the user's name: naming it is no change.
    let user = |database: &str| {
        nat_config(
            &format!("[vip.health]\ncheck = \"pgsql\"\nuser = \"lb\"\n{database}"),
            "",
        )
    };
    let named = user("database = \"lb\"\n");
    assert!(undone(&Model::from_config(&user("")), &named).is_empty());
    assert!(undone(&Model::from_config(&named), &user("")).is_empty());
    assert_eq!(
        undone(
            &Model::from_config(&user("")),
            &user("database = \"app\"\n")
        ),
        [format!(
            "health.database {vip}: default (the user's name, lb) -> app (the file's)"
        )]
    );
}

/// `[tunnel]` and `[nat]` are applied by a reload, and no VIP's plan
/// shows them: each changed key is a note saying what it does to the
/// flows already there (a dry run included).
#[test]
fn a_reload_names_the_tunnel_and_nat_keys_it_changes() {
    let running = nat_config("", "");
    let text = "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\nsource_port_min = 2000\nsource_port_max = 2999\ntcp_established_timeout_s = 600\n[tunnel]\ngue_port = 6081\nsource_ipv4 = \"198.18.200.0/24\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n";
    let file = Config::from_toml_str(text, "lbd.toml").unwrap();
    let model = Model::from_config(&running);
    let notes = undone_by_reload(&model, &model.reloaded(&file), &running, &file, &|_| true);
    assert_eq!(notes.len(), 4, "{notes:#?}");
    assert!(
        notes[0].starts_with("[tunnel] gue_port: 6080 -> 6081 (the file's): every GUE packet from now on, established flows' too, goes to UDP port 6081"),
        "{notes:#?}"
    );
    assert!(
        notes[1].starts_with("[tunnel] source_ipv4: the interface's own IPv4 address -> 198.18.200.0/24 (the file's)")
            && notes[1].contains("established flows' too"),
        "{notes:#?}"
    );
    assert_eq!(
        notes[2],
        "[nat] source_port_min..source_port_max: 1024-65535 -> 2000-2999 (the file's): new NAT flows take ports in 2000-2999; established ones keep theirs until they end"
    );
    assert!(
        notes[3].starts_with("[nat] tcp_established_timeout_s: ")
            && notes[3].contains("-> 600 (the file's)"),
        "{notes:#?}"
    );
    // Back: the same keys, the other way.
    let back = undone_by_reload(&model, &model, &file, &running, &|_| true);
    assert_eq!(back.len(), 4, "{back:#?}");
    assert!(
        back[1].starts_with(
            "[tunnel] source_ipv4: 198.18.200.0/24 -> the interface's own IPv4 address"
        ),
        "{back:#?}"
    );
}

/// A reload says what `lbctl config check` would warn of in the file
/// for the VIPs it brings or changes, and not again for one whose
/// running state had the warning already.
#[test]
fn a_reload_warns_of_what_the_file_brings() {
    let running = config("dsr-l2");
    let text = format!(
        "{}[vip.health]\npath = \"/healthz\"\n[[vip]]\naddress = \"198.18.0.101\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.12\"\nweight = 0\n",
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.11\"\n"
    );
    let file = Config::from_toml_str(&text, "lbd.toml").unwrap();
    let brought = config_warnings_brought(&running, &file);
    assert_eq!(
        brought,
        [
            "vip[0].health: path set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")",
            "vip[1]: every backend of VIP 198.18.0.101:80/tcp has weight 0: it drops every new flow",
        ]
    );
    // Already so when it runs: not again.
    assert!(config_warnings_brought(&file, &file).is_empty());
    // The restart settings' warnings (VRRP, BGP) are not the reload's.
    let vrrp = Config::from_toml_str(
        &format!("{text}[[vrrp]]\nvrid = 51\npriority = 255\naddresses = [\"198.18.0.200\"]\n"),
        "lbd.toml",
    )
    .unwrap();
    assert!(!crate::config::warnings(&vrrp).is_empty());
    assert!(config_warnings_brought(&vrrp, &vrrp).is_empty());
    assert_eq!(config_warnings_brought(&running, &vrrp), brought);
}

/// A backend's warning is the same warning whatever the backends'
/// order: the running VIP (`to_config`, the model's address order)
/// lists .11 before .12, the file .12 first, and an unchanged reload
/// does not warn again; a new one is named by the file's place.
#[test]
fn a_reload_does_not_repeat_a_backends_warning_in_another_order() {
    let text = |health: &str| {
        format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n[[vip.backend]]\naddress = \"198.19.2.12\"\n[vip.backend.health]\n{health}[[vip.backend]]\naddress = \"198.19.2.11\"\n"
        )
    };
    let file = Config::from_toml_str(&text("path = \"/healthz\"\n"), "lbd.toml").unwrap();
    let running = Model::from_config(&file).to_config(&file);
    assert_eq!(
        running.vips[0].backends[1].address,
        "198.19.2.12".parse::<std::net::IpAddr>().unwrap()
    );
    assert!(config_warnings_brought(&running, &file).is_empty());
    // Another warning of that backend: named by its place in the file.
    let changed =
        Config::from_toml_str(&text("path = \"/healthz\"\nhost = \"app\"\n"), "lbd.toml").unwrap();
    assert_eq!(
        config_warnings_brought(&running, &changed),
        ["vip[0].backend[0].health: path, host set but check = \"tcp\": only an HTTP check uses them (set check = \"http\")"]
    );
}

/// The API refuses what the file refuses: a backend at an address a
/// running VRRP instance moves.
#[test]
fn a_backend_at_a_vrrp_address_is_refused() {
    let model = Model::from_config(&config("dsr-l2"));
    let moved: Vec<std::net::IpAddr> = vec!["198.18.0.100".parse().unwrap()];
    assert_eq!(backend_on_a_vrrp_address(&model, &moved), None);
    let moved: Vec<std::net::IpAddr> = vec!["198.19.2.11".parse().unwrap()];
    let why = backend_on_a_vrrp_address(&model, &moved).expect("refused");
    assert!(
        why.starts_with(
            "backend 198.19.2.11 of VIP 198.18.0.100:80/tcp is an address a VRRP instance moves"
        ),
        "{why}"
    );
}

/// The API refuses what the file refuses: a VIP, or a NAT VIP's NAT
/// address, at a running VRRP instance's unicast peer.
#[test]
fn a_vip_at_a_vrrp_peer_is_refused() {
    let node = |peers: &str| {
        let text = format!(
            "interface = \"eth0\"\n[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.200\"]\nunicast_peers = [{peers}]\n"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    };
    let vip = nat_config("", "").vips[0].clone();
    let other = node("\"198.18.0.3\"");
    assert_eq!(vip_on_a_vrrp_peer(&vip, &[&other.vrrp[0]]), None);
    let at_vip = node("\"198.18.0.3\", \"198.18.0.100\"");
    assert_eq!(
        vip_on_a_vrrp_peer(&vip, &[&other.vrrp[0], &at_vip.vrrp[0]]).as_deref(),
        Some("unicast_peers[1] of the running [[vrrp]] with vrid 51: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address, so this node's own: a peer is another node's own address; the running instances' peers change when lbd restarts")
    );
    let at_nat = node("\"198.18.0.50\"");
    let why = vip_on_a_vrrp_peer(&vip, &[&at_nat.vrrp[0]]).expect("refused");
    assert!(
        why.starts_with("unicast_peers[0] of the running [[vrrp]] with vrid 51: 198.18.0.50 is the NAT address of VIP 198.18.0.100:80/tcp, so this node's own"),
        "{why}"
    );
    // The replication peer too: a VIP there would be this node's.
    let pair = |peer: &str| {
        let text = format!(
            "interface = \"eth0\"\n[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.200\"]\nsync_listen = \"198.18.0.2:7540\"\nsync_peer = \"{peer}:7540\"\nsync_key_file = \"/k\"\n"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    };
    assert_eq!(
        vip_on_a_vrrp_peer(&vip, &[&pair("198.18.0.3").vrrp[0]]),
        None
    );
    let why = vip_on_a_vrrp_peer(&vip, &[&pair("198.18.0.100").vrrp[0]]).expect("refused");
    assert!(
        why.starts_with("sync_peer of the running [[vrrp]] with vrid 52: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address"),
        "{why}"
    );
}

/// The same for a peer of the running `[sync]` mesh: a VIP, or a NAT
/// VIP's NAT address, there is refused.
#[test]
fn a_vip_at_a_mesh_peer_is_refused() {
    let mesh = |peers: &str| {
        let text = format!(
            "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [{peers}]\nkey_file = \"/k\"\n"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    };
    let vip = nat_config("", "").vips[0].clone();
    assert_eq!(vip_on_a_mesh_peer(&vip, None), None);
    let others = mesh("\"198.18.2.12:7946\", \"198.18.2.13:7946\"");
    assert_eq!(vip_on_a_mesh_peer(&vip, others.sync.as_ref()), None);
    let at_vip = mesh("\"198.18.2.12:7946\", \"198.18.0.100:7946\"");
    assert_eq!(
        vip_on_a_mesh_peer(&vip, at_vip.sync.as_ref()).as_deref(),
        Some("peers[1] of the running [sync]: 198.18.0.100 is VIP 198.18.0.100:80/tcp's address, so this node's own: a peer is another node's own address (a reload takes the file's peers only while [sync] listens where it did with the same key file; those wait for a restart)")
    );
    let at_nat = mesh("\"198.18.0.50:7946\"");
    let why = vip_on_a_mesh_peer(&vip, at_nat.sync.as_ref()).expect("refused");
    assert!(
        why.starts_with("peers[0] of the running [sync]: 198.18.0.50 is the NAT address of VIP 198.18.0.100:80/tcp"),
        "{why}"
    );
}

/// A NAT VIP added at run time that the running VRRP instances would
/// leave its NAT address behind is refused, as a reload refuses it,
/// not taken with a warning; no other edit brings a NAT address.
#[test]
fn an_added_nat_vip_whose_nat_address_stays_behind_is_refused() {
    let vip = nat_config("", "").vips[0].clone();
    let asked = std::cell::RefCell::new(Vec::new());
    let left_behind = |v: &crate::config::VipConfig| {
        asked.borrow_mut().push(v.address);
        Some(format!("VIP {}: its NAT address stays", VipId::of(v)))
    };
    assert_eq!(
        nat_address_refuses(&Edit::AddVip(vip.clone()), left_behind).as_deref(),
        Some("VIP 198.18.0.100:80/tcp: its NAT address stays")
    );
    assert_eq!(*asked.borrow(), vec![vip.address]);
    assert_eq!(
        nat_address_refuses(&Edit::AddVip(vip.clone()), |_| None),
        None
    );
    let id = VipId::of(&vip);
    let backend = vip.backends[0].clone();
    for edit in [
        Edit::AddBackend(id, backend.clone()),
        Edit::Maintenance(id, backend.address),
        Edit::RemoveVip(id),
    ] {
        assert_eq!(nat_address_refuses(&edit, left_behind), None, "{edit:?}");
    }
}

#[test]
fn a_reload_that_changes_a_vips_mode_says_what_its_flows_do() {
    let (running, file) = (config("dsr-l2"), config("ipip"));
    let notes = undone_by_reload(
        &Model::from_config(&running),
        &Model::from_config(&file),
        &running,
        &file,
        &|_| true,
    );
    assert_eq!(
        notes,
        ["VIP 198.18.0.100:80/tcp: forwarding dsr-l2 -> ipip: tracked flows keep their backend, their next packets take the new mode"]
    );
    // To or from NAT, the backends see other connections: from NAT
    // the backend resets them; to NAT nothing does, and the clients
    // time out.
    for (from, to) in [("dsr-l2", "nat"), ("nat", "gue")] {
        let (running, file) = (config(from), config(to));
        let notes = undone_by_reload(
            &Model::from_config(&running),
            &Model::from_config(&file),
            &running,
            &file,
            &|_| true,
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        if to == "nat" {
            assert!(
                notes[0].contains("cut without a reset")
                    && notes[0].contains("time out")
                    && notes[0].contains("new VIP"),
                "{notes:?}"
            );
        } else {
            assert!(
                notes[0].contains("established connections end")
                    && notes[0].contains("reset")
                    && !notes[0].contains("without a reset"),
                "{notes:?}"
            );
        }
    }
    let same = undone_by_reload(
        &Model::from_config(&file),
        &Model::from_config(&file),
        &file,
        &file,
        &|_| true,
    );
    assert!(same.is_empty(), "{same:?}");
}

/// `forwarding` and two backends (198.19.2.11 and 198.19.2.12,
/// neither with a MAC configured) of VIP 198.18.0.100:80/tcp.
fn two_backends(forwarding: &str) -> Config {
    let text = format!(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"{forwarding}\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\n[[vip.backend]]\naddress = \"198.19.2.12\"\n"
    );
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

/// Only 198.19.2.12's MAC is known.
fn only_12(a: std::net::IpAddr) -> Option<[u8; 6]> {
    (a == "198.19.2.12".parse::<std::net::IpAddr>().unwrap()).then_some([2, 0, 0, 0, 0, 0x12])
}

/// A switch to dsr-l2 whose backends no MAC resolves for would take
/// a VIP that serves now out of service: refused, naming the VIP, the
/// backends and why; with a MAC known, nothing to say.
#[test]
fn a_switch_to_dsr_l2_that_leaves_no_backend_with_a_mac_is_refused() {
    let (running, next) = (
        Model::from_config(&config("gue")),
        Model::from_config(&config("dsr-l2")),
    );
    let vips = super::super::macs::unresolved_vips(&running, &next, &|_| None);
    let why = mac_refusal(&vips).expect("refused");
    for part in [
        "VIP 198.18.0.100:80/tcp",
        "198.19.2.11",
        "no neighbour entry",
        "L2 segment",
        "keep the VIP's current mode (gue)",
    ] {
        assert!(why.contains(part), "{part}: {why}");
    }
    let known = |_| Some([2, 0, 0, 0, 0, 0x11]);
    let vips = super::super::macs::unresolved_vips(&running, &next, &known);
    assert!(vips.is_empty(), "{vips:?}");
    assert_eq!(mac_refusal(&vips), None);
    assert!(mac_warnings(&vips, true).is_empty());
    // A VIP that takes no packets now (its one backend in
    // maintenance) loses nothing: warned of, not refused.
    let id = VipId::of(&config("gue").vips[0]);
    let mut idle = running.clone();
    idle.apply(
        &Edit::Maintenance(id, "198.19.2.11".parse().unwrap()),
        Instant::now(),
    )
    .unwrap();
    let vips = super::super::macs::unresolved_vips(&idle, &next, &|_| None);
    assert_eq!(mac_refusal(&vips), None);
    assert_eq!(mac_warnings(&vips, true).len(), 1, "{vips:?}");
}

/// When some backends resolve, the switch goes on, and the answer
/// names each one that did not: its tracked flows are rehashed to
/// the resolved ones; the mode note claims nothing for them.
#[test]
fn a_switch_to_dsr_l2_names_the_backends_whose_mac_did_not_resolve() {
    let (running, file) = (two_backends("ipip"), two_backends("dsr-l2"));
    let (current, next) = (Model::from_config(&running), Model::from_config(&file));
    let vips = super::super::macs::unresolved_vips(&current, &next, &only_12);
    assert_eq!(mac_refusal(&vips), None);
    let warnings = mac_warnings(&vips, true);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    for part in [
        "backend 198.19.2.11 of VIP 198.18.0.100:80/tcp",
        "no neighbour entry",
        "tracked flows are rehashed",
        "until it resolves",
    ] {
        assert!(warnings[0].contains(part), "{part}: {warnings:?}");
    }
    assert!(!warnings[0].contains("198.19.2.12"), "{warnings:?}");
    let notes = undone_by_reload(&current, &next, &running, &file, &|a| only_12(a).is_some());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("forwarding ipip -> dsr-l2")
            && notes[0].contains("except")
            && notes[0].contains("198.19.2.11")
            && !notes[0].contains("198.19.2.12"),
        "{notes:?}"
    );
    // All known: the note as before, no warning.
    let notes = undone_by_reload(&current, &next, &running, &file, &|_| true);
    assert_eq!(
        notes,
        ["VIP 198.18.0.100:80/tcp: forwarding ipip -> dsr-l2: tracked flows keep their backend, their next packets take the new mode"]
    );
}

/// A dry run cannot wait for MACs: it warns of the brought backends
/// whose MAC is not known yet, and says when the change would be
/// refused, rather than planning with the placeholder in silence.
#[test]
fn a_dry_run_warns_of_macs_not_known_yet() {
    let (current, next) = (
        Model::from_config(&two_backends("gue")),
        Model::from_config(&two_backends("dsr-l2")),
    );
    let vips = super::super::macs::unresolved_vips(&current, &next, &only_12);
    let warnings = mac_warnings(&vips, false);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("backend 198.19.2.11 of VIP 198.18.0.100:80/tcp")
            && warnings[0].contains("not known yet"),
        "{warnings:?}"
    );
    let vips = super::super::macs::unresolved_vips(&current, &next, &|_| None);
    let warnings = mac_warnings(&vips, false);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings.iter().all(|w| w.contains("refused")),
        "{warnings:?}"
    );
}

/// With replication, the established flows that keep an old NAT
/// address or backend port are no longer copied to the peer: the
/// notes say so; without it, they do not.
#[test]
fn a_reload_says_flows_keeping_an_old_nat_value_are_no_longer_replicated() {
    let pair = "[[vrrp]]\nvrid = 52\naddresses = [\"198.18.0.200\"]\nsync_listen = \"198.18.0.2:7540\"\nsync_peer = \"198.18.0.3:7540\"\nsync_key_file = \"/k\"\n";
    let with_pair = |vip: &str, backend: &str| {
        let text = format!(
            "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n{pair}[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n{vip}[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n{backend}"
        );
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    };
    let file = with_pair("", "");
    let runtime = with_pair("nat_source = \"198.18.0.51\"\n", "");
    let notes = undone(&Model::from_config(&runtime), &file);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("nat_source of VIP 198.18.0.100:80/tcp: 198.18.0.51 -> ")
            && notes[0].contains("no longer copied to the peer")
            && notes[0].contains("failover"),
        "{notes:?}"
    );
    let id = VipId::of(&file.vips[0]);
    let address: std::net::IpAddr = "198.19.2.11".parse().unwrap();
    let mut running = Model::from_config(&file);
    running.remove_backend(&id, address).unwrap();
    running
        .add_backend(
            &id,
            crate::config::BackendConfig {
                port: Some(9090),
                ..crate::config::BackendConfig::new(address)
            },
        )
        .unwrap();
    let notes = undone(&running, &file);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(
            "port of backend 198.19.2.11 of 198.18.0.100:80/tcp: 9090 -> 8080 (the file's)"
        ) && notes[0].contains("no longer copied to the peer")
            && notes[0].contains("failover"),
        "{notes:?}"
    );
    // A [sync] mesh replicates too.
    let mesh = Config::from_toml_str(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.12:7946\"]\nkey_file = \"/k\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\n[[vip.backend]]\naddress = \"198.19.2.11\"\nport = 8080\n",
        "lbd.toml",
    )
    .unwrap();
    let notes = undone(&running, &mesh);
    assert!(notes[0].contains("failover"), "{notes:?}");
    // Without replication: as before (see
    // a_reload_says_it_puts_a_backends_port_back).
    let notes = undone(&running, &nat_config("", ""));
    assert!(!notes[0].contains("failover"), "{notes:?}");
}

/// A runtime change that leaves a VIP no backend for new flows says
/// so, with the file's own warning where the file has one (weight 0
/// on the last backend, the last one removed), as a reload of the
/// same content says it; a drain or maintenance of the last backend
/// too. One that leaves a backend taking them warns of nothing.
#[test]
fn a_change_that_leaves_no_backend_for_new_flows_warns() {
    let file = config("dsr-l2");
    let running = Model::from_config(&file);
    let id = VipId::of(&file.vips[0]);
    let b: std::net::IpAddr = "198.19.2.11".parse().unwrap();
    let warned = |running: &Model, edit: &Edit| {
        let mut next = running.clone();
        next.apply(edit, Instant::now()).unwrap();
        edit_warnings(running, &next, &file, edit)
    };
    let dropped =
        "no backend of VIP 198.18.0.100:80/tcp takes new flows after this change: every new flow is dropped";
    let weight0 = warned(&running, &Edit::SetWeight(id, b, 0));
    assert_eq!(
        weight0,
        [
            "every backend of VIP 198.18.0.100:80/tcp has weight 0: it drops every new flow",
            dropped
        ]
    );
    let removed = warned(&running, &Edit::RemoveBackend(id, b));
    assert_eq!(
        removed,
        [
            "VIP 198.18.0.100:80/tcp has no backends: it drops every new flow",
            dropped
        ]
    );
    let drain = Edit::Drain {
        vip: id,
        backend: b,
        timeout_s: None,
    };
    assert_eq!(warned(&running, &drain), [dropped]);
    assert_eq!(warned(&running, &Edit::Maintenance(id, b)), [dropped]);
    // Another backend still takes new flows: nothing to warn of.
    let mut two = running.clone();
    two.add_backend(
        &id,
        crate::config::BackendConfig {
            address: "198.19.2.12".parse().unwrap(),
            ..file.vips[0].backends[0].clone()
        },
    )
    .unwrap();
    assert!(warned(&two, &Edit::SetWeight(id, b, 0)).is_empty());
    assert!(warned(&two, &drain).is_empty());
    // A backend's doubtful settings, named by the VIP and the backend.
    let mut checked = file.vips[0].backends[0].clone();
    checked.address = "198.19.2.13".parse().unwrap();
    let mut health = file.vips[0].health.clone();
    health.path = "/healthz".into();
    checked.health = Some(health);
    let added = warned(&running, &Edit::AddBackend(id, checked));
    assert!(
        added.iter().any(|w| w.starts_with(
            "VIP 198.18.0.100:80/tcp backend[198.19.2.13].health: path set but check = \"tcp\""
        )),
        "{added:?}"
    );
}

/// Drains, maintenance and undrains on a node that replicates to
/// peers warn that the peers keep their own backend states; without
/// replication, and for other edits, nothing.
#[test]
fn a_drain_on_a_replicating_node_says_drains_are_per_node() {
    let id: VipId = "198.18.0.100:80/tcp".parse().unwrap();
    let b: std::net::IpAddr = "198.19.2.11".parse().unwrap();
    let drain = Edit::Drain {
        vip: id,
        backend: b,
        timeout_s: None,
    };
    assert_eq!(
        per_node_warning(&drain, &config("dsr-l2"), false, &[]),
        None
    );
    let pair = Config::from_toml_str(
        "interface = \"eth0\"\n[[vrrp]]\nvrid = 51\naddresses = [\"198.18.0.100\"]\nsync_listen = \"198.18.2.11:7000\"\nsync_peer = \"198.18.2.12:7000\"\nsync_key_file = \"/k\"\n",
        "lbd.toml",
    )
    .unwrap();
    let warning = per_node_warning(&drain, &pair, false, &[]).expect("a warning");
    assert!(
        warning.starts_with("drains are per node: drain 198.19.2.11 on 198.18.2.12 too"),
        "{warning}"
    );
    let maintenance =
        per_node_warning(&Edit::Maintenance(id, b), &pair, false, &[]).expect("a warning");
    assert!(
        maintenance.starts_with(
            "maintenance is per node: put 198.19.2.11 in maintenance on 198.18.2.12 too"
        ),
        "{maintenance}"
    );
    assert!(per_node_warning(&Edit::Enable(id, b), &pair, false, &[]).is_some());
    assert_eq!(
        per_node_warning(&Edit::SetWeight(id, b, 0), &pair, false, &[]),
        None
    );
    let mesh = Config::from_toml_str(
        "interface = \"eth0\"\n[sync]\nlisten = \"198.18.2.11:7946\"\npeers = [\"198.18.2.13:7946\", \"198.18.2.12:7946\"]\nkey_file = \"/k\"\n",
        "lbd.toml",
    )
    .unwrap();
    let warning = per_node_warning(&drain, &mesh, false, &[]).expect("a warning");
    assert!(
        warning.contains("on 198.18.2.12, 198.18.2.13 too"),
        "{warning}"
    );
    // A node that shares backend states warns only of the peers not known
    // to take them, and says so.
    let p12: std::net::IpAddr = "198.18.2.12".parse().unwrap();
    let p13: std::net::IpAddr = "198.18.2.13".parse().unwrap();
    assert_eq!(per_node_warning(&drain, &mesh, true, &[p12, p13]), None);
    assert_eq!(per_node_warning(&drain, &pair, true, &[p12]), None);
    let warning = per_node_warning(&drain, &mesh, true, &[p13]).expect("a warning");
    assert!(
        warning.starts_with("drains are shared with the sync peers that take them, and 198.18.2.12 has not shown it does"),
        "{warning}"
    );
    assert!(
        warning.contains("drain 198.19.2.11 on 198.18.2.12 too")
            && !warning.contains("198.18.2.13"),
        "{warning}"
    );
    // Peers known to take them count only on a node that shares.
    let warning = per_node_warning(&drain, &mesh, false, &[p12, p13]).expect("a warning");
    assert!(
        warning.contains("on 198.18.2.12, 198.18.2.13 too"),
        "{warning}"
    );
}
