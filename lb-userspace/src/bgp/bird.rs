//! BIRD's control socket, the one lbd uses to make BIRD re-read its config
//! after the routes file changed (what `birdc configure` does), without
//! needing `birdc` or BIRD's own privileges.
//!
//! The protocol is lines: BIRD greets with `0001 BIRD x.y ready.`; each
//! reply line starts with a four-digit code followed by `-` when more
//! lines of the reply follow, or a space on the last one; lines that start
//! with a space continue the previous one. Codes `0xxx` mean success,
//! `8xxx` run-time and `9xxx` parse-time errors (BIRD's
//! `doc/reply_codes`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::sessions::{self, BgpSession};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader},
    net::{
        unix::{OwnedReadHalf, OwnedWriteHalf},
        UnixStream,
    },
};

/// How long one exchange with BIRD may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reply kept for an error message.
const MAX_REPLY_BYTES: usize = 4096;
/// Longest reply line read: a longer one fails the exchange after this
/// much was read (whatever answers on the socket must not grow lbd's
/// memory without bound).
const MAX_LINE_BYTES: usize = 64 * 1024;
/// "Reconfiguration ignored, shutting down": BIRD did not apply it.
const CODE_SHUTTING_DOWN: u16 = 6;
/// `show protocols "<name>"` found no protocol of that name.
const CODE_NO_PROTOCOLS_MATCH: u16 = 8003;
/// A parse-time error: `show route exported '<session>'` of a session
/// whose channels went down since `show protocols` listed it up answers
/// this, with [`NO_VALID_TABLES`].
const CODE_PARSE_ERROR: u16 = 9001;
/// BIRD's text for a session with no channel up to show routes of.
const NO_VALID_TABLES: &str = "No valid tables";
/// Most bytes of a listing (`show protocols`, `show route`) kept: BIRD
/// answering with more fails the exchange rather than grow lbd's memory.
const MAX_LISTING_BYTES: usize = 4 << 20;

/// One reply: its final code and its text (every line, codes stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The code of the last line.
    pub(crate) code: u16,
    /// The lines' text, joined with `; `.
    pub(crate) text: String,
}

impl Reply {
    /// Whether BIRD reports success.
    pub(crate) fn is_success(&self) -> bool {
        self.code < 1000 && self.code != CODE_SHUTTING_DOWN
    }
}

/// Nothing listens on BIRD's control socket: there is no socket file, or
/// one that refuses connections (left by a BIRD that stopped or crashed).
/// BIRD is not running then, and its BGP sessions went with it: it
/// announces nothing until it starts again, and then reads the routes
/// file. Every other failure (a refusal, no answer in time, a socket lbd
/// may not use) leaves BIRD perhaps announcing what it read last, so a
/// caller that would detach the program must tell the two apart (see
/// [`is_not_running`]).
#[derive(Debug)]
pub(crate) struct NotRunning {
    socket: PathBuf,
    error: std::io::Error,
}

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BIRD is not running: nothing listens on its control socket {}",
            self.socket.display()
        )
    }
}

impl std::error::Error for NotRunning {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Whether `error` (from [`configure`] or [`probe`], or an error that
/// wraps one) says BIRD is not running, rather than that it answered
/// with an error or not at all.
pub(crate) fn is_not_running(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<NotRunning>())
}

/// BIRD answered `configure` with an error: its config (bird.conf, or a
/// file it includes) does not parse or cannot be applied. BIRD runs on
/// with the config it read last, so it still announces what that said;
/// lbd's protocols can still be disabled (see [`toggle`]), which needs no
/// parse.
#[derive(Debug)]
pub(crate) struct Refused {
    /// BIRD's code.
    code: u16,
    /// BIRD's message (a parse error names file and line).
    text: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BIRD refused to reconfigure ({}): {}",
            self.code, self.text
        )
    }
}

impl std::error::Error for Refused {}

/// Whether `error` (from [`configure`] or [`configure_checked`], or an
/// error that wraps one) says BIRD refused its config, rather than that it
/// did not answer or is not running.
pub(crate) fn is_refused(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<Refused>())
}

/// What [`toggle`] asks of a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toggle {
    /// `disable "<name>"`: BIRD withdraws every route of the protocol.
    Disable,
    /// `enable "<name>"`: BIRD announces its routes again.
    Enable,
}

impl Toggle {
    fn command(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
        }
    }
}

/// How a [`toggle`] went: what a caller must record is what BIRD did, so
/// one protocol's failure does not hide the others' success.
#[derive(Debug, Default)]
pub(crate) struct Toggled {
    /// The protocols BIRD toggled (or found so already), in order.
    pub(crate) done: Vec<String>,
    /// Why the others were not, if any were not.
    pub(crate) error: Option<anyhow::Error>,
}

impl Toggled {
    /// Ok when every protocol was toggled.
    pub(crate) fn into_result(self) -> anyhow::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// Disables or enables each of `protocols` in the BIRD behind `socket`,
/// whatever its config file says now (no parse: a broken bird.conf does
/// not stop it). BIRD answers `<name>: disabled` (or `already disabled`,
/// and the same for enable), code 0; one it has no protocol of is an
/// error (8003). An error answer for one protocol does not stop the
/// others (each disabled one withdraws); a connection that fails does.
/// A later successful `configure` restarts a disabled protocol as its
/// config says (enabled).
pub(crate) async fn toggle(socket: &Path, protocols: &[String], toggle: Toggle) -> Toggled {
    let mut done = Vec::new();
    let mut refused = Vec::new();
    let exchange = timed(socket, toggle.command(), async {
        let mut session = Session::open(socket).await?;
        for name in protocols {
            let command = format!("{} \"{name}\"", toggle.command());
            let reply = session.ask(&command).await?;
            if reply.is_success() {
                done.push(name.clone());
            } else {
                refused.push(format!(
                    "BIRD answered `{command}` with an error ({}): {}",
                    reply.code, reply.text
                ));
            }
        }
        Ok(())
    })
    .await;
    let error = match (exchange, refused.is_empty()) {
        (Ok(()), true) => None,
        (Ok(()), false) => Some(anyhow::anyhow!(refused.join("; "))),
        (Err(error), true) => Some(error),
        (Err(error), false) => Some(error.context(refused.join("; "))),
    };
    Toggled { done, error }
}

/// Asks the BIRD behind `socket` to re-read its configuration; fails with
/// BIRD's own message when it refuses (a parse error names file and line),
/// and with [`NotRunning`] when nothing listens on `socket`.
pub(crate) async fn configure(socket: &Path) -> anyhow::Result<Reply> {
    timed(socket, "configure", async {
        let mut session = Session::open(socket).await?;
        reconfigure(&mut session).await
    })
    .await
}

/// What lbd learns of BIRD after a configure or a status check.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The names among lbd's protocols that BIRD runs none of (see
    /// [`missing_protocols`]).
    pub(crate) missing: Vec<String>,
    /// BIRD's BGP sessions and which of lbd's addresses each exports (see
    /// [`bgp_sessions`]), or why BIRD's answer could not be read.
    pub(crate) sessions: Result<Vec<BgpSession>, String>,
}

/// As [`configure`], then, on the same connection, which of `protocols`
/// BIRD runs none of (see [`missing_protocols`]): a BIRD whose config
/// does not include lbd's routes file takes every reconfigure and
/// announces nothing of it; and which of its BGP sessions export the
/// routes of those it runs (see [`bgp_sessions`]).
pub(crate) async fn configure_checked(
    socket: &Path,
    protocols: &[String],
) -> anyhow::Result<Checked> {
    timed(socket, "configure", async {
        let mut session = Session::open(socket).await?;
        reconfigure(&mut session).await?;
        check(&mut session, protocols).await
    })
    .await
}

/// Which of `protocols` BIRD runs none of, then what its BGP sessions
/// export of those it runs. Only the first failing fails: a BIRD that
/// answers the sessions' questions oddly still took the configure.
async fn check(session: &mut Session, protocols: &[String]) -> anyhow::Result<Checked> {
    let missing = missing_protocols(session, protocols).await?;
    let running: Vec<String> = protocols
        .iter()
        .filter(|name| !missing.contains(name))
        .cloned()
        .collect();
    let sessions = bgp_sessions(session, &running).await.map_err(|error| {
        format!(
            "{:#}",
            error.context("asking BIRD which BGP sessions export lbd's routes")
        )
    });
    Ok(Checked { missing, sessions })
}

/// BIRD's BGP sessions (`show protocols`, at most
/// [`sessions::MAX_SESSIONS`]), and for each Established one the
/// addresses it exports of lbd's `protocols` (`show route exported
/// '<session>' protocol '<name>'`: what passed its export filter and was
/// sent). A session whose channels went down since it was listed exports
/// nothing.
async fn bgp_sessions(
    session: &mut Session,
    protocols: &[String],
) -> anyhow::Result<Vec<BgpSession>> {
    let (reply, lines) = session.ask_listing("show protocols").await?;
    if !reply.is_success() {
        bail!(
            "BIRD answered `show protocols` with an error ({}): {}",
            reply.code,
            reply.text
        );
    }
    let mut listed = sessions::parse_protocols(&lines);
    listed.truncate(sessions::MAX_SESSIONS);
    for bgp in listed.iter_mut().filter(|bgp| bgp.established) {
        let Some(name) = sessions::quoted(&bgp.name) else {
            bail!(
                "BIRD's BGP protocol {:?} has a name lbd cannot quote",
                bgp.name
            );
        };
        let mut exports = std::collections::BTreeSet::new();
        for protocol in protocols {
            let Some(protocol) = sessions::quoted(protocol) else {
                bail!("lbd's protocol {protocol:?} has a name lbd cannot quote");
            };
            let command = format!("show route exported {name} protocol {protocol}");
            let (reply, lines) = session.ask_listing(&command).await?;
            if reply.code == CODE_PARSE_ERROR && reply.text.contains(NO_VALID_TABLES) {
                continue;
            }
            if !reply.is_success() {
                bail!(
                    "BIRD answered `{command}` with an error ({}): {}",
                    reply.code,
                    reply.text
                );
            }
            exports.extend(sessions::parse_routes(&lines));
        }
        bgp.exports = exports.into_iter().collect();
    }
    Ok(listed)
}

/// Asks the BIRD behind `socket` how it is (`show status`, which changes
/// nothing), then which of `protocols` it runs none of (see
/// [`missing_protocols`]): succeeds while BIRD runs and answers, whatever
/// its config file says now. Announcements BIRD accepted are checked on
/// this way (see `Announcer::apply`): a BIRD that crashed or hangs since,
/// or whose config no longer includes lbd's routes file, no longer
/// announces them.
pub(crate) async fn probe(socket: &Path, protocols: &[String]) -> anyhow::Result<Checked> {
    timed(socket, "show status", async {
        let mut session = Session::open(socket).await?;
        let reply = session.ask("show status").await?;
        if !reply.is_success() {
            bail!(
                "BIRD answered `show status` with an error ({}): {}",
                reply.code,
                reply.text
            );
        }
        check(&mut session, protocols).await
    })
    .await
}

/// Sends `configure` on `session`; fails unless BIRD applied it.
async fn reconfigure(session: &mut Session) -> anyhow::Result<Reply> {
    let reply = session.ask("configure").await?;
    if !reply.is_success() {
        return Err(Refused {
            code: reply.code,
            text: reply.text,
        }
        .into());
    }
    Ok(reply)
}

/// The names among `protocols` that BIRD has no protocol of: it answers
/// `show protocols "<name>"` with [`CODE_NO_PROTOCOLS_MATCH`]. Any other
/// error is an error.
async fn missing_protocols(
    session: &mut Session,
    protocols: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in protocols {
        let command = format!("show protocols \"{name}\"");
        let reply = session.ask(&command).await?;
        if reply.code == CODE_NO_PROTOCOLS_MATCH {
            missing.push(name.clone());
        } else if !reply.is_success() {
            bail!(
                "BIRD answered `{command}` with an error ({}): {}",
                reply.code,
                reply.text
            );
        }
    }
    Ok(missing)
}

/// `work` (one connection's exchanges), bounded by [`EXCHANGE_TIMEOUT`].
async fn timed<T>(
    socket: &Path,
    command: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, work)
        .await
        .with_context(|| {
            format!(
                "BIRD at {} did not answer {command:?} within {EXCHANGE_TIMEOUT:?}",
                socket.display()
            )
        })?
}

/// One connection to BIRD's control socket, greeted; commands are asked
/// one after another.
struct Session {
    reader: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Session {
    /// Connects and reads BIRD's greeting.
    async fn open(socket: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(socket).await.map_err(|error| {
            use std::io::ErrorKind::{ConnectionRefused, NotFound};
            if matches!(error.kind(), NotFound | ConnectionRefused) {
                return anyhow::Error::new(NotRunning {
                    socket: socket.to_owned(),
                    error,
                });
            }
            anyhow::Error::new(error).context(format!(
                "connecting to BIRD's control socket {}",
                socket.display()
            ))
        })?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let greeting = read_reply(&mut reader)
            .await
            .context("reading BIRD's greeting")?;
        if greeting.code != 1 {
            bail!(
                "unexpected greeting from BIRD ({}): {}",
                greeting.code,
                greeting.text
            );
        }
        Ok(Self { reader, write })
    }

    /// Sends one command and reads its reply.
    async fn ask(&mut self, command: &str) -> anyhow::Result<Reply> {
        self.send(command).await?;
        read_reply(&mut self.reader)
            .await
            .with_context(|| format!("reading BIRD's reply to {command:?}"))
    }

    /// Sends one command and reads its reply, with every line's text (a
    /// listing: `show protocols`, `show route`).
    async fn ask_listing(&mut self, command: &str) -> anyhow::Result<(Reply, Vec<String>)> {
        self.send(command).await?;
        let mut lines = Vec::new();
        let reply = read_reply_into(&mut self.reader, Some(&mut lines))
            .await
            .with_context(|| format!("reading BIRD's reply to {command:?}"))?;
        Ok((reply, lines))
    }

    async fn send(&mut self, command: &str) -> anyhow::Result<()> {
        self.write
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("writing to BIRD's control socket")
    }
}

/// Reads lines until the last line of a reply.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> anyhow::Result<Reply> {
    read_reply_into(reader, None).await
}

/// As [`read_reply`], also keeping each line's text (its code stripped;
/// a final line with no text left out) in `lines`, at most
/// [`MAX_LISTING_BYTES`] of them.
async fn read_reply_into<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    mut lines: Option<&mut Vec<String>>,
) -> anyhow::Result<Reply> {
    let mut text = String::new();
    let mut kept = 0usize;
    loop {
        let Some(line) = read_line(reader).await? else {
            bail!("BIRD closed the control socket mid-reply");
        };
        let parsed = parse_line(&line);
        let rest = match parsed {
            Line::Final(_, rest) | Line::More(rest) => rest,
        };
        if let Some(lines) = lines.as_deref_mut() {
            if !(matches!(parsed, Line::Final(..)) && rest.trim().is_empty()) {
                kept += rest.len();
                if kept > MAX_LISTING_BYTES {
                    bail!("BIRD answered with a listing longer than {MAX_LISTING_BYTES} bytes");
                }
                lines.push(rest.to_owned());
            }
        }
        match parsed {
            Line::Final(code, rest) => {
                push(&mut text, rest);
                return Ok(Reply { code, text });
            }
            Line::More(rest) => push(&mut text, rest),
        }
    }
}

/// Reads one line (without its line end; None at the end of the stream),
/// reading at most [`MAX_LINE_BYTES`] and its newline: a longer line is
/// an error once that much was read, so whatever answers on the socket
/// cannot make lbd hold an endless line.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> anyhow::Result<Option<String>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if line.len() > MAX_LINE_BYTES {
        bail!("BIRD sent a line longer than {MAX_LINE_BYTES} bytes");
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn push(text: &mut String, part: &str) {
    let part = part.trim();
    if part.is_empty() || text.len() >= MAX_REPLY_BYTES {
        return;
    }
    if !text.is_empty() {
        text.push_str("; ");
    }
    text.push_str(part);
}

/// One line of a reply.
#[derive(Debug, PartialEq, Eq)]
enum Line<'a> {
    /// The last line: its code and text.
    Final(u16, &'a str),
    /// A line more follows after this one.
    More(&'a str),
}

/// Reads one line: a code and its separator (`-` more follows, space the
/// last), or text. Never panics, whatever BIRD sends (a multi-byte
/// character right after four digits is no separator).
fn parse_line(line: &str) -> Line<'_> {
    let bytes = line.as_bytes();
    let code = bytes
        .get(..4)
        .filter(|digits| digits.iter().all(u8::is_ascii_digit))
        .and_then(|_| line.get(..4))
        .map(|digits| digits.parse().unwrap_or(u16::MAX));
    if let Some(code) = code {
        // The separator is ASCII, so the text after it starts on a
        // character boundary.
        match bytes.get(4) {
            None => return Line::Final(code, ""),
            Some(b' ') => return Line::Final(code, line.get(5..).unwrap_or("")),
            Some(b'-') => return Line::More(line.get(5..).unwrap_or("")),
            Some(_) => {}
        }
    }
    // A continuation (leading space) or a spontaneous printout (`+`).
    Line::More(line.get(1..).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixListener;

    use super::*;
    use crate::test_scratch::ScratchDir;

    #[test]
    fn lines_are_read_by_their_code_and_separator() {
        assert_eq!(
            parse_line("0003 Reconfigured"),
            Line::Final(3, "Reconfigured")
        );
        assert_eq!(
            parse_line("0002-Reading configuration from /etc/bird.conf"),
            Line::More("Reading configuration from /etc/bird.conf")
        );
        assert_eq!(parse_line(" continued"), Line::More("continued"));
        assert_eq!(parse_line("0000"), Line::Final(0, ""));
        let error = "8002 /run/lbd-bgp/vips.conf:3:9 syntax error";
        assert_eq!(
            parse_line(error),
            Line::Final(8002, "/run/lbd-bgp/vips.conf:3:9 syntax error")
        );
        assert!(!Reply {
            code: 8002,
            text: String::new()
        }
        .is_success());
        assert!(!Reply {
            code: 6,
            text: String::new()
        }
        .is_success());
        assert!(Reply {
            code: 4,
            text: String::new()
        }
        .is_success());
    }

    /// Whatever follows the four digits, reading a line never panics: a
    /// multi-byte character there is no separator, and the line is text.
    #[test]
    fn a_line_with_any_character_after_the_code_is_read_without_a_panic() {
        assert_eq!(parse_line("1234é rest"), Line::More("234é rest"));
        assert_eq!(parse_line("0001é"), Line::More("001é"));
        assert_eq!(parse_line("9001 é"), Line::Final(9001, "é"));
        assert_eq!(
            parse_line("0009-lbd_vips4: disabled"),
            Line::More("lbd_vips4: disabled")
        );
        assert_eq!(parse_line("12é4 x"), Line::More("2é4 x"));
        assert_eq!(parse_line("é"), Line::More(""));
        assert_eq!(parse_line(""), Line::More(""));
    }

    /// A scripted peer on a real Unix socket: greets, reads one command,
    /// answers with `reply`.
    async fn peer(
        reply: &'static str,
    ) -> (
        ScratchDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<String>,
    ) {
        let dir = ScratchDir::new("bird");
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
            let mut lines = BufReader::new(read).lines();
            let command = lines.next_line().await.unwrap().unwrap();
            write.write_all(reply.as_bytes()).await.unwrap();
            command
        });
        (dir, path, task)
    }

    #[tokio::test]
    async fn configure_succeeds_on_a_success_code_and_fails_with_birds_message() {
        let (_dir, path, task) =
            peer("0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n").await;
        let reply = configure(&path).await.unwrap();
        assert_eq!(reply.code, 3);
        assert_eq!(task.await.unwrap(), "configure");

        let (_dir, path, _task) =
            peer("0002-Reading configuration from /etc/bird/bird.conf\n8002 /run/lbd-bgp/vips.conf:2:3 syntax error, unexpected CF_SYM_UNDEFINED\n").await;
        let error = configure(&path).await.unwrap_err().to_string();
        assert!(
            error.contains("8002") && error.contains("vips.conf:2:3"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn no_bird_is_an_error_naming_the_socket() {
        let error = configure(Path::new("/nonexistent/bird.ctl"))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/bird.ctl"),
            "{error:#}"
        );
    }

    /// Only a socket nobody listens on says BIRD is not running (a cleanup
    /// may then detach the program); a BIRD that answers with an error
    /// may still announce what it read last.
    #[tokio::test]
    async fn not_running_is_told_from_a_refusal() {
        let missing = configure(Path::new("/nonexistent/bird.ctl"))
            .await
            .unwrap_err();
        assert!(is_not_running(&missing), "{missing:#}");
        // The socket file a crashed BIRD leaves: connections refused.
        let dir = ScratchDir::new("bird");
        let left = dir.join("bird.ctl");
        drop(std::os::unix::net::UnixListener::bind(&left).unwrap());
        let refused = configure(&left).await.unwrap_err();
        assert!(is_not_running(&refused), "{refused:#}");
        assert!(
            is_not_running(&refused.context("withdrawing")),
            "still told once wrapped"
        );
        let (_dir, path, _task) = peer("8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
        let error = configure(&path).await.unwrap_err();
        assert!(!is_not_running(&error), "{error:#}");
    }

    #[tokio::test]
    async fn a_probe_asks_for_the_status_and_fails_on_an_error() {
        let (_dir, path, task) =
            peer("1000-BIRD 2.0.12\n1011-Router ID is 198.18.0.2\n Hostname is lb\n0013 Daemon is up and running\n").await;
        assert!(probe(&path, &[]).await.unwrap().missing.is_empty());
        assert_eq!(task.await.unwrap(), "show status");
        let (_dir, path, _task) = peer("9001 Unknown command\n").await;
        let error = probe(&path, &[]).await.unwrap_err();
        assert!(format!("{error:#}").contains("9001"), "{error:#}");
        assert!(is_not_running(
            &probe(Path::new("/nonexistent/bird.ctl"), &[])
                .await
                .unwrap_err()
        ));
    }

    /// An endless stream of `x` after a reply code, counting the bytes
    /// read from it.
    struct Endless {
        given: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        left: usize,
    }

    impl tokio::io::AsyncRead for Endless {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = buf.remaining().min(self.left);
            let given = self
                .given
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            let bytes: Vec<u8> = (0..n)
                .map(|i| {
                    if given + i < 5 {
                        b"0001 "[given + i]
                    } else {
                        b'x'
                    }
                })
                .collect();
            buf.put_slice(&bytes);
            self.left -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A reply line with no end fails once it is longer than the cap,
    /// having read at most the cap (and one buffer) of it, not all of it.
    #[tokio::test]
    async fn an_endless_reply_line_fails_after_reading_at_most_the_cap() {
        let given = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let endless = Endless {
            given: given.clone(),
            left: 64 << 20,
        };
        let mut reader = BufReader::new(endless);
        let error = read_reply(&mut reader).await.unwrap_err();
        assert!(
            format!("{error:#}").contains(&format!(
                "BIRD sent a line longer than {MAX_LINE_BYTES} bytes"
            )),
            "{error:#}"
        );
        let read = given.load(std::sync::atomic::Ordering::Relaxed);
        assert!(read <= MAX_LINE_BYTES + 8192, "read {read} bytes");
    }

    /// Over the socket: a greeting with no end fails the configure, and
    /// lbd hangs up long before the peer has sent it all.
    #[tokio::test]
    async fn an_endless_greeting_fails_the_configure_quickly() {
        let dir = ScratchDir::new("bird");
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut sent = 0usize;
            let chunk = vec![b'x'; 64 << 10];
            if stream.write_all(b"0001 ").await.is_err() {
                return sent;
            }
            while sent < 64 << 20 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        });
        let error = configure(&path).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("BIRD sent a line longer than"),
            "{error:#}"
        );
        let sent = task.await.unwrap();
        assert!(sent < 64 << 20, "the whole line was read: {sent} bytes");
    }

    /// A scripted peer that answers every command on one connection with
    /// `answer(command)`; the task returns the commands.
    async fn scripted(
        answer: fn(&str) -> &'static str,
    ) -> (
        ScratchDir,
        std::path::PathBuf,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let dir = ScratchDir::new("bird");
        let path = dir.join("bird.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.unwrap();
            let mut lines = BufReader::new(read).lines();
            let mut commands = Vec::new();
            while let Ok(Some(command)) = lines.next_line().await {
                let _ = write.write_all(answer(&command).as_bytes()).await;
                commands.push(command);
            }
            commands
        });
        (dir, path, task)
    }

    /// BIRD 2.0.12's answers, as read from a real one.
    fn bird_running_only_lbd_vips4(command: &str) -> &'static str {
        match command {
            "configure" => "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
            "show status" => "1000-BIRD 2.0.12\n1011-Router ID is 198.18.0.2\n0013 Daemon is up and running\n",
            "show protocols \"lbd_vips4\"" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     07:35:47.183  \n0000 \n",
            "show protocols \"broken\"" => "9001 syntax error, unexpected CF_SYM_UNDEFINED\n",
            _ => "8003 No protocols match\n",
        }
    }

    /// A refused configure is told from a BIRD that is not running; then
    /// lbd's protocols are disabled (BIRD 2.0.12's answers), and a
    /// protocol BIRD has none of fails the toggle.
    #[tokio::test]
    async fn a_refused_configure_is_told_and_protocols_are_toggled_without_a_parse() {
        let (_dir, path, _task) = peer("8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
        let refused = configure(&path).await.unwrap_err();
        assert!(is_refused(&refused), "{refused:#}");
        assert!(
            is_refused(&refused.context("withdrawing")),
            "still told once wrapped"
        );
        let missing = configure(Path::new("/nonexistent/bird.ctl"))
            .await
            .unwrap_err();
        assert!(!is_refused(&missing), "{missing:#}");

        let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
        let (_dir, path, task) = scripted(|command| match command {
            "disable \"lbd_vips4\"" => "0009-lbd_vips4: disabled\n0000 \n",
            "disable \"lbd_vips6\"" => "0008-lbd_vips6: already disabled\n0000 \n",
            _ => "8003 No protocols match\n",
        })
        .await;
        let toggled = toggle(&path, &protocols, Toggle::Disable).await;
        assert_eq!(toggled.done, protocols);
        toggled.into_result().unwrap();
        assert_eq!(
            task.await.unwrap(),
            ["disable \"lbd_vips4\"", "disable \"lbd_vips6\""]
        );
        let (_dir, path, _task) = scripted(|_| "8003 No protocols match\n").await;
        let toggled = toggle(&path, &protocols, Toggle::Enable).await;
        assert!(toggled.done.is_empty());
        let error = toggled.into_result().unwrap_err();
        assert!(
            format!("{error:#}").contains("enable \"lbd_vips4\"")
                && format!("{error:#}").contains("8003"),
            "{error:#}"
        );
    }

    /// After the reconfigure (and the status), BIRD is asked for each
    /// protocol on the same connection: the ones it has none of come back.
    #[tokio::test]
    async fn the_protocols_bird_does_not_run_are_found_after_a_configure_and_a_probe() {
        let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
        let (_dir, path, task) = scripted(bird_running_only_lbd_vips4).await;
        let checked = configure_checked(&path, &protocols).await.unwrap();
        assert_eq!(checked.missing, ["lbd_vips6"]);
        assert_eq!(
            task.await.unwrap(),
            [
                "configure",
                "show protocols \"lbd_vips4\"",
                "show protocols \"lbd_vips6\"",
                "show protocols"
            ]
        );
        let (_dir, path, task) = scripted(bird_running_only_lbd_vips4).await;
        let checked = probe(&path, &protocols).await.unwrap();
        assert_eq!(checked.missing, ["lbd_vips6"]);
        assert_eq!(task.await.unwrap()[0], "show status");
        // Another error is an error, not a missing protocol.
        let (_dir, path, _task) = scripted(bird_running_only_lbd_vips4).await;
        let error = configure_checked(&path, &["broken".to_owned()])
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("9001"), "{error:#}");
        // A refused reconfigure asks nothing more.
        let (_dir, path, task) = scripted(|_| "8002 /etc/bird/bird.conf:3:1 syntax error\n").await;
        assert!(configure_checked(&path, &protocols).await.is_err());
        assert_eq!(task.await.unwrap(), ["configure"]);
    }

    /// Debian bird2 2.0.12's answers on a node with four BGP sessions
    /// (see `sessions::tests::SHOW_PROTOCOLS`): only `good_v4` exports
    /// lbd's routes; `badfilter_v4` is Established with an export filter
    /// that names no protocol of lbd's; `wrongas_v4` (a mistyped AS) and
    /// `noneighbor_v4` are not Established. As captured from a real one.
    fn bird_with_sessions(command: &str) -> &'static str {
        match command {
            "configure" => "0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
            "show status" => "1000-BIRD 2.0.12\n1011-Router ID is 10.77.0.2\n0013 Daemon is up and running\n",
            "show protocols \"lbd_vips4\"" | "show protocols \"lbd_vips6\"" => "2002-Name       Proto      Table      State  Since         Info\n1002-lbd_vips4  Static     master4    up     16:48:55.115  \n0000 \n",
            "show protocols" => crate::bgp::sessions::tests::SHOW_PROTOCOLS,
            "show route exported 'good_v4' protocol 'lbd_vips4'" => crate::bgp::sessions::tests::GOOD_EXPORTS,
            "show route exported 'noneighbor_v4' protocol 'lbd_vips4'" | "show route exported 'wrongas_v4' protocol 'lbd_vips4'" => "9001 No valid tables\n",
            command if command.starts_with("show route exported '") => "0000 \n",
            _ => "9001 syntax error\n",
        }
    }

    /// After a configure and after a probe, BIRD's BGP sessions are read:
    /// which are Established, and which of lbd's addresses each exports;
    /// only Established sessions are asked for their routes.
    #[tokio::test]
    async fn which_sessions_export_lbds_routes_is_read_after_a_configure_and_a_probe() {
        let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
        let a: std::net::IpAddr = "198.18.0.100".parse().unwrap();
        let b: std::net::IpAddr = "198.18.0.101".parse().unwrap();
        for configure in [true, false] {
            let (_dir, path, task) = scripted(bird_with_sessions).await;
            let checked = if configure {
                configure_checked(&path, &protocols).await.unwrap()
            } else {
                probe(&path, &protocols).await.unwrap()
            };
            assert!(checked.missing.is_empty());
            let sessions = checked.sessions.unwrap();
            let summary: Vec<(&str, bool, Vec<std::net::IpAddr>)> = sessions
                .iter()
                .map(|s| (s.name.as_str(), s.established, s.exports.clone()))
                .collect();
            assert_eq!(
                summary,
                [
                    ("good_v4", true, vec![a, b]),
                    ("badfilter_v4", true, vec![]),
                    ("wrongas_v4", false, vec![]),
                    ("noneighbor_v4", false, vec![]),
                ]
            );
            assert_eq!(sessions::exporting(&sessions, a), 1);
            let asked = task.await.unwrap();
            assert_eq!(
                asked[3..],
                [
                    "show protocols",
                    "show route exported 'good_v4' protocol 'lbd_vips4'",
                    "show route exported 'good_v4' protocol 'lbd_vips6'",
                    "show route exported 'badfilter_v4' protocol 'lbd_vips4'",
                    "show route exported 'badfilter_v4' protocol 'lbd_vips6'",
                ]
            );
        }
        // A session that went down since it was listed exports nothing;
        // another error is told, and the check itself still succeeds.
        let (_dir, path, _task) = scripted(|command| match command {
            "show route exported 'good_v4' protocol 'lbd_vips4'" => "9001 No valid tables\n",
            "show route exported 'badfilter_v4' protocol 'lbd_vips4'" => "8001 Something odd\n",
            command => bird_with_sessions(command),
        })
        .await;
        let checked = probe(&path, &protocols).await.unwrap();
        let error = checked.sessions.unwrap_err();
        assert!(
            error.contains("8001") && error.contains("badfilter_v4"),
            "{error}"
        );
    }

    /// A protocol BIRD refuses to disable does not stop the next, and
    /// the ones it disabled are told: each of them withdraws.
    #[tokio::test]
    async fn each_protocol_bird_toggled_is_told_when_another_fails() {
        let protocols = ["lbd_vips4".to_owned(), "lbd_vips6".to_owned()];
        let (_dir, path, task) = scripted(|command| match command {
            "disable \"lbd_vips6\"" => "0009-lbd_vips6: disabled\n0000 \n",
            _ => "8003 No protocols match\n",
        })
        .await;
        let toggled = toggle(&path, &protocols, Toggle::Disable).await;
        assert_eq!(toggled.done, ["lbd_vips6"]);
        let error = format!("{:#}", toggled.error.unwrap());
        assert!(
            error.contains("disable \"lbd_vips4\"") && error.contains("8003"),
            "{error}"
        );
        assert_eq!(
            task.await.unwrap(),
            ["disable \"lbd_vips4\"", "disable \"lbd_vips6\""]
        );
        // The other way round: the first disabled, the second refused.
        let (_dir, path, _task) = scripted(|command| match command {
            "disable \"lbd_vips4\"" => "0009-lbd_vips4: disabled\n0000 \n",
            _ => "8003 No protocols match\n",
        })
        .await;
        let toggled = toggle(&path, &protocols, Toggle::Disable).await;
        assert_eq!(toggled.done, ["lbd_vips4"]);
        assert!(toggled.error.is_some());
    }
}
