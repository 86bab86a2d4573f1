//! The settings of a proxy section that are not its own lines of binds
//! and servers: mode, health-check options and timeouts, `default-server`,
//! `disabled`; also what a `defaults` section gives the proxies after it.

use std::time::Duration;

use super::lexer::{time, Line};
use super::server::{self, ServerParams};
use crate::import::model::{Note, Origin, Sourced};
use crate::import::ImportError;

/// An HTTP check as `option httpchk` / `http-check` set it.
#[derive(Debug, Clone, Default)]
pub(super) struct HttpCheck {
    pub(super) origin: Option<Origin>,
    pub(super) what: String,
    pub(super) method: Option<String>,
    pub(super) path: Option<String>,
    pub(super) host: Option<String>,
}

/// A protocol check HAProxy speaks and lbd may not (`option pgsql-check`,
/// `mysql-check`, `redis-check`, `smtpchk`, ...): lbd speaks PostgreSQL's
/// when the check names its role, and checks the others as TCP.
#[derive(Debug, Clone)]
pub(super) struct ProtocolCheck {
    /// The option, e.g. `pgsql-check`.
    pub(super) kind: String,
    /// `option pgsql-check user X`: the role the check logs in as (None
    /// for another option, or a pgsql-check that names none).
    pub(super) pgsql_user: Option<String>,
}

/// A `tcp-check` rule line, kept for what lbd's check can take of it (the
/// port of its connection) and for the warning on what it cannot (what
/// is sent and expected).
#[derive(Debug, Clone)]
pub(super) struct TcpRule {
    pub(super) origin: Origin,
    /// The line as written.
    pub(super) what: String,
    /// `tcp-check connect ...`: a connection of the check, not a
    /// conversation on it.
    pub(super) connect: bool,
    /// The words after `connect` (`port 6379`, `ssl`, ...).
    pub(super) options: Vec<String>,
}

/// A `stick on|match|store-request|store-response PATTERN ...` rule.
#[derive(Debug, Clone)]
pub(super) struct StickRule {
    pub(super) origin: Origin,
    /// The line as written.
    pub(super) what: String,
    /// `on` or `match`: a client found in the table goes to its server
    /// (`store-*` only records).
    pub(super) matches: bool,
    /// Its pattern is the client's address (`src`).
    pub(super) on_source: bool,
}

/// The settings of a proxy that its servers' checks and the notes use,
/// inherited from the last `defaults` section.
#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    pub(super) mode: Option<Sourced<String>>,
    pub(super) http_check: Option<HttpCheck>,
    /// `option pgsql-check` and friends: protocol checks lbd does as TCP.
    pub(super) protocol_check: Option<Sourced<ProtocolCheck>>,
    /// `option tcp-check`: the proxy's `tcp-check` rules are what its
    /// checks do.
    pub(super) tcp_check: Option<Sourced<String>>,
    /// The `tcp-check` rules, in order.
    pub(super) tcp_rules: Vec<TcpRule>,
    /// The `http-check` rules (`connect`, `send`, `expect`), in order:
    /// a first `connect` opens the HTTP check's connection (its `port`
    /// is the port checked, its `ssl` makes the check TLS), as a first
    /// `tcp-check connect` does for `option tcp-check`.
    pub(super) http_rules: Vec<TcpRule>,
    /// `stick on|match|store-*` rules: on the client's address (`src`),
    /// client affinity; on anything else, noted as not carried over.
    pub(super) stick_rules: Vec<StickRule>,
    /// A `stick-table` line, with its `expire` (how long HAProxy
    /// remembered a client's server) if it has one: part of the stick
    /// rules that use it, else a directive with no L4 meaning (counters,
    /// rate limits).
    pub(super) stick_table: Option<Sourced<Option<String>>>,
    pub(super) expect_status: Option<Sourced<u16>>,
    /// `http-check expect string TEXT`: lbd's `expect_body`.
    pub(super) expect_body: Option<Sourced<String>>,
    pub(super) timeout_check: Option<Sourced<Duration>>,
    pub(super) timeout_connect: Option<Sourced<Duration>>,
    /// `timeout client`, `timeout server`, `timeout tunnel`: how long
    /// HAProxy kept an idle connection, which lbd's idle timeouts carry
    /// over (see [`Settings::idle_timeout`]).
    pub(super) timeout_client: Option<Sourced<Duration>>,
    pub(super) timeout_server: Option<Sourced<Duration>>,
    pub(super) timeout_tunnel: Option<Sourced<Duration>>,
    pub(super) default_server: ServerParams,
    /// `option allbackups`: every backup server takes over when no
    /// active one can, not only the first.
    pub(super) all_backups: Option<Sourced<()>>,
    /// `balance source`: each client's address hashed to its server,
    /// lbd's `affinity = "source"`.
    pub(super) balance_source: Option<Sourced<()>>,
    /// `balance first`: each connection to the first server (in file
    /// order) that has room; lbd keeps only that one.
    pub(super) balance_first: Option<Sourced<()>>,
    /// The `balance` line's algorithm, and `hash-type`: whether HAProxy's
    /// weights were static, under which `slowstart` ramped no weight.
    pub(super) balance: Option<Sourced<String>>,
    pub(super) hash_type: Option<Sourced<String>>,
    /// `disabled`: HAProxy does not start the proxy (also from defaults).
    pub(super) disabled: Option<Origin>,
    /// `default_backend` of a defaults section: HAProxy gives it to the
    /// frontends and listens after it (not to backends), so that such a
    /// frontend is not skipped as having none.
    pub(super) default_backend: Option<Sourced<String>>,
    pub(super) notes: Vec<Note>,
    /// Directives with no L4 meaning, listed in one note per section.
    pub(super) ignored: Vec<String>,
}

impl Settings {
    /// The stick rules that keep a client on its server by its address
    /// (`stick on src`, `stick match src`): lbd's source affinity.
    pub(super) fn sticky_sources(&self) -> impl Iterator<Item = &StickRule> {
        self.stick_rules.iter().filter(|r| r.matches && r.on_source)
    }

    /// The `balance` line when it makes the servers' weights static
    /// (`static-rr`, or a hash without `hash-type consistent`), under
    /// which HAProxy's `slowstart` ramps a server's connection limit
    /// (`maxconn`) only, not its weight: None for a dynamic algorithm
    /// (`roundrobin`, HAProxy's default, `leastconn`, `random`, `first`).
    pub(super) fn static_weights(&self) -> Option<&Sourced<String>> {
        let balance = self.balance.as_ref()?;
        let algorithm = balance.value.as_str();
        let hashed = matches!(algorithm, "source" | "uri" | "url_param" | "hash")
            || algorithm.starts_with("hdr(")
            || algorithm.starts_with("rdp-cookie");
        let consistent = self
            .hash_type
            .as_ref()
            .is_some_and(|h| h.value == "consistent");
        (algorithm == "static-rr" || (hashed && !consistent)).then_some(balance)
    }

    /// How long HAProxy kept an idle connection of a service whose
    /// frontend (or listen) has `self`'s settings and whose servers are
    /// in `farm` (the same listen, or the backend): the farm's `timeout
    /// tunnel`, which in TCP mode supersedes the others, else the longer
    /// of the frontend's `timeout client` and the farm's `timeout server`.
    /// None when none is set.
    pub(super) fn idle_timeout(&self, farm: &Settings) -> Option<Sourced<Duration>> {
        if let Some(tunnel) = &farm.timeout_tunnel {
            return Some(tunnel.clone());
        }
        match (&self.timeout_client, &farm.timeout_server) {
            (Some(c), Some(s)) if s.value > c.value => Some(s.clone()),
            (Some(c), _) => Some(c.clone()),
            (None, s) => s.clone(),
        }
    }
}

/// A line of settings (also in `defaults`).
pub(super) fn apply(file: &str, line: &Line, settings: &mut Settings) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    let words = &line.words;
    let arg = |i: usize| words.get(i).map(String::as_str);
    if let ("balance", Some(algorithm)) = (words[0].as_str(), arg(1)) {
        settings.balance = Some(Sourced::new(algorithm.to_owned(), &origin, line.text()));
    }
    match (words[0].as_str(), arg(1)) {
        ("mode", Some(mode)) => {
            // log (2.9+) and spop (3.1+) are proxies that serve no clients
            // (a syslog ring's servers, SPOE agents): read, and skipped
            // with a warning where they would be imported.
            if !matches!(mode, "tcp" | "http" | "log" | "spop") {
                return Err(ImportError::at(
                    file,
                    line.no,
                    format!("unknown mode {mode:?}"),
                ));
            }
            settings.mode = Some(Sourced::new(mode.to_owned(), &origin, line.text()));
        }
        // Each client's address hashed to its server: lbd's source
        // affinity, set where the service is made.
        ("balance", Some("source")) => {
            settings.balance_first = None;
            settings.balance_source = Some(Sourced::new((), &origin, line.text()));
        }
        // A failover order, made in join's reading of the servers.
        ("balance", Some("first")) => {
            settings.balance_source = None;
            settings.balance_first = Some(Sourced::new((), &origin, line.text()));
        }
        ("balance", Some(_)) => {
            settings.balance_first = None;
            settings.balance_source = None;
            settings.notes.push(Note::new(
            &origin,
            format!(
                "{}: lbd balances with Maglev consistent hashing of each connection (weights kept), the same on every node and stable when backends come and go",
                line.text()
            ),
        ))
        }
        // How a hashing balance (`source`, `uri`, ...) maps to servers:
        // lbd's Maglev is a consistent hash whatever it says (kept for
        // what it says of slowstart).
        ("hash-type", Some(kind)) => {
            settings.hash_type = Some(Sourced::new(kind.to_owned(), &origin, line.text()));
        }
        ("option", Some("allbackups")) => {
            settings.all_backups = Some(Sourced::new((), &origin, line.text()));
        }
        ("no", Some("option")) if arg(2) == Some("allbackups") => settings.all_backups = None,
        ("stick", Some(kind @ ("on" | "match" | "store-request" | "store-response"))) => {
            settings.stick_rules.push(StickRule {
                origin,
                what: line.text(),
                matches: matches!(kind, "on" | "match"),
                on_source: arg(2) == Some("src"),
            });
        }
        ("stick-table", _) => {
            let expire = words
                .iter()
                .position(|w| w == "expire")
                .and_then(|i| words.get(i + 1))
                .cloned();
            settings.stick_table = Some(Sourced::new(expire, &origin, line.text()));
        }
        ("option", Some("httpchk")) => {
            // option httpchk [<uri>] | [<method> <uri> [<version>]]
            let mut check = HttpCheck {
                origin: Some(origin.clone()),
                what: line.text(),
                ..HttpCheck::default()
            };
            match (arg(2), arg(3)) {
                (Some(uri), None) => check.path = Some(uri.to_owned()),
                (Some(method), Some(uri)) => {
                    check.method = Some(method.to_owned());
                    check.path = Some(uri.to_owned());
                    // HTTP/1.1\r\nHost:\ www: the old way to send a Host.
                    // (the lexer has turned `\r\n` into CR LF, as HAProxy does).
                    if let Some(version) = arg(4) {
                        check.host = version
                            .split('\n')
                            .map(|h| h.trim_end_matches('\r'))
                            .find_map(|h| {
                                h.split_once(':')
                                    .filter(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
                                    .map(|(_, value)| value.trim().to_owned())
                            });
                    }
                }
                _ => {}
            }
            settings.http_check = Some(check);
            settings.protocol_check = None;
            settings.tcp_check = None;
        }
        // The last `option` of a check kind wins, as in HAProxy.
        ("option", Some("tcp-check")) => {
            settings.http_check = None;
            settings.protocol_check = None;
            settings.tcp_check = Some(Sourced::new("tcp-check".to_owned(), &origin, line.text()));
        }
        ("option", Some(kind))
            if kind.ends_with("-check") || matches!(kind, "smtpchk" | "ssl-hello-chk") =>
        {
            settings.http_check = None;
            settings.tcp_check = None;
            // option pgsql-check [ user <username> ]
            let pgsql_user = (kind == "pgsql-check" && arg(2) == Some("user"))
                .then(|| arg(3).map(str::to_owned))
                .flatten();
            let check = ProtocolCheck {
                kind: kind.to_owned(),
                pgsql_user,
            };
            settings.protocol_check = Some(Sourced::new(check, &origin, line.text()));
        }
        ("tcp-check", Some(action)) => settings.tcp_rules.push(TcpRule {
            origin,
            what: line.text(),
            connect: action == "connect",
            options: words[2..].to_vec(),
        }),
        ("http-check", Some(action @ ("connect" | "send" | "expect"))) => {
            settings.http_rules.push(TcpRule {
                origin: origin.clone(),
                what: line.text(),
                connect: action == "connect",
                options: words[2..].to_vec(),
            });
            http_check(&origin, line, settings);
        }
        ("timeout", Some(kind @ ("client" | "server" | "tunnel"))) => {
            let value = arg(2).and_then(time).ok_or_else(|| {
                ImportError::at(
                    file,
                    line.no,
                    format!("timeout {kind} needs a time such as 30s"),
                )
            })?;
            let sourced = Some(Sourced::new(value, &origin, line.text()));
            match kind {
                "client" => settings.timeout_client = sourced,
                "server" => settings.timeout_server = sourced,
                _ => settings.timeout_tunnel = sourced,
            }
        }
        ("timeout", Some(kind @ ("check" | "connect"))) => {
            let value = arg(2).and_then(time).ok_or_else(|| {
                ImportError::at(
                    file,
                    line.no,
                    format!("timeout {kind} needs a time such as 5s"),
                )
            })?;
            let sourced = Some(Sourced::new(value, &origin, line.text()));
            if kind == "check" {
                settings.timeout_check = sourced;
            } else {
                settings.timeout_connect = sourced;
            }
        }
        ("default_backend", name) => {
            let name = name.ok_or_else(|| {
                ImportError::at(file, line.no, "default_backend needs a backend name")
            })?;
            settings.default_backend = Some(Sourced::new(name.to_owned(), &origin, line.text()));
        }
        ("disabled", None) => settings.disabled = Some(origin),
        ("enabled", None) => settings.disabled = None,
        ("default-server", _) => {
            server::params(file, line, 1, &mut settings.default_server)?;
        }
        _ => settings
            .ignored
            .push(format!("{} (line {})", line.text(), line.no)),
    }
    Ok(())
}

/// `http-check expect string TEXT` as lbd's `expect_body`, when lbd's
/// rules take the text (HAProxy's, like lbd's check, looks in the first
/// 16 KiB of the body); else a note that it is not carried over.
fn expect_string(origin: &Origin, line: &Line, text: &str, settings: &mut Settings) {
    let keys = crate::config::HealthKeys {
        expect_body: Some(text.to_owned()),
        ..crate::config::HealthKeys::default()
    };
    match crate::config::check_health_keys(&keys) {
        Ok(()) => {
            settings.expect_body = Some(Sourced::new(text.to_owned(), origin, line.text()));
        }
        Err(e) => settings.notes.push(Note::new(
            origin,
            format!(
                "{}: not carried over ({} {})",
                line.text(),
                e.field,
                e.error
            ),
        )),
    }
}

/// Why an `http-check expect` with the match `match_` (its third word)
/// is not carried over: lbd's check expects one status and one plain
/// text, nothing else HAProxy can match.
fn unmatched_expect(match_: Option<&str>) -> &'static str {
    match match_ {
        Some("!") => "lbd's check has no negated match: it expects one status code and, with `http-check expect string`, a plain text the body contains",
        Some("rstring" | "rstatus") => "lbd matches no regular expression: it expects one status code and, with `http-check expect string`, a plain text the body contains",
        _ => "lbd's check expects one status code (200 unless `http-check expect status N`) and, with `http-check expect string`, a plain text the body contains",
    }
}

/// `http-check expect`'s options that may come before its match, each
/// with one argument: for HAProxy's logs and states, none changes what
/// the match asks of the answer (`min-recv` only how much HAProxy waits
/// for; lbd reads 16 KiB of body whatever it says).
const EXPECT_OPTIONS: [&str; 8] = [
    "min-recv",
    "comment",
    "ok-status",
    "error-status",
    "tout-status",
    "on-success",
    "on-error",
    "status-code",
];

/// The options that change the server's state HAProxy sets (a check
/// that passes may put it in drain, say): lbd's check is up or down.
const EXPECT_STATE_OPTIONS: [&str; 3] = ["ok-status", "error-status", "tout-status"];

/// Where an `http-check expect` line's match begins (index in `words`,
/// after `http-check expect` and its options), with the options that set
/// a state, for a note.
fn expect_match(words: &[String]) -> (usize, Vec<String>) {
    let mut at = 2;
    let mut states = Vec::new();
    while let Some(option) = words
        .get(at)
        .filter(|w| EXPECT_OPTIONS.contains(&w.as_str()))
    {
        if EXPECT_STATE_OPTIONS.contains(&option.as_str()) {
            let value = words.get(at + 1).map_or("", String::as_str);
            states.push(format!("{option} {value}"));
        }
        at += 2;
    }
    (at, states)
}

/// An `http-check send` or `expect` line, read into the HTTP check (a
/// `connect` is read from [`Settings::http_rules`] by the check).
fn http_check(origin: &Origin, line: &Line, settings: &mut Settings) {
    let words = &line.words;
    let arg = |i: usize| words.get(i).map(String::as_str);
    let (at, states) = expect_match(words);
    if arg(1) == Some("expect") && !states.is_empty() {
        settings.notes.push(Note::new(
            origin,
            format!(
                "{}: {} not carried over (lbd's check makes a backend up or down, no other state)",
                line.text(),
                states.join(", ")
            ),
        ));
    }
    match arg(1) {
        Some("expect") => match (arg(at), arg(at + 1)) {
            (Some("status"), Some(code)) => match code.parse::<u16>() {
                // 1xx answers are interim: no check ends with one.
                Ok(code) if (200..=599).contains(&code) => {
                    settings.expect_status = Some(Sourced::new(code, origin, line.text()));
                }
                _ => settings.notes.push(Note::new(
                    origin,
                    format!("{}: lbd expects one status code; 200 is used", line.text()),
                )),
            },
            (Some("string"), Some(text)) => expect_string(origin, line, text, settings),
            (match_, _) => settings.notes.push(Note::new(
                origin,
                format!(
                    "{}: not carried over ({})",
                    line.text(),
                    unmatched_expect(match_)
                ),
            )),
        },
        Some("send") => {
            let check = settings.http_check.get_or_insert_with(HttpCheck::default);
            check.origin = Some(origin.clone());
            check.what = line.text();
            let mut rest = words[2..].iter();
            let mut left: Vec<String> = Vec::new();
            while let Some(key) = rest.next() {
                let value = rest.next().cloned();
                match key.as_str() {
                    "meth" => check.method = value,
                    "uri" => check.path = value,
                    "hdr" => {
                        let header = value.unwrap_or_default();
                        let content = rest.next().cloned();
                        if header.eq_ignore_ascii_case("host") {
                            check.host = content;
                        } else {
                            left.push(format!("hdr {header} {}", content.unwrap_or_default()));
                        }
                    }
                    // A comment for HAProxy's logs only.
                    "comment" => {}
                    // lbd's check speaks HTTP/1.1.
                    "ver" if value.as_deref() == Some("HTTP/1.1") => {}
                    _ => left.push(format!("{key} {}", value.unwrap_or_default())),
                }
            }
            for what in left {
                settings.notes.push(Note::new(
                    origin,
                    format!(
                        "http-check send {}: not carried over (lbd's HTTP check sends GET of a fixed path, HTTP/1.1, with at most a Host header, and no body)",
                        crate::import::write::printable(what.trim_end())
                    ),
                ));
            }
        }
        _ => {}
    }
}
