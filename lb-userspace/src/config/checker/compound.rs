//! The checker's readers of values made of more than one leaf, or that
//! several tables share: booleans, arrays, address lists, endpoints and
//! paths (`[[vrrp]]`, `[sync]`, `[bgp]`).

use std::{net::IpAddr, net::SocketAddr, path::PathBuf};

use toml::{Spanned, Value};

use super::super::{raw::Items, value, Checker, ConfigError};

impl Checker<'_> {
    /// A TOML boolean, or a type error naming `field`.
    pub(in crate::config) fn boolean(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<bool, ConfigError> {
        match value.get_ref() {
            Value::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type(value, field, "true or false")),
        }
    }

    /// The items of a value meant to be an array, each with its own span
    /// (so an error points at the item), or a type error naming `expected`.
    pub(in crate::config) fn items<'v>(
        &self,
        value: &'v Spanned<Items>,
        field: &str,
        expected: &str,
    ) -> Result<&'v [Spanned<Value>], ConfigError> {
        match value.get_ref() {
            Items::Array(items) => Ok(items),
            Items::Other(other) => {
                Err(self.wrong_type(&Spanned::new(value.span(), other.clone()), field, expected))
            }
        }
    }

    /// An array of addresses, each a service address, none twice; errors
    /// name and point at the item (`vrrp[0].addresses[1]`).
    pub(in crate::config) fn address_list(
        &self,
        value: &Spanned<Items>,
        field: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let items = self.items(value, field, "an array of addresses")?;
        let mut out: Vec<IpAddr> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let name = format!("{field}[{i}]");
            if !matches!(item.get_ref(), Value::String(_)) || self.oversized(item).is_some() {
                return Err(self.wrong_type(item, &name, "an address string"));
            }
            let address = self.address(item, &name)?;
            if let Some(first) = out.iter().position(|a| *a == address) {
                return Err(self.bad_value(
                    item,
                    &name,
                    format!("{address} is listed twice (also {field}[{first}])"),
                ));
            }
            out.push(address);
        }
        Ok(out)
    }

    /// `ADDRESS:PORT` of a TCP endpoint this node listens on (`peer` false)
    /// or connects to (`peer` true), checked by [`value::socket_address`].
    pub(in crate::config) fn socket_address(
        &self,
        value: &Spanned<Value>,
        field: &str,
        peer: bool,
    ) -> Result<SocketAddr, ConfigError> {
        let s = self.string(value, field)?;
        let address: SocketAddr = s
            .parse()
            .map_err(|_| self.bad_value(value, field, format!("{s:?} is not ADDRESS:PORT")))?;
        self.checked(value, field, value::socket_address(address, peer))
    }

    /// A path given absolute (a file lbd reads or runs must not depend on
    /// the directory it was started in).
    pub(in crate::config) fn absolute_path(
        &self,
        value: &Spanned<Value>,
        field: &str,
    ) -> Result<PathBuf, ConfigError> {
        let s = self.string(value, field)?;
        if !s.starts_with('/') {
            return Err(self.bad_value(value, field, format!("{s:?} is not an absolute path")));
        }
        Ok(PathBuf::from(s))
    }
}
