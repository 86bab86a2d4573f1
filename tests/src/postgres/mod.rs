//! The database seed scenario's real components (issue 12): a PostgreSQL
//! server and PgBouncer instances (the Debian packages) started as
//! processes inside the lab's namespaces, and a `pgbench` driver that runs
//! from the client and reports what happened as typed numbers.
//!
//! Both servers refuse to run as root, so they run as the Debian
//! `postgres` system user; their data, config, pid and log files live in
//! the lab's run directory and they listen only on their host's lab
//! addresses (no Unix sockets), so labs running side by side never meet.
//! The hosts stay unmodified: nothing on `lo`, no sysctls. Every server is
//! stopped and waited for when its handle drops, also when a test fails.

mod pgbench;
mod pgbouncer;
mod postgres_server;
mod psql;
mod report;
mod server;
mod stack;

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context as _};

use crate::topology::{Attach, NetworkSpec, Topology};

pub use pgbench::{Length, Pgbench, Run};
pub use pgbouncer::PgBouncer;
pub use postgres_server::Postgres;
pub use psql::query;
pub use report::{parse_report, Progress, Report};
pub use stack::PgStack;

/// Port PostgreSQL listens on.
pub const POSTGRES_PORT: u16 = 5432;
/// Port every PgBouncer listens on (and a NAT VIP in front of them).
pub const PGBOUNCER_PORT: u16 = 6432;
/// The role pgbench connects as (the cluster's bootstrap superuser).
pub const DB_USER: &str = "pgbench";
/// The database pgbench works in.
pub const DB_NAME: &str = "postgres";

/// The routed lab of the seed scenario: `Topology::routed` with `lbs` LB
/// nodes and `bouncers` unmodified backend hosts (`b1` ..., the
/// PgBouncers), plus one more host (the last backend, the database) on a
/// network of its own (198.19.3.0/24, 2001:2:0:3::/64) behind router `r2`,
/// so the PgBouncers reach PostgreSQL through a router too.
pub fn seed_topology(lbs: usize, bouncers: usize, static_vip: bool) -> Topology {
    let mut topology = Topology::routed(lbs, bouncers + 1, static_vip);
    let r2 = topology
        .routers
        .iter()
        .position(|r| r.name == "r2")
        .unwrap_or(topology.routers.len().saturating_sub(1));
    let db_network = topology.networks.len();
    topology.networks.push(NetworkSpec {
        name: "db".to_owned(),
        ipv4: Ipv4Addr::new(198, 19, 3, 0),
        ipv6: Ipv6Addr::new(0x2001, 2, 0, 3, 0, 0, 0, 0),
        gateway: Some(r2),
    });
    if let Some(router) = topology.routers.get_mut(r2) {
        router.legs.push(Attach {
            network: db_network,
            host: 1,
        });
    }
    if let Some(db) = topology.backends.last_mut() {
        *db = Attach {
            network: db_network,
            host: 10,
        };
    }
    topology
}

/// The directory of the installed PostgreSQL's programs: Debian puts them
/// in `/usr/lib/postgresql/<major>/bin`; the highest major present wins.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let majors = fs::read_dir(root).with_context(|| {
        format!(
            "reading {}: is PostgreSQL installed (`cargo xtask setup`)?",
            root.display()
        )
    })?;
    majors
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no /usr/lib/postgresql/<major>/bin/postgres: install `postgresql`"))
}
