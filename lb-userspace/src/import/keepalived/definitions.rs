//! keepalived's parameter substitution (keepalived.conf(5)): a line
//! `$NAME=VALUE` defines NAME, and `$NAME` or `${NAME}` on a later line
//! (of this file or of one read after it) stands for VALUE. keepalived
//! expands them before it reads a line's words, so the import does too:
//! read literally, `interface $IFACE` was written as lbd's interface
//! `$IFACE`. What it cannot expand (a multi-line definition, ending in
//! `\`, and `~SEQ` lines, which repeat a line for a sequence of values)
//! is refused at its line.

use crate::import::ImportError;

/// How many times a line is expanded again (a value naming another
/// definition): keepalived expands until nothing changes; a definition
/// naming itself would never end.
const MAX_ROUNDS: usize = 16;

/// The definitions read so far, shared by the keepalived files of one
/// setup in the order given (keepalived keeps them from one file to the
/// files it includes after).
#[derive(Debug, Default)]
pub(super) struct Definitions {
    /// Name and value, the latest definition of a name replacing it.
    values: Vec<(String, String)>,
}

impl Definitions {
    /// `text` (named `file`) with its definition lines blanked (lines
    /// keep their numbers) and the definitions used on the other lines
    /// expanded.
    pub(super) fn expand(&mut self, file: &str, text: &str) -> Result<String, ImportError> {
        let mut out = String::with_capacity(text.len());
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let no = index + 1;
            let body = line.trim_start();
            if body.starts_with("~SEQ") {
                return Err(ImportError::at(
                    file,
                    no,
                    format!(
                        "{}: keepalived repeats this line for each value of a sequence, which the import does not: write the lines out",
                        uncommented(body)
                    ),
                ));
            }
            if let Some((name, value)) = definition(body) {
                if value.ends_with('\\') {
                    return Err(ImportError::at(
                        file,
                        no,
                        format!("${name}: a multi-line definition (its value ends with \\), which keepalived expands into several lines and the import does not: write its lines out where it is used"),
                    ));
                }
                self.values.retain(|(n, _)| *n != name);
                self.values.push((name.to_owned(), value.to_owned()));
                if line.ends_with('\n') {
                    out.push('\n');
                }
                continue;
            }
            out.push_str(&self.substituted(file, no, line)?);
        }
        Ok(out)
    }

    /// `line` with each definition it uses expanded, again until none is
    /// left (a value may use another).
    fn substituted(&self, file: &str, no: usize, line: &str) -> Result<String, ImportError> {
        let mut current = line.to_owned();
        for _ in 0..MAX_ROUNDS {
            match self.substitute_once(&current) {
                Some(next) => current = next,
                None => return Ok(current),
            }
        }
        Err(ImportError::at(
            file,
            no,
            format!("a definition used here expands into itself (still expanding after {MAX_ROUNDS} rounds)"),
        ))
    }

    /// `line` with the definitions it uses expanded once; None when it
    /// uses none.
    fn substitute_once(&self, line: &str) -> Option<String> {
        if self.values.is_empty() || !line.contains('$') {
            return None;
        }
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        let mut changed = false;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match self.use_at(after) {
                Some((value, used)) => {
                    out.push_str(value);
                    rest = &after[used..];
                    changed = true;
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    /// The value of the definition `after` (the text after a `$`) uses,
    /// and how much of `after` its name takes: `NAME` ended by a blank,
    /// `,`, `)` or the line's end, or `{NAME}`, as keepalived reads them.
    fn use_at<'d>(&'d self, after: &str) -> Option<(&'d str, usize)> {
        let (braced, name_text) = match after.strip_prefix('{') {
            Some(inner) => (true, inner),
            None => (false, after),
        };
        let len = name_len(name_text)?;
        let name = &name_text[..len];
        let next = name_text[len..].chars().next();
        let used = if braced {
            (next == Some('}')).then_some(len + 2)?
        } else {
            matches!(next, None | Some(' ' | '\t' | ',' | ')' | '\n' | '\r')).then_some(len)?
        };
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| (value.as_str(), used))
    }
}

/// The length of the name `text` starts with (a letter or `_`, then
/// letters, digits and `_`), if it starts with one.
fn name_len(text: &str) -> Option<usize> {
    let first = text.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    Some(
        text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len()),
    )
}

/// The name and value of a definition line (`$NAME=VALUE`, blanks allowed
/// around `=`, a comment after the value dropped), None for any other
/// line.
fn definition(body: &str) -> Option<(&str, &str)> {
    let text = body.strip_prefix('$')?;
    let len = name_len(text)?;
    let value = text[len..]
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?;
    Some((&text[..len], uncommented(value).trim_matches([' ', '\t'])))
}

/// `text` up to its comment (`#` or `!` outside double quotes), without
/// its line end.
fn uncommented(text: &str) -> &str {
    let mut quoted = false;
    for (at, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' | '!' if !quoted => return text[..at].trim_end(),
            '\n' | '\r' => return text[..at].trim_end(),
            _ => {}
        }
    }
    text.trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(text: &str) -> String {
        Definitions::default()
            .expand("k.conf", text)
            .expect("expands")
    }

    #[test]
    fn definitions_are_blanked_and_their_uses_expanded() {
        let text = "$A=eth1 # nic\n$B = ${A}.10\nx $A ${B} $A,y $Ab $(pidof) $1\n";
        assert_eq!(
            expanded(text),
            "\n\nx eth1 eth1.10 eth1,y $Ab $(pidof) $1\n"
        );
        // A later definition replaces an earlier one from there on.
        assert_eq!(expanded("$A=1\na $A\n$A=2\na $A"), "\na 1\n\na 2");
        // Text without definitions is left as it is.
        assert_eq!(expanded("a $B ${B}\n"), "a $B ${B}\n");
    }

    #[test]
    fn what_cannot_be_expanded_is_refused_at_its_line() {
        let err = |text: &str| {
            Definitions::default()
                .expand("k.conf", text)
                .expect_err("refused")
                .to_string()
        };
        assert!(err("a\n$M=x \\\n y\n").starts_with("k.conf:2: $M: a multi-line definition"));
        assert!(err("~SEQ(N, 1, 3) a $N # c\n")
            .starts_with("k.conf:1: ~SEQ(N, 1, 3) a $N: keepalived repeats"));
        assert!(err("$A=$A x\nb $A\n")
            .starts_with("k.conf:2: a definition used here expands into itself"));
    }
}
