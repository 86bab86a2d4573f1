//! The announcer's tests, with the fake BIRDs and plans they share; each
//! file next to this one tests one concern.

mod in_sync;
mod refused_config;
mod retries;
mod session_exports;
mod startup_gate;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
};

use super::*;
use crate::bgp::announce::Withheld;
use crate::config::Announced;
use crate::test_scratch::ScratchDir;

const A: &str = "198.18.0.100";

/// A directory of this test's, removed when dropped.
struct Scratch(ScratchDir);

impl Scratch {
    fn new(tag: &str) -> Self {
        Self(ScratchDir::new(&format!("announcer-{tag}")))
    }

    fn config(&self) -> BgpConfig {
        BgpConfig {
            bird_socket: self.0.join("bird.ctl"),
            routes_file: self.0.join("vips.conf"),
            protocol: "lbd_vips".into(),
            addresses: Announced::EveryVip,
            startup_wait: Duration::from_secs(10),
            node_state_file: self.0.join("node.state"),
        }
    }
}

fn plan(announced: bool) -> Plan {
    let reason = (!announced).then_some(Withheld::NoHealthyBackend);
    [(A.parse().unwrap(), reason)].into()
}

fn routes(config: &BgpConfig) -> String {
    std::fs::read_to_string(&config.routes_file).unwrap()
}

/// A BIRD on `socket` that takes one connection and answers each
/// command on it with `answer(command)`; once lbd closes it, BIRD
/// goes away (its socket removed). The task returns the commands.
fn fake_bird(
    socket: &std::path::Path,
    answer: impl Fn(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<Vec<String>> {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    let path = socket.to_owned();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut commands = Vec::new();
        while let Ok(Some(command)) = lines.next_line().await {
            // lbd may close as soon as it read what it needs.
            let _ = write.write_all(answer(&command).as_bytes()).await;
            commands.push(command);
        }
        drop(listener);
        let _ = std::fs::remove_file(path);
        commands
    })
}

/// BIRD's answer to `show protocols "<name>"` when it runs `name`.
fn protocol_listed(command: &str) -> Option<String> {
    let name = command
        .strip_prefix("show protocols \"")?
        .strip_suffix('"')?;
    Some(format!(
        "2002-Name       Proto      Table      State  Since         Info\n\
         1002-{name}  Static     master4    up     07:35:47.183  \n0000 \n"
    ))
}

/// A BIRD on `socket` whose config includes the routes file: it
/// answers lbd's first command with `reply` and lists the protocols
/// it is asked for, then goes away (see [`fake_bird`]).
fn bird_answering(
    socket: &std::path::Path,
    reply: &'static str,
) -> tokio::task::JoinHandle<Vec<String>> {
    fake_bird(socket, move |command| {
        protocol_listed(command).unwrap_or_else(|| reply.to_owned())
    })
}

/// What lbd asks after `first`: whether BIRD runs both protocols of
/// the routes file, then its BGP sessions (none here).
fn then_protocols(first: &str) -> Vec<String> {
    vec![
        first.to_owned(),
        "show protocols \"lbd_vips4\"".to_owned(),
        "show protocols \"lbd_vips6\"".to_owned(),
        "show protocols".to_owned(),
    ]
}

/// Accepts on `socket` and never greets, until aborted.
fn hung_bird(socket: &std::path::Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    })
}

/// A BIRD on `socket` that answers every command of every connection
/// with `answer(command)` until `stop`ped; `log` has the commands.
struct ServingBird {
    task: tokio::task::JoinHandle<()>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    socket: PathBuf,
}

impl ServingBird {
    fn start(
        socket: &std::path::Path,
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let commands = log.clone();
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read, mut write) = stream.into_split();
                write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(command)) = lines.next_line().await {
                    let _ = write.write_all(answer(&command).as_bytes()).await;
                    commands.lock().unwrap().push(command);
                }
            }
        });
        Self {
            task,
            log,
            socket: socket.to_owned(),
        }
    }

    /// The commands so far, taken.
    fn commands(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// BIRD 2.0.12's answers while bird.conf does not parse: it refuses
/// every configure, and disables or enables a protocol it runs.
fn refusing_bird(command: &str) -> String {
    if command == "configure" {
        return "0002-Reading configuration from /etc/bird/bird.conf\n8002 /etc/bird/bird.conf:3:1 syntax error, unexpected CF_SYM_UNDEFINED\n".to_owned();
    }
    toggled(command).unwrap_or_else(|| "9001 syntax error\n".to_owned())
}

/// BIRD 2.0.12's answer to `disable "<name>"` or `enable "<name>"`.
fn toggled(command: &str) -> Option<String> {
    let (verb, name) = command.split_once(' ')?;
    let name = name.strip_prefix('"')?.strip_suffix('"')?;
    match verb {
        "disable" => Some(format!("0009-{name}: disabled\n0000 \n")),
        "enable" => Some(format!("0011-{name}: enabled\n0000 \n")),
        _ => None,
    }
}

/// BIRD 2.0.12's answers once bird.conf parses again.
fn taking_bird(command: &str) -> String {
    protocol_listed(command)
        .or_else(|| toggled(command))
        .unwrap_or_else(|| "0003 Reconfigured\n".to_owned())
}

/// A BIRD that takes every configure and runs lbd's protocols, with
/// one BGP session, `router1_v4`: Established and exporting `A` when
/// `up`, else Active (its neighbour does not answer), as Debian bird2
/// 2.0.12 answers.
fn bird_with_session(up: bool) -> impl Fn(&str) -> String + Send + Sync + 'static {
    move |command: &str| {
        if let Some(listed) = protocol_listed(command) {
            return listed;
        }
        match command {
            "show protocols" if up => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n lbd_vips6  Static     master6    up     16:48:55.115  \n router1_v4 BGP        ---        up     16:48:56.088  Established   \n0000 \n".to_owned(),
            "show protocols" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n lbd_vips6  Static     master6    up     16:48:55.115  \n router1_v4 BGP        ---        start  16:50:24.948  Active        Socket: Connection refused\n0000 \n".to_owned(),
            "show route exported 'router1_v4' protocol 'lbd_vips4'" if up => format!("1007-Table master4:\n {A}/32      blackhole [lbd_vips4 16:48:55.115] * (200)\n0000 \n"),
            "show route exported 'router1_v4' protocol 'lbd_vips6'" if up => "0000 \n".to_owned(),
            "show route exported 'router1_v4' protocol 'lbd_vips4'" | "show route exported 'router1_v4' protocol 'lbd_vips6'" => "9001 No valid tables\n".to_owned(),
            "show status" => "1000-BIRD 2.0.12\n0013 Daemon is up and running\n".to_owned(),
            _ => "0003 Reconfigured\n".to_owned(),
        }
    }
}

/// Another IPv4 VIP address, and an IPv6 one.
const B: &str = "198.18.0.101";
const A6: &str = "2001:2::100";

/// A plan of `addresses`, each announced or not.
fn plan_of(addresses: &[(&str, bool)]) -> Plan {
    addresses
        .iter()
        .map(|(address, announced)| {
            let reason = (!announced).then_some(Withheld::NoHealthyBackend);
            (address.parse().unwrap(), reason)
        })
        .collect()
}

/// Has `announcer` send `plan` to `bird`, and takes the outcome.
async fn exchange(
    announcer: &mut Announcer,
    outcomes: &mut mpsc::Receiver<Outcome>,
    plan: Plan,
    now: Instant,
) {
    announcer.apply(plan, now);
    let outcome = outcomes.recv().await.unwrap();
    announcer.on_outcome(outcome, now);
}
