//! The checker: validates raw values against the text they came from, so
//! every error names its place (source, line, column, field path). Here
//! the leaf values (strings, integers, addresses, names), in `compound`
//! the values made of several (arrays, address lists, endpoints, paths);
//! the document and its VIPs in `validate`, each section's own in its
//! module.

mod compound;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use toml::{Spanned, Value};

use super::{
    error::position, value, AdminSocketGroup, ConfigError, Location, MAX_GROUP_NAME_BYTES,
    MAX_INTERFACE_NAME_BYTES,
};
use crate::mac::Mac;

/// Validates raw values against the text they came from, to label errors.
pub(super) struct Checker<'a> {
    pub(super) text: &'a str,
    pub(super) source_name: &'a str,
    /// Integer literals too large for TOML, by offset: the parser saw them
    /// as strings of the same length (see [`super::Config::from_toml_str`]).
    pub(super) oversized: BTreeMap<usize, String>,
}

impl Checker<'_> {
    pub(super) fn location(&self, offset: usize) -> Location {
        Location {
            source_name: self.source_name.to_owned(),
            position: Some(position(self.text.as_bytes(), offset)),
        }
    }

    pub(super) fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let message = match super::raw::take_error_path() {
            Some(path) => format!("{path}: {message}"),
            None => message,
        };
        ConfigError::Parse {
            location: Location {
                source_name: self.source_name.to_owned(),
                position: e
                    .span()
                    .map(|span| position(self.text.as_bytes(), span.start)),
            },
            message,
        }
    }

    pub(super) fn invalid(
        &self,
        offset: usize,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(offset),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn bad_value(
        &self,
        value: &Spanned<Value>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.invalid(value.span().start, field, message)
    }

    /// The literal of an integer too large for TOML, if `value` is one.
    pub(super) fn oversized(&self, value: &Spanned<Value>) -> Option<&str> {
        self.oversized.get(&value.span().start).map(String::as_str)
    }

    /// Turns a rule's refusal of `value` into an error naming `field`.
    pub(super) fn checked<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        result: Result<T, value::ValueError>,
    ) -> Result<T, ConfigError> {
        result.map_err(|e| self.bad_value(value, field, e.to_string()))
    }

    pub(super) fn wrong_type(
        &self,
        value: &Spanned<Value>,
        field: &str,
        expected: &str,
    ) -> ConfigError {
        let found = match self.oversized(value) {
            Some(_) => "integer",
            None => value.get_ref().type_str(),
        };
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        self.bad_value(
            value,
            field,
            format!("expected {expected}, found {article} {found}"),
        )
    }

    /// A required field, or an error at `table_offset` (the table that lacks it).
    pub(super) fn required<'v>(
        &self,
        value: &'v Option<Spanned<Value>>,
        table_offset: usize,
        field: &str,
    ) -> Result<&'v Spanned<Value>, ConfigError> {
        value
            .as_ref()
            .ok_or_else(|| self.invalid(table_offset, field, "required field is missing"))
    }

    pub(super) fn string<'v>(
        &self,
        value: &'v Spanned<Value>,
        field: &str,
    ) -> Result<&'v str, ConfigError> {
        match value.get_ref() {
            Value::String(s) if self.oversized(value).is_none() => Ok(s),
            _ => Err(self.wrong_type(value, field, "a string")),
        }
    }

    /// One of `choices`, given as (spelling, value) pairs.
    pub(super) fn choice<T: Copy>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::choice(s, choices))
    }

    pub(super) fn integer<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: Copy + fmt::Display + Into<i64> + TryFrom<i64>,
    {
        let Value::Integer(n) = *value.get_ref() else {
            if let Some(literal) = self.oversized(value) {
                return Err(self.bad_value(
                    value,
                    field,
                    value::out_of_range(literal, &range).to_string(),
                ));
            }
            return Err(self.wrong_type(value, field, "an integer"));
        };
        self.checked(value, field, value::integer(n, range))
    }

    /// An integer checked by one of the shared rules (`value::weight`, ...).
    pub(super) fn rule<T>(
        &self,
        value: &Spanned<Value>,
        field: &str,
        rule: fn(i64) -> Result<T, value::ValueError>,
    ) -> Result<T, ConfigError> {
        if let Some(literal) = self.oversized(value) {
            // Past i64, so past every rule's range: ask the rule about the
            // nearest i64 for its words, and show the number as written.
            let nearest = if literal.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            };
            let message = match rule(nearest) {
                Err(e) => e.to_string().replacen(&nearest.to_string(), literal, 1),
                Ok(_) => format!("{literal} is out of range"),
            };
            return Err(self.bad_value(value, field, message));
        }
        let Value::Integer(n) = *value.get_ref() else {
            return Err(self.wrong_type(value, field, "an integer"));
        };
        self.checked(value, field, rule(n))
    }

    /// A unicast, specified IP address.
    pub(super) fn address(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<IpAddr, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::ip_address(s))
    }

    pub(super) fn mac(&self, value: &Spanned<Value>, field: &str) -> Result<Mac, ConfigError> {
        let s = self.string(value, field)?;
        self.checked(value, field, value::mac(s))
    }

    /// A group name or a numeric gid.
    pub(super) fn group(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<AdminSocketGroup, ConfigError> {
        if matches!(value.get_ref(), Value::Integer(_)) || self.oversized(value).is_some() {
            // u32::MAX is (gid_t)-1, which chown(2) reads as "leave it".
            return self
                .integer(value, field, 0..=u32::MAX - 1)
                .map(AdminSocketGroup::Gid);
        }
        let Value::String(name) = value.get_ref() else {
            return Err(self.wrong_type(value, field, "a group name or a numeric gid"));
        };
        if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
            return Err(self.bad_value(
                value,
                field,
                format!("{name:?} is not a group name of 1 to {MAX_GROUP_NAME_BYTES} bytes"),
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|&c| c == ':' || c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(self.bad_value(
                value,
                field,
                format!("{name:?} contains {c:?}, which is not allowed in group names"),
            ));
        }
        Ok(AdminSocketGroup::Name(name.clone()))
    }

    pub(super) fn interface(&self, value: &Spanned<Value>) -> Result<String, ConfigError> {
        const FIELD: &str = "interface";
        let name = self.string(value, FIELD)?;
        if name.is_empty() {
            return Err(self.bad_value(value, FIELD, "must not be empty"));
        }
        if name.len() > MAX_INTERFACE_NAME_BYTES {
            return Err(self.bad_value(
                value,
                FIELD,
                format!(
                    "{name:?} is {} bytes long; interface names are at most {MAX_INTERFACE_NAME_BYTES} bytes",
                    name.len()
                ),
            ));
        }
        if name == "." || name == ".." {
            return Err(self.bad_value(value, FIELD, format!("{name:?} is not an interface name")));
        }
        // The characters Linux's dev_valid_name() refuses, plus control characters.
        if let Some(c) = name
            .chars()
            .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(self.bad_value(
                value,
                FIELD,
                format!("{name:?} contains {c:?}, which is not allowed in interface names"),
            ));
        }
        Ok(name.to_owned())
    }
}
