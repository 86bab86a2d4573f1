//! The served sections of a configuration, what runtime changes change:
//! its `[[vip]]` tables (backends and checks included) and its guards
//! (`[[acl]]`, `[[limit]]`). lbd's running-state record keeps only these
//! (see `daemon::engine::running_state`), and reads them back with the
//! config file's node settings leniently: a key this build does not know
//! in them (a newer build's) is left out with a note, so going back to an
//! older build keeps the runtime changes rather than undoing them all.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::{Table, Value};

use super::{
    guard::{RawAcl, RawLimit},
    health::RawHealth,
    raw::{RawBackend, RawVip},
    to_toml, Config, ConfigError, Location,
};

/// The keys of the served sections at the top of a config file.
const SECTIONS: [&str; 3] = ["vip", "acl", "limit"];

/// The served sections of `config` as TOML (the `[[vip]]`, `[[acl]]`
/// and `[[limit]]` tables `lbctl config dump` writes, nothing else).
pub(crate) fn served_to_toml(config: &Config) -> String {
    let mut root: Table = toml::from_str(&to_toml(config)).unwrap_or_default();
    root.retain(|key, _| SECTIONS.contains(&key));
    toml::to_string(&root).unwrap_or_default()
}

/// `node` (a loaded config file) with the served sections of `served`
/// (TOML, as [`served_to_toml`] writes them) in place of its own, loaded
/// as a config file is, so the file's rules between them hold; with the
/// keys of `served` this build does not know, left out (one note each,
/// `vip[0].backend[1].some_key`). `source` names `served` in errors.
pub(crate) fn with_served(
    node: &Config,
    served: &str,
    source: &str,
) -> Result<(Config, Vec<String>), ConfigError> {
    let parse_error = |message: String| ConfigError::Parse {
        location: Location {
            source_name: source.to_owned(),
            position: None,
        },
        message,
    };
    let mut found: Table =
        toml::from_str(served).map_err(|e| parse_error(e.message().to_owned()))?;
    let mut ignored = Vec::new();
    found.retain(|key, _| {
        let known = SECTIONS.contains(&key);
        if !known {
            ignored.push(key.to_owned());
        }
        known
    });
    strip_each::<RawVip>(
        found.get_mut("vip"),
        "vip",
        &mut ignored,
        &|vip, at, ignored| {
            strip_one::<RawHealth>(vip.get_mut("health"), &format!("{at}.health"), ignored);
            strip_each::<RawBackend>(
                vip.get_mut("backend"),
                &format!("{at}.backend"),
                ignored,
                &|backend, at, ignored| {
                    strip_one::<RawHealth>(
                        backend.get_mut("health"),
                        &format!("{at}.health"),
                        ignored,
                    );
                },
            );
        },
    );
    let none = &|_: &mut Table, _: &str, _: &mut Vec<String>| {};
    strip_each::<RawAcl>(found.get_mut("acl"), "acl", &mut ignored, none);
    strip_each::<RawLimit>(found.get_mut("limit"), "limit", &mut ignored, none);
    let mut whole: Table = toml::from_str(&to_toml(node))
        .map_err(|e| parse_error(format!("the node settings: {}", e.message())))?;
    whole.retain(|key, _| !SECTIONS.contains(&key));
    for (key, value) in found {
        whole.insert(key, value);
    }
    let text = toml::to_string(&whole).map_err(|e| parse_error(e.to_string()))?;
    Ok((Config::from_toml_str(&text, source)?, ignored))
}

/// Leaves out of each table of the array `value` (at `at`) the keys `T`
/// does not read, noting them in `ignored`, then calls `inner` on it
/// (with its place, `at[i]`). Anything but an array of tables is left as
/// it is, for the load to refuse with its own message.
fn strip_each<'de, T: Deserialize<'de>>(
    value: Option<&mut Value>,
    at: &str,
    ignored: &mut Vec<String>,
    inner: &dyn Fn(&mut Table, &str, &mut Vec<String>),
) {
    let Some(Value::Array(tables)) = value else {
        return;
    };
    for (i, table) in tables.iter_mut().enumerate() {
        if let Value::Table(table) = table {
            let at = format!("{at}[{i}]");
            strip::<T>(table, &at, ignored);
            inner(table, &at, ignored);
        }
    }
}

/// [`strip_each`] for one table (`[vip.health]`).
fn strip_one<'de, T: Deserialize<'de>>(
    value: Option<&mut Value>,
    at: &str,
    ignored: &mut Vec<String>,
) {
    if let Some(Value::Table(table)) = value {
        strip::<T>(table, at, ignored);
    }
}

/// Leaves the keys `T` does not read out of `table` (at `at`), noting
/// them in `ignored`.
fn strip<'de, T: Deserialize<'de>>(table: &mut Table, at: &str, ignored: &mut Vec<String>) {
    let known = fields_of::<T>();
    table.retain(|key, _| {
        let keep = known.contains(&key);
        if !keep {
            ignored.push(format!("{at}.{key}"));
        }
        keep
    });
}

/// The field names the derived `Deserialize` of struct `T` reads: taken
/// from `T` itself, so a key added to the config is known here at once.
fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldsProbe(&mut fields));
    fields
}

/// A deserializer that only asks a struct for its field names.
struct FieldsProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldsProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
                        [[vip.backend]]\naddress = \"198.18.0.11\"\nmac = \"02:00:00:00:00:11\"\n";

    /// The fields are the structs' own.
    #[test]
    fn the_known_keys_are_the_raw_tables_fields() {
        assert!(fields_of::<RawVip>().contains(&"on_all_down"));
        assert!(fields_of::<RawBackend>().contains(&"weight"));
        assert!(fields_of::<RawHealth>().contains(&"through_tunnel"));
        assert!(fields_of::<RawLimit>().contains(&"prefix_v6"));
    }

    /// Only the served sections are written, and they load back with the
    /// node settings of another config.
    #[test]
    fn the_served_sections_alone_come_back() {
        let node = Config::from_toml_str(NODE, "node").unwrap();
        let mut running = node.clone();
        running.vips[0].backends[0].weight = 7;
        let text = served_to_toml(&running);
        assert!(!text.contains("interface"), "{text}");
        assert!(!text.contains("[nat]"), "{text}");
        let (config, ignored) = with_served(&node, &text, "record").unwrap();
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(config.vips, running.vips);
        assert_eq!(config.interface, "eth0");
    }

    /// A newer build's keys, anywhere in the served sections or beside
    /// them, are left out and named; the rest loads.
    #[test]
    fn unknown_keys_are_left_out_and_named() {
        let node = Config::from_toml_str(NODE, "node").unwrap();
        let text = "future_key = 1\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\nfuture_vip = \"x\"\n\
                    [vip.health]\ncheck = \"tcp\"\nfuture_check = true\n\
                    [[vip.backend]]\naddress = \"198.18.0.12\"\nmac = \"02:00:00:00:00:12\"\nfuture_backend = 2\n\
                    [[acl]]\naction = \"deny\"\nsource = \"192.0.2.0/24\"\nfuture_acl = 1\n";
        let (config, ignored) = with_served(&node, text, "record").unwrap();
        assert_eq!(
            ignored,
            [
                "future_key",
                "vip[0].future_vip",
                "vip[0].health.future_check",
                "vip[0].backend[0].future_backend",
                "acl[0].future_acl",
            ]
        );
        assert_eq!(
            config.vips[0].backends[0].address.to_string(),
            "198.18.0.12"
        );
        assert_eq!(config.guard.acl.len(), 1);
    }

    /// A known key's value this build refuses is still an error.
    #[test]
    fn a_refused_value_is_an_error() {
        let node = Config::from_toml_str(NODE, "node").unwrap();
        let text = "[[vip]]\naddress = \"198.18.0.100\"\nport = 80\non_all_down = \"explode\"\n";
        assert!(with_served(&node, text, "record").is_err());
    }
}
