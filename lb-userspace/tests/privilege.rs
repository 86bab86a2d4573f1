//! `privilege::drop_after_start` in a process of its own (it changes the whole
//! process for good, so it is the only test here): every thread, the tokio
//! workers, blocking-pool threads, a thread asleep in a system call and threads
//! created afterwards, ends up with the kept set only and `no_new_privs`, and
//! so does a program it runs. As root the kept set is exactly `KEPT`; as
//! another user it is what that user had of it (usually nothing).

use std::{
    collections::BTreeMap,
    sync::{mpsc, Arc, Barrier},
    time::Duration,
};

use caps::CapSet;
use lb_userspace::{
    config::Config,
    privilege::{self, CapMask, ThreadStatus, KEPT},
};

fn statuses() -> BTreeMap<String, ThreadStatus> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let name = text.lines().next().unwrap_or_default().to_owned();
            let tid = entry.file_name().to_string_lossy().into_owned();
            Some((
                format!("{tid} {name}"),
                ThreadStatus::parse(&text).expect("status lines"),
            ))
        })
        .collect()
}

#[test]
fn every_thread_and_every_program_run_keeps_only_the_kept_set() {
    let config = Config::from_toml_str("interface = \"eth0\"\n", "test").unwrap();
    let permitted = caps::read(None, CapSet::Permitted).unwrap();
    let held = CapMask(permitted.iter().fold(0, |m, c| m | c.bitmask()));
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    // A thread asleep in a blocking receive the whole time.
    let (wake, asleep) = mpsc::channel::<u32>();
    let sleeper = std::thread::spawn(move || asleep.recv().map(|n| n + 1));

    let dropped = runtime.block_on(async {
        // Blocking-pool threads, held busy until the drop is done.
        let gate = Arc::new(Barrier::new(5));
        let blocking: Vec<_> = (0..4)
            .map(|_| {
                let gate = gate.clone();
                tokio::task::spawn_blocking(move || gate.wait())
            })
            .collect();
        // Workers busy with tasks.
        let busy: Vec<_> = (0..6)
            .map(|i| {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10 * i)).await;
                    i
                })
            })
            .collect();
        let dropped = tokio::task::block_in_place(|| privilege::drop_after_start(&config))
            .expect("dropping privileges");
        gate.wait();
        for task in blocking {
            task.await.unwrap();
        }
        for task in busy {
            task.await.unwrap();
        }
        dropped
    });

    let expected = CapMask::of(KEPT).intersection(held);
    assert_eq!(dropped.kept, expected, "kept {}", dropped.kept);
    if root {
        assert_eq!(dropped.kept, CapMask::of(KEPT), "root keeps exactly KEPT");
        assert_eq!(dropped.bounding, CapMask::of(KEPT));
        assert_eq!(dropped.missing, CapMask::default());
    }
    // A thread made afterwards inherits the reduced sets.
    let (late_tx, late_rx) = mpsc::channel::<()>();
    let late = std::thread::spawn(move || late_rx.recv());

    let all = statuses();
    assert!(all.len() >= 8, "too few threads to mean anything: {all:?}");
    for (thread, status) in &all {
        assert_eq!(status.effective, expected, "{thread}: CapEff");
        assert_eq!(status.permitted, expected, "{thread}: CapPrm");
        assert_eq!(status.inheritable, CapMask::default(), "{thread}: CapInh");
        assert_eq!(status.ambient, CapMask::default(), "{thread}: CapAmb");
        assert_eq!(status.bounding, dropped.bounding, "{thread}: CapBnd");
        assert!(status.no_new_privs, "{thread}: NoNewPrivs");
    }
    // The sleeper was interrupted by the signal and carried on unharmed.
    wake.send(41).unwrap();
    assert_eq!(sleeper.join().unwrap(), Ok(42));
    late_tx.send(()).unwrap();
    late.join().unwrap().unwrap();

    // A program lbd runs (VRRP notify) gets no more than the kept set, even
    // as root (no_new_privs).
    let output = std::process::Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .unwrap();
    let child = ThreadStatus::parse(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_eq!(
        child.effective.minus(expected),
        CapMask::default(),
        "{child:?}"
    );
    assert_eq!(
        child.permitted.minus(expected),
        CapMask::default(),
        "{child:?}"
    );
    assert!(child.no_new_privs);

    // Once only.
    assert!(matches!(
        privilege::drop_after_start(&config),
        Err(privilege::PrivilegeError::AlreadyDone)
    ));
    println!(
        "kept {} on {} threads; bounding {}",
        dropped.kept,
        all.len(),
        dropped.bounding
    );
}
