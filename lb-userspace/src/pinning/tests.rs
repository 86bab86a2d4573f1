//! Tests of the pin directory: its layout, the link pins' names, the
//! refusals, staging, and what removing takes and leaves.

use lb_common::consts::names;

use super::error::private_namespace_message;
use super::links::link_pin_of;
use super::*;
use crate::test_scratch::ScratchDir;

#[test]
fn link_pins_are_told_by_hook_and_interface() {
    use crate::config::Attach;
    let pins = PinDir::new("/sys/fs/bpf/lbd");
    for (hook, interface) in [
        (Attach::Xdp, "eth0"),
        (Attach::Tc, "bond0.100"),
        (Attach::Xdp, "xdp-link-x"),
    ] {
        let path = match hook {
            Attach::Xdp => pins.link_path(interface),
            Attach::Tc => pins.tc_link_path(interface),
        };
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        assert_eq!(link_pin_of(name), Some((hook, interface)), "{name}");
    }
    for other in ["maps-v1", "lbd-owner", "xdp-link-", "tc-link", "CONNTRACK"] {
        assert_eq!(link_pin_of(other), None, "{other}");
    }
}

#[test]
fn link_pins_lists_the_links_of_every_interface() {
    use crate::config::Attach;
    let scratch = ScratchDir::new("link-pins");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    assert!(pins.link_pins().expect("no directory").is_empty());
    std::fs::create_dir_all(pins.maps_dir()).expect("maps");
    for file in [
        pins.link_path("eth0"),
        pins.link_path("eth1"),
        pins.tc_link_path("eth1"),
        pins.map_path("VIPS"),
        root.join("lbd-owner"),
    ] {
        std::fs::write(&file, b"").expect("a pin");
    }
    let found: Vec<(Attach, String)> = pins
        .link_pins()
        .expect("list")
        .into_iter()
        .map(|p| (p.hook, p.interface))
        .collect();
    assert_eq!(
        found,
        vec![
            (Attach::Tc, "eth1".to_owned()),
            (Attach::Xdp, "eth0".to_owned()),
            (Attach::Xdp, "eth1".to_owned()),
        ]
    );
}

#[test]
fn layout_is_versioned_and_per_interface() {
    let pins = PinDir::new("/sys/fs/bpf/lbd");
    assert_eq!(
        pins.map_path("CONNTRACK"),
        PathBuf::from(format!("/sys/fs/bpf/lbd/maps-v{LAYOUT_VERSION}/CONNTRACK"))
    );
    assert_eq!(
        pins.link_path("eth0"),
        PathBuf::from("/sys/fs/bpf/lbd/xdp-link-eth0")
    );
    assert_eq!(
        pins.tc_link_path("eth0"),
        PathBuf::from("/sys/fs/bpf/lbd/tc-link-eth0")
    );
}

#[test]
fn state_maps_are_pinned() {
    for name in STATE_MAPS {
        assert!(PINNED_MAPS.contains(&name), "{name}");
    }
}

#[test]
fn a_directory_outside_bpffs_is_refused() {
    let dir = std::env::temp_dir().join(format!("lbd-pin-test-{}", std::process::id()));
    let error = PinDir::new(&dir).prepare().expect_err("not bpffs");
    // (Run in a mount namespace of its own, the refusal says so.)
    assert!(
        matches!(
            error,
            PinError::NotBpffs(_) | PinError::PrivateMountNamespace(_)
        ),
        "{error}"
    );
    assert!(!dir.exists(), "nothing created");
}

#[test]
fn the_private_namespace_refusal_gives_every_fix() {
    let message = private_namespace_message(Path::new("/tmp/pins"));
    assert!(message.starts_with("pin_dir /tmp/pins is not on a BPF filesystem"));
    for fix in [
        "ip netns exec",
        "mount -t bpf bpf /run/lbd-bpffs",
        "pin_dir = \"/run/lbd-bpffs/lbd\"",
        "pin_dir = \"off\"",
    ] {
        assert!(message.contains(fix), "{fix}: {message}");
    }
}

#[test]
fn removing_takes_older_layout_versions_too() {
    let scratch = ScratchDir::new("pins-remove");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    let older = root.join("maps-v0");
    std::fs::create_dir_all(&older).expect("older layout");
    std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
    for file in [older.join("CONNTRACK"), pins.map_path("VIPS")] {
        std::fs::write(&file, b"").expect("a pin");
    }
    let removed = pins.remove_all().expect("remove");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!root.exists(), "every directory goes once empty");
}

/// `pin_dir` may be shared (`/sys/fs/bpf` itself): a stop for good
/// removes lbd's names only, every one of them, and leaves the rest,
/// and the directory with it.
#[test]
fn removing_leaves_what_lbd_did_not_pin() {
    let scratch = ScratchDir::new("pins-shared");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    let older = root.join("maps-v0");
    std::fs::create_dir_all(&older).expect("older layout");
    std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
    let ours = [
        older.join(names::MAP_CONNTRACK),
        pins.map_path(names::MAP_VIPS),
        pins.map_path(crate::conntrack::legacy::RESIZED_PIN),
        pins.map_path(names::MAP_LEGACY_COUNTERS),
    ];
    // Named as lbd's links, but no link runs lbd's program there (a
    // plain file: which program cannot be told): left, as lb-decap's
    // links under the same names are.
    let untold = [pins.link_path("eth0"), pins.tc_link_path("eth0")];
    for file in &untold {
        std::fs::write(file, b"").expect("a file");
    }
    for file in &ours {
        std::fs::write(file, b"").expect("a pin");
    }
    let owner = root.join(crate::ownership::lock::OWNER_LINK);
    std::os::unix::fs::symlink("pid=1\nconfig=/etc/lbd/lbd.toml\n", &owner).expect("owner");
    let foreign_file = root.join("cilium_calls_xdp");
    let foreign_dir = root.join("tc");
    let foreign_layout = root.join("maps-vendor");
    std::fs::write(&foreign_file, b"").expect("a foreign pin");
    std::fs::create_dir_all(&foreign_dir).expect("a foreign directory");
    std::fs::create_dir_all(&foreign_layout).expect("a foreign directory");

    let mut removed = pins.remove_all().expect("remove");
    removed.sort();
    let mut expected: Vec<PathBuf> = ours.to_vec();
    expected.push(owner.clone());
    expected.sort();
    let kept = [
        &foreign_file,
        &foreign_dir,
        &foreign_layout,
        &untold[0],
        &untold[1],
    ]
    .map(|p| p.exists());
    let gone = [&older, &pins.maps_dir(), &owner].map(|p| p.symlink_metadata().is_err());
    assert_eq!(removed, expected);
    assert_eq!(kept, [true; 5], "other tools' pins and directories stay");
    assert_eq!(
        gone, [true; 3],
        "lbd's layout directories and owner record go"
    );
}

#[test]
fn other_layout_versions_are_removed_and_this_one_kept() {
    let scratch = ScratchDir::new("pins-others");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    let older = root.join("maps-v0");
    std::fs::create_dir_all(&older).expect("older layout");
    std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
    for file in [
        older.join("CONNTRACK"),
        older.join("VIPS"),
        pins.map_path("VIPS"),
        pins.link_path("eth0"),
    ] {
        std::fs::write(&file, b"").expect("a pin");
    }
    let removed = pins.remove_other_layouts().expect("remove");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(!older.exists(), "the older layout's directory goes");
    assert!(pins.map_path("VIPS").exists(), "this layout's maps stay");
    assert!(pins.link_path("eth0").exists(), "links stay");
}

/// A start's staged maps take their names once its program runs,
/// each replacing the pin there, and the staged directory goes; with
/// the state maps replaced, the tables flows were to be carried over
/// from go too. Staged maps of a start that stopped before go alone,
/// the pins they were to replace stay. A stop for good takes them
/// with the rest.
#[test]
fn staged_maps_take_their_names_or_go() {
    let scratch = ScratchDir::new("pins-staged");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    let stage = |names: &[&str]| {
        std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
        std::fs::create_dir_all(pins.staged_dir()).expect("staged");
        for name in names {
            std::fs::write(pins.map_path(name), b"previous").expect("a pin");
            std::fs::write(pins.staged_path(name), b"staged").expect("a staged map");
        }
    };
    let read = |name: &str| std::fs::read(pins.map_path(name)).unwrap_or_default();
    let carried = pins.map_path(crate::conntrack::legacy::RESIZED_PIN);

    stage(&[names::MAP_VIPS, names::MAP_HALF_OPEN]);
    std::fs::write(&carried, b"aside").expect("a table set aside");
    let moved = pins.promote_staged(false).expect("promoted");
    assert_eq!(moved, [names::MAP_HALF_OPEN, names::MAP_VIPS]);
    assert_eq!(read(names::MAP_VIPS), b"staged");
    assert_eq!(read(names::MAP_HALF_OPEN), b"staged");
    assert!(!pins.staged_dir().exists());
    assert!(carried.exists(), "state adopted: the table set aside stays");
    assert!(pins.promote_staged(false).expect("again").is_empty());

    stage(&[names::MAP_VIPS]);
    pins.promote_staged(true).expect("promoted");
    assert!(
        !carried.exists(),
        "state replaced: the table set aside goes"
    );

    stage(&[names::MAP_VIPS, names::MAP_MAGLEV]);
    assert_eq!(pins.discard_staged().expect("discarded"), 2);
    assert_eq!(read(names::MAP_VIPS), b"previous");
    assert_eq!(read(names::MAP_MAGLEV), b"previous");
    assert!(!pins.staged_dir().exists());

    stage(&[names::MAP_VIPS]);
    pins.remove_all().expect("removed");
    assert!(!root.exists(), "the staged directory goes with the rest");
}

/// Undoing a failed start removes what it made since its snapshot:
/// new pins, pins it replaced (a staged map renamed over the
/// previous one is another inode), the owner record; the previous
/// lbd's pins it did not touch stay, and the directories with them.
#[test]
fn undoing_a_start_removes_only_what_it_made() {
    let scratch = ScratchDir::new("pins-undo");
    let root = scratch.join("lbd");
    let pins = PinDir::new(&root);
    let older = root.join("maps-v0");
    std::fs::create_dir_all(&older).expect("older layout");
    std::fs::create_dir_all(pins.maps_dir()).expect("this layout");
    let previous = [
        older.join(names::MAP_CONNTRACK),
        pins.map_path(names::MAP_VIPS),
        pins.map_path(names::MAP_MAGLEV),
    ];
    for file in &previous {
        std::fs::write(file, b"previous").expect("a pin");
    }
    let before = pins.snapshot().expect("snapshot");
    std::fs::create_dir_all(pins.staged_dir()).expect("staged");
    std::fs::write(pins.staged_path(names::MAP_MAGLEV), b"made").expect("staged");
    pins.promote_staged(false).expect("promoted");
    let made = pins.map_path(names::MAP_BACKENDS);
    std::fs::write(&made, b"made").expect("a new pin");
    let owner = root.join(crate::ownership::lock::OWNER_LINK);
    std::os::unix::fs::symlink("pid=1", &owner).expect("owner");

    let mut removed = pins.remove_made_since(&before).expect("undone");
    removed.sort();
    let stays = [&previous[0], &previous[1]].map(|p| p.exists());
    let mut expected = vec![pins.map_path(names::MAP_MAGLEV), made, owner];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(stays, [true; 2], "the previous lbd's pins stay");
}

#[test]
fn removing_a_missing_directory_removes_nothing() {
    let pins = PinDir::new("/nonexistent/lbd-pins");
    assert!(pins.remove_all().expect("remove").is_empty());
}
