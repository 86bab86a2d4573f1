use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use super::{
    file_format::{decode, encode, snapshot, snapshot_with, Snapshot},
    file_io::{read, write},
    location::left_behind,
    restore::restore,
    *,
};
use crate::{
    daemon::engine::{
        node,
        shared_states::{Stamp, Stamps},
        BackendKey,
    },
    model::{AdminState, BackendState, Edit},
    test_scratch::ScratchDir,
};

fn config(dir: &Path) -> Config {
    let text = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         drain_timeout_s = 600\n\
         [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
         [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n\
         [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n",
        dir.join("lbd.sock").display()
    );
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

fn key(model: &Model, backend: &str) -> BackendKey {
    (*model.vips.keys().next().unwrap(), backend.parse().unwrap())
}

/// The file this build wrote names its writer; a start after an
/// older build that keeps no backend state file ran (the record of
/// what the last lbd held names another lbd, which says not when it
/// started) does not restore it: that build started every backend
/// enabled, and what the file holds may have ended since. It is moved
/// aside. The writer's own restart, or one after a build that keeps
/// the file, restores it, and names the new lbd its writer at once.
#[test]
fn a_file_an_older_build_did_not_keep_is_not_restored() {
    let scratch = ScratchDir::new("backends-writer");
    let config = config(scratch.path());
    let start = Instant::now();
    let mut model = Model::from_config(&config);
    let b2 = key(&model, "198.18.0.12");
    model.apply(&Edit::Maintenance(b2.0, b2.1), start).unwrap();
    let path = backend_state_file(&config).unwrap();
    let writer_file = backends_writer::writer_file(&config).unwrap();
    let first = Writer::for_test(100, "boot-1", Some(1000));
    let older = Writer::for_test(200, "boot-1", None);
    write(
        &path,
        &snapshot(&model),
        Some(&(writer_file.clone(), first.clone())),
    )
    .unwrap();
    assert!(writer_file.exists());

    // The writer ran last: restored, and now the next lbd's.
    let second = Writer::for_test(101, "boot-1", Some(1100));
    let admin = AdminRecord::load_as(&config, second.clone(), Some(&first)).unwrap();
    assert_eq!(admin.found.len(), 1);
    // An older build ran after `second`: not restored, moved aside.
    let admin = AdminRecord::load_as(&config, first.clone(), Some(&older)).unwrap();
    assert!(admin.found.is_empty(), "{:?}", admin.found);
    assert!(!path.exists());
    assert!(!writer_file.exists());
    let aside = backends_writer::dropped_file(&config).unwrap();
    assert_eq!(read(&aside).unwrap().len(), 1);

    // A file an older build that keeps it wrote (no writer file, or
    // other bytes than the writer file names) is restored.
    std::fs::copy(&aside, &path).unwrap();
    let admin = AdminRecord::load_as(&config, first.clone(), Some(&older)).unwrap();
    assert_eq!(admin.found.len(), 1);
    let mut other = snapshot(&model);
    other.clear();
    write(&path, &other, Some(&(writer_file.clone(), first.clone()))).unwrap();
    std::fs::copy(&aside, &path).unwrap();
    let admin = AdminRecord::load_as(&config, second, Some(&older)).unwrap();
    assert_eq!(admin.found.len(), 1);
}

/// b2 in maintenance, b3 draining for ten minutes, b1 (a drain that
/// timed out) in maintenance: written, and read back by the next lbd
/// 30 s of wall clock later, every state comes back, the drain with
/// its start and what is left of its deadline.
#[test]
fn states_written_come_back_at_the_next_start() {
    let scratch = ScratchDir::new("backends-roundtrip");
    let config = config(scratch.path());
    let start = Instant::now();
    let mut model = Model::from_config(&config);
    let (b1, b2, b3) = (
        key(&model, "198.18.0.11"),
        key(&model, "198.18.0.12"),
        key(&model, "198.18.0.13"),
    );
    let drain = |k: BackendKey| Edit::Drain {
        vip: k.0,
        backend: k.1,
        timeout_s: None,
    };
    model.apply(&Edit::Maintenance(b2.0, b2.1), start).unwrap();
    model.apply(&drain(b3), start).unwrap();
    model
        .apply(
            &Edit::Drain {
                vip: b1.0,
                backend: b1.1,
                timeout_s: Some(1),
            },
            start,
        )
        .unwrap();
    model.expire_drains(start + Duration::from_secs(1));
    let wall = SystemTime::now();
    let text = encode(&snapshot(&model), start, wall);
    let path = backend_state_file(&config).unwrap();
    assert_eq!(path, scratch.join("lbd.backends.state"));
    std::fs::write(&path, &text).unwrap();

    let found = read(&path).unwrap();
    assert_eq!(found.len(), 3, "{text}");
    let later = start + Duration::from_secs(60);
    let mut next = Model::from_config(&config);
    let outcome = restore(&mut next, &found, later, wall + Duration::from_secs(30));
    assert!(outcome.dropped.is_empty(), "{outcome:?}");
    assert_eq!(outcome.restored.len(), 3);
    let state = |k: BackendKey| next.backend(&k.0, k.1).unwrap().clone();
    assert_eq!(state(b2).admin, AdminState::Maintenance);
    assert!(!state(b2).drain_timed_out);
    assert_eq!(state(b1).admin, AdminState::Maintenance);
    assert!(
        state(b1).drain_timed_out,
        "a timed-out drain's outcome stays"
    );
    match state(b3).admin {
        AdminState::Draining {
            since,
            deadline: Some(deadline),
        } => {
            assert_eq!(later - since, Duration::from_secs(30));
            assert_eq!(deadline - later, Duration::from_secs(570));
        }
        other => panic!("b3 should be draining with a deadline: {other:?}"),
    }
}

/// A backend the config no longer has is dropped (and said so); a
/// drain whose deadline passed while lbd was down ends at once.
#[test]
fn gone_backends_are_dropped_and_passed_deadlines_end_at_once() {
    let scratch = ScratchDir::new("backends-dropped");
    let config = config(scratch.path());
    let now = Instant::now();
    let wall = SystemTime::now();
    let model = Model::from_config(&config);
    let vip = model.vips.keys().next().unwrap().to_string();
    let found = decode(&format!(
        "{{\"version\": 1, \"backends\": [\
         {{\"vip\": \"{vip}\", \"backend\": \"198.18.0.99\", \"state\": \"maintenance\"}},\
         {{\"vip\": \"198.18.0.200:80/tcp\", \"backend\": \"198.18.0.11\", \"state\": \"maintenance\"}},\
         {{\"vip\": \"{vip}\", \"backend\": \"198.18.0.13\", \"state\": \"draining\", \"drain_started_unix_ms\": 1, \"drain_deadline_unix_ms\": 2}}]}}"
    ))
    .unwrap();
    let mut next = model.clone();
    let outcome = restore(&mut next, &found, now, wall);
    assert_eq!(outcome.dropped.len(), 2, "{outcome:?}");
    assert_eq!(outcome.restored.len(), 1);
    let b3 = key(&next, "198.18.0.13");
    assert_eq!(next.expire_drains(now), vec![b3], "its deadline passed");
    assert!(next.backend(&b3.0, b3.1).unwrap().drain_timed_out);
    // The others are as the file left them: enabled.
    let b1 = key(&next, "198.18.0.11");
    assert_eq!(
        next.backend(&b1.0, b1.1).unwrap().admin,
        AdminState::Enabled
    );
}

/// A file that is there but unusable (garbled, another version, a
/// VIP that is no VIP, unreadable) is an error naming it: lbd does not
/// start on it. No file is no state.
#[test]
fn an_unusable_file_is_an_error_naming_it() {
    let scratch = ScratchDir::new("backends-unusable");
    let config = config(scratch.path());
    let path = backend_state_file(&config).unwrap();
    assert!(
        AdminRecord::load(&config, None).unwrap().found.is_empty(),
        "no file"
    );
    for text in [
        "",
        "{",
        "{\"version\": 2, \"backends\": []}",
        "{\"version\": 1, \"backends\": [{\"vip\": \"nonsense\", \"backend\": \"198.18.0.11\", \"state\": \"maintenance\"}]}",
        "{\"version\": 1, \"backends\": [{\"vip\": \"198.18.0.100:80\", \"backend\": \"198.18.0.11\", \"state\": \"sleeping\"}]}",
    ] {
        std::fs::write(&path, text).unwrap();
        let error = format!("{:#}", AdminRecord::load(&config, None).unwrap_err());
        assert!(error.contains(&path.display().to_string()), "{text:?}: {error}");
        assert!(error.contains("remove it"), "{error}");
    }
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let error = format!("{:#}", AdminRecord::load(&config, None).unwrap_err());
    assert!(error.contains(&path.display().to_string()), "{error}");
}

/// A state that cannot be written is an error naming the file (the
/// change asking for it is refused); once it can, it is read back.
#[test]
fn a_state_that_cannot_be_written_names_the_file() {
    let scratch = ScratchDir::new("backends-unwritable");
    let config = config(&scratch.join("run"));
    let path = backend_state_file(&config).unwrap();
    let mut model = Model::from_config(&config);
    let b2 = key(&model, "198.18.0.12");
    model
        .apply(&Edit::Maintenance(b2.0, b2.1), Instant::now())
        .unwrap();
    // Its directory cannot be made: a file is where it would go.
    std::fs::write(scratch.join("run"), b"not a directory").unwrap();
    let why = write(&path, &snapshot(&model), None).unwrap_err();
    assert!(why.contains(&path.display().to_string()), "{why}");
    assert!(why.starts_with("nothing changed"), "{why}");
    std::fs::remove_file(scratch.join("run")).unwrap();
    write(&path, &snapshot(&model), None).unwrap();
    let found = read(&path).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].state, BackendState::Maintenance);
    assert!(
        !node::temporary_of(&path).exists(),
        "no temporary file left"
    );
}

/// An lbd config with `[bgp]`'s node state file `node_state` and the
/// admin socket `socket`, under `dir`.
fn bgp_config(dir: &Path, socket: &str, node_state: &str) -> Config {
    let text = format!(
        "interface = \"eth0\"\nadmin_socket = \"{}\"\n[bgp]\nbird_socket = \"{}\"\nroutes_file = \"{}\"\nnode_state_file = \"{}\"\n",
        dir.join("run").join(socket).display(),
        dir.join("bird.ctl").display(),
        dir.join("vips.conf").display(),
        dir.join("lib").join(node_state).display()
    );
    Config::from_toml_str(&text, "lbd.toml").unwrap()
}

/// The file is found by its name alone: one left where the config
/// put it before `[bgp]` was added (beside the admin socket) or
/// removed (beside the default node state file) is named, with what
/// it holds, when there is none where the config puts it now (and
/// never restored); an empty one, or one beside a file in place, is
/// not.
#[test]
fn a_file_left_where_the_config_put_it_before_is_named() {
    let scratch = ScratchDir::new("backends-moved");
    let default_node_state = scratch.join("default").join("node.state");
    let with_bgp = bgp_config(scratch.path(), "lbd.sock", "node.state");
    let without = config(&scratch.join("run"));
    let here = backend_state_file(&with_bgp).unwrap();
    let socket_side = backend_state_file(&without).unwrap();
    assert_eq!(socket_side, scratch.join("run").join("lbd.backends.state"));
    let default_side = scratch.join("default").join("node.state.backends.state");
    assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());

    // One backend in maintenance, recorded without [bgp].
    let mut model = Model::from_config(&without);
    let b2 = key(&model, "198.18.0.12");
    model
        .apply(&Edit::Maintenance(b2.0, b2.1), Instant::now())
        .unwrap();
    write(&socket_side, &snapshot(&model), None).unwrap();
    // [bgp] added: named, and not restored.
    assert_eq!(
        left_behind(&with_bgp, &here, &default_node_state),
        vec![(socket_side.clone(), Ok(1))]
    );
    assert!(AdminRecord::load(&with_bgp, None).unwrap().found.is_empty());
    // A file where the config puts it now: nothing else is looked at.
    write(&here, &Snapshot::new(), None).unwrap();
    assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());
    std::fs::remove_file(&here).unwrap();
    // An empty one holds nothing to forget.
    write(&socket_side, &Snapshot::new(), None).unwrap();
    assert!(left_behind(&with_bgp, &here, &default_node_state).is_empty());
    std::fs::remove_file(&socket_side).unwrap();

    // Recorded beside the default node state file, then [bgp]
    // removed: named; garbled, named with why it cannot be read.
    std::fs::create_dir_all(scratch.join("default")).unwrap();
    write(&default_side, &snapshot(&model), None).unwrap();
    assert_eq!(
        left_behind(&without, &socket_side, &default_node_state),
        vec![(default_side.clone(), Ok(1))]
    );
    // ... or node_state_file set away from the default.
    assert_eq!(
        left_behind(&with_bgp, &here, &default_node_state),
        vec![(default_side.clone(), Ok(1))]
    );
    std::fs::write(&default_side, "{").unwrap();
    let found = left_behind(&without, &socket_side, &default_node_state);
    assert_eq!(found.len(), 1);
    assert!(
        matches!(&found[0], (place, Err(why)) if *place == default_side && why.contains("cannot be trusted")),
        "{found:?}"
    );
}

/// With `[bgp]` the file lies beside the node state file (kept across
/// reboots), named after its whole name.
#[test]
fn the_file_lies_beside_the_node_state_file() {
    let scratch = ScratchDir::new("backends-bgp");
    let config = bgp_config(scratch.path(), "lbd.sock", "node.state");
    assert_eq!(
        backend_state_file(&config),
        Some(scratch.join("lib").join("node.state.backends.state"))
    );
}

/// Two lbds on one host, each with its own node state file (which it
/// locks) or, without `[bgp]`, its own admin socket stem (whose record
/// it locks), keep their backend states apart: node state files that
/// differ only after their last dot (`node.state.eth0`,
/// `node.state.eth1`), or in their extension, or by having one, give
/// distinct files, none of which is a node state file; and so do the
/// temporary files they are written through.
#[test]
fn each_lbd_on_a_host_has_a_file_of_its_own() {
    let scratch = ScratchDir::new("backends-apart");
    let node_states = [
        "node.state",
        "node.state.eth0",
        "node.state.eth1",
        "node",
        "node.other",
        "node.backends",
    ];
    let mut files: Vec<PathBuf> = node_states
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let config = bgp_config(scratch.path(), &format!("lbd{i}.sock"), state);
            backend_state_file(&config).unwrap()
        })
        .collect();
    assert_eq!(
        files[1],
        scratch.join("lib").join("node.state.eth0.backends.state")
    );
    for state in node_states {
        assert!(!files.contains(&scratch.join("lib").join(state)));
    }
    let temporaries: std::collections::BTreeSet<PathBuf> =
        files.iter().map(|f| node::temporary_of(f)).collect();
    assert_eq!(temporaries.len(), files.len(), "{temporaries:?}");
    let plain = |socket: &str| {
        let mut config = config(scratch.path());
        config.admin_socket = scratch.join(socket);
        backend_state_file(&config).unwrap()
    };
    files.extend([plain("lbd.sock"), plain("lbd-eth1.sock")]);
    let distinct: std::collections::BTreeSet<&PathBuf> = files.iter().collect();
    assert_eq!(distinct.len(), files.len(), "{files:?}");
}

/// On a node that shares backend states with sync peers, the file keeps
/// when each state was made, an enabled backend's too (its entry is only
/// that time), and the next lbd gets the times back with the states; an
/// enabled entry of a backend no longer configured is dropped without a
/// word. Without stamps the file is as before (no `changed_unix_ms`).
#[test]
fn the_times_states_were_made_come_back_with_them() {
    let scratch = ScratchDir::new("backends-stamps");
    let config = config(scratch.path());
    let now = Instant::now();
    let mut model = Model::from_config(&config);
    let (b1, b2) = (key(&model, "198.18.0.11"), key(&model, "198.18.0.12"));
    model.apply(&Edit::Maintenance(b2.0, b2.1), now).unwrap();
    let plain = encode(&snapshot(&model), now, SystemTime::now());
    assert!(!plain.contains("changed_unix_ms"), "{plain}");
    let mut stamps = Stamps::new();
    let made = |unix_ms| Stamp {
        unix_ms,
        from: None,
    };
    stamps.insert(b1, made(1_700_000_000_000));
    stamps.insert(b2, made(1_700_000_001_000));
    let gone: BackendKey = (b1.0, "198.18.0.99".parse().unwrap());
    stamps.insert(gone, made(1_700_000_002_000));
    let wanted = snapshot_with(&model, &stamps);
    assert_eq!(
        wanted.len(),
        2,
        "the enabled b1 with its time, b2; not a backend not served"
    );
    let text = encode(&wanted, now, SystemTime::now());
    let mut found = decode(&text).unwrap();
    // A file with the entry of a backend the config no longer has.
    let mut extra = found[0].clone();
    extra.backend = gone.1;
    found.push(extra);
    let mut next = Model::from_config(&config);
    let outcome = restore(&mut next, &found, now, SystemTime::now());
    assert!(outcome.dropped.is_empty(), "{outcome:?}");
    assert_eq!(outcome.restored.len(), 1, "b2's maintenance");
    assert_eq!(
        next.backend(&b2.0, b2.1).unwrap().admin,
        AdminState::Maintenance
    );
    assert_eq!(
        next.backend(&b1.0, b1.1).unwrap().admin,
        AdminState::Enabled
    );
    assert_eq!(
        outcome.stamps.get(&b1).map(|s| s.unix_ms),
        Some(1_700_000_000_000)
    );
    assert_eq!(
        outcome.stamps.get(&b2).map(|s| s.unix_ms),
        Some(1_700_000_001_000)
    );
    assert!(!outcome.stamps.contains_key(&gone));
}
