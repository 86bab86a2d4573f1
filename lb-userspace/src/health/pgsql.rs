//! The PostgreSQL side of a `pgsql` check (HAProxy's `option pgsql-check`):
//! a protocol 3.0 StartupMessage, and the verdict on the server's answer.
//! A server (PostgreSQL or PgBouncer) that asks the client to
//! authenticate is up; one that answers with an error is down, with the
//! error's own words as the reason (e.g. PostgreSQL's "the database system
//! is starting up", PgBouncer's "no such database"), except an error that
//! only says the server is full ([`refuses_for_capacity`]: "too many
//! clients", PgBouncer's `max_client_conn`), which the probe reports as
//! such; one that trusts the
//! check is up once the session has started. Reads are bounded: no
//! answer of a real server to a StartupMessage comes near
//! [`MAX_MESSAGE`], so a longer one is taken for what it is, not read.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::probe::FailureReason;

/// Protocol version 3.0 (major 3, minor 0), as every server since
/// PostgreSQL 7.4 and PgBouncer speak it.
const PROTOCOL_3_0: u32 = 3 << 16;

/// The most of one message a check reads: an authentication request is a
/// few bytes (SASL's lists its mechanisms), an error a few hundred.
const MAX_MESSAGE: usize = 8 * 1024;

/// The most a check reads of a session's start after `AuthenticationOk`
/// (parameters, key data, notices): a server sends about a kilobyte.
const MAX_SESSION_START: usize = 16 * 1024;

/// The Terminate message: the client ends the session.
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];

/// The most of an error field the failure reason keeps: enough for any
/// real message, short enough for a log line.
const MAX_FIELD_CHARS: usize = 256;

/// The check's `application_name`, so that the server's logs and
/// `pg_stat_activity` tell its connections apart from clients'.
const APPLICATION_NAME: &str = "lbd-health-check";

/// The most answer a graceful close reads (what the server sends after an
/// `AuthenticationOk`: parameters, key data, ready-for-query) before it
/// gives up and lets the kernel reset the connection.
const MAX_CLOSE_DRAIN: usize = 16 * 1024;

/// The SQLSTATE class of "insufficient resources": 53300
/// too_many_connections ("sorry, too many clients already", "remaining
/// connection slots are reserved", "too many connections for role" or
/// "for database"), 53200 out_of_memory, 53100 disk_full, 53400
/// configuration_limit_exceeded. PostgreSQL refuses a new session with
/// it and goes on serving the sessions it has.
const INSUFFICIENT_RESOURCES_CLASS: &str = "53";

/// PgBouncer answers every refusal of its own with SQLSTATE 08P01
/// (protocol_violation), its default code, so its client limits are told
/// apart by their message, which PgBouncer does not translate and ends
/// with the setting's name in parentheses: "no more connections allowed
/// (max_client_conn)", "client connections exceeded
/// (max_db_client_connections)" and "... (max_user_client_connections)".
const PGBOUNCER_CODE: &str = "08P01";

/// The endings of PgBouncer's refusals at its client limits (see
/// [`PGBOUNCER_CODE`]).
const PGBOUNCER_LIMITS: [&str; 3] = [
    "(max_client_conn)",
    "(max_db_client_connections)",
    "(max_user_client_connections)",
];

/// Whether an ErrorResponse (its SQLSTATE `code` and `message`) refuses
/// the new session for want of resources only: the server is up and
/// serves its established sessions, it is full. PostgreSQL's SQLSTATE
/// class 53, or PgBouncer's refusal at one of its client limits. Any
/// other error (starting up, no such database, authentication) is not.
pub(super) fn refuses_for_capacity(code: &str, message: &str) -> bool {
    if code.len() == 5 && code.starts_with(INSUFFICIENT_RESOURCES_CLASS) {
        return true;
    }
    code == PGBOUNCER_CODE && PGBOUNCER_LIMITS.iter().any(|l| message.ends_with(l))
}

/// The StartupMessage of a check as `user` (of `database`, or the server's
/// default: the user's name). Fails on a NUL byte, which would end the
/// value early (the config refuses one; this is the probe's own guard).
pub(super) fn startup_message(
    user: &str,
    database: Option<&str>,
) -> Result<Vec<u8>, FailureReason> {
    let mut params: Vec<(&str, &str)> = vec![("user", user)];
    if let Some(database) = database {
        params.push(("database", database));
    }
    params.push(("application_name", APPLICATION_NAME));
    let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
    for (name, value) in params {
        if value.contains('\0') {
            return Err(FailureReason::Pgsql(format!(
                "the check's {name} contains a NUL byte"
            )));
        }
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let length = u32::try_from(body.len() + 4).map_err(|_| {
        FailureReason::Pgsql("the check's StartupMessage is too long to send".to_owned())
    })?;
    let mut message = length.to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    Ok(message)
}

/// Sends `startup` on `stream` and judges the answer. The first message
/// decides: a request for credentials ('R', any method but "OK") passes;
/// an error ('E') fails with its severity, code and message; anything
/// else, a message cut short or longer than [`MAX_MESSAGE`], or a close
/// fails naming what was wrong. An `AuthenticationOk` (a server that
/// trusts the check) is followed by the session's start, which the
/// server can still refuse (PostgreSQL: an unknown database or role):
/// then the rest is read, up to `ReadyForQuery` (passes, and the session
/// is ended with a Terminate) or an error (fails). The caller bounds it
/// in time.
pub(super) async fn exchange<S>(stream: &mut S, startup: &[u8]) -> Result<(), FailureReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(startup)
        .await
        .map_err(|e| io_failure("sending the StartupMessage", &e))?;
    let (kind, body) = read_message(stream, b"RE", "the server answered with").await?;
    if kind == b'E' {
        return Err(error_response(&body));
    }
    let Some(code) = body.get(..4) else {
        return Err(FailureReason::Pgsql(format!(
            "malformed answer: an authentication request of {} bytes, without its 4-byte code",
            body.len()
        )));
    };
    if code != [0, 0, 0, 0] {
        // Credentials asked for: the server took the StartupMessage and
        // would serve once the client proved who it is.
        return Ok(());
    }
    let mut read = 0;
    loop {
        let (kind, body) =
            read_message(stream, b"SKNZE", "after AuthenticationOk the server sent").await?;
        read += 5 + body.len();
        match kind {
            b'Z' => {
                // Ends the session as a client should; the close follows.
                let _ = stream.write_all(&TERMINATE).await;
                return Ok(());
            }
            b'E' => return Err(error_response(&body)),
            _ if read > MAX_SESSION_START => {
                return Err(FailureReason::Pgsql(format!(
                    "malformed answer: more than {MAX_SESSION_START} bytes after AuthenticationOk and no ReadyForQuery"
                )))
            }
            _ => {}
        }
    }
}

/// The names of the message types a check expects, for its errors.
fn expected_names(kinds: &[u8]) -> String {
    let name = |k: &u8| match k {
        b'R' => "an authentication request ('R')",
        b'E' => "an error ('E')",
        b'S' => "a parameter ('S')",
        b'K' => "key data ('K')",
        b'N' => "a notice ('N')",
        b'Z' => "ReadyForQuery ('Z')",
        _ => "?",
    };
    let names: Vec<&str> = kinds.iter().map(name).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Reads one message of one of the types `kinds`: its type byte and its
/// body, at most [`MAX_MESSAGE`] bytes. Another type fails at once (its
/// length is not read: the rest is likely no PostgreSQL message at all),
/// worded after `what`.
async fn read_message<S>(
    stream: &mut S,
    kinds: &[u8],
    what: &str,
) -> Result<(u8, Vec<u8>), FailureReason>
where
    S: AsyncRead + Unpin,
{
    let mut kind = [0u8; 1];
    match stream.read(&mut kind).await {
        Ok(0) => {
            return Err(FailureReason::Pgsql(
                "the server closed the connection without an answer".to_owned(),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(io_failure("reading the answer", &e)),
    }
    let kind = kind[0];
    if !kinds.contains(&kind) {
        return Err(FailureReason::Pgsql(format!(
            "{what} message type {}, not {}",
            shown_byte(kind),
            expected_names(kinds)
        )));
    }
    let mut length = [0u8; 4];
    read_all(stream, &mut length, "the answer's length").await?;
    let length = u32::from_be_bytes(length);
    // The length counts itself.
    let Some(body_len) = usize::try_from(length).ok().and_then(|n| n.checked_sub(4)) else {
        return Err(FailureReason::Pgsql(format!(
            "malformed answer: message '{}' of length {length}, less than the 4 its length takes",
            char::from(kind)
        )));
    };
    if body_len > MAX_MESSAGE {
        return Err(FailureReason::Pgsql(format!(
            "malformed answer: message '{}' of {body_len} bytes, more than the {MAX_MESSAGE} a check reads",
            char::from(kind)
        )));
    }
    let mut body = vec![0u8; body_len];
    read_all(stream, &mut body, "the answer").await?;
    Ok((kind, body))
}

/// Closes gracefully: a FIN, then what the server still sends is read to
/// its end (at most [`MAX_CLOSE_DRAIN`] bytes), so the kernel closes with
/// nothing unread and sends no reset (which PostgreSQL logs as "could not
/// receive data from client: Connection reset by peer"; a client that
/// leaves before authenticating with a FIN is not logged). The caller
/// bounds it in time; cut short, the drop resets.
pub(super) async fn close<S>(stream: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut read = 0;
    let mut buf = [0u8; 4096];
    while read < MAX_CLOSE_DRAIN {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read += n,
        }
    }
}

/// Fills `buf`, or fails naming `what` was cut short.
async fn read_all<S>(stream: &mut S, buf: &mut [u8], what: &str) -> Result<(), FailureReason>
where
    S: AsyncRead + Unpin,
{
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]).await {
            Ok(0) => {
                return Err(FailureReason::Pgsql(format!(
                    "truncated answer: the server closed the connection after {got} of the {} bytes of {what}",
                    buf.len()
                )))
            }
            Ok(n) => got += n,
            Err(e) => return Err(io_failure(&format!("reading {what}"), &e)),
        }
    }
    Ok(())
}

/// An ErrorResponse's body as a failure: its fields are a type byte and
/// a NUL-terminated text each, ended by a NUL byte. The severity is the
/// untranslated one (`V`, PostgreSQL 9.6 and later) where given, else the
/// possibly translated `S`.
fn error_response(body: &[u8]) -> FailureReason {
    let mut severity = None;
    let mut localized = None;
    let mut code = None;
    let mut message = None;
    let mut rest = body;
    loop {
        match rest.split_first() {
            Some((0, _)) => break,
            Some((&field, tail)) => {
                let Some(end) = tail.iter().position(|b| *b == 0) else {
                    return FailureReason::Pgsql(format!(
                        "malformed error answer: field '{}' has no end",
                        char::from(field).escape_default()
                    ));
                };
                let value = Some(printable(&tail[..end]));
                match field {
                    b'V' => severity = value,
                    b'S' => localized = value,
                    b'C' => code = value,
                    b'M' => message = value,
                    _ => {}
                }
                rest = &tail[end + 1..];
            }
            None => {
                return FailureReason::Pgsql(
                    "malformed error answer: its fields have no end".to_owned(),
                )
            }
        }
    }
    let missing = || "?".to_owned();
    FailureReason::PgsqlError {
        severity: severity.or(localized).unwrap_or_else(missing),
        code: code.unwrap_or_else(missing),
        message: message.unwrap_or_else(missing),
    }
}

/// A server's text as it can go into a log line or a status: invalid
/// UTF-8 replaced, control characters escaped, at most
/// [`MAX_FIELD_CHARS`] characters.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_FIELD_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A byte of the wire in words: the character when printable.
fn shown_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}' (0x{b:02x})", char::from(b))
    } else {
        format!("0x{b:02x}")
    }
}

/// An I/O error during the exchange, with what was being done.
fn io_failure(doing: &str, e: &std::io::Error) -> FailureReason {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => {
            FailureReason::Pgsql(format!("connection reset while {doing}"))
        }
        _ => FailureReason::Io(format!("{doing}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        sync::oneshot,
    };

    use super::super::probe::{probe, CheckKind, Outcome, ProbeTarget};
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// What the test server does once it has read the StartupMessage.
    #[derive(Clone)]
    enum Answer {
        /// Writes these bytes and waits for the client's close.
        Bytes(Vec<u8>),
        /// Writes these bytes, then closes.
        BytesThenClose(Vec<u8>),
        /// Says nothing, and waits.
        Nothing,
    }

    /// What the server saw: the StartupMessage, what came after it, and
    /// how the client left (true: a FIN, read as end of file; false: a
    /// reset, or still open).
    struct Seen {
        startup: Vec<u8>,
        after: Vec<u8>,
        fin: bool,
    }

    /// A one-connection server on 127.0.0.1 that reads a StartupMessage
    /// and answers with `answer`.
    async fn server(answer: Answer) -> (SocketAddr, oneshot::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut length = [0u8; 4];
            s.read_exact(&mut length).await.unwrap();
            let mut startup = length.to_vec();
            startup.resize(u32::from_be_bytes(length) as usize, 0);
            s.read_exact(&mut startup[4..]).await.unwrap();
            match answer {
                Answer::Bytes(bytes) => s.write_all(&bytes).await.unwrap(),
                Answer::BytesThenClose(bytes) => {
                    s.write_all(&bytes).await.unwrap();
                    s.shutdown().await.unwrap();
                }
                Answer::Nothing => {}
            }
            let mut rest = Vec::new();
            let fin = tokio::time::timeout(TIMEOUT * 2, s.read_to_end(&mut rest))
                .await
                .is_ok_and(|r| r.is_ok());
            let _ = tx.send(Seen {
                startup,
                after: rest,
                fin,
            });
        });
        (address, rx)
    }

    fn target(address: SocketAddr, database: Option<&str>) -> ProbeTarget {
        ProbeTarget {
            tls: false,
            address,
            kind: CheckKind::Pgsql {
                user: "haproxy".to_owned(),
                database: database.map(str::to_owned),
            },
            through: None,
        }
    }

    /// A message of type `kind` with `body`.
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn failure(outcome: Outcome) -> FailureReason {
        match outcome {
            Outcome::Failure(reason) => reason,
            Outcome::Success => panic!("the check passed"),
            Outcome::Full(reason) => panic!("the server was judged full: {reason}"),
        }
    }

    #[test]
    fn the_startup_message_is_protocol_3_with_the_user_and_database() {
        let m = startup_message("haproxy", Some("app")).unwrap();
        let expected: &[u8] =
            b"\x00\x03\x00\x00user\0haproxy\0database\0app\0application_name\0lbd-health-check\0\0";
        assert_eq!(&m[4..], expected);
        assert_eq!(
            u32::from_be_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        let m = startup_message("haproxy", None).unwrap();
        assert!(!m.windows(9).any(|w| w == b"database\0"));
        assert!(matches!(
            startup_message("ha\0proxy", None),
            Err(FailureReason::Pgsql(_))
        ));
    }

    /// AuthenticationOk, then the session's start, as a server that
    /// trusts the check sends it.
    fn trusted(then: &[u8]) -> Vec<u8> {
        let mut out = message(b'R', &[0, 0, 0, 0]);
        out.extend_from_slice(&message(b'S', b"server_version\x0016.0\0"));
        out.extend_from_slice(&message(b'K', &[0, 0, 0, 7, 1, 2, 3, 4]));
        out.extend_from_slice(then);
        out
    }

    /// A request for credentials of any method passes (here MD5 and
    /// SASL), and so does a trusting server's session start up to
    /// ReadyForQuery; the check leaves with a FIN, not a reset (a
    /// started session is ended with a Terminate first).
    #[tokio::test]
    async fn an_authentication_request_is_up_and_the_close_is_graceful() {
        let md5 = message(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]);
        let sasl = message(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0");
        let ok = trusted(&message(b'Z', b"I"));
        for (answer, database, after) in [
            (md5, Some("app"), &[][..]),
            (sasl, None, &[][..]),
            (ok, None, &TERMINATE[..]),
        ] {
            let (address, seen) = server(Answer::Bytes(answer)).await;
            let result = probe(&target(address, database), TIMEOUT).await;
            assert_eq!(result.outcome, Outcome::Success);
            let seen = seen.await.unwrap();
            assert!(seen.fin, "the check reset the connection");
            assert_eq!(seen.startup, startup_message("haproxy", database).unwrap());
            assert_eq!(seen.after, after);
        }
    }

    /// A trusting server that cannot start the session (PostgreSQL's
    /// unknown database) is down with its error; one that says nothing
    /// after AuthenticationOk times out; one that sends what no session
    /// start holds, or no end of it, is down saying so.
    #[tokio::test]
    async fn a_trusting_server_must_start_the_session() {
        let error = message(
            b'E',
            b"SFATAL\0VFATAL\0C3D000\0Mdatabase \"app\" does not exist\0\0",
        );
        let (address, _) = server(Answer::BytesThenClose(trusted(&error))).await;
        assert_eq!(
            failure(probe(&target(address, Some("app")), TIMEOUT).await.outcome).to_string(),
            "PostgreSQL FATAL 3D000: database \"app\" does not exist"
        );
        let (address, _) = server(Answer::Bytes(trusted(&[]))).await;
        let result = probe(&target(address, None), Duration::from_millis(200)).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
        let (address, _) = server(Answer::Bytes(trusted(&message(b'D', b"")))).await;
        assert_eq!(
            failure(probe(&target(address, None), TIMEOUT).await.outcome).to_string(),
            "PostgreSQL protocol: after AuthenticationOk the server sent message type 'D' (0x44), not a parameter ('S'), key data ('K'), a notice ('N'), ReadyForQuery ('Z') or an error ('E')"
        );
        let endless: Vec<u8> = (0..2000)
            .flat_map(|_| message(b'S', b"name\0value\0"))
            .collect();
        let (address, _) = server(Answer::Bytes(trusted(&endless))).await;
        assert_eq!(
            failure(probe(&target(address, None), TIMEOUT).await.outcome).to_string(),
            "PostgreSQL protocol: malformed answer: more than 16384 bytes after AuthenticationOk and no ReadyForQuery"
        );
    }

    /// An error is down, with the server's severity, code and message.
    #[tokio::test]
    async fn an_error_is_down_with_the_servers_words() {
        let body = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0Fpostmaster.c\0L2367\0\0";
        let (address, seen) = server(Answer::BytesThenClose(message(b'E', body))).await;
        let reason = failure(probe(&target(address, None), TIMEOUT).await.outcome);
        assert_eq!(
            reason,
            FailureReason::PgsqlError {
                severity: "FATAL".into(),
                code: "57P03".into(),
                message: "the database system is starting up".into(),
            }
        );
        assert_eq!(reason.label(), "pgsql_error");
        assert_eq!(
            reason.to_string(),
            "PostgreSQL FATAL 57P03: the database system is starting up"
        );
        assert!(seen.await.unwrap().fin);
        // PgBouncer's: no V field, control characters escaped.
        let body = b"SERROR\0C08P01\0Mno such database: x\ny\0\0";
        let (address, _) = server(Answer::Bytes(message(b'E', body))).await;
        assert_eq!(
            failure(probe(&target(address, Some("x\ny")), TIMEOUT).await.outcome).to_string(),
            "PostgreSQL ERROR 08P01: no such database: x\\ny"
        );
    }

    /// A server that refuses the check's session only because it is full
    /// (PostgreSQL's SQLSTATE class 53, "too many clients", sent before
    /// authentication) is judged full, not failed: it still serves the
    /// sessions it has. The reason keeps the server's words.
    #[tokio::test]
    async fn too_many_clients_is_full_not_down() {
        let body = b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0Fproc.c\0L364\0\0";
        let (address, seen) = server(Answer::BytesThenClose(message(b'E', body))).await;
        let result = probe(&target(address, None), TIMEOUT).await;
        let reason = FailureReason::PgsqlError {
            severity: "FATAL".into(),
            code: "53300".into(),
            message: "sorry, too many clients already".into(),
        };
        assert_eq!(result.outcome, Outcome::Full(reason));
        assert_eq!(
            result.outcome.to_string(),
            "full (refuses new sessions): PostgreSQL FATAL 53300: sorry, too many clients already"
        );
        assert!(seen.await.unwrap().fin);
        // PgBouncer at max_client_conn: its default code, told by the words.
        let body = b"SFATAL\0C08P01\0Mno more connections allowed (max_client_conn)\0\0";
        let (address, _) = server(Answer::Bytes(message(b'E', body))).await;
        let result = probe(&target(address, None), TIMEOUT).await;
        assert!(matches!(result.outcome, Outcome::Full(_)), "{result:?}");
    }

    /// Which errors say "full": the whole of class 53 and PgBouncer's
    /// client limits; not its other 08P01 errors, nor other classes.
    #[test]
    fn only_insufficient_resources_and_pgbouncer_limits_refuse_for_capacity() {
        for (code, message) in [
            ("53300", "sorry, too many clients already"),
            (
                "53300",
                "remaining connection slots are reserved for roles with the SUPERUSER attribute",
            ),
            ("53300", "too many connections for role \"app\""),
            ("53200", "out of memory"),
            ("53100", "could not extend file: No space left on device"),
            ("53400", "configuration limit exceeded"),
            ("08P01", "no more connections allowed (max_client_conn)"),
            (
                "08P01",
                "client connections exceeded (max_db_client_connections)",
            ),
            (
                "08P01",
                "client connections exceeded (max_user_client_connections)",
            ),
        ] {
            assert!(refuses_for_capacity(code, message), "{code} {message}");
        }
        for (code, message) in [
            ("57P03", "the database system is starting up"),
            ("08P01", "no such database: app"),
            (
                "08P01",
                "server login has been failing, try again later (server_login_retry)",
            ),
            ("28000", "no pg_hba.conf entry for host \"198.18.0.2\""),
            (
                "28P01",
                "password authentication failed for user \"lbcheck\"",
            ),
            ("3D000", "database \"app\" does not exist"),
            ("?", "?"),
            ("5", "short"),
        ] {
            assert!(!refuses_for_capacity(code, message), "{code} {message}");
        }
    }

    /// The README says where checks come from, in the NAT section and the
    /// `pgsql` paragraph: a `pg_hba.conf` written for the NAT address only
    /// fails every check and takes the VIP's backends down.
    #[test]
    fn the_readme_says_checks_leave_from_each_nodes_own_address() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        let part = |from: &str, to: &str| {
            let start = flat.find(from).unwrap_or_else(|| panic!("no {from:?}"));
            let rest = &flat[start..];
            rest[..rest.find(to).unwrap_or(rest.len())].to_owned()
        };
        let nat = part("**NAT** (`forwarding = \"nat\"`)", "### Operating it");
        assert!(
            nat.contains("Health checks do not come from the NAT address")
                && nat.contains("every lbd node's own address for the checks"),
            "{nat}"
        );
        let pgsql = part(
            "`pgsql` (PostgreSQL and PgBouncer) sends",
            "`drain --wait` is",
        );
        for said in [
            "The checks leave from each lbd node's own address",
            "`pg_hba.conf` (or PgBouncer's `auth_hba_file`)",
            "PostgreSQL's SQLSTATE class 53",
            "no more connections allowed (max_client_conn)",
        ] {
            assert!(pgsql.contains(said), "no {said:?} in {pgsql}");
        }
    }

    /// What no PostgreSQL server answers is down, saying what it was.
    #[tokio::test]
    async fn garbage_oversized_truncated_and_silence_are_down_with_what_was_wrong() {
        let too_long = {
            let mut m = vec![b'E'];
            m.extend_from_slice(&u32::try_from(MAX_MESSAGE + 5).unwrap().to_be_bytes());
            m
        };
        let cases: Vec<(Answer, &str)> = vec![
            (
                Answer::Bytes(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
                "PostgreSQL protocol: the server answered with message type 'H' (0x48), not an authentication request ('R') or an error ('E')",
            ),
            (
                Answer::Bytes(too_long),
                "PostgreSQL protocol: malformed answer: message 'E' of 8193 bytes, more than the 8192 a check reads",
            ),
            (
                Answer::Bytes(message(b'R', &[])[..5].to_vec()),
                "PostgreSQL protocol: malformed answer: an authentication request of 0 bytes, without its 4-byte code",
            ),
            (
                Answer::Bytes(vec![b'R', 0, 0, 0, 2]),
                "PostgreSQL protocol: malformed answer: message 'R' of length 2, less than the 4 its length takes",
            ),
            (
                Answer::BytesThenClose(message(b'R', &[0, 0, 0, 5])[..7].to_vec()),
                "PostgreSQL protocol: truncated answer: the server closed the connection after 2 of the 4 bytes of the answer",
            ),
            (
                Answer::BytesThenClose(vec![b'E', 0, 0]),
                "PostgreSQL protocol: truncated answer: the server closed the connection after 2 of the 4 bytes of the answer's length",
            ),
            (
                Answer::BytesThenClose(message(b'E', b"SFATAL\0Mno end")),
                "PostgreSQL protocol: malformed error answer: field 'M' has no end",
            ),
            (
                Answer::BytesThenClose(Vec::new()),
                "PostgreSQL protocol: the server closed the connection without an answer",
            ),
        ];
        for (answer, expected) in cases {
            let (address, _) = server(answer).await;
            let reason = failure(probe(&target(address, None), TIMEOUT).await.outcome);
            assert_eq!(reason.to_string(), expected);
            assert_eq!(reason.label(), "pgsql");
        }
    }

    /// A server that never answers: the check's one deadline ends it.
    #[tokio::test]
    async fn silence_is_a_timeout() {
        let (address, _) = server(Answer::Nothing).await;
        let result = probe(&target(address, None), Duration::from_millis(200)).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
    }

    /// A message cut short after 3 of 8 bytes, then silence: the bounded
    /// read waits for the rest within the deadline, then times out.
    #[tokio::test]
    async fn a_message_cut_short_then_silence_is_a_timeout() {
        let (address, _) = server(Answer::Bytes(vec![b'R', 0, 0, 0, 12, 0, 0, 0])).await;
        let result = probe(&target(address, None), Duration::from_millis(200)).await;
        assert_eq!(result.outcome, Outcome::Failure(FailureReason::Timeout));
    }

    /// A reset in the middle of the answer names it.
    #[tokio::test]
    async fn a_reset_is_down_naming_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _): (TcpStream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await;
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        });
        let reason = failure(probe(&target(address, None), TIMEOUT).await.outcome);
        assert_eq!(reason.label(), "pgsql", "{reason}");
        assert!(reason.to_string().contains("reset"), "{reason}");
    }

    #[test]
    fn long_fields_are_cut() {
        let long = "x".repeat(MAX_FIELD_CHARS + 10);
        let shown = printable(long.as_bytes());
        assert_eq!(shown.chars().count(), MAX_FIELD_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(printable(b"a\x01b\xff"), "a\\u{1}b\u{fffd}");
    }
}
