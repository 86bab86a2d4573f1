//! The PostgreSQL server: a throwaway cluster made with initdb in the
//! lab's run directory, started on one lab host.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use super::{
    bin_dir,
    server::{is_ready, owned_dir, system_user, Server},
    DB_USER, POSTGRES_PORT,
};
use crate::lab::Host;

/// A PostgreSQL server on a lab host, listening on its IPv4 and IPv6
/// addresses, trusting the lab networks. Stopped (fast shutdown) on drop.
pub struct Postgres {
    /// The host it runs on.
    pub host: Host,
    /// Its IPv4 address and port.
    pub address: SocketAddr,
    /// Its IPv6 address and port.
    pub address_v6: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    server: Server,
}

impl Postgres {
    /// Creates a cluster under `<run_dir>/postgres` (initdb as the
    /// `postgres` user) and starts the server on `host`; returns once it
    /// accepts connections.
    pub fn start(host: &Host, run_dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let user = system_user()?;
        let dir = run_dir.join("postgres");
        owned_dir(&dir, user)?;
        let data = dir.join("data");
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                DB_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .current_dir(&dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .uid(user.uid)
            .gid(user.gid)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb {} failed ({}):\n{}{}",
                data.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Later settings win: appended to the file initdb wrote. A
        // throwaway cluster: durability off, small memory, no Unix socket.
        let settings = format!(
            "\n# lab settings\nlisten_addresses = '{}, {}'\nport = {POSTGRES_PORT}\n\
             unix_socket_directories = ''\nmax_connections = 100\nshared_buffers = 16MB\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             logging_collector = off\nlog_connections = off\n",
            host.ipv4, host.ipv6
        );
        let conf = data.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(&settings);
        fs::write(&conf, text)?;
        // Only the lab's ranges, no password (pgbench and the PgBouncers).
        fs::write(
            data.join("pg_hba.conf"),
            "host all all 198.18.0.0/15 trust\nhost all all 2001:2::/48 trust\n",
        )?;
        let log = dir.join("postgres.log");
        let mut server = Server::spawn(
            "postgres",
            &host.netns,
            user,
            &bin.join("postgres"),
            &["-D".to_owned(), data.to_string_lossy().into_owned()],
            &log,
            // Fast shutdown: sessions are ended, not waited for.
            libc::SIGINT,
        )?;
        let address = SocketAddr::new(IpAddr::V4(host.ipv4), POSTGRES_PORT);
        let netns = host.netns.clone();
        server.wait_ready(|| is_ready(&bin, &netns, address))?;
        Ok(Self {
            host: host.clone(),
            address,
            address_v6: SocketAddr::new(IpAddr::V6(host.ipv6), POSTGRES_PORT),
            data,
            server,
        })
    }

    /// Whether the server still runs.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Stops the server (fast shutdown: its sessions are ended) and waits
    /// for it, as a database that goes away under its PgBouncers.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        match self.server.stop() {
            Some(_) => Ok(()),
            None => bail!("PostgreSQL did not stop"),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.server.log).unwrap_or_default()
    }
}
