//! The document as serde reads it, before validation: only its shape
//! (known keys, arrays of tables) is checked here. Leaf values stay
//! spanned `toml::Value`s, so type errors too are reported by the checker
//! with the field's path and position.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{bgp, flood, guard, health, nat, sync, tunnel, vrrp};

/// The document as parsed, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of lbd settings")]
pub(super) struct RawConfig {
    pub(super) interface: Option<Spanned<Value>>,
    pub(super) attach: Option<Spanned<Value>>,
    pub(super) xdp_mode: Option<Spanned<Value>>,
    pub(super) conntrack_size: Option<Spanned<Value>>,
    pub(super) half_open_size: Option<Spanned<Value>>,
    pub(super) maglev_mode: Option<Spanned<Value>>,
    pub(super) admin_socket: Option<Spanned<Value>>,
    pub(super) pin_dir: Option<Spanned<Value>>,
    pub(super) admin_socket_group: Option<Spanned<Value>>,
    pub(super) metrics_listen: Option<Spanned<Value>>,
    pub(super) log_level: Option<Spanned<Value>>,
    pub(super) log_format: Option<Spanned<Value>>,
    pub(super) tcp_idle_timeout_s: Option<Spanned<Value>>,
    pub(super) udp_idle_timeout_s: Option<Spanned<Value>>,
    #[serde(default)]
    pub(super) vip: TableArray<RawVip>,
    #[serde(default)]
    pub(super) vrrp: TableArray<vrrp::RawVrrp>,
    pub(super) nat: Option<Spanned<OneTable<nat::RawNat>>>,
    pub(super) tunnel: Option<Spanned<OneTable<tunnel::RawTunnel>>>,
    pub(super) bgp: Option<Spanned<OneTable<bgp::RawBgp>>>,
    pub(super) sync: Option<Spanned<OneTable<sync::RawSync>>>,
    pub(super) flood: Option<Spanned<OneTable<flood::RawFlood>>>,
    #[serde(default)]
    pub(super) acl: TableArray<guard::RawAcl>,
    #[serde(default)]
    pub(super) limit: TableArray<guard::RawLimit>,
}

/// One `[[vip]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip]] table")]
pub(super) struct RawVip {
    pub(super) address: Option<Spanned<Value>>,
    pub(super) port: Option<Spanned<Value>>,
    pub(super) protocol: Option<Spanned<Value>>,
    pub(super) table_size: Option<Spanned<Value>>,
    pub(super) on_all_down: Option<Spanned<Value>>,
    pub(super) drain_timeout_s: Option<Spanned<Value>>,
    pub(super) forwarding: Option<Spanned<Value>>,
    pub(super) affinity: Option<Spanned<Value>>,
    pub(super) slow_start_s: Option<Spanned<Value>>,
    pub(super) nat_source: Option<Spanned<Value>>,
    pub(super) health: Option<Spanned<OneTable<health::RawHealth>>>,
    #[serde(default)]
    pub(super) backend: TableArray<RawBackend>,
}

/// One `[[vip.backend]]` table as parsed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[vip.backend]] table")]
pub(super) struct RawBackend {
    pub(super) address: Option<Spanned<Value>>,
    pub(super) mac: Option<Spanned<Value>>,
    pub(super) port: Option<Spanned<Value>>,
    pub(super) weight: Option<Spanned<Value>>,
    pub(super) backup: Option<Spanned<Value>>,
    pub(super) health: Option<Spanned<OneTable<health::RawHealth>>>,
}

/// Names an array of tables in serde's "expected ..." messages.
pub(super) trait TableName {
    /// The key as written in a `[[...]]` (or `[...]`) header.
    const NAME: &'static str;

    /// What to say of a table written once (`[nat]`) that was written as
    /// an array of tables (`[[nat]]`).
    fn not_an_array() -> String {
        format!(
            "[{0}] is a table, not an array of tables: write [{0}], not [[{0}]]",
            Self::NAME
        )
    }
}

impl TableName for RawVip {
    const NAME: &'static str = "vip";
}

impl TableName for RawBackend {
    const NAME: &'static str = "vip.backend";
}

/// An array of tables, each with its span, whose type errors name the array
/// ("expected an array of `[[vip]]` tables") rather than "a sequence".
pub(super) struct TableArray<T>(pub(super) Vec<Spanned<T>>);

impl<T> Default for TableArray<T> {
    fn default() -> Self {
        TableArray(Vec::new())
    }
}

impl<'de, T> Deserialize<'de> for TableArray<T>
where
    T: Deserialize<'de> + TableName,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor<T>(PhantomData<T>);

        impl<'de, T> Visitor<'de> for ArrayVisitor<T>
        where
            T: Deserialize<'de> + TableName,
        {
            type Value = TableArray<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an array of [[{}]] tables", T::NAME)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                loop {
                    match seq.next_element() {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => break,
                        Err(e) => {
                            // The key of `[[vip.backend]]` is `backend` in
                            // its VIP's path.
                            let key = T::NAME.rsplit('.').next().unwrap_or(T::NAME);
                            note_error_item(format!("{key}[{}]", items.len()));
                            return Err(e);
                        }
                    }
                }
                Ok(TableArray(items))
            }
        }

        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}

thread_local! {
    /// The array items a shape error of the parse is inside, innermost
    /// first (see [`take_error_path`]).
    static ERROR_PATH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records that the parse error under way is inside array item `item`
/// (e.g. `vip[2]`): serde's errors carry the position but not which
/// `[[vip]]` they are about, and an operator looks for `vip[2]`.
fn note_error_item(item: String) {
    ERROR_PATH.with(|path| path.borrow_mut().push(item));
}

/// Forgets any path left by an earlier parse, before a new one starts.
pub(super) fn clear_error_path() {
    ERROR_PATH.with(|path| path.borrow_mut().clear());
}

/// The field path of the last parse error, e.g. `vip[0].backend[1]`,
/// if it was inside an array of tables; cleared on reading.
pub(super) fn take_error_path() -> Option<String> {
    let items = ERROR_PATH.with(|path| std::mem::take(&mut *path.borrow_mut()));
    if items.is_empty() {
        return None;
    }
    Some(items.into_iter().rev().collect::<Vec<_>>().join("."))
}

/// A table written once (`[nat]`): refuses an array of tables (`[[nat]]`)
/// in words, where serde would read the array as the struct's fields in
/// order and say "invalid length 1".
pub(super) struct OneTable<T>(pub(super) T);

impl<T> OneTable<T> {
    /// The table's keys as parsed.
    pub(super) fn get(&self) -> &T {
        &self.0
    }
}

impl<'de, T> Deserialize<'de> for OneTable<T>
where
    T: Deserialize<'de> + TableName,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableVisitor<T>(PhantomData<T>);

        impl<'de, T> Visitor<'de> for TableVisitor<T>
        where
            T: Deserialize<'de> + TableName,
        {
            type Value = OneTable<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a [{}] table", T::NAME)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneTable)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
                Err(de::Error::custom(T::not_an_array()))
            }
        }

        deserializer.deserialize_any(TableVisitor(PhantomData))
    }
}

/// A value meant to be an array (of addresses, of `ADDRESS:PORT`), each
/// item with its own span so an error points at the item; anything else
/// is kept as is, for the checker to call a wrong type.
pub(super) enum Items {
    /// An array, item by item.
    Array(Vec<Spanned<Value>>),
    /// Not an array.
    Other(Value),
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;

        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Items::Array(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Items::Other)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Items, E> {
                Ok(Items::Other(Value::Boolean(v)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Items, E> {
                Ok(Items::Other(Value::Integer(v)))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Items, E> {
                Ok(Items::Other(match i64::try_from(v) {
                    Ok(n) => Value::Integer(n),
                    Err(_) => Value::String(v.to_string()),
                }))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Items, E> {
                Ok(Items::Other(Value::Float(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Items, E> {
                Ok(Items::Other(Value::String(v.to_owned())))
            }
        }

        deserializer.deserialize_any(ItemsVisitor)
    }
}

/// Item `index` of an array value, if it is an array that long.
pub(in crate::config) fn list_item(
    list: Option<&Spanned<Items>>,
    index: usize,
) -> Option<&Spanned<Value>> {
    match list?.get_ref() {
        Items::Array(items) => items.get(index),
        Items::Other(_) => None,
    }
}
