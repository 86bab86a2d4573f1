//! HAProxy's configuration grammar: lines of words (with `"..."` quotes
//! that take escapes, `'...'` quotes that do not, backslash escapes and `#`
//! comments) grouped into sections by their keyword lines.

use std::time::Duration;

use crate::import::ImportError;

/// Section keywords: a line starting with one opens a section.
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
    "crt-store",
    "traces",
];

/// One line of a section: its number and words.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) no: usize,
    pub(crate) words: Vec<String>,
}

impl Line {
    pub(super) fn text(&self) -> String {
        self.words.join(" ")
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

/// Splits one line into words: quotes and escapes resolved, the comment
/// dropped.
fn words(file: &str, no: usize, line: &str) -> Result<Vec<String>, ImportError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
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
                match chars.next() {
                    Some(escaped) => word.push(escaped),
                    None => {
                        return Err(ImportError::at(
                            file,
                            no,
                            "a line ends with a lone backslash",
                        ))
                    }
                }
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
                        Some('\\') if c == '"' => match chars.next() {
                            Some(escaped) => word.push(escaped),
                            None => {
                                return Err(ImportError::at(
                                    file,
                                    no,
                                    "unterminated quote: the \" is never closed on this line",
                                ))
                            }
                        },
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

/// Cuts the text into sections.
pub(super) fn sections(file: &str, text: &str) -> Result<Vec<Section>, ImportError> {
    let mut out: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let no = index + 1;
        let words = words(file, no, raw)?;
        let Some(first) = words.first() else { continue };
        if SECTIONS.contains(&first.as_str()) {
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
