//! What the parsers read out of the source files, in one shape for all
//! formats: services (something listening, backends behind it), VRRP
//! instances and notes. Every value keeps where it came from, because the
//! written lbd.toml says so beside each key.

use std::{fmt, net::IpAddr, time::Duration};

use crate::config::Protocol;

/// Where a value was read: the file, the line and the words there, so an
/// operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The file as named on the command line.
    pub(crate) file: String,
    /// 1-based line.
    pub(crate) line: usize,
}

impl Origin {
    pub(crate) fn new(file: &str, line: usize) -> Self {
        Self {
            file: file.to_owned(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A value and where it came from (`what` is the source's own words, e.g.
/// `inter 2s`, shown in the comment).
#[derive(Debug, Clone)]
pub(crate) struct Sourced<T> {
    pub(crate) value: T,
    pub(crate) origin: Origin,
    pub(crate) what: String,
}

impl<T> Sourced<T> {
    pub(crate) fn new(value: T, origin: &Origin, what: impl Into<String>) -> Self {
        Self {
            value,
            origin: origin.clone(),
            what: what.into(),
        }
    }

    /// The provenance comment: `file:line (words)`.
    pub(crate) fn comment(&self) -> String {
        if self.what.is_empty() {
            self.origin.to_string()
        } else {
            format!("{} ({})", self.origin, self.what)
        }
    }
}

/// Equal when the values are: two servers with the same `inter` on
/// different lines share one check.
impl<T: PartialEq> PartialEq for Sourced<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// Equal by value as above, so a kind that holds one (an HTTP check's
/// `expect_body`) compares as its values do.
impl<T: Eq> Eq for Sourced<T> {}

/// Something the source says that lbd cannot do, or does differently,
/// and why; written as a comment where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) origin: Origin,
    pub(crate) text: String,
}

impl Note {
    pub(crate) fn new(origin: &Origin, text: impl Into<String>) -> Self {
        Self {
            origin: origin.clone(),
            text: text.into(),
        }
    }

    /// The note on a directive that kept each client on one server by
    /// something other than its address (HAProxy `stick on` a cookie or
    /// header, nginx's `sticky`), worded alike for every format: lbd's
    /// affinity hashes each connection, or each client's address, nothing
    /// else.
    pub(crate) fn sticky_by_other_key(origin: &Origin, what: &str) -> Self {
        Self::new(
            origin,
            format!(
                "{what}: stickiness by something other than the client's address is not carried over; lbd hashes each connection, or with affinity = \"source\" each client's address"
            ),
        )
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.text)
    }
}

/// Everything read from the files of one setup.
#[derive(Debug, Default)]
pub(crate) struct Setup {
    pub(crate) services: Vec<Service>,
    pub(crate) vrrp: Vec<Vrrp>,
    /// Notes that belong to no service or instance (global sections).
    pub(crate) notes: Vec<Note>,
    /// keepalived's `global_defs { vrrp_version N }`: the VRRP version
    /// its instances speak (2 when not given), which lbd's VRRPv3 must
    /// match to run beside it.
    pub(crate) vrrp_version: Option<Sourced<u8>>,
}

/// A load-balanced service: an HAProxy frontend/listen with its backend,
/// an nginx upstream (with the server block that uses it, if any), an
/// IPVS virtual_server.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// Its name in the source (`frontend web`, `upstream app`).
    pub(crate) name: String,
    pub(crate) origin: Origin,
    /// Where it listens; empty when the source does not say (an nginx
    /// upstream alone): `--vip` says it then.
    pub(crate) listens: Vec<Listen>,
    pub(crate) backends: Vec<Backend>,
    /// How packets reach the backends, when the source says (IPVS lb_kind).
    pub(crate) forwarding: Option<Sourced<lb_common::Mode>>,
    /// What each of its directives that decide it says of client affinity
    /// (`balance source`, `ip_hash`, `persistence_timeout` say source;
    /// IPVS `mh` with `mh-port` says connection), with their words; join
    /// decides the VIP's from them (none: lbd's default, connection).
    pub(crate) affinity: Vec<Sourced<lb_common::Affinity>>,
    /// Source rules that guard it (nginx `allow`/`deny`, HAProxy `src`
    /// ACLs), as lbd's deny-wins, allow-list semantics can hold them.
    pub(crate) acl: Vec<AclRule>,
    /// Its checks stand for passive failure counting (nginx `max_fails`):
    /// a UDP VIP of it is left unchecked, as lbd's own UDP default.
    pub(crate) passive: Option<Origin>,
    /// Its backup servers take over together when no active server can
    /// (HAProxy's `option allbackups`, nginx always), with why; None:
    /// the first backup alone (HAProxy's default).
    pub(crate) all_backups: Option<String>,
    /// How long the source kept an idle connection (HAProxy's `timeout
    /// tunnel`, else the longer of `timeout client` and `timeout
    /// server`), for lbd's idle timeouts; None: the source does not say.
    pub(crate) idle_timeout: Option<Sourced<Duration>>,
    pub(crate) notes: Vec<Note>,
}

/// One source rule of a service: lbd's `[[acl]]` scoped to its VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclRule {
    /// Allow (an allow list: only matching sources) or deny.
    pub(crate) allow: bool,
    pub(crate) source: crate::guard::rules::Cidr,
    pub(crate) origin: Origin,
    pub(crate) what: String,
}

/// One address and port a service listens on.
#[derive(Debug, Clone)]
pub(crate) struct Listen {
    /// None: every address (`*:80`), of the family in `wildcard_v6`.
    pub(crate) address: Option<IpAddr>,
    /// With `address` None: the wildcard is IPv6's (`:::80`, `[::]:80`).
    pub(crate) wildcard_v6: bool,
    /// With `wildcard_v6`: IPv6 clients only (HAProxy's `v6only`);
    /// otherwise an IPv6 wildcard takes IPv4 clients too (Linux's default).
    pub(crate) v6_only: bool,
    pub(crate) port: u16,
    pub(crate) protocol: Protocol,
    pub(crate) origin: Origin,
    pub(crate) what: String,
}

/// What a server is besides active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Active,
    /// Administratively out (`disabled`, `down`, weight 0).
    Disabled(Origin),
    /// Takes traffic only when every active server is down.
    Backup(Origin),
}

/// One server behind a service.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    /// Its name in the source (HAProxy's server name; else the address).
    pub(crate) name: String,
    pub(crate) address: IpAddr,
    /// The port it listens on; None: the service's.
    pub(crate) port: Option<u16>,
    /// Weight in the source's own scale (`scale` is its default).
    pub(crate) weight: Option<Sourced<u32>>,
    pub(crate) role: Role,
    /// How it is checked; None: not checked.
    pub(crate) check: Option<Check>,
    /// How long the source ramped it up when it came back (HAProxy's
    /// `slowstart`, nginx's `slow_start=`), never zero (zero is off): the
    /// longest of a service's backends is its VIP's `slow_start_s`, lbd's
    /// slow start being per VIP.
    pub(crate) slow_start: Option<Sourced<Duration>>,
    pub(crate) origin: Origin,
    pub(crate) what: String,
    pub(crate) notes: Vec<Note>,
}

impl Backend {
    /// A backend as a source line names it: active, its weight the
    /// source's default, not checked and without notes until the line's
    /// options say otherwise.
    pub(crate) fn named(
        name: String,
        address: IpAddr,
        port: Option<u16>,
        origin: Origin,
        what: String,
    ) -> Self {
        Self {
            name,
            address,
            port,
            weight: None,
            role: Role::Active,
            check: None,
            slow_start: None,
            origin,
            what,
            notes: Vec::new(),
        }
    }

    /// Whether it takes flows as the source says: active, its weight not
    /// 0 (no weight: the source's default, never 0).
    pub(crate) fn usable(&self) -> bool {
        self.role == Role::Active && self.weight.as_ref().is_none_or(|w| w.value > 0)
    }
}

/// Leaves new flows to the usable servers of `backends` at the indices
/// `keep`, and gives the other usable ones weight 0 (said by `what`, the
/// source's failover scheduler, which the caller warns of): a failover
/// order (IPVS `fo`, HAProxy `balance first`) lbd's Maglev cannot keep,
/// and which a weighted split of all of them would not keep either.
/// Returns the names of those kept.
pub(crate) fn keep_only(
    backends: &mut [Backend],
    keep: &[usize],
    at: &Origin,
    what: &str,
) -> Vec<String> {
    let mut kept = Vec::new();
    for (i, backend) in backends.iter_mut().enumerate() {
        if !backend.usable() {
            continue;
        }
        if keep.contains(&i) {
            kept.push(backend.name.clone());
            continue;
        }
        let was = backend
            .weight
            .as_ref()
            .map_or_else(|| "the default weight".to_owned(), |w| w.what.clone());
        backend.weight = Some(Sourced::new(
            0,
            at,
            format!("{what}: a failover server ({was}), weight 0"),
        ));
    }
    kept
}

/// The kind of an active check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckKind {
    /// A TCP connection.
    Tcp,
    /// An HTTP GET of `path`.
    Http {
        path: String,
        host: Option<String>,
        expect_status: u16,
        /// Text the body must contain too (lbd's `expect_body`), with
        /// where the source asks it.
        expect_body: Option<Sourced<String>>,
    },
    /// A PostgreSQL StartupMessage as `user` (HAProxy's `option
    /// pgsql-check user X`, lbd's `check = "pgsql"`): a server still
    /// starting up, in recovery or refusing the database fails it, where
    /// a TCP connect passes.
    Pgsql { user: String },
}

/// A backend's check with HAProxy's meaning of the timings; None means
/// lbd's default.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) kind: Sourced<CheckKind>,
    pub(crate) port: Option<Sourced<u16>>,
    pub(crate) interval: Option<Sourced<Duration>>,
    pub(crate) fast_interval: Option<Sourced<Duration>>,
    pub(crate) timeout: Option<Sourced<Duration>>,
    pub(crate) rise: Option<Sourced<u32>>,
    pub(crate) fall: Option<Sourced<u32>>,
    /// The check is made over TLS (lbd's `tls = true`), with where the
    /// source says so (HAProxy's `check-ssl` / `ssl`, keepalived's
    /// `SSL_GET`).
    pub(crate) tls: Option<Sourced<bool>>,
}

impl Check {
    /// A check of `kind` with lbd's default timings.
    pub(crate) fn new(kind: Sourced<CheckKind>) -> Self {
        Self {
            kind,
            port: None,
            interval: None,
            fast_interval: None,
            timeout: None,
            rise: None,
            fall: None,
            tls: None,
        }
    }
}

/// A keepalived vrrp_instance.
#[derive(Debug, Clone)]
pub(crate) struct Vrrp {
    pub(crate) name: String,
    pub(crate) origin: Origin,
    pub(crate) interface: Option<Sourced<String>>,
    pub(crate) vrid: Option<Sourced<u8>>,
    pub(crate) priority: Option<Sourced<u8>>,
    pub(crate) advert_interval: Option<Sourced<Duration>>,
    pub(crate) preempt: Option<Sourced<bool>>,
    pub(crate) preempt_delay: Option<Sourced<Duration>>,
    /// `garp_master_repeat`: announcement rounds on becoming master.
    pub(crate) announce_count: Option<Sourced<u32>>,
    /// `garp_master_refresh`: announcing again this often while master.
    pub(crate) announce_refresh: Option<Sourced<Duration>>,
    pub(crate) addresses: Vec<Sourced<IpAddr>>,
    /// The `dev` of each address that names one (`203.0.113.10/24 dev
    /// eth1`): keepalived put the address there, not on `interface`
    /// (the adverts'); join refuses or warns where lbd's one interface
    /// is another.
    pub(crate) address_devs: Vec<(IpAddr, Sourced<String>)>,
    /// `state`, where written (MASTER or BACKUP): with MASTER keepalived
    /// clears nopreempt and preempt_delay, and gives an instance without
    /// a priority 255.
    pub(crate) state: Option<Sourced<String>>,
    pub(crate) unicast_peers: Vec<Sourced<IpAddr>>,
    /// `unicast_src_ip`: the address adverts to the unicast peers go from
    /// (the one the peers' `unicast_peer` lists name).
    pub(crate) unicast_src_ip: Option<Sourced<IpAddr>>,
    pub(crate) notify: Option<Sourced<String>>,
    /// Priority lost while lbd's interface is down.
    pub(crate) track_interface: Option<Sourced<u8>>,
    /// Priority lost while the data plane is not attached (from the
    /// track_scripts that watched the proxy process lbd replaces: their
    /// weights added, as keepalived does when they all fail, at most 254).
    pub(crate) track_dataplane: Option<Sourced<u8>>,
    /// The instance's own `version N` (over global_defs' `vrrp_version`).
    pub(crate) version: Option<Sourced<u8>>,
    /// Those of `addresses` from `virtual_ipaddress_excluded`: moved but
    /// left out of keepalived's adverts (lbd advertises every address).
    pub(crate) excluded: Vec<IpAddr>,
    /// The proxy track_scripts of a positive weight (where, name,
    /// weight): keepalived raised the priority by it while the proxy ran.
    pub(crate) raised: Vec<(Origin, String, u8)>,
    pub(crate) notes: Vec<Note>,
}
