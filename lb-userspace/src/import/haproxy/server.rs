//! HAProxy's `server` and `default-server` lines: an address, then
//! keywords, some with one argument. The keywords lbd has a meaning for
//! are read; every other one is named in a note.

use std::{net::IpAddr, time::Duration};

use super::lexer::{time, Line};
use crate::import::model::{Backend, Note, Origin, Role, Sourced};
use crate::import::ImportError;

/// Server keywords that take no argument (HAProxy 2.x `server` and
/// `default-server` keywords): any other keyword is read with its value,
/// so a flag missing here would swallow the keyword after it.
const FLAGS: &[&str] = &[
    "check",
    "no-check",
    "backup",
    "no-backup",
    "disabled",
    "enabled",
    "ssl",
    "no-ssl",
    "check-ssl",
    "no-check-ssl",
    "send-proxy",
    "send-proxy-v2",
    "send-proxy-v2-ssl",
    "send-proxy-v2-ssl-cn",
    "no-send-proxy",
    "no-send-proxy-v2",
    "agent-check",
    "no-agent-check",
    "non-stick",
    "stick",
    "no-send-proxy-v2-ssl",
    "no-send-proxy-v2-ssl-cn",
    "check-send-proxy",
    "no-check-send-proxy",
    "tfo",
    "no-tfo",
    "allow-0rtt",
    "no-tls-tickets",
    "tls-tickets",
    "ssl-reuse",
    "no-ssl-reuse",
    "renegotiate",
    "no-renegotiate",
    "force-sslv3",
    "force-tlsv10",
    "force-tlsv11",
    "force-tlsv12",
    "force-tlsv13",
    "no-tlsv10",
    "no-tlsv11",
    "no-tlsv12",
    "no-tlsv13",
    "no-sslv3",
    "no-verifyhost",
    "check-via-socks4",
];

/// A note on a server keyword, with the keyword that made it: a later
/// keyword (the server's own line after `default-server`'s) replaces it
/// (`maxconn 200` after `maxconn 100`) or cancels it (`no-ssl` after
/// `ssl`), so no server is told about a setting it does not have.
#[derive(Debug, Clone)]
struct KeywordNote {
    keyword: String,
    /// Made by a `default-server` line (said as inherited by the server).
    inherited: bool,
    note: Note,
}

/// The keywords of a server (or of `default-server`) lbd uses.
#[derive(Debug, Clone, Default)]
pub(super) struct ServerParams {
    pub(super) weight: Option<Sourced<u32>>,
    pub(super) check: bool,
    pub(super) inter: Option<Sourced<Duration>>,
    pub(super) fastinter: Option<Sourced<Duration>>,
    pub(super) rise: Option<Sourced<u32>>,
    pub(super) fall: Option<Sourced<u32>>,
    pub(super) check_port: Option<Sourced<u16>>,
    /// `addr`: HAProxy sends the check to that address (so `ssl` does not
    /// make it a TLS check); lbd checks the server's own address.
    pub(super) check_addr: Option<String>,
    /// `ssl`: the server speaks TLS (and, unless `port` or `addr` is
    /// given, so do HAProxy's checks).
    pub(super) ssl: Option<Origin>,
    /// `check-ssl` (true) or `no-check-ssl` (false), where written.
    pub(super) check_ssl: Option<(bool, Origin)>,
    pub(super) backup: Option<Origin>,
    pub(super) disabled: Option<Origin>,
    /// `slowstart`: how long HAProxy ramped the server up when it came
    /// back (0: off, so that a server's `slowstart 0` undoes its
    /// default-server's).
    pub(super) slow_start: Option<Sourced<Duration>>,
    notes: Vec<KeywordNote>,
}

impl ServerParams {
    /// Where HAProxy makes this server's checks over TLS: `check-ssl`
    /// (unless `no-check-ssl` came after it), or `ssl` when no `port` or
    /// `addr` sends the check elsewhere.
    pub(super) fn haproxy_tls_check(&self) -> Option<&Origin> {
        match &self.check_ssl {
            Some((true, at)) => Some(at),
            Some((false, _)) => None,
            None if self.check_port.is_none() && self.check_addr.is_none() => self.ssl.as_ref(),
            None => None,
        }
    }

    /// Where lbd's check of this server meets TLS (which lbd's checks do
    /// not speak): where HAProxy's check is TLS, and also with `ssl` and
    /// `addr` but no `port`: HAProxy checks that other address in the
    /// clear, but lbd ignores `addr` and checks the server's own port,
    /// which speaks TLS. `port` moves lbd's check as it does HAProxy's.
    pub(super) fn tls_check(&self) -> Option<&Origin> {
        match &self.check_ssl {
            Some((true, at)) => Some(at),
            Some((false, _)) => None,
            None if self.check_port.is_none() => self.ssl.as_ref(),
            None => None,
        }
    }

    /// Adds the note of `keyword`.
    fn note(&mut self, keyword: &str, origin: &Origin, text: impl Into<String>) {
        self.notes.push(KeywordNote {
            keyword: keyword.to_owned(),
            inherited: false,
            note: Note::new(origin, text),
        });
    }

    /// Drops the notes `keyword` makes void: its own earlier ones (it
    /// is set again), its opposite's (`no-ssl` and `ssl`, `non-stick`
    /// and `stick`), and with `no-check` those of check settings.
    fn forget(&mut self, keyword: &str) {
        let opposite = match keyword {
            "non-stick" => "stick".to_owned(),
            "stick" => "non-stick".to_owned(),
            _ => keyword
                .strip_prefix("no-")
                .map_or_else(|| format!("no-{keyword}"), str::to_owned),
        };
        let unchecked = keyword == "no-check";
        self.notes.retain(|n| {
            n.keyword != keyword
                && n.keyword != opposite
                && !(unchecked && matches!(n.keyword.as_str(), "addr" | "downinter"))
        });
    }
}

/// A server line, read.
#[derive(Debug, Clone)]
pub(super) struct Server {
    pub(super) backend: Backend,
    pub(super) params: ServerParams,
    pub(super) check_enabled: bool,
}

/// Reads `server NAME ADDRESS[:PORT] [keywords]`, starting from the
/// proxy's `default-server` keywords.
pub(super) fn server(
    file: &str,
    line: &Line,
    defaults: &ServerParams,
) -> Result<Server, ImportError> {
    let origin = Origin::new(file, line.no);
    let (Some(name), Some(spec)) = (line.words.get(1), line.words.get(2)) else {
        return Err(ImportError::at(
            file,
            line.no,
            "server needs a name and an address",
        ));
    };
    let (address, port) = address(spec)
        .map_err(|reason| ImportError::at(file, line.no, format!("server {name}: {reason}")))?;
    let mut params = defaults.clone();
    for note in &mut params.notes {
        note.inherited = true;
    }
    self::params(file, line, 3, &mut params)?;
    // What `default-server` gave this server and lbd cannot carry over is
    // said for it too (unless its own line sets it again or cancels it).
    let notes: Vec<Note> = params
        .notes
        .iter()
        .map(|n| match n.inherited {
            true => Note::new(
                &n.note.origin,
                format!(
                    "{} (default-server, inherited by server {name})",
                    n.note.text
                ),
            ),
            false => n.note.clone(),
        })
        .collect();
    let role = match (&params.disabled, &params.backup) {
        (Some(at), _) => Role::Disabled(at.clone()),
        (None, Some(at)) => Role::Backup(at.clone()),
        (None, None) => Role::Active,
    };
    let backend = Backend {
        weight: params.weight.clone(),
        slow_start: params.slow_start.clone().filter(|s| !s.value.is_zero()),
        role,
        notes,
        ..Backend::named(name.clone(), address, port, origin.clone(), line.text())
    };
    Ok(Server {
        backend,
        check_enabled: params.check,
        params,
    })
}

/// `ADDRESS[:PORT]`, `[V6]:PORT`, `ipv6@V6:PORT`: the address and the
/// port (None: the VIP's). As HAProxy does, an unbracketed address is
/// split at its last ':' (`2001:2::12:6432` is 2001:2::12 port 6432), so
/// an IPv6 address without a port must be bracketed or end with ':'.
pub(super) fn address(spec: &str) -> Result<(IpAddr, Option<u16>), String> {
    let spec = spec
        .strip_prefix("ipv4@")
        .or_else(|| spec.strip_prefix("ipv6@"))
        .unwrap_or(spec);
    if let Ok(address) = spec.parse::<std::net::Ipv4Addr>() {
        return Ok((IpAddr::V4(address), None));
    }
    if let Some(inner) = spec.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let address = inner.parse().map_err(|_| {
            format!(
                "{inner:?} is not an IP address (lbd balances to addresses: write the server's)"
            )
        })?;
        return Ok((address, None));
    }
    let (host, port) = spec.rsplit_once(':').ok_or_else(|| {
        format!("{spec:?} is not an IP address (lbd balances to addresses: write the server's)")
    })?;
    let host = crate::import::unbracketed(host);
    let address: IpAddr = host.parse().map_err(|_| {
        if spec.parse::<IpAddr>().is_ok() {
            format!(
                "{spec:?}: HAProxy reads what follows the last ':' as the port (and refuses {host:?}); write [{spec}] or {spec}: for the VIP's port, [{spec}]:PORT for another"
            )
        } else {
            format!("{host:?} is not an IP address (lbd balances to addresses: write the server's)")
        }
    })?;
    if port.is_empty() {
        return Ok((address, None));
    }
    if port.starts_with('+') || port.starts_with('-') {
        return Err(format!(
            "port {port}: a port offset has no lbd equivalent; write the port"
        ));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{port:?} is not a port"))?;
    Ok((address, Some(port)))
}

/// Reads the keywords of `line` from word `start` on into `params`.
pub(super) fn params(
    file: &str,
    line: &Line,
    start: usize,
    params: &mut ServerParams,
) -> Result<(), ImportError> {
    let origin = Origin::new(file, line.no);
    let mut words = line.words[start.min(line.words.len())..].iter();
    while let Some(keyword) = words.next() {
        let keyword = keyword.as_str();
        params.forget(keyword);
        if FLAGS.contains(&keyword) {
            match keyword {
                "check" => params.check = true,
                "no-check" => params.check = false,
                "backup" => params.backup = Some(origin.clone()),
                "no-backup" => params.backup = None,
                "disabled" => params.disabled = Some(origin.clone()),
                "enabled" => params.disabled = None,
                "send-proxy" | "send-proxy-v2" | "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => {
                    params.note(
                        keyword,
                        &origin,
                        format!("WARNING: {keyword}: HAProxy sent this server a PROXY protocol header with the client's address; lbd sends none, so a server that requires one (accept-proxy) refuses every connection through lbd: turn that off on it (in dsr-l2 mode it sees the client's address itself; in nat mode, the NAT address)"),
                    )
                }
                "ssl" => {
                    params.ssl = Some(origin.clone());
                    params.note(
                        keyword,
                        &origin,
                        "ssl: HAProxy speaks TLS to this server; through lbd the client's own connection reaches it",
                    )
                }
                "no-ssl" => params.ssl = None,
                "check-ssl" => params.check_ssl = Some((true, origin.clone())),
                "no-check-ssl" => params.check_ssl = Some((false, origin.clone())),
                "agent-check" => params.note(
                    keyword,
                    &origin,
                    "agent-check: lbd has no agent checks; set weights with `lbctl backend weight`",
                ),
                _ => params.note(keyword, &origin, format!("{keyword}: not carried over")),
            }
            continue;
        }
        let Some(value) = words.next() else {
            return Err(ImportError::at(
                file,
                line.no,
                format!("{keyword} needs a value"),
            ));
        };
        let what = format!("{keyword} {value}");
        let bad = |expected: &str| {
            ImportError::at(
                file,
                line.no,
                format!("{what}: {value:?} is not {expected}"),
            )
        };
        let duration = || time(value).ok_or_else(|| bad("a time such as 2s or 500ms"));
        let count = || value.parse::<u32>().map_err(|_| bad("a number"));
        match keyword {
            "weight" => {
                let weight = value
                    .parse::<u32>()
                    .ok()
                    .filter(|w| *w <= 256)
                    .ok_or_else(|| bad("a weight of 0 to 256"))?;
                params.weight = Some(Sourced::new(weight, &origin, what));
            }
            "inter" => params.inter = Some(Sourced::new(duration()?, &origin, what)),
            "fastinter" => params.fastinter = Some(Sourced::new(duration()?, &origin, what)),
            "downinter" => params.note(
                keyword,
                &origin,
                format!("{what}: lbd checks a down backend every interval (every fast interval only while a check disagrees with its state)"),
            ),
            "on-marked-down" if value == "shutdown-sessions" => params.note(
                keyword,
                &origin,
                format!("WARNING: {what}: lbd does not cut a backend's connections when its checks fail: they go on to it until they end (remove the backend to end them), so clients of a server taken out of service (a demoted primary) must reconnect by themselves"),
            ),
            "on-marked-up" if value == "shutdown-backup-sessions" => params.note(
                keyword,
                &origin,
                format!("WARNING: {what}: lbd does not cut the connections of backups when an active server comes back: they go on to the backup until they end"),
            ),
            "rise" => params.rise = Some(Sourced::new(count()?, &origin, what)),
            "fall" => params.fall = Some(Sourced::new(count()?, &origin, what)),
            "port" => {
                let port = crate::import::port_number(value).ok_or_else(|| bad("a port"))?;
                params.check_port = Some(Sourced::new(port, &origin, what));
            }
            "addr" => {
                params.check_addr = Some(value.clone());
                params.note(
                    keyword,
                    &origin,
                    format!("{what}: lbd checks the backend's own address"),
                )
            }
            "maxconn" | "minconn" | "maxqueue" => params.note(
                keyword,
                &origin,
                format!("{what}: lbd forwards packets and limits no connections"),
            ),
            // The VIP's slow_start_s, made in join from its servers'.
            "slowstart" => params.slow_start = Some(Sourced::new(duration()?, &origin, what)),
            "cookie" => params.note(
                keyword,
                &origin,
                format!(
                    "{what}: no cookie persistence at L4; each connection stays on its backend"
                ),
            ),
            "verify" if value == "required" => params.note(
                keyword,
                &origin,
                format!("{what}: HAProxy verified this server's certificate, in its checks too; lbd's checks over TLS (tls = true) verify none: a handshake with any certificate passes"),
            ),
            "ca-file" => params.note(
                keyword,
                &origin,
                format!("{what}: not carried over: lbd's checks over TLS (tls = true) verify no certificate"),
            ),
            "check-sni" => params.note(
                keyword,
                &origin,
                format!("{what}: not carried over: HAProxy sent it as its check's SNI only; lbd's HTTP check over TLS sends its host as SNI (host also sets the Host header), a TCP check none"),
            ),
            _ => params.note(keyword, &origin, format!("{what}: not carried over")),
        }
    }
    Ok(())
}
