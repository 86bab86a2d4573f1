//! What a virtual_server says of client affinity: IPVS persistence
//! (`persistence_timeout`, `persistence_granularity`) and the source
//! hashing schedulers (`lb_algo sh|mh`) are lbd's source affinity, unless
//! a port flag (`sh-port`, `mh-port`, `flag-2`) made the hash one of each
//! connection.

use crate::import::blocks::Statement;
use crate::import::keepalived::number;
use crate::import::model::{Note, Origin, Service, Sourced};
use crate::import::ImportError;
use lb_common::Affinity;

/// keepalived's persistence timeout where a virtual_server names none
/// (`persistence_timeout` alone, or `persistence_granularity` without
/// it): IPVS_SVC_PERSISTENT_TIMEOUT, 6 minutes.
const DEFAULT_TIMEOUT_S: u32 = 360;

/// The longest `persistence_timeout` keepalived takes (LVS_MAX_TIMEOUT,
/// 31 days).
const MAX_TIMEOUT_S: u32 = 86_400 * 31;

/// A virtual_server's lines on client affinity, read in file order (a
/// port flag applies to the scheduler named before it, as keepalived
/// reads them).
#[derive(Debug, Default)]
pub(super) struct Persistence {
    /// The last `lb_algo` / `lvs_sched` (keepalived keeps the last).
    scheduler: Option<Sourced<String>>,
    /// A flag that makes `sh` or `mh` hash the source port too.
    port_flag: Option<Sourced<()>>,
    timeout: Option<Sourced<u32>>,
    /// `persistence_granularity`: a netmask (IPv4) or prefix length
    /// (IPv6), and whether it is the whole address.
    granularity: Option<Sourced<bool>>,
}

impl Persistence {
    /// Records the scheduler an `lb_algo` / `lvs_sched` line names.
    pub(super) fn scheduler(&mut self, at: &Origin, statement: &Statement) {
        if let [algo] = statement.args() {
            self.scheduler = Some(Sourced::new(algo.clone(), at, statement.text()));
        }
    }

    /// Reads `statement` if it is a line of persistence or a port flag;
    /// false when it is neither. Notes a flag keepalived ignores.
    pub(super) fn read(
        &mut self,
        file: &str,
        statement: &Statement,
        notes: &mut Vec<Note>,
    ) -> Result<bool, ImportError> {
        let at = Origin::new(file, statement.line);
        let scheduler = self.scheduler.as_ref().map(|s| s.value.as_str());
        match statement.name() {
            "persistence_timeout" => {
                let seconds = match statement.args() {
                    [] => DEFAULT_TIMEOUT_S,
                    _ => number(file, statement, 1..=MAX_TIMEOUT_S)?,
                };
                self.timeout = Some(Sourced::new(seconds, &at, statement.text()));
            }
            "persistence_granularity" => {
                let whole = whole_address(file, statement)?;
                self.granularity = Some(Sourced::new(whole, &at, statement.text()));
            }
            "flag-2" => self.port_flag = Some(Sourced::new((), &at, statement.text())),
            flag @ ("sh-port" | "mh-port") => {
                if scheduler == flag.strip_suffix("-port") {
                    self.port_flag = Some(Sourced::new((), &at, statement.text()));
                } else {
                    notes.push(Note::new(
                        &at,
                        format!(
                            "{flag}: keepalived applies it only after lb_algo {}, and ignores it here: not carried over",
                            flag.trim_end_matches("-port")
                        ),
                    ));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// What the lines read say of `service`'s client affinity, with the
    /// NOTEs where lbd's differs.
    pub(super) fn apply(self, service: &mut Service) {
        let hashing = self
            .scheduler
            .as_ref()
            .filter(|s| matches!(s.value.as_str(), "sh" | "mh"));
        match (hashing, &self.port_flag) {
            (Some(scheduler), Some(flag)) => {
                let what = format!("{}, {}", scheduler.what, flag.what);
                service.notes.push(Note::new(
                    &scheduler.origin,
                    format!(
                        "{what}: IPVS hashed each connection's source address and port; lbd's Maglev hashes each connection (weights kept)"
                    ),
                ));
                service
                    .affinity
                    .push(Sourced::new(Affinity::Connection, &scheduler.origin, what));
            }
            (Some(scheduler), None) => service.affinity.push(Sourced::new(
                Affinity::Source,
                &scheduler.origin,
                scheduler.what.clone(),
            )),
            (None, Some(flag)) => service.notes.push(Note::new(
                &flag.origin,
                format!(
                    "{}: a flag of the sh and mh schedulers: not carried over",
                    flag.what
                ),
            )),
            (None, None) => {}
        }
        let (at, what, seconds) = match (&self.timeout, &self.granularity) {
            (Some(t), _) => (&t.origin, t.what.clone(), t.value),
            (None, Some(g)) => (
                &g.origin,
                format!("{} (persistence_timeout: keepalived's default)", g.what),
                DEFAULT_TIMEOUT_S,
            ),
            (None, None) => return,
        };
        service.notes.push(Note::new(
            at,
            format!(
                "{what}: IPVS kept each client on its real server until {seconds} s after its last connection, even across weight changes; lbd's source affinity follows the hash: a backend or weight change moves the clients whose Maglev slots change (established connections stay)"
            ),
        ));
        service
            .affinity
            .push(Sourced::new(Affinity::Source, at, what));
        if let Some(g) = self.granularity.filter(|g| !g.value) {
            service.notes.push(Note::new(
                &g.origin,
                format!(
                    "{}: IPVS kept the clients of one such prefix together on one real server; lbd hashes each client's whole address, so they may go to different backends",
                    g.what
                ),
            ));
        }
    }
}

/// Whether a `persistence_granularity` (an IPv4 netmask, or an IPv6
/// prefix length 1..=128, as keepalived reads it) is the whole address;
/// refused at its line when it is neither.
fn whole_address(file: &str, statement: &Statement) -> Result<bool, ImportError> {
    let bad = || {
        ImportError::at(
            file,
            statement.line,
            format!(
                "{}: not an IPv4 netmask or an IPv6 prefix length (1..=128)",
                statement.text()
            ),
        )
    };
    let [value] = statement.args() else {
        return Err(bad());
    };
    if value.contains('.') {
        let mask: std::net::Ipv4Addr = value.parse().map_err(|_| bad())?;
        return Ok(mask == std::net::Ipv4Addr::BROADCAST);
    }
    let length: u8 = value
        .parse()
        .ok()
        .filter(|l| (1..=128).contains(l))
        .ok_or_else(bad)?;
    Ok(length == 128)
}
