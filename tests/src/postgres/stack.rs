//! The seed scenario's database side started in one call: PostgreSQL and
//! the PgBouncers in front of it.

use std::path::Path;

use anyhow::Context as _;

use super::{PgBouncer, Postgres};
use crate::lab::Host;

/// The whole database side of the seed scenario: PostgreSQL on one host
/// and a PgBouncer on each of the others. Dropping it stops the
/// PgBouncers first (fields drop in order), then PostgreSQL.
pub struct PgStack {
    /// The PgBouncers, in host order.
    pub bouncers: Vec<PgBouncer>,
    /// The server behind them.
    pub postgres: Postgres,
}

impl PgStack {
    /// Starts PostgreSQL on `db` and a PgBouncer on every host of
    /// `bouncers`, their files under `run_dir` (the lab's directory).
    pub fn start(db: &Host, bouncers: &[Host], run_dir: &Path) -> anyhow::Result<Self> {
        let postgres = Postgres::start(db, run_dir).context("starting PostgreSQL")?;
        let bouncers = bouncers
            .iter()
            .map(|host| {
                PgBouncer::start(host, postgres.address, run_dir)
                    .with_context(|| format!("starting PgBouncer on {}", host.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { bouncers, postgres })
    }
}
