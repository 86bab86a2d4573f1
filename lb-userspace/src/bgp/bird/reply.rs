//! BIRD's replies as read off its control socket: a code per line, `-`
//! when more lines follow, and the bounds on what is read and kept, so
//! whatever answers on the socket cannot grow lbd's memory.

use anyhow::bail;
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _};

#[cfg(test)]
mod tests;

/// Longest reply kept for an error message.
const MAX_REPLY_BYTES: usize = 4096;
/// Longest reply line read: a longer one fails the exchange after this
/// much was read (whatever answers on the socket must not grow lbd's
/// memory without bound).
const MAX_LINE_BYTES: usize = 64 * 1024;
/// "Reconfiguration ignored, shutting down": BIRD did not apply it.
const CODE_SHUTTING_DOWN: u16 = 6;
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

/// Reads lines until the last line of a reply.
pub(super) async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> anyhow::Result<Reply> {
    read_reply_into(reader, None).await
}

/// As [`read_reply`], also keeping each line's text (its code stripped;
/// a final line with no text left out) in `lines`, at most
/// [`MAX_LISTING_BYTES`] of them.
pub(super) async fn read_reply_into<R: tokio::io::AsyncBufRead + Unpin>(
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
