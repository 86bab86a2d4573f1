use std::net::IpAddr;

use super::{
    announcement_refusal::*, announcement_warnings::*, announcements::*, restart_marker::*,
    state_change::*, state_file::*, *,
};
use crate::{
    bgp::announce::{self, NodeView, Withheld},
    health::Health,
    model::Model,
    test_scratch::ScratchDir,
};

/// A directory of this test's (removed when dropped), with `run/` in it.
struct Scratch(ScratchDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = ScratchDir::new(&format!("node-{tag}"));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        Self(dir)
    }

    /// A config with its admin socket in `run/` and, with `bgp`, the
    /// node state in `lib/` (not created yet).
    fn config(&self, bgp: bool) -> Config {
        let mut text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n  [[vip.backend]]\n  address = \"198.18.0.11\"\n  mac = \"02:00:00:00:00:11\"\n",
            self.0.join("run").join("lbd.sock").display()
        );
        if bgp {
            text.push_str(&format!(
                "[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
                self.0.join("bird.ctl").display(),
                self.0.join("vips.conf").display(),
                self.0.join("lib").join("node.state").display()
            ));
        }
        Config::from_toml_str(&text, "lbd.toml").unwrap()
    }
}

/// A dsr-l2 VIP (198.18.0.100) and a NAT VIP (198.18.0.101), one
/// backend each, no MAC configured, both backends passing their
/// checks.
fn up_without_configured_macs() -> Model {
    let config = Config::from_toml_str(
        "interface = \"eth0\"\n[nat]\nsource_ipv4 = \"198.18.0.50\"\n\
         [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"dsr-l2\"\n\
         [vip.health]\ncheck = \"tcp\"\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\n\
         [[vip]]\naddress = \"198.18.0.101\"\nport = 80\nforwarding = \"nat\"\n\
         [vip.health]\ncheck = \"tcp\"\n\
         [[vip.backend]]\naddress = \"198.18.1.12\"\n",
        "lbd.toml",
    )
    .unwrap();
    let mut model = Model::from_config(&config);
    let keys: Vec<BackendKey> = model
        .vips
        .iter()
        .flat_map(|(id, vip)| vip.backends.keys().map(move |a| (*id, *a)))
        .collect();
    for (vip, backend) in keys {
        assert!(model.set_health(&vip, backend, Health::Up));
    }
    model
}

/// What an active, started node with BGP covering both VIPs announces.
fn announced(model: &Model, mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>) -> announce::Plan {
    let view = NodeView {
        state: NodeState::Active,
        gate: announce::Gate::Open,
        attached: true,
        interface_up: true,
    };
    announce::plan(view, &services(model, |_| true, mac_of))
}

/// A dsr-l2 backend passing its checks whose MAC never resolves takes
/// no packet (the data plane sends a dsr-l2 backend nothing without
/// one): its VIP is withdrawn rather than drawing traffic that is
/// all dropped; once the MAC is known it is announced. A NAT VIP
/// needs no MAC and is announced either way.
#[test]
fn a_dsr_l2_vip_whose_healthy_backends_have_no_mac_is_not_announced() {
    let model = up_without_configured_macs();
    let dsr: IpAddr = "198.18.0.100".parse().unwrap();
    let nat: IpAddr = "198.18.0.101".parse().unwrap();
    let plan = announced(&model, &|_| None);
    assert_eq!(plan[&dsr], Some(Withheld::NoHealthyBackend), "{plan:?}");
    assert_eq!(plan[&nat], None, "{plan:?}");
    let plan = announced(&model, &|_| Some([2, 0, 0, 0, 0, 0x11]));
    assert_eq!(plan[&dsr], None, "{plan:?}");
    assert_eq!(plan[&nat], None, "{plan:?}");
}

/// The file of `ports` on 198.18.0.100 (dsr-l2, TCP checks), each
/// with backend 198.18.0.11 (MAC configured) when `backend` says so.
fn ports_config(ports: &[(u16, bool)]) -> Config {
    let mut text = "interface = \"eth0\"\n".to_owned();
    for (port, backend) in ports {
        text.push_str(&format!(
            "[[vip]]\naddress = \"198.18.0.100\"\nport = {port}\n[vip.health]\ncheck = \"tcp\"\n"
        ));
        if *backend {
            text.push_str(
                "[[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n",
            );
        }
    }
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

/// Sets the health of every backend on `port`.
fn set_port_health(model: &mut Model, port: u16, health: Health) {
    let keys: Vec<BackendKey> = model
        .vips
        .iter()
        .filter(|(id, _)| id.port == port)
        .flat_map(|(id, vip)| vip.backends.keys().map(move |a| (*id, *a)))
        .collect();
    for (vip, backend) in keys {
        assert!(model.set_health(&vip, backend, health));
    }
}

/// A reload adds :8443 beside a healthy :443, its backend awaiting
/// its first check (or none at all, as `lbctl vip add` before
/// `backend add` leaves it): every node sees the same, so the address
/// stays announced for :443. Once :8443's backend was checked and
/// found down the address goes (a node-local failure the other nodes
/// may not share), and it comes back when it is up.
#[test]
fn a_port_added_beside_a_served_one_keeps_the_address_announced() {
    let address: IpAddr = "198.18.0.100".parse().unwrap();
    let mac = |_| Some([2, 0, 0, 0, 0, 0x11]);
    let mut running = Model::from_config(&ports_config(&[(443, true)]));
    set_port_health(&mut running, 443, Health::Up);
    assert_eq!(announced(&running, &mac)[&address], None);

    let mut next = running.reloaded(&ports_config(&[(443, true), (8443, true)]));
    assert_eq!(
        announced(&next, &mac)[&address],
        None,
        "awaiting its first check"
    );
    let empty = running.reloaded(&ports_config(&[(443, true), (8443, false)]));
    assert_eq!(announced(&empty, &mac)[&address], None, "no backends");

    set_port_health(&mut next, 8443, Health::Down);
    assert_eq!(
        announced(&next, &mac)[&address],
        Some(Withheld::NoHealthyBackend),
        "checked and down"
    );
    set_port_health(&mut next, 8443, Health::Up);
    assert_eq!(announced(&next, &mac)[&address], None);

    // Nothing served on the address yet: not announced.
    let fresh = Model::default().reloaded(&ports_config(&[(443, true)]));
    assert_eq!(
        announced(&fresh, &mac)[&address],
        Some(Withheld::NoHealthyBackend)
    );
}

/// A new VIP without backends on an address BGP announces for the
/// services beside it is warned of by its name and the address; one
/// on an address nothing else serves (not announced), or with
/// backends, or there before, is not.
#[test]
fn a_new_service_without_backends_on_an_announced_address_is_warned_of() {
    let mac = |_| Some([2, 0, 0, 0, 0, 0x11]);
    let mut running = Model::from_config(&ports_config(&[(443, true)]));
    set_port_health(&mut running, 443, Health::Up);
    let next = running.reloaded(&ports_config(&[(443, true), (8443, false)]));
    let warnings = announced_without_backends(&running, &next, |_| true, &mac);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("198.18.0.100:8443/tcp")
            && warnings[0].contains("BGP announces 198.18.0.100"),
        "{warnings:?}"
    );
    assert!(announced_without_backends(&next, &next, |_| true, &mac).is_empty());
    assert!(announced_without_backends(&running, &next, |_| false, &mac).is_empty());
    let with = running.reloaded(&ports_config(&[(443, true), (8443, true)]));
    assert!(announced_without_backends(&running, &with, |_| true, &mac).is_empty());
    let alone = Model::default().reloaded(&ports_config(&[(8443, false)]));
    assert!(announced_without_backends(&Model::default(), &alone, |_| true, &mac).is_empty());
}

/// The warning for a backend passing its checks without a MAC comes
/// once, not on every pass of lbd's loop, and again only after the
/// condition ended and came back.
#[test]
fn a_backend_up_without_a_mac_is_warned_of_once() {
    let mut model = up_without_configured_macs();
    let vip = *model
        .vips
        .iter()
        .find(|(id, _)| id.address == "198.18.0.100".parse::<IpAddr>().unwrap())
        .unwrap()
        .0;
    let key = (vip, "198.18.0.11".parse().unwrap());
    let mut warned = BTreeSet::new();
    let none = |_| None;
    assert_eq!(newly_without_mac(&model, &none, &mut warned), [key]);
    assert!(newly_without_mac(&model, &none, &mut warned).is_empty());
    // Its checks fail, then pass again: warned of again.
    model.set_health(&key.0, key.1, Health::Down);
    assert!(newly_without_mac(&model, &none, &mut warned).is_empty());
    model.set_health(&key.0, key.1, Health::Up);
    assert_eq!(newly_without_mac(&model, &none, &mut warned), [key]);
    // Its MAC resolves: nothing more.
    let known = |_| Some([2, 0, 0, 0, 0, 0x11]);
    assert!(newly_without_mac(&model, &known, &mut warned).is_empty());
    assert!(warned.is_empty());
}

#[test]
fn a_node_without_bgp_refuses_a_drain_but_may_be_made_active() {
    let scratch = Scratch::new("nobgp");
    let without = scratch.config(false);
    let why = node_state_refusal(&without, NodeState::Drained).unwrap();
    assert!(why.contains("[bgp]"), "{why}");
    assert_eq!(node_state_refusal(&without, NodeState::Active), None);
    let with = scratch.config(true);
    assert_eq!(node_state_refusal(&with, NodeState::Drained), None);
}

/// A NAT VIP refused on an address BGP announces is named as VIPs
/// are everywhere: an IPv6 one with brackets and its protocol, not
/// `2001:2::100:80`.
#[test]
fn a_nat_vip_bgp_announces_is_refused_by_its_name() {
    let scratch = Scratch::new("natname");
    let with = scratch.config(true);
    let mut vip = crate::config::VipConfig::new(
        "2001:2::100".parse().unwrap(),
        80,
        crate::config::Protocol::Tcp,
    );
    assert_eq!(announcement_refusal(&with, &vip), None);
    vip.nat = Some(crate::config::VipNat {
        source: "2001:2::50".parse().unwrap(),
        own_source: false,
        port_min: 1024,
        port_max: 65535,
    });
    let why = announcement_refusal(&with, &vip).unwrap();
    assert!(
        why.starts_with("VIP [2001:2::100]:80/tcp uses forwarding = \"nat\""),
        "{why}"
    );
    assert_eq!(announcement_refusal(&scratch.config(false), &vip), None);
}

/// A reload refused for a NAT VIP the running `[bgp]` announces,
/// when the file's own `[bgp]` would not: the refusal says the
/// running one decides until lbd restarts, which `lbctl vip add`'s
/// (no file) does not.
#[test]
fn a_reload_refused_by_the_running_bgp_says_a_restart_changes_it() {
    let scratch = Scratch::new("reloadbgp");
    let (with, without) = (scratch.config(true), scratch.config(false));
    let mut vip = with.vips[0].clone();
    vip.nat = Some(crate::config::VipNat {
        source: "198.18.0.50".parse().unwrap(),
        own_source: false,
        port_min: 1024,
        port_max: 65535,
    });
    let added = announcement_refusal(&with, &vip).unwrap();
    assert!(!added.contains("restart"), "{added}");
    let reloaded = reload_announcement_refusal(&with, &without, &vip).unwrap();
    assert!(reloaded.starts_with(&added), "{reloaded}");
    assert!(
        reloaded.contains("the running [bgp]") && reloaded.contains("restart lbd"),
        "{reloaded}"
    );
    // The file announces it too: the refusal as for an add.
    assert_eq!(
        reload_announcement_refusal(&with, &with, &vip).as_deref(),
        Some(added.as_str())
    );
    assert_eq!(reload_announcement_refusal(&without, &with, &vip), None);
}

#[test]
fn a_stale_restart_marker_goes_when_lbd_starts() {
    let scratch = Scratch::new("marker");
    let config = scratch.config(true);
    let marker = restart_marker(&config).unwrap();
    std::fs::write(&marker, b"restart\n").unwrap();
    let _node = NodeRuntime::start(&config, true, Instant::now());
    assert!(!marker.exists(), "a later stop would keep the routes");
}

#[test]
fn a_drain_outlives_the_runtime_directory() {
    let scratch = Scratch::new("drain");
    let config = scratch.config(true);
    let path = node_state_file(&config).unwrap();
    assert!(!path.starts_with(scratch.0.join("run")), "{path:?}");
    // The directory does not exist yet (a fresh /var/lib/lbd).
    write_state(&path, NodeState::Drained).unwrap();
    // systemd removed /run/lbd on stop (or the node rebooted).
    std::fs::remove_dir_all(scratch.0.join("run")).unwrap();
    let node = NodeRuntime::start(&config, false, Instant::now());
    assert_eq!(node.state, NodeState::Drained);
}

#[test]
fn a_drain_recorded_beside_the_admin_socket_is_carried_over() {
    let scratch = Scratch::new("legacy");
    let config = scratch.config(true);
    let legacy = legacy_node_state_file(&config).unwrap();
    std::fs::write(&legacy, "drained\n").unwrap();
    let node = NodeRuntime::start(&config, false, Instant::now());
    assert_eq!(node.state, NodeState::Drained);
    let path = node_state_file(&config).unwrap();
    assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
    // Without [bgp] the state stays beside the admin socket.
    assert_eq!(node_state_file(&scratch.config(false)), Some(legacy));
}

/// A drain a restart would forget is refused, naming the file, and
/// the node stays as it was; once the file can be written the change
/// goes through and is read back.
#[test]
fn a_state_change_that_cannot_be_recorded_is_refused() {
    let scratch = Scratch::new("unwritable");
    let config = scratch.config(true);
    let path = node_state_file(&config).unwrap();
    let mut node = NodeRuntime::start(&config, false, Instant::now());
    assert_eq!(node.state, NodeState::Active);
    // Its directory cannot be made: a file is where it would go.
    std::fs::write(scratch.0.join("lib"), b"not a directory").unwrap();
    let why = node.set_state(Some(&path), NodeState::Drained).unwrap_err();
    assert!(why.contains(&path.display().to_string()), "{why}");
    assert!(why.contains("stays active"), "{why}");
    assert_eq!(node.state, NodeState::Active, "unchanged");

    std::fs::remove_file(scratch.0.join("lib")).unwrap();
    node.set_state(Some(&path), NodeState::Drained).unwrap();
    assert_eq!(node.state, NodeState::Drained);
    assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
    assert!(!temporary_of(&path).exists(), "no temporary file left");
}

/// The rename is a state write's commit point: a directory sync that
/// fails after it still records the state, and a failure before it
/// changes nothing.
#[test]
fn a_failed_directory_sync_after_the_rename_still_records_the_state() {
    let scratch = Scratch::new("dirsync");
    let config = scratch.config(true);
    let path = node_state_file(&config).unwrap();
    let synced = std::cell::Cell::new(false);
    // The rename is done when the directory sync fails: the file says
    // drained, so the write must say so too (set_state then changes
    // its state with the file's).
    write_state_with(&path, NodeState::Drained, |dir| {
        synced.set(dir == scratch.0.join("lib"));
        Err(std::io::Error::other("injected fsync failure"))
    })
    .expect("the rename is the commit point");
    assert!(synced.get(), "the directory sync was asked for");
    assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
    // A failure before the rename is still an error, and changes nothing.
    std::fs::remove_dir_all(scratch.0.join("lib")).unwrap();
    std::fs::write(scratch.0.join("lib"), b"not a directory").unwrap();
    assert!(write_state_with(&path, NodeState::Active, |_| Ok(())).is_err());
}

/// A symlink planted at the temporary name is never followed: the
/// file it points to is left as it was.
#[test]
fn a_symlink_at_the_temporary_name_is_not_followed() {
    let scratch = Scratch::new("symlink");
    let path = scratch.0.join("node.state");
    let victim = scratch.0.join("victim");
    std::fs::write(&victim, "secret\n").unwrap();
    std::os::unix::fs::symlink(&victim, temporary_of(&path)).unwrap();
    write_state_with(&path, NodeState::Drained, |_| Ok(())).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret\n");
    assert_eq!(read_state(&path).unwrap(), Some(NodeState::Drained));
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
}

/// A state file that is there but unusable (empty after a crash,
/// garbled, unreadable) may hide a drain: the node starts drained.
/// No file at all is a node never drained.
#[test]
fn an_unusable_state_file_starts_the_node_drained() {
    let scratch = Scratch::new("unusable");
    let config = scratch.config(true);
    let path = node_state_file(&config).unwrap();
    let start = || NodeRuntime::start(&config, false, Instant::now()).state;
    assert_eq!(start(), NodeState::Active, "no file");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for text in ["", "\n", "maintenance\n", "drai"] {
        std::fs::write(&path, text).unwrap();
        assert!(read_state(&path).is_err(), "{text:?}");
        assert_eq!(start(), NodeState::Drained, "{text:?}");
    }
    // Unreadable: a directory where the file should be.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let error = format!("{:#}", read_state(&path).unwrap_err());
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert_eq!(start(), NodeState::Drained);
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, "active\n").unwrap();
    assert_eq!(start(), NodeState::Active);
}
