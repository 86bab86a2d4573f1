//! Backup backends (`backup = true`): they take a VIP's new flows only
//! while no other backend of it can, and keep the flows they took when
//! the others return.

use super::tests::{addr, served, vip_id};
use super::*;
use crate::config::AllDown;

/// A VIP with two backends and a backup (`.11`, `.12`; backup `.21`), each
/// with a MAC unless `no_macs`, `extra` added to the VIP's table.
fn config(extra: &str, no_macs: bool) -> Config {
    let mac = |last: &str| {
        if no_macs {
            String::new()
        } else {
            format!("mac = \"02:00:00:00:00:{last}\"\n")
        }
    };
    Config::from_toml_str(
        &format!(
            "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\ntable_size = 1009\n{extra}\
             [[vip.backend]]\naddress = \"198.18.0.11\"\n{}\
             [[vip.backend]]\naddress = \"198.18.0.12\"\n{}\
             [[vip.backend]]\naddress = \"198.18.0.21\"\n{}backup = true\nweight = 50\n",
            mac("11"),
            mac("12"),
            mac("21")
        ),
        "test.toml",
    )
    .unwrap()
}

fn vip(model: &Model) -> &VipModel {
    &model.vips[&vip_id()]
}

#[test]
fn a_backup_stands_by_alive_while_another_backend_takes_new_flows() {
    let mut model = Model::from_config(&config("", false));
    assert_eq!(
        served(&model),
        [
            (addr(11), 100, true),
            (addr(12), 100, true),
            (addr(21), 0, true)
        ]
    );
    assert!(!vip(&model).on_backups(&|_| None));
    assert_eq!(vip(&model).shares().get(&addr(21)).copied(), Some(0.0));
    // One of the two down: the other still serves.
    assert!(model.set_health(&vip_id(), addr(11), Health::Down));
    assert_eq!(
        served(&model),
        [
            (addr(11), 0, false),
            (addr(12), 100, true),
            (addr(21), 0, true)
        ]
    );
    assert!(!vip(&model).on_backups(&|_| None));
}

#[test]
fn the_backup_takes_new_flows_when_the_others_are_down_and_keeps_its_flows_after() {
    let mut model = Model::from_config(&config("", false));
    model.set_health(&vip_id(), addr(11), Health::Down);
    model.set_health(&vip_id(), addr(12), Health::Down);
    assert_eq!(
        served(&model),
        [
            (addr(11), 0, false),
            (addr(12), 0, false),
            (addr(21), 50, true)
        ]
    );
    assert!(vip(&model).on_backups(&|_| None));
    assert!(!vip(&model).all_down(), "the backup is up");
    assert!(vip(&model).can_serve());
    assert_eq!(vip(&model).shares().get(&addr(21)).copied(), Some(1.0));
    // One comes back: new flows go to it, the backup stands by again,
    // alive, so the flows it took stay on it.
    model.set_health(&vip_id(), addr(12), Health::Up);
    assert_eq!(
        served(&model),
        [
            (addr(11), 0, false),
            (addr(12), 100, true),
            (addr(21), 0, true)
        ]
    );
    assert!(!vip(&model).on_backups(&|_| None));
}

/// One way of taking a backend out of new flows.
type TakeOut<'a> = dyn Fn(&mut Model, IpAddr) + 'a;

#[test]
fn drained_maintained_full_or_unweighted_backends_leave_new_flows_to_the_backup() {
    let now = Instant::now();
    let out: [&TakeOut<'_>; 4] = [
        &|m, a| {
            m.set_admin(
                &vip_id(),
                a,
                AdminState::Draining {
                    since: now,
                    deadline: None,
                },
            )
            .unwrap()
        },
        &|m, a| m.set_admin(&vip_id(), a, AdminState::Maintenance).unwrap(),
        &|m, a| {
            m.set_health(&vip_id(), a, Health::Full);
        },
        &|m, a| {
            m.set_weight(&vip_id(), a, 0).unwrap();
        },
    ];
    for (i, take_out) in out.iter().enumerate() {
        let mut model = Model::from_config(&config("", false));
        take_out(&mut model, addr(11));
        assert!(!vip(&model).on_backups(&|_| None), "case {i}: .12 serves");
        take_out(&mut model, addr(12));
        assert!(vip(&model).on_backups(&|_| None), "case {i}");
        let backup = served(&model)[2];
        assert_eq!(backup, (addr(21), 50, true), "case {i}");
    }
}

#[test]
fn a_backup_down_too_is_all_down_and_failing_open_goes_to_the_others() {
    let mut model = Model::from_config(&config("on_all_down = \"keep\"\n", false));
    for last in [11, 12, 21] {
        model.set_health(&vip_id(), addr(last), Health::Down);
    }
    assert!(vip(&model).all_down());
    // Failing open: the backends meant to serve take new flows, not the
    // backup.
    assert_eq!(
        served(&model),
        [
            (addr(11), 100, true),
            (addr(12), 100, true),
            (addr(21), 0, true)
        ]
    );
    assert!(!vip(&model).on_backups(&|_| None));
}

#[test]
fn a_dsr_backend_whose_mac_is_unknown_keeps_no_backup_out() {
    let model = Model::from_config(&config("", true));
    let mac_of_backup = |a: IpAddr| (a == addr(21)).then_some([2, 0, 0, 0, 0, 0x21]);
    // .11 and .12 take nothing without a MAC: the backup does.
    assert!(vip(&model).on_backups(&mac_of_backup));
    // Once theirs are known, they serve and the backup stands by.
    assert!(!vip(&model).on_backups(&|_| Some([2, 0, 0, 0, 0, 1])));
}

#[test]
fn a_vip_of_backups_alone_serves_on_them() {
    let config = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nforwarding = \"nat\"\nnat_source = \"198.18.0.50\"\n\
         [[vip.backend]]\naddress = \"198.18.0.21\"\nbackup = true\n",
        "test.toml",
    )
    .unwrap();
    let model = Model::from_config(&config);
    assert!(vip(&model).on_backups(&|_| None));
    assert_eq!(served(&model), [(addr(21), 100, true)]);
    assert_eq!(
        vip(&model).config.on_all_down,
        AllDown::Drop,
        "the default, unchanged"
    );
}

/// The digest of the test VIP without backups or affinity, as releases
/// before either computed it: nodes of both compare equal.
const RELEASED_DIGEST: &str = "d8f6405f5b15922aa47292be0d776500";

/// `model`'s first VIP's digest in hex.
fn digest_hex(model: &Model) -> String {
    model.maglev_digests()[0]
        .digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_backup_changes_the_maglev_digest_and_no_backup_leaves_it_as_released_before() {
    let with_backup = Model::from_config(&config("", false));
    let mut text = config("", false);
    text.vips[0].backends[2].backup = false;
    let without = Model::from_config(&text);
    assert_ne!(
        with_backup.maglev_digests()[0].digest,
        without.maglev_digests()[0].digest,
        "a backup builds another table than the same backend not one"
    );
    // Without backups nothing more is hashed than releases before them
    // hashed, so their nodes compare equal: the value pins that.
    assert_eq!(digest_hex(&without), RELEASED_DIGEST);
}

#[test]
fn source_affinity_changes_the_maglev_digest_and_the_default_leaves_it_as_released_before() {
    let mut text = config("", false);
    text.vips[0].backends[2].backup = false;
    let plain = Model::from_config(&text);
    text.vips[0].affinity = lb_common::Affinity::Source;
    let sticky = Model::from_config(&text);
    assert_ne!(
        plain.maglev_digests()[0].digest,
        sticky.maglev_digests()[0].digest,
        "nodes hashing new flows differently send a client to different backends"
    );
    // The default hashes nothing more: the value pinned above.
    assert_eq!(digest_hex(&plain), RELEASED_DIGEST);
}

#[test]
fn the_file_says_backup_true_or_false_and_nothing_else_and_dumps_it_back() {
    let config = config("", false);
    assert_eq!(
        config.vips[0]
            .backends
            .iter()
            .map(|b| b.backup)
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    // Written back (the running state file, `lbctl config import`) only
    // where set, and read back the same.
    let dumped = crate::config::to_toml(&config);
    assert_eq!(dumped.matches("backup = true").count(), 1, "{dumped}");
    assert!(!dumped.contains("backup = false"), "{dumped}");
    assert_eq!(
        Config::from_toml_str(&dumped, "dump.toml").unwrap(),
        config,
        "dump round trip"
    );
    let text = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                [[vip.backend]]\naddress = \"198.18.0.11\"\nbackup = \"yes\"\n";
    let error = Config::from_toml_str(text, "lbd.toml")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "lbd.toml:7:10: vip[0].backend[0].backup: expected true or false, found a string"
        ),
        "{error}"
    );
}
