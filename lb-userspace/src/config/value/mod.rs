//! The rules for single values of a VIP or backend, shared by the config
//! file's loader and the admin API's conversions (`api::convert`), so both
//! accept exactly the same values and explain a refusal in the same words.
//!
//! Each validator takes the value as its source gives it (a number, a text,
//! an address) and returns the typed value or a [`ValueError`] saying what is
//! wrong with it. The caller names the field its own way: the loader as
//! `lbd.toml:8:12: vip[0].backend[1].weight: ...`, the API as
//! `backends[1].weight: ...` (see [`ValueError::at`]).

mod address;
mod setting;
#[cfg(test)]
mod tests;

pub(crate) use address::*;
pub use setting::*;

use std::{fmt, ops::RangeInclusive};

/// Longest drain timeout accepted: a week.
pub(crate) const MAX_DRAIN_TIMEOUT_S: u32 = 86_400 * 7;
/// Longest `slow_start_s`: an hour.
pub(crate) const MAX_SLOW_START_S: u32 = 3_600;

/// What is wrong with one value; the field is added by whoever knows its
/// name. `Display` is the message without the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    message: String,
    limit: bool,
}

impl ValueError {
    /// The value breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limit: false,
        }
    }

    /// The value is fine but goes past one of lbd's limits (the API
    /// answers these with its own error code).
    pub fn limit(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limit: true,
        }
    }

    /// Whether it is a limit rather than a broken rule.
    pub(crate) fn is_limit(&self) -> bool {
        self.limit
    }

    /// The message, without the field.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, said of the field `field`.
    pub fn at(self, field: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            error: self,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// A [`ValueError`] with the name of the field it is about, e.g.
/// `backends[1].weight: -1 is out of range 0..=10000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {error}")]
pub struct FieldError {
    /// The field, as the source names it.
    pub field: String,
    /// What is wrong with it.
    pub error: ValueError,
}

/// `shown` (a number as written) is outside `range`.
pub(crate) fn out_of_range<T: fmt::Display>(
    shown: impl fmt::Display,
    range: &RangeInclusive<T>,
) -> ValueError {
    ValueError::invalid(format!(
        "{shown} is out of range {}..={}",
        range.start(),
        range.end()
    ))
}

/// An integer within `range`.
pub fn integer<T>(n: i64, range: RangeInclusive<T>) -> Result<T, ValueError>
where
    T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
{
    if n < (*range.start()).into() || n > (*range.end()).into() {
        return Err(out_of_range(n, &range));
    }
    T::try_from(n).map_err(|_| out_of_range(n, &range))
}

/// One of `choices`, given as (spelling, value) pairs.
pub fn choice<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, ValueError> {
    match choices.iter().find(|(name, _)| *name == text) {
        Some(&(_, value)) => Ok(value),
        None => {
            let names = choices
                .iter()
                .map(|(name, _)| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ValueError::invalid(format!(
                "{text:?} is not one of {names}"
            )))
        }
    }
}
