use super::*;
use crate::ownership::test_support::owner;
use crate::test_scratch::ScratchDir;

#[test]
fn a_second_lbd_on_the_same_bgp_file_is_refused_naming_it_and_the_owner() {
    let dir = ScratchDir::new("bgp-lock");
    let routes = dir.join("bgp").join("vips.conf");
    let first = bgp_file_lock("routes_file", &routes, &owner()).expect("first lbd");
    assert_eq!(first.path(), dir.join("bgp").join(".vips.conf.lbd-lock"));
    let second = OwnerRecord {
        pid: 5678,
        config: PathBuf::from("/etc/lbd/lbd-eth1.toml"),
    };
    let error = bgp_file_lock("routes_file", &routes, &second)
        .expect_err("a second lbd on the same routes file")
        .to_string();
    assert!(
        error.starts_with(&format!(
            "[bgp] routes_file {} is owned by lbd pid 1234 (config /etc/lbd/lbd.toml)",
            routes.display()
        )),
        "{error}"
    );
    assert!(error.contains("its own [bgp] routes_file"), "{error}");
    // Another file is free; the first once its lbd is gone.
    let other = bgp_file_lock("node_state_file", &dir.join("node.state"), &second);
    assert!(other.is_ok());
    drop(first);
    assert!(bgp_file_lock("routes_file", &routes, &second).is_ok());
}

#[test]
fn a_second_lbd_with_the_same_admin_socket_is_refused_naming_the_record() {
    let dir = ScratchDir::new("record-lock");
    let socket = dir.join("run").join("lbd.sock");
    let first = record_lock(&socket, &owner(), Purpose::Serve)
        .expect("first lbd")
        .expect("a lock");
    assert_eq!(
        first.path(),
        dir.join("run").join(".lbd.held.json.lbd-lock")
    );
    let second = OwnerRecord {
        pid: 5678,
        config: PathBuf::from("/etc/lbd/lbd-eth1.toml"),
    };
    // Another admin socket of the same stem shares the record.
    for (path, purpose) in [
        (socket.clone(), Purpose::Serve),
        (dir.join("run").join("lbd.ctl"), Purpose::Serve),
        (socket.clone(), Purpose::ReleaseVips),
    ] {
        let error = record_lock(&path, &second, purpose)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("lbd.held.json"), "{error}");
        assert!(error.contains("lbd pid 1234"), "{error}");
    }
    let error = record_lock(&socket, &second, Purpose::Serve)
        .expect_err("refused")
        .to_string();
    assert!(error.contains("admin_socket of its own"), "{error}");
    assert!(record_lock(
        &dir.join("run").join("lbd-eth1.sock"),
        &second,
        Purpose::Serve
    )
    .is_ok());
    // A record's lock, as a start taking over another record tries it.
    let record = held::record_path(&socket).expect("record");
    assert!(try_record_lock(&record, Path::new("/x.toml"))
        .expect("tried")
        .is_none());
    drop(first);
    assert!(try_record_lock(&record, Path::new("/x.toml"))
        .expect("tried")
        .is_some());
}

fn netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("netns").ino()
}

/// Two lbds whose admin sockets are in different directories meet at
/// the one lock directory: the second is refused, naming the first.
#[test]
fn an_interface_lock_holds_whatever_the_admin_sockets_directory() {
    let scratch = ScratchDir::new("iflock-shared");
    let shared = scratch.join("run-lbd");
    let first = interface_locks_in(
        &shared,
        &scratch.join("a").join("lbd.sock"),
        "eth0",
        &owner(),
        Purpose::Serve,
    )
    .expect("the first lbd");
    let paths: Vec<&Path> = first.iter().map(Lock::path).collect();
    assert_eq!(
        paths,
        vec![
            interface_lock_path(&shared, "eth0", netns()),
            interface_lock_path(&scratch.join("a"), "eth0", netns()),
        ]
    );
    let second = OwnerRecord {
        pid: 5678,
        config: PathBuf::from("/etc/lbd/b.toml"),
    };
    let error = interface_locks_in(
        &shared,
        &scratch.join("b").join("lbd.sock"),
        "eth0",
        &second,
        Purpose::Serve,
    )
    .expect_err("a second lbd on eth0 with its admin socket elsewhere")
    .to_string();
    assert!(
        error.starts_with("interface eth0 (network namespace net:["),
        "{error}"
    );
    assert!(
        error.contains("lbd pid 1234 (config /etc/lbd/lbd.toml)"),
        "{error}"
    );
    assert!(error.contains(&shared.display().to_string()), "{error}");
    // Another interface is free.
    let other = interface_locks_in(
        &shared,
        &scratch.join("b").join("lbd.sock"),
        "eth1",
        &second,
        Purpose::Serve,
    );
    assert!(other.is_ok());
    drop(first);
    assert!(interface_locks_in(
        &shared,
        &scratch.join("b").join("lbd.sock"),
        "eth0",
        &second,
        Purpose::Serve
    )
    .is_ok());
}

/// An lbd of an earlier release holds only the lock beside its admin
/// socket: a new lbd with its admin socket there is refused by it.
#[test]
fn the_lock_beside_the_admin_socket_of_an_older_lbd_is_honoured() {
    let scratch = ScratchDir::new("iflock-legacy");
    let run = scratch.join("run");
    std::fs::create_dir_all(&run).expect("dir");
    let lock::Attempt::Held(older) =
        lock::lock_file(&interface_lock_path(&run, "eth0", netns()), &owner()).expect("lock")
    else {
        panic!("taken");
    };
    let error = interface_locks_in(
        &scratch.join("shared"),
        &run.join("lbd.sock"),
        "eth0",
        &OwnerRecord::current(Path::new("/etc/lbd/new.toml")),
        Purpose::Cleanup,
    )
    .expect_err("refused by the older lbd's lock")
    .to_string();
    assert!(
        error.starts_with("refusing --cleanup: interface eth0"),
        "{error}"
    );
    assert!(error.contains("lbd pid 1234"), "{error}");
    drop(older);
}

/// An admin socket in the lock directory itself (the default one) has
/// one lock there, not two (a second open of the same file would be
/// refused by this process's own lock), also named another way.
#[test]
fn an_admin_socket_in_the_lock_directory_takes_one_lock() {
    let scratch = ScratchDir::new("iflock-same");
    let shared = scratch.join("run-lbd");
    for socket in [
        shared.join("lbd.sock"),
        shared.join(".").join("lbd.sock"),
        scratch
            .join("run-lbd")
            .join("x")
            .join("..")
            .join("lbd.sock"),
    ] {
        let locks = interface_locks_in(&shared, &socket, "eth0", &owner(), Purpose::Serve)
            .unwrap_or_else(|e| panic!("{}: {e}", socket.display()));
        assert_eq!(locks.len(), 1, "{}", socket.display());
    }
}

#[test]
fn the_lock_directory_is_created_readable_by_all() {
    let scratch = ScratchDir::new("iflock-mode");
    let dir = scratch.join("a").join("run-lbd");
    create_lock_dir(&dir).expect("created");
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    create_lock_dir(&dir).expect("there already");
}

/// Set in the child the test below runs (the umask is the process's).
const BGP_UMASK_CHILD: &str = "LBD_TEST_BGP_LOCK_UMASK_CHILD";

/// Under the unit's UMask=0077, the directories the `[bgp]` lock
/// creates on the way to the routes file are 0755, so BIRD (user
/// `bird`) reaches the file `routes_file::write` puts there later (it
/// creates no directory then: they exist); a directory that exists
/// stays as it is. Run in a child process, as the umask is the
/// process's.
#[test]
fn the_bgp_lock_creates_directories_bird_can_traverse_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(base) = std::env::var_os(BGP_UMASK_CHILD) else {
        let scratch = ScratchDir::new("iflock-bgp-umask");
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o711))
            .expect("mode");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "ownership::claim_locks::tests::the_bgp_lock_creates_directories_bird_can_traverse_whatever_the_umask",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(BGP_UMASK_CHILD, scratch.path())
            .output()
            .expect("child");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let base = PathBuf::from(base);
    // SAFETY: umask has no preconditions; this child runs this test alone.
    unsafe { libc::umask(0o077) };
    let path = base.join("a").join("b").join("vips.conf");
    let _lock = bgp_file_lock("routes_file", &path, &owner()).expect("locked");
    crate::bgp::routes_file::write(&path, "one\n").expect("written");
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o7777
    };
    for dir in [base.join("a"), base.join("a").join("b")] {
        assert_eq!(mode(&dir), 0o755, "{}", dir.display());
    }
    assert_eq!(mode(&base), 0o711, "an existing directory changed");
}

#[test]
fn interface_locks_are_per_namespace_and_interface() {
    let a = interface_lock_path(Path::new("/run/lbd"), "eth0", 1);
    assert_eq!(a, PathBuf::from("/run/lbd/lbd-xdp-eth0.net1.lock"));
    assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth0", 2));
    assert_ne!(a, interface_lock_path(Path::new("/run/lbd"), "eth1", 1));
}
