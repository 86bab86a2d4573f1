//! keepalived.conf: `vrrp_instance` blocks (which node holds the VIPs)
//! become lbd's own `[[vrrp]]` (lbd speaks VRRPv3 itself and replaces
//! keepalived), `virtual_server` blocks (IPVS services) become VIPs.
//! Scripts keepalived ran to track HAProxy map to lbd tracking its own
//! data plane, which is what replaces HAProxy. An `include` inside a
//! block reads the files it names (of those given) where it stands.

mod checker;
mod conditional;
mod definitions;
mod group;
mod include;
mod virtual_server;
mod vrrp;

use std::time::Duration;

use super::blocks::{self, Dialect, Statement};
use super::model::{Note, Origin, Setup, Sourced};
use super::ImportError;

use group::Group;
use virtual_server::virtual_server;
use vrrp::{script, Script};

/// Seconds as keepalived writes them (`3`, `0.5`).
fn seconds(text: &str) -> Option<Duration> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && (0.0..=1e6).contains(&value)).then(|| Duration::from_secs_f64(value))
}

/// The one argument of `statement`, or an error naming it.
pub(super) fn one<'s>(file: &str, statement: &'s Statement) -> Result<&'s str, ImportError> {
    match statement.args() {
        [value] => Ok(value),
        _ => Err(ImportError::at(
            file,
            statement.line,
            format!("{} takes one value", statement.name()),
        )),
    }
}

/// `statement`'s one argument as a number in `range`.
pub(super) fn number<T>(
    file: &str,
    statement: &Statement,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ImportError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let text = one(file, statement)?;
    text.parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ImportError::at(
                file,
                statement.line,
                format!(
                    "{} {text}: not a number in {}..={}",
                    statement.name(),
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// `statement`'s one argument as seconds.
pub(super) fn duration(file: &str, statement: &Statement) -> Result<Duration, ImportError> {
    let text = one(file, statement)?;
    seconds(text).ok_or_else(|| {
        ImportError::at(
            file,
            statement.line,
            format!("{} {text}: not a number of seconds", statement.name()),
        )
    })
}

/// `global_defs { ... }`: keepalived's process settings, which lbd needs
/// none of, but for `vrrp_version`: lbd speaks VRRPv3 only, so the version
/// keepalived speaks is kept for join to say whether the two can run side
/// by side.
fn global_defs(file: &str, statement: &Statement, setup: &mut Setup) -> Result<(), ImportError> {
    let origin = Origin::new(file, statement.line);
    for child in statement.children() {
        let file = child.file_in(file);
        if child.name() == "vrrp_version" {
            let version = number(file, child, 2..=3u8)?;
            setup.vrrp_version = Some(Sourced::new(
                version,
                &Origin::new(file, child.line),
                child.text(),
            ));
        }
    }
    setup.notes.push(Note::new(
        &origin,
        "global_defs: keepalived's process settings (router_id, e-mail alerts) are not carried over; lbd has no equivalent (its vrrp_version is checked with each vrrp_instance)",
    ));
    Ok(())
}

/// A keepalived file read on its own: its name, its top-level statements
/// (the includes inside blocks spliced in) and the notes on includes not
/// followed.
type Read = (String, Vec<Statement>, Vec<Note>);

/// The keepalived files of one setup, read together, as keepalived reads
/// them as one configuration: a `track_script` may name a `vrrp_script`,
/// a `virtual_server group` a `virtual_server_group`, of another file,
/// and a file an include inside a block names is read there.
pub(super) struct Keepalived {
    /// Each file given, in order, with its top-level statements (the
    /// includes inside blocks spliced in) and the notes on includes not
    /// followed; None for a file read inside the block including it.
    files: Vec<Option<Read>>,
    /// The names of the files given.
    names: Vec<String>,
    scripts: Vec<Script>,
    groups: Vec<Group>,
}

impl Keepalived {
    /// Reads the keepalived files `sources` (name, text) of one setup as
    /// the keepalived of config id `config_id` (its `-i`): the `@ID`
    /// conditional lines that apply to it kept, the others dropped, and
    /// refused without one.
    pub(super) fn read(
        sources: &[(&str, &str)],
        config_id: Option<&str>,
    ) -> Result<Self, ImportError> {
        let mut parsed = Vec::new();
        // keepalived keeps a definition for the files read after it.
        let mut definitions = definitions::Definitions::default();
        for (file, text) in sources {
            let text = conditional::resolve(file, text, config_id)?;
            let text = definitions.expand(file, &text)?;
            parsed.push((*file, blocks::parse(file, &text, Dialect::Keepalived)?));
        }
        let (unread, mains) = crate::import::pattern::unread(&parsed, |top| {
            top.iter()
                .any(|s| matches!(s.name(), "global_defs" | "include"))
        });
        let inside = include::block_included(&parsed);
        let mut files = Vec::new();
        for (file, top) in &parsed {
            if inside.contains(file) || unread.contains(file) {
                files.push(None);
                continue;
            }
            let mut notes = Vec::new();
            let top = include::expand(file, top, &parsed, &mut notes)?;
            files.push(Some(((*file).to_owned(), top, notes)));
        }
        if let Some(file) = unread.first() {
            return Err(crate::import::pattern::unread_error(
                file,
                &mains,
                "keepalived",
            ));
        }
        // The first of a name is taken.
        let mut scripts = Vec::new();
        let mut groups = Vec::new();
        for (file, top, _) in files.iter().flatten() {
            for statement in top {
                match statement.name() {
                    "vrrp_script" => scripts.push(script(file, statement)?),
                    "virtual_server_group" => groups.push(group::group(file, statement)?),
                    _ => {}
                }
            }
        }
        Ok(Self {
            files,
            names: sources.iter().map(|(name, _)| (*name).to_owned()).collect(),
            scripts,
            groups,
        })
    }

    /// Reads the `nth` keepalived file given into `setup` (nothing for one
    /// read inside the block including it).
    pub(super) fn parse(&self, nth: usize, setup: &mut Setup) -> Result<(), ImportError> {
        let Some(Some((file, top, notes))) = self.files.get(nth) else {
            return Ok(());
        };
        let file = file.as_str();
        setup.notes.extend(notes.iter().cloned());
        for statement in top {
            let origin = Origin::new(file, statement.line);
            match statement.name() {
                "vrrp_script" | "virtual_server_group" => {}
                "vrrp_instance" => setup
                    .vrrp
                    .push(vrrp::instance(file, statement, &self.scripts)?),
                "virtual_server" => {
                    setup
                        .services
                        .push(virtual_server(file, statement, &self.groups)?)
                }
                "global_defs" => global_defs(file, statement, setup)?,
                // Read where it stands when its files are given.
                "include" => {
                    let pattern = statement.args().first().map_or("", String::as_str);
                    if !self
                        .names
                        .iter()
                        .any(|n| n != file && crate::import::pattern::matches(pattern, n))
                    {
                        setup.notes.push(Note::new(
                            &origin,
                            format!(
                                "WARNING: {}: not followed; the virtual_servers and vrrp_instances of the files it names are not imported: pass the included files to import too",
                                statement.text()
                            ),
                        ));
                    }
                }
                _ => setup.notes.push(Note::new(
                    &origin,
                    format!(
                        "{}: not carried over (lbd has no equivalent)",
                        statement.text()
                    ),
                )),
            }
        }
        Ok(())
    }
}
