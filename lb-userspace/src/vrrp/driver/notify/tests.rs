//! The notify queue and commands, run for real: shell scripts that note
//! what they were told, and when.

use std::time::Instant;

use super::*;
use crate::test_scratch::ScratchDir;
use crate::vrrp::driver::tests::vrrp_config;

/// A notify script in a directory of its own (removed on drop) that
/// writes its process id to `pid`, sleeps `seconds`, then appends
/// "$1 $2" to `notes`.
struct Script {
    dir: ScratchDir,
}

impl Script {
    fn new(name: &str, seconds: &str) -> Self {
        Self::writing(name, seconds, "$1 $2")
    }

    /// `new`, appending `line` (shell words) to `notes` instead.
    fn writing(name: &str, seconds: &str, line: &str) -> Self {
        let dir = ScratchDir::new(&format!("vrrp-notify-{name}"));
        // As root makes it under any umask: the run-time check refuses
        // a program in a directory others may write.
        std::fs::set_permissions(
            &dir,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .expect("chmod");
        let script = dir.join("notify.sh");
        let text = format!(
            "#!/bin/sh\necho $$ > {}\nsleep {seconds}\necho \"{line}\" >> {}\n",
            dir.join("pid").display(),
            dir.join("notes").display()
        );
        // Written by a child process, not here: a file this process
        // holds open for writing is inherited by whatever another test
        // thread forks meanwhile, and exec'ing it then fails with
        // ETXTBSY until that child execs.
        let written = std::process::Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$2\" > \"$1\" && chmod 755 \"$1\"",
                "sh",
            ])
            .arg(&script)
            .arg(text)
            .status()
            .expect("sh");
        assert!(written.success(), "writing {}", script.display());
        Self { dir }
    }

    fn notes(&self) -> String {
        std::fs::read_to_string(self.dir.join("notes")).unwrap_or_default()
    }

    /// The script's process id, once it wrote it.
    fn pid(&self) -> Option<libc::pid_t> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

#[tokio::test]
async fn the_exit_waits_for_a_notify_still_running() {
    let script = Script::new("waits", "0.3");
    let notifies = Notifies::default();
    notifies.spawn(
        51,
        "stopped",
        run_notify(
            script.dir.join("notify.sh"),
            "stopped".to_owned(),
            "51".to_owned(),
            "ipv4",
        ),
    );
    wait_for_notifies(&[notifies], NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "stopped 51\n");
}

#[tokio::test]
async fn a_notify_running_past_the_grace_is_killed() {
    let script = Script::new("killed", "5");
    let notifies = Notifies::default();
    notifies.spawn(
        51,
        "stopped",
        run_notify(
            script.dir.join("notify.sh"),
            "stopped".to_owned(),
            "51".to_owned(),
            "ipv4",
        ),
    );
    // Running: its pid written (it sleeps past the grace below).
    let deadline = Instant::now() + Duration::from_secs(5);
    let pid = loop {
        if let Some(pid) = script.pid() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the script never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(is_alive(pid), "the script ran before the grace");
    let started = Instant::now();
    wait_for_notifies(std::slice::from_ref(&notifies), Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    // Killed: gone (or a zombie until tokio reaps it) shortly after,
    // with nothing left to wait for and the line never written.
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the notify command {pid} still runs after the grace"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(notifies.take().is_empty());
    assert_eq!(script.notes(), "");
}

/// Whether process `pid` exists and is not a zombie.
fn is_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 sends nothing, only checks the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// A quick master→backup flip: the "master" command is slow, the
/// "backup" one quick. Run side by side, "backup" ended first and the
/// notes (whatever the commands drive) ended at "master" on a backup;
/// queued, each starts once the one before it ended.
#[tokio::test]
async fn notify_commands_run_in_the_order_of_the_states() {
    let script = Script::writing(
        "order",
        "$(if [ \"$1\" = master ]; then echo 0.5; else echo 0; fi)",
        "$1 $2",
    );
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    spawn_notify(&notifies, &config, "master");
    spawn_notify(&notifies, &config, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master 51\nbackup 51\n");
    // One taken by an exit's wait still comes first: a command queued
    // later waits for it.
    spawn_notify(&notifies, &config, "master");
    let taken = notifies.take();
    spawn_notify(&notifies, &config, "stopped");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    drop(taken);
    assert_eq!(
        script.notes(),
        "master 51\nbackup 51\nmaster 51\nstopped 51\n"
    );
}

/// A flapping instance with a slow notify program: states queued
/// while one command runs are merged into the newest, so at most one
/// waits, nothing stale runs, and the last state is the last run.
#[tokio::test]
async fn states_queued_behind_a_running_notify_are_merged() {
    let script = Script::writing("merge", "0.3", "$1");
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    for k in 0..20 {
        spawn_notify(
            &notifies,
            &config,
            if k % 2 == 0 { "master" } else { "backup" },
        );
    }
    spawn_notify(&notifies, &config, "stopped");
    let queued = notifies
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .running
        .len();
    assert!(queued <= 2, "{queued} commands queued");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\nstopped\n");
}

/// The program is checked again before each run: one made writable
/// by others since the config was loaded is not run.
#[tokio::test]
async fn a_notify_program_changed_since_the_load_is_not_run() {
    let script = Script::writing("changed", "0", "$1");
    let program = script.dir.join("notify.sh");
    let notifies = Notifies::default();
    let config = VrrpConfig {
        notify: Some(program.clone()),
        ..vrrp_config(100, "198.18.0.10")
    };
    spawn_notify(&notifies, &config, "master");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\n");
    std::fs::set_permissions(
        &program,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o777),
    )
    .expect("chmod");
    spawn_notify(&notifies, &config, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master\n", "an unsafe program ran");
}

#[tokio::test]
async fn notify_tells_the_family_of_the_instance() {
    let script = Script::writing("family", "0", "$1 $2 $3 $LBD_VRRP_FAMILY");
    let notifies = Notifies::default();
    // One VRID, both families: the third argument tells them apart.
    let v4 = VrrpConfig {
        notify: Some(script.dir.join("notify.sh")),
        ..vrrp_config(100, "198.18.0.10")
    };
    let v6 = VrrpConfig {
        addresses: vec!["2001:db8::10".parse().expect("address")],
        ..v4.clone()
    };
    spawn_notify(&notifies, &v4, "master");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    spawn_notify(&notifies, &v6, "backup");
    wait_for_notifies(std::slice::from_ref(&notifies), NOTIFY_GRACE).await;
    assert_eq!(script.notes(), "master 51 ipv4 ipv4\nbackup 51 ipv6 ipv6\n");
    // No command configured: nothing runs.
    spawn_notify(&notifies, &vrrp_config(100, "198.18.0.10"), "master");
    assert!(notifies.take().is_empty());
}
