//! HAProxy's configuration grammar: lines of words (with `"..."` quotes
//! that take escapes, `'...'` quotes that do not, backslash escapes and `#`
//! comments) grouped into sections by their keyword lines, the branches
//! of conditional blocks HAProxy does not read left out.

use std::time::Duration;

use super::cond::{Conditions, Place};
use crate::import::model::Note;
use crate::import::ImportError;

/// Section keywords: a line starting with one opens a section. All of
/// HAProxy's (1.x to 3.x, `program` and `namespace_list` of older ones):
/// one missing left its lines to the section before it, so that a
/// `log-forward`'s `bind` became a VIP of the proxy above it.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
    "fcgi-app",
    "log-forward",
    "log-profile",
    "crt-store",
    "traces",
    "acme",
    "healthcheck",
    "namespace_list",
];

/// One line of a section: its number and words.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub(super) no: usize,
    pub(super) words: Vec<String>,
}

impl Line {
    /// The line as written, control characters escaped again (`\r\n`) so
    /// it can stand in a one-line comment.
    pub(super) fn text(&self) -> String {
        crate::import::write::printable(&self.words.join(" "))
    }
}

/// A section: its keyword, name (and further words), line and body.
#[derive(Debug)]
pub(super) struct Section {
    pub(super) kind: String,
    pub(super) args: Vec<String>,
    pub(super) no: usize,
    pub(super) lines: Vec<Line>,
}

/// The character(s) a backslash stands for, as HAProxy's parser reads
/// them: `\\`, `\ `, `\#`, `\'`, `\"` the character, `\t` `\n` `\r` the
/// control characters, `\xNN` that byte, `\$` a `$` inside double quotes;
/// any other pair is left as written (`\1` stays `\1`).
fn escape(
    file: &str,
    no: usize,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    in_dquote: bool,
    word: &mut String,
) -> Result<(), ImportError> {
    let Some(&next) = chars.peek() else {
        return Err(ImportError::at(
            file,
            no,
            "a line ends with a lone backslash",
        ));
    };
    let taken = match next {
        ' ' | '\\' | '#' | '\'' | '"' => next,
        '$' if in_dquote => next,
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'x' => {
            chars.next();
            let hex: String = chars.by_ref().take(2).collect();
            let byte = (hex.len() == 2)
                .then(|| u8::from_str_radix(&hex, 16).ok())
                .flatten()
                .ok_or_else(|| {
                    ImportError::at(
                        file,
                        no,
                        format!("\\x{hex}: an invalid or truncated hexadecimal escape (\\xNN)"),
                    )
                })?;
            word.push(char::from(byte));
            return Ok(());
        }
        _ => {
            word.push('\\');
            return Ok(());
        }
    };
    chars.next();
    word.push(taken);
    Ok(())
}

/// The environment variable an unescaped `$` inside double quotes starts
/// (`chars` just after it), as written (`${NAME}`, `$NAME`): HAProxy
/// expands it when it starts, so read literally a check's Host became
/// `${APP_HOST}`. None when no name follows (`"^/api$"`).
fn environment_variable(chars: &std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let rest: String = chars.clone().collect();
    if let Some(braced) = rest.strip_prefix('{') {
        let name = braced.split('}').next().unwrap_or(braced);
        return Some(format!("${{{name}}}"));
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        .then(|| format!("${name}"))
}

/// Splits one line into words: quotes and escapes resolved, the comment
/// dropped.
fn words(file: &str, no: usize, line: &str) -> Result<Vec<String>, ImportError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                escape(file, no, &mut chars, false, &mut word)?;
            }
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => {
                            return Err(ImportError::at(
                                file,
                                no,
                                format!("unterminated quote: the {c} is never closed on this line"),
                            ))
                        }
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            if chars.peek().is_none() {
                                return Err(ImportError::at(
                                    file,
                                    no,
                                    "unterminated quote: the \" is never closed on this line",
                                ));
                            }
                            escape(file, no, &mut chars, true, &mut word)?;
                        }
                        Some('$') if c == '"' => {
                            if let Some(variable) = environment_variable(&chars) {
                                return Err(ImportError::at(
                                    file,
                                    no,
                                    format!("\"{variable}\": an environment variable HAProxy expands when it starts; lbd's configuration has none: write its value (on this node) instead"),
                                ));
                            }
                            word.push('$');
                        }
                        Some(other) => word.push(other),
                    }
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// Cuts the text into sections, leaving out what conditional blocks
/// HAProxy does not read hold (and their directives); notes on what is
/// left out go to `notes`.
pub(super) fn sections(
    file: &str,
    text: &str,
    notes: &mut Vec<Note>,
) -> Result<Vec<Section>, ImportError> {
    let mut out: Vec<Section> = Vec::new();
    let mut conditions = Conditions::default();
    for (index, raw) in text.lines().enumerate() {
        let no = index + 1;
        let words = words(file, no, raw)?;
        let Some(first) = words.first() else { continue };
        let opens = SECTIONS.contains(&first.as_str());
        let place = Place {
            section: out.last().map(|s| s.kind.as_str()),
            opens,
        };
        if !conditions.line(file, no, &words, &place, notes)? {
            continue;
        }
        if opens {
            out.push(Section {
                kind: first.clone(),
                args: words[1..].to_vec(),
                no,
                lines: Vec::new(),
            });
            continue;
        }
        match out.last_mut() {
            Some(section) => section.lines.push(Line { no, words }),
            None => {
                return Err(ImportError::at(
                    file,
                    no,
                    format!("\"{first}\" is outside any section (global, defaults, frontend, backend, listen)"),
                ))
            }
        }
    }
    conditions.finish(file)?;
    Ok(out)
}

/// A time as HAProxy writes it: a number and a unit (`us`, `ms`, `s`,
/// `m`, `h`, `d`; none means ms).
pub(super) fn time(text: &str) -> Option<Duration> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    Some(match &text[digits..] {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    })
}
