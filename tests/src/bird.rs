//! BIRD 2 (Debian `bird2`) as the tests run it: a process of the lab in a
//! node's namespace, with a config the test writes into the run's
//! directory and a control socket of its own, queried with `birdc`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::lab::{Host, Lab};

/// One BIRD of the lab.
#[derive(Debug, Clone)]
pub struct Bird {
    /// Its process name in the lab (`bird-<node>` unless given).
    pub name: String,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its config file.
    pub config: PathBuf,
}

impl Bird {
    /// Where a BIRD named `name` keeps its socket and config in `lab`
    /// (known before it starts, for lbd's `[bgp] bird_socket`).
    pub fn paths(lab: &Lab, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            socket: lab.dir.join(format!("{name}.ctl")),
            config: lab.dir.join(format!("{name}.conf")),
        }
    }

    /// Writes `config` and starts BIRD in the foreground in `node`'s
    /// namespace; returns once its control socket answers.
    pub fn start(lab: &mut Lab, node: &Host, name: &str, config: &str) -> anyhow::Result<Self> {
        let bird = Self::paths(lab, name);
        std::fs::write(&bird.config, config)?;
        let parse = Command::new("bird")
            .args(["-p", "-c"])
            .arg(&bird.config)
            .output()
            .context("bird -p")?;
        if !parse.status.success() {
            bail!(
                "BIRD refuses {}: {}",
                bird.config.display(),
                String::from_utf8_lossy(&parse.stderr)
            );
        }
        let pid_file = lab.dir.join(format!("{name}.pid"));
        lab.spawn(
            name,
            &node.netns,
            "bird",
            &[
                "-f",
                "-c",
                &bird.config.to_string_lossy(),
                "-s",
                &bird.socket.to_string_lossy(),
                "-P",
                &pid_file.to_string_lossy(),
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while bird.birdc(&["show", "status"]).is_err() {
            if !lab.is_running(name) {
                bail!("{name} exited at start:\n{}", lab.log(name));
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer within 10 s:\n{}", lab.log(name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(bird)
    }

    /// Runs `birdc -s SOCKET args`; its output.
    pub fn birdc(&self, args: &[&str]) -> anyhow::Result<String> {
        birdc(&self.socket, args)
    }

    /// The prefixes of `protocol`'s routes in BIRD's tables.
    pub fn routes_of(&self, protocol: &str) -> anyhow::Result<Vec<String>> {
        let text = self.birdc(&["show", "route", "protocol", protocol])?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|word| word.contains('/'))
            .map(str::to_owned)
            .collect())
    }
}

/// `birdc -s socket args`, failing when birdc does or BIRD answers with an
/// error code.
pub fn birdc(socket: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .context("birdc")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Unable to connect") {
        bail!(
            "birdc {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}
