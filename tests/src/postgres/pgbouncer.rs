//! PgBouncer: one per lab host, in transaction pooling mode, in front of
//! the PostgreSQL server.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::bail;

use super::{
    bin_dir,
    server::{is_ready, owned_dir, system_user, Server},
    DB_NAME, DB_USER, PGBOUNCER_PORT,
};
use crate::lab::Host;

/// Where Debian's `pgbouncer` package puts the server.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer on a lab host in transaction pooling mode, listening on the
/// host's addresses on `PGBOUNCER_PORT`, pointing at a PostgreSQL over the
/// lab's network. Stopped (immediate shutdown) on drop.
pub struct PgBouncer {
    /// The host it runs on.
    pub host: Host,
    /// Its IPv4 address and port.
    pub address: SocketAddr,
    /// Its IPv6 address and port.
    pub address_v6: SocketAddr,
    /// Its ini file.
    pub ini: PathBuf,
    server: Server,
}

impl PgBouncer {
    /// Writes `<run_dir>/pgbouncer-<host>/` (ini, userlist, pid and log
    /// files) and starts PgBouncer on `host` in front of `postgres`;
    /// returns once it accepts connections.
    pub fn start(host: &Host, postgres: SocketAddr, run_dir: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        if !Path::new(PGBOUNCER).exists() {
            bail!("no {PGBOUNCER}: install `pgbouncer` (`cargo xtask setup`)");
        }
        let user = system_user()?;
        let dir = run_dir.join(format!("pgbouncer-{}", host.name));
        owned_dir(&dir, user)?;
        let userlist = dir.join("userlist.txt");
        fs::write(&userlist, format!("\"{DB_USER}\" \"\"\n"))?;
        let ini = dir.join("pgbouncer.ini");
        fs::write(
            &ini,
            format!(
                "[databases]\n{DB_NAME} = host={} port={} dbname={DB_NAME}\n\n\
                 [pgbouncer]\nlisten_addr = {}, {}\nlisten_port = {PGBOUNCER_PORT}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {}\npidfile = {}\n\
                 pool_mode = transaction\ndefault_pool_size = 10\nmax_client_conn = 500\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 log_connections = 0\nlog_disconnections = 0\n",
                postgres.ip(),
                postgres.port(),
                host.ipv4,
                host.ipv6,
                userlist.display(),
                dir.join("pgbouncer.pid").display(),
            ),
        )?;
        let log = dir.join("pgbouncer.log");
        let name = format!("pgbouncer-{}", host.name);
        let mut server = Server::spawn(
            &name,
            &host.netns,
            user,
            Path::new(PGBOUNCER),
            &[ini.to_string_lossy().into_owned()],
            &log,
            // Immediate shutdown (SIGINT would wait for clients).
            libc::SIGTERM,
        )?;
        let address = SocketAddr::new(IpAddr::V4(host.ipv4), PGBOUNCER_PORT);
        let netns = host.netns.clone();
        server.wait_ready(|| is_ready(&bin, &netns, address))?;
        Ok(Self {
            host: host.clone(),
            address,
            address_v6: SocketAddr::new(IpAddr::V6(host.ipv6), PGBOUNCER_PORT),
            ini,
            server,
        })
    }

    /// Whether PgBouncer still runs.
    pub fn is_running(&mut self) -> bool {
        self.server.is_running()
    }

    /// Kills PgBouncer with SIGKILL (a crash: its clients' connections
    /// are reset) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.server.child.kill()?;
        self.server.child.wait()?;
        Ok(())
    }
}
