//! keepalived's `vrrp_script` blocks: the commands a `track_script` names,
//! read before the instances (from any file of the setup) so that the
//! tracking can tell which of them watch the proxy lbd replaces.

use crate::import::blocks::Statement;
use crate::import::keepalived::number;
use crate::import::model::Origin;
use crate::import::ImportError;

/// A `vrrp_script`: what it runs and its weight, for `track_script`.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub(super) name: String,
    pub(super) command: String,
    pub(super) weight: Option<i32>,
    /// `weight N reverse`: the priority moves the other way (up while
    /// the script fails).
    pub(super) reverse: bool,
    pub(super) origin: Origin,
}

/// A `vrrp_script NAME { script ...; weight N }` block.
pub(in crate::import::keepalived) fn script(
    file: &str,
    statement: &Statement,
) -> Result<Script, ImportError> {
    let name = statement
        .args()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::at(file, statement.line, "vrrp_script needs a name"))?;
    let mut out = Script {
        name,
        command: String::new(),
        weight: None,
        reverse: false,
        origin: Origin::new(file, statement.line),
    };
    for child in statement.children() {
        let file = child.file_in(file);
        match child.name() {
            "script" => out.command = child.args().join(" "),
            "weight" => match child.args() {
                [_, reverse] if reverse == "reverse" => {
                    let single = Statement {
                        words: child.words[..2].to_vec(),
                        line: child.line,
                        block: None,
                        file: None,
                    };
                    out.weight = Some(number(file, &single, -253..=253)?);
                    out.reverse = true;
                }
                _ => out.weight = Some(number(file, child, -253..=253)?),
            },
            _ => {}
        }
    }
    Ok(out)
}
