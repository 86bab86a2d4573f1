//! One-off SQL statements through `psql`, for tests that check what the
//! database holds.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use super::{bin_dir, DB_NAME, DB_USER};

/// Runs one SQL statement with `psql` from `netns` against `target`;
/// returns its rows unaligned, one a line, columns split by `|`.
pub fn query(netns: &str, target: SocketAddr, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin_dir()?.join("psql"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(target.ip().to_string())
        .arg("-p")
        .arg(target.port().to_string())
        .args(["-U", DB_USER, "-d", DB_NAME, "-c", sql])
        .env("LC_ALL", "C")
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", "disable")
        .stdin(Stdio::null())
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} against {target} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
