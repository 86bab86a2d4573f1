//! HAProxy's preprocessor directives (2.4+): `.if` / `.elif` / `.else` /
//! `.endif` blocks, of which HAProxy reads one branch, and the `.notice`,
//! `.warning`, `.diag` and `.alert` messages. A condition is decided when
//! HAProxy starts (environment variables, its version, build features),
//! which the import cannot know: only the literal conditions HAProxy
//! defines (`0` false, another integer true, nothing false, `!` negating)
//! are evaluated. A block with any other condition is refused, unless it
//! lies in a section whose lines are not imported whichever branch is read
//! (`global`, `ring`, ...), where it is dropped with a note: importing
//! every branch made `.if` / `.else` alternatives all active servers.

use crate::import::model::{Note, Origin};
use crate::import::ImportError;

/// The sections whose lines the import reads: a conditional block with an
/// unknown condition in one of them changes what is imported.
const READ_SECTIONS: &[&str] = &["defaults", "frontend", "backend", "listen"];

/// One open conditional block.
#[derive(Debug)]
enum Frame {
    /// Its condition is known (a literal, or it lies in a branch HAProxy
    /// does not read, where conditions are not evaluated).
    Known {
        no: usize,
        text: String,
        /// The branch being read now is HAProxy's.
        reading: bool,
        /// A branch was (or will never be) taken: later ones are not.
        taken: bool,
        else_at: Option<usize>,
    },
    /// Its condition is unknown, in a section whose lines are not
    /// imported (or before any section): its lines are dropped.
    Unread {
        no: usize,
        text: String,
        /// Where it is, for the note: `global`, `before any section`.
        place: String,
        else_at: Option<usize>,
    },
}

impl Frame {
    fn else_at(&mut self) -> &mut Option<usize> {
        match self {
            Frame::Known { else_at, .. } | Frame::Unread { else_at, .. } => else_at,
        }
    }

    fn opened(&self) -> (usize, &str) {
        match self {
            Frame::Known { no, text, .. } | Frame::Unread { no, text, .. } => (*no, text),
        }
    }
}

/// Whether the lines at a point of the file are read.
enum State<'a> {
    /// Every enclosing block reads the branch they are in.
    Read,
    /// A branch HAProxy does not read encloses them.
    Masked,
    /// A block whose condition is unknown encloses them (the outermost).
    Unread(&'a Frame),
}

/// The open conditional blocks at the line being read.
#[derive(Debug, Default)]
pub(super) struct Conditions {
    frames: Vec<Frame>,
}

/// The section a line is in: its keyword (None before any section).
pub(super) struct Place<'a> {
    pub(super) section: Option<&'a str>,
    /// The line opens a section (`listen web`).
    pub(super) opens: bool,
}

impl Conditions {
    fn state_of(frames: &[Frame]) -> State<'_> {
        for frame in frames {
            match frame {
                Frame::Known { reading: false, .. } => return State::Masked,
                Frame::Unread { .. } => return State::Unread(frame),
                Frame::Known { .. } => {}
            }
        }
        State::Read
    }

    /// Reads line `no` (its `words`, in `place`): whether it is a line
    /// HAProxy reads as configuration (false: a directive, or in a branch
    /// not read).
    pub(super) fn line(
        &mut self,
        file: &str,
        no: usize,
        words: &[String],
        place: &Place<'_>,
        notes: &mut Vec<Note>,
    ) -> Result<bool, ImportError> {
        let text = crate::import::write::printable(&words.join(" "));
        let ignorable = place.section.is_none_or(|s| !READ_SECTIONS.contains(&s));
        let where_ = || match place.section {
            Some(section) => format!("in {section}"),
            None => "before any section".to_owned(),
        };
        match words[0].as_str() {
            ".if" => {
                let frame = match Self::state_of(&self.frames) {
                    State::Masked => Frame::Known {
                        no,
                        text,
                        reading: false,
                        taken: true,
                        else_at: None,
                    },
                    State::Unread(_) => Frame::Unread {
                        no,
                        text,
                        place: where_(),
                        else_at: None,
                    },
                    State::Read => match literal(&words[1..]) {
                        Some(value) => Frame::Known {
                            no,
                            text,
                            reading: value,
                            taken: value,
                            else_at: None,
                        },
                        None if ignorable => Frame::Unread {
                            no,
                            text,
                            place: where_(),
                            else_at: None,
                        },
                        None => return Err(unknown_condition(file, no, words)),
                    },
                };
                self.frames.push(frame);
                Ok(false)
            }
            ".elif" => {
                let (last, parent) = self.split_last(file, no, ".elif")?;
                if let Some(at) = *last.else_at() {
                    return Err(ImportError::at(
                        file,
                        no,
                        format!("`.elif` after the `.else` of line {at}"),
                    ));
                }
                let parent_reads = matches!(Self::state_of(parent), State::Read);
                if let Frame::Known { reading, taken, .. } = last {
                    if *taken || !parent_reads {
                        *reading = false;
                        return Ok(false);
                    }
                    match literal(&words[1..]) {
                        Some(value) => {
                            *reading = value;
                            *taken = value;
                        }
                        None if ignorable => {
                            *last = Frame::Unread {
                                no,
                                text,
                                place: where_(),
                                else_at: None,
                            }
                        }
                        None => return Err(unknown_condition(file, no, words)),
                    }
                }
                Ok(false)
            }
            ".else" | ".endif" if words.len() > 1 => Err(ImportError::at(
                file,
                no,
                format!("`{text}`: {} takes no argument", words[0]),
            )),
            ".else" => {
                let (last, parent) = self.split_last(file, no, ".else")?;
                if let Some(at) = *last.else_at() {
                    return Err(ImportError::at(
                        file,
                        no,
                        format!("`.else` after the `.else` of line {at}"),
                    ));
                }
                let parent_reads = matches!(Self::state_of(parent), State::Read);
                if let Frame::Known { reading, taken, .. } = last {
                    *reading = parent_reads && !*taken;
                    *taken = true;
                }
                *last.else_at() = Some(no);
                Ok(false)
            }
            ".endif" => {
                let frame = self
                    .frames
                    .pop()
                    .ok_or_else(|| ImportError::at(file, no, "`.endif` without an `.if`"))?;
                if let (
                    Frame::Unread {
                        no: opened,
                        text,
                        place,
                        ..
                    },
                    false,
                ) = (
                    &frame,
                    matches!(Self::state_of(&self.frames), State::Unread(_)),
                ) {
                    notes.push(Note::new(
                        &Origin::new(file, *opened),
                        format!(
                            "`{text}` (lines {opened}-{no}) {place}: not evaluated (HAProxy decides it when it starts); its lines are dropped, as the lines there are not carried over whichever branch HAProxy reads"
                        ),
                    ));
                }
                Ok(false)
            }
            _ => match Self::state_of(&self.frames) {
                State::Masked => Ok(false),
                State::Unread(frame) if place.opens => {
                    let (opened, if_text) = frame.opened();
                    Err(ImportError::at(
                        file,
                        no,
                        format!(
                            "{text} is inside `{if_text}` (line {opened}): {}",
                            cannot_import(if_text)
                        ),
                    ))
                }
                State::Unread(_) => Ok(false),
                State::Read => message(file, no, words, &text, notes),
            },
        }
    }

    /// The innermost open block, for `.elif` / `.else`, and those around it.
    fn split_last(
        &mut self,
        file: &str,
        no: usize,
        directive: &str,
    ) -> Result<(&mut Frame, &[Frame]), ImportError> {
        self.frames
            .split_last_mut()
            .map(|(last, parent)| (last, &*parent))
            .ok_or_else(|| ImportError::at(file, no, format!("`{directive}` without an `.if`")))
    }

    /// At the end of the file: a block left open is refused, as HAProxy
    /// refuses it.
    pub(super) fn finish(&self, file: &str) -> Result<(), ImportError> {
        match self.frames.last() {
            Some(frame) => {
                let (no, text) = frame.opened();
                Err(ImportError::at(
                    file,
                    no,
                    format!("`{text}` is never closed with `.endif`"),
                ))
            }
            None => Ok(()),
        }
    }
}

/// A line HAProxy reads: a message directive noted (`.alert` refused,
/// since HAProxy stops on it), another directive refused as HAProxy
/// refuses it, anything else read (true).
fn message(
    file: &str,
    no: usize,
    words: &[String],
    text: &str,
    notes: &mut Vec<Note>,
) -> Result<bool, ImportError> {
    match words[0].as_str() {
        ".notice" | ".warning" | ".diag" => {
            notes.push(Note::new(
                &Origin::new(file, no),
                format!("{text}: a message HAProxy prints while reading its configuration; not carried over"),
            ));
            Ok(false)
        }
        ".alert" => Err(ImportError::at(
            file,
            no,
            format!("{text}: HAProxy refuses to start on this configuration (an `.alert` it reads is fatal)"),
        )),
        directive if directive.starts_with('.') => Err(ImportError::at(
            file,
            no,
            format!("`{text}`: not a directive HAProxy knows (it refuses the configuration)"),
        )),
        _ => Ok(true),
    }
}

/// Why a block with an unknown condition is refused, and what to do.
fn cannot_import(if_text: &str) -> String {
    let condition = if_text
        .split_once(' ')
        .map_or("", |(_, condition)| condition);
    format!(
        "conditional blocks cannot be imported: their condition is decided when HAProxy starts (environment, version, build features); resolve it first: keep the lines of the branch HAProxy takes on this node (`haproxy -cc '{condition}'` evaluates the condition), remove the directives and import again"
    )
}

/// The refusal of an `.if` / `.elif` whose condition is not a literal.
fn unknown_condition(file: &str, no: usize, words: &[String]) -> ImportError {
    let text = crate::import::write::printable(&words.join(" "));
    ImportError::at(file, no, format!("`{text}`: {}", cannot_import(&text)))
}

/// The value of a literal condition as HAProxy evaluates it: nothing is
/// false, an integer is true unless 0, each `!` before it negates; None
/// for any other expression (a predicate, `&&`, `||`, parentheses).
fn literal(words: &[String]) -> Option<bool> {
    let joined = words.join(" ");
    let mut rest = joined.trim();
    if rest.is_empty() {
        return Some(false);
    }
    let mut negated = false;
    while let Some(after) = rest.strip_prefix('!') {
        negated = !negated;
        rest = after.trim_start();
    }
    let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    let value = match unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        Some(hex) if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            hex.chars().any(|c| c != '0')
        }
        Some(_) => return None,
        None if !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit()) => {
            unsigned.chars().any(|c| c != '0')
        }
        None => return None,
    };
    Some(value != negated)
}
