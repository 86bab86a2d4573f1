//! A section's name and the `defaults` section it starts from (`from
//! NAME`, HAProxy >= 2.4): the inheritance of settings between sections,
//! apart from the loop that reads them.

use super::settings::Settings;
use crate::import::ImportError;

/// A section's name and its `from DEFAULTS` (HAProxy >= 2.4): `NAME`,
/// `NAME from DEFAULTS`, `from DEFAULTS` (an unnamed defaults section).
pub(super) fn name_and_from(
    file: &str,
    args: &[String],
    no: usize,
) -> Result<(Option<String>, Option<String>), ImportError> {
    let from_at = args.iter().position(|a| a == "from").filter(|i| *i <= 1);
    match from_at {
        Some(i) => {
            let from = args.get(i + 1).cloned().ok_or_else(|| {
                ImportError::at(file, no, "from needs the name of a defaults section")
            })?;
            Ok((args.first().filter(|_| i == 1).cloned(), Some(from)))
        }
        None => Ok((args.first().cloned(), None)),
    }
}

/// The settings of the defaults section `name`, which must come before.
pub(super) fn inherited(
    file: &str,
    no: usize,
    named: &[(String, Settings)],
    name: &str,
) -> Result<Settings, ImportError> {
    named
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
        .ok_or_else(|| {
            ImportError::at(
                file,
                no,
                format!("from {name}: no defaults section of that name before this line"),
            )
        })
}
