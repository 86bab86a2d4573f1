//! Records written, restored, set aside and forgotten, through the
//! files a restart finds.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{
    record_file::{decode, encode},
    *,
};
use crate::{
    config, dataplane::FakeMaps, model::Edit, reconcile::Balancer, test_scratch::ScratchDir,
};

/// A directory of this test's, removed when dropped.
struct Scratch(ScratchDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        Self(ScratchDir::new(&format!("running-{tag}")))
    }

    /// The config file, written with VIP 198.18.0.100:80 and its
    /// backends b1 and b2 (`extra` appended), and loaded.
    fn file(&self, extra: &str) -> (PathBuf, Config) {
        let path = self.0.join("lbd.toml");
        let text = format!(
            "interface = \"eth0\"\nadmin_socket = \"{}\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
             [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n\
             [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\n{extra}",
            self.0.join("lbd.sock").display()
        );
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        (path, config)
    }
}

/// A start of the lbd that ran last (this process): it finds the
/// record of what it held naming itself.
fn load(path: &Path, file: Config) -> (Config, RunningRecord) {
    RunningRecord::load(path, file, Some(&Writer::current()))
}

/// The lbd `pid` of boot `boot`.
fn lbd(pid: u32, boot: &str) -> Writer {
    Writer {
        pid,
        boot_id: boot.to_owned(),
        started: Some(u64::from(pid) * 10),
    }
}

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Backend b3 of VIP 198.18.0.100:80 and VIP 198.18.0.200:80 (with
/// backend 198.18.0.21), as `lbctl backend add` and `vip add` give
/// them.
fn runtime_pieces() -> (crate::config::BackendConfig, VipConfig) {
    let config = Config::from_toml_str(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\n\
         [[vip]]\naddress = \"198.18.0.200\"\nport = 80\n\
         [[vip.backend]]\naddress = \"198.18.0.21\"\nmac = \"02:00:00:00:00:21\"\n",
        "runtime",
    )
    .unwrap();
    (config.vips[0].backends[0].clone(), config.vips[1].clone())
}

/// The running model after the orchestrator's changes: b3 added, b1
/// removed, b2's weight set to 50, VIP 198.18.0.200:80 added.
fn changed(file: &Config) -> Model {
    let (b3, vip) = runtime_pieces();
    let id = VipId::of(&file.vips[0]);
    let now = std::time::Instant::now();
    let mut model = Model::from_config(file);
    for edit in [
        Edit::AddBackend(id, b3),
        Edit::RemoveBackend(id, address("198.18.0.11")),
        Edit::SetWeight(id, address("198.18.0.12"), 50),
        Edit::AddVip(vip),
    ] {
        model.apply(&edit, now).unwrap();
    }
    model
}

/// The warn-level (and above) lines logged while `f` runs.
fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    crate::test_logs::logs_at(tracing::Level::WARN, f)
}

/// The orchestrator's changes are recorded; the next lbd, with the
/// config file unchanged, starts from them: b3 and the added VIP are
/// served, b1 stays removed, b2 keeps its weight. On the previous
/// lbd's maps, b3 keeps its entry (id and generation: its established
/// flows stay), which a start from the file alone retires.
#[test]
fn runtime_changes_come_back_at_a_restart_with_the_same_file() {
    let scratch = Scratch::new("same");
    let (path, file) = scratch.file("");
    let (config, mut record) = load(&path, file.clone());
    assert_eq!(config, file, "no record: the file");
    let running = changed(&file);
    record.record(&running, &file, &file.guard).unwrap();
    let record_path = running_state_file(&file).unwrap();
    assert_eq!(record_path, scratch.0.join("lbd.running.state"));
    assert!(record_path.exists());

    // The previous lbd's maps.
    let mut maps = FakeMaps::default();
    let mut before = Balancer::new(8);
    before
        .apply(&mut maps, &running.desired(&|_| None))
        .unwrap();
    let id = VipId::of(&file.vips[0]);
    let b3 = address("198.18.0.13");
    let entry_before = &before.vips()[&id].backends[&b3];
    let entry_before = (entry_before.id, entry_before.generation);

    // The restart, the file unchanged.
    let ((config, _record), warned) = warnings_of(|| load(&path, Config::load(&path).unwrap()));
    assert!(warned.is_empty(), "{warned}");
    let mut model = Model::from_config(&config);
    assert_eq!(model.to_config(&config).vips, running.to_config(&file).vips);
    assert!(model.backend(&id, b3).is_ok());
    assert!(model.backend(&id, address("198.18.0.11")).is_err());
    assert_eq!(
        model
            .backend(&id, address("198.18.0.12"))
            .unwrap()
            .config
            .weight,
        50
    );
    assert_eq!(model.vips.len(), 2);
    assert!(record_path.exists(), "kept for the next restart");

    let mut after = Balancer::new(8);
    after.adopt(&maps.adopted_state());
    super::super::start::seed_health(&mut model, &after);
    assert!(
        !model.backend(&id, b3).unwrap().awaits_first_check(),
        "adopted with its flows: takes new flows at once"
    );
    after.apply(&mut maps, &model.desired(&|_| None)).unwrap();
    let entry_after = &after.vips()[&id].backends[&b3];
    assert_eq!(
        (entry_after.id, entry_after.generation),
        entry_before,
        "b3's entry kept: its flows stay"
    );

    // What a start from the file alone did: b3 retired.
    let mut from_file = Balancer::new(8);
    let mut maps_file = FakeMaps::default();
    from_file
        .apply(&mut maps_file, &running.desired(&|_| None))
        .unwrap();
    let mut fresh = Balancer::new(8);
    fresh.adopt(&maps_file.adopted_state());
    fresh
        .apply(
            &mut maps_file,
            &Model::from_config(&file).desired(&|_| None),
        )
        .unwrap();
    assert!(!fresh.vips()[&id].backends.contains_key(&b3));
}

/// The config file changed since the record was taken (one byte is
/// enough): the start applies the file, warns once naming what it
/// drops, and moves the record aside; the next start says nothing.
#[test]
fn a_changed_file_drops_the_runtime_changes_with_a_warning() {
    let scratch = Scratch::new("changed");
    let (path, file) = scratch.file("");
    let (_, mut record) = load(&path, file.clone());
    record.record(&changed(&file), &file, &file.guard).unwrap();
    let record_path = running_state_file(&file).unwrap();

    let (_, edited) = scratch.file("# edited\n");
    let ((config, _), warned) = warnings_of(|| load(&path, edited.clone()));
    assert_eq!(config, edited, "the file");
    assert_eq!(warned.matches("WARN").count(), 1, "{warned}");
    assert!(warned.contains("the config file changed"), "{warned}");
    assert!(
        warned.contains(&record_path.display().to_string()),
        "{warned}"
    );
    for dropped in [
        "backend 198.18.0.13 of 198.18.0.100:80/tcp is not in the file: removed",
        "VIP 198.18.0.200:80/tcp is not in the file: removed",
        "backend 198.18.0.11 of 198.18.0.100:80/tcp from the file: added",
    ] {
        assert!(warned.contains(dropped), "{dropped}: {warned}");
    }
    assert!(!record_path.exists());
    let dropped = dropped_state_file(&file).unwrap();
    assert_eq!(dropped, scratch.0.join("lbd.running-dropped.state"));
    assert!(dropped.exists(), "kept to read");

    let ((config, _), warned) = warnings_of(|| load(&path, edited.clone()));
    assert_eq!(config, edited);
    assert!(warned.is_empty(), "{warned}");
}

/// A record that cannot be used (garbled, another version, a
/// configuration that does not load) is named with why, and the
/// start goes on from the file.
#[test]
fn an_unusable_record_is_named_and_the_start_is_from_the_file() {
    let scratch = Scratch::new("unusable");
    let (path, file) = scratch.file("");
    let record_path = running_state_file(&file).unwrap();
    let hash = sha256_hex(&std::fs::read(&path).unwrap());
    for (text, why) in [
        ("{".to_owned(), "not a running-state file"),
        (
            encode(&Writer::current(), Some(&hash), String::new())
                .replace("\"version\": 2", "\"version\": 3"),
            "version 3",
        ),
        (
            encode(&Writer::current(), Some(&hash), "[[vip]]\n".to_owned()),
            "do not load",
        ),
    ] {
        std::fs::write(&record_path, &text).unwrap();
        let ((config, _), warned) = warnings_of(|| load(&path, file.clone()));
        assert_eq!(config, file, "{text}");
        assert!(
            warned.contains(&record_path.display().to_string()),
            "{warned}"
        );
        assert!(warned.contains(why), "{why}: {warned}");
        assert!(warned.contains("starting from the config file"), "{warned}");
        assert!(!record_path.exists());
    }
}

/// A reload makes the file the running configuration: its record
/// goes; so does one of a running state back to the file's (the
/// changes undone by hand). Nothing is written while the running
/// configuration is the file's.
#[test]
fn a_reload_clears_the_record() {
    let scratch = Scratch::new("reload");
    let (path, file) = scratch.file("");
    let record_path = running_state_file(&file).unwrap();
    let (_, mut record) = load(&path, file.clone());
    // Health and admin states are no configuration.
    let mut model = Model::from_config(&file);
    let id = VipId::of(&file.vips[0]);
    model
        .apply(
            &Edit::Maintenance(id, address("198.18.0.11")),
            std::time::Instant::now(),
        )
        .unwrap();
    record.record(&model, &file, &file.guard).unwrap();
    assert!(!record_path.exists());

    let running = changed(&file);
    record.record(&running, &file, &file.guard).unwrap();
    assert!(record_path.exists());
    // The reload of an edited file: rebased on it, the reloaded
    // model recorded as nothing.
    let (_, edited) = scratch.file("# edited\n");
    let before = record.rebase(&path, &edited);
    assert_ne!(before.hash, record.base_hash);
    record
        .record(&running.reloaded(&edited), &edited, &edited.guard)
        .unwrap();
    assert!(!record_path.exists(), "the reload's state is the file's");
    // Changes after it are recorded on the file the reload read, and
    // a restart keeps them.
    record.record(&running, &edited, &edited.guard).unwrap();
    let (config, _) = load(&path, edited.clone());
    assert_eq!(config.vips.len(), 2);
}

/// A record that cannot be written is an error naming the file (the
/// change asking for it is refused); once it can, it is written.
#[test]
fn a_record_that_cannot_be_written_names_the_file() {
    let scratch = Scratch::new("unwritable");
    let (path, file) = scratch.file("");
    let (_, mut record) = load(&path, file.clone());
    let record_path = running_state_file(&file).unwrap();
    std::fs::create_dir(super::super::node::temporary_of(&record_path)).unwrap();
    let why = record
        .record(&changed(&file), &file, &file.guard)
        .unwrap_err();
    assert!(why.starts_with("nothing changed"), "{why}");
    assert!(why.contains(&record_path.display().to_string()), "{why}");
    assert!(why.contains("a restart would not start from"), "{why}");
    std::fs::remove_dir(super::super::node::temporary_of(&record_path)).unwrap();
    record.record(&changed(&file), &file, &file.guard).unwrap();
    assert!(record_path.exists());
}

/// `lbd --cleanup` and a stop for good forget the record.
#[test]
fn a_stop_for_good_forgets_the_record() {
    let scratch = Scratch::new("forget");
    let (path, file) = scratch.file("");
    let (_, mut record) = load(&path, file.clone());
    record.record(&changed(&file), &file, &file.guard).unwrap();
    let record_path = running_state_file(&file).unwrap();
    assert!(record_path.exists());
    let dropped = dropped_state_file(&file).unwrap();
    std::fs::write(&dropped, "{}").unwrap();
    forget(&file);
    assert!(!record_path.exists());
    assert!(!dropped.exists());
    let (config, _) = load(&path, file.clone());
    assert_eq!(config, file);
}

/// The record's text holds only the running configuration's served
/// sections (`[[vip]]`, `[[acl]]`, `[[limit]]`, as `lbctl config
/// dump` writes them), which load with the file's node settings.
#[test]
fn the_record_holds_the_served_sections_only() {
    let scratch = Scratch::new("text");
    let (path, file) = scratch.file("");
    let (_, mut record) = load(&path, file.clone());
    record.record(&changed(&file), &file, &file.guard).unwrap();
    let text = std::fs::read_to_string(running_state_file(&file).unwrap()).unwrap();
    let (found, ignored) = decode(&text).unwrap();
    assert!(ignored.is_empty());
    assert!(!found.config.contains("interface"), "{}", found.config);
    assert!(!found.config.contains("conntrack_size"), "{}", found.config);
    let (loaded, ignored) = config::with_served(&file, &found.config, "record").unwrap();
    assert!(ignored.is_empty());
    assert_eq!(loaded.vips.len(), 2);
    assert_eq!(found.writer, Some(Writer::current()));
}

/// Writes, as the lbd `writer`, the record of the changed running
/// configuration of `file` (at `path`).
fn record_as(writer: Writer, path: &Path, file: &Config) {
    let (_, mut record) = RunningRecord::load_as(path, file.clone(), writer, (None, "boot-0"));
    record.record(&changed(file), file, &file.guard).unwrap();
}

/// Finding 3: lbd 100 records runtime changes; another lbd (200, an
/// older build that keeps no record) runs after it, and runtime
/// changes are made there; the next start, with the same config
/// file, finds a record lbd 200 did not write: it starts from the
/// file, warns, and moves the record aside (restoring it would bring
/// back what was removed meanwhile).
#[test]
fn a_record_another_lbd_ran_after_is_set_aside() {
    let scratch = Scratch::new("stale");
    let (path, file) = scratch.file("");
    record_as(lbd(100, "boot-1"), &path, &file);
    let record_path = running_state_file(&file).unwrap();
    assert!(record_path.exists());

    let ((config, _), warned) = warnings_of(|| {
        RunningRecord::load_as(
            &path,
            file.clone(),
            lbd(300, "boot-1"),
            (Some(&lbd(200, "boot-1")), "boot-1"),
        )
    });
    assert_eq!(config, file, "the file, not the record");
    assert!(
        warned.contains("not written by the lbd that ran last"),
        "{warned}"
    );
    assert!(warned.contains("pid 100"), "{warned}");
    assert!(warned.contains("pid 200"), "{warned}");
    assert!(!record_path.exists());
    assert!(dropped_state_file(&file).unwrap().exists(), "kept to read");

    // The same pid in the same boot, started at another time: another
    // process.
    record_as(lbd(100, "boot-1"), &path, &file);
    let mut reused = lbd(100, "boot-1");
    reused.started = Some(7);
    let (config, _) = RunningRecord::load_as(
        &path,
        file.clone(),
        lbd(300, "boot-1"),
        (Some(&reused), "boot-1"),
    );
    assert_eq!(config, file);

    // An older build's record (no writer) is not known to be the last
    // lbd's either.
    let hash = sha256_hex(&std::fs::read(&path).unwrap());
    let text =
        encode(&lbd(1, "boot-1"), Some(&hash), String::new()).replace("\"writer\"", "\"unknown\"");
    std::fs::write(&record_path, text).unwrap();
    let ((config, _), warned) = warnings_of(|| {
        RunningRecord::load_as(
            &path,
            file.clone(),
            lbd(300, "boot-1"),
            (Some(&lbd(200, "boot-1")), "boot-1"),
        )
    });
    assert_eq!(config, file);
    assert!(warned.contains("does not name the lbd"), "{warned}");

    // No record of what an lbd held left in the boot the record was
    // written in (an lbd stopped for good since): set aside.
    record_as(lbd(100, "boot-1"), &path, &file);
    let (config, _) =
        RunningRecord::load_as(&path, file.clone(), lbd(300, "boot-1"), (None, "boot-1"));
    assert_eq!(config, file);
    assert!(!record_path.exists());
}

/// The record of the lbd that ran last comes back: after it crashed
/// (the record of what it held names it), at each restart after (the
/// lbd that restored it rewrote it as its own, though it changed
/// nothing), and at the first start after a reboot.
#[test]
fn the_last_lbds_record_comes_back_after_a_crash_a_restart_and_a_reboot() {
    let scratch = Scratch::new("last");
    let (path, file) = scratch.file("");
    record_as(lbd(100, "boot-1"), &path, &file);
    let runtime = changed(&file).to_config(&file).vips;

    // lbd 100 crashed; lbd 300 starts.
    let (config, _) = RunningRecord::load_as(
        &path,
        file.clone(),
        lbd(300, "boot-1"),
        (Some(&lbd(100, "boot-1")), "boot-1"),
    );
    assert_eq!(config.vips, runtime);
    // lbd 300 is restarted (it changed nothing): lbd 400 restores.
    let (config, _) = RunningRecord::load_as(
        &path,
        file.clone(),
        lbd(400, "boot-1"),
        (Some(&lbd(300, "boot-1")), "boot-1"),
    );
    assert_eq!(config.vips, runtime);
    // A reboot: no record of what an lbd held in this boot.
    let (config, _) =
        RunningRecord::load_as(&path, file.clone(), lbd(500, "boot-2"), (None, "boot-2"));
    assert_eq!(config.vips, runtime);
    let text = std::fs::read_to_string(running_state_file(&file).unwrap()).unwrap();
    assert_eq!(decode(&text).unwrap().0.writer, Some(lbd(500, "boot-2")));
}

/// Finding 5: a record a newer build wrote, with keys this build does
/// not know (in its JSON, beside the VIPs, in a VIP and in a backend),
/// still restores the runtime changes, those keys left out with a
/// warning naming them.
#[test]
fn a_newer_builds_keys_in_the_record_are_left_out() {
    let scratch = Scratch::new("newer");
    let (path, file) = scratch.file("");
    let hash = sha256_hex(&std::fs::read(&path).unwrap());
    let served = "future_key = 1\n\
                  [[vip]]\naddress = \"198.18.0.100\"\nport = 80\nfuture_vip_key = \"x\"\n\
                  [[vip.backend]]\naddress = \"198.18.0.13\"\nmac = \"02:00:00:00:00:13\"\nfuture_backend_key = 2\n";
    let text = encode(&Writer::current(), Some(&hash), served.to_owned()).replacen(
        '{',
        "{\n  \"future_field\": true,",
        1,
    );
    std::fs::write(running_state_file(&file).unwrap(), text).unwrap();
    let ((config, _), warned) = warnings_of(|| load(&path, file.clone()));
    assert_eq!(config.vips.len(), 1);
    let backends: Vec<String> = config.vips[0]
        .backends
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(backends, ["198.18.0.13"], "the record's backends");
    for key in [
        "future_field",
        "future_key",
        "vip[0].future_vip_key",
        "vip[0].backend[0].future_backend_key",
    ] {
        assert!(warned.contains(key), "{key}: {warned}");
    }
    assert!(!warned.contains("cannot be used"), "{warned}");
}
