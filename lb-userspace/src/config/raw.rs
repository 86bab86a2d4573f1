//! The document as serde reads it, before validation: only its shape
//! (known keys, arrays of tables) is checked here. Leaf values stay
//! spanned `toml::Value`s, so type errors too are reported by the checker
//! with the field's path and position.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, SeqAccess, Visitor};
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
    pub(super) nat: Option<Spanned<nat::RawNat>>,
    pub(super) tunnel: Option<Spanned<tunnel::RawTunnel>>,
    pub(super) bgp: Option<Spanned<bgp::RawBgp>>,
    pub(super) sync: Option<Spanned<sync::RawSync>>,
    pub(super) flood: Option<Spanned<flood::RawFlood>>,
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
    pub(super) nat_source: Option<Spanned<Value>>,
    pub(super) health: Option<Spanned<health::RawHealth>>,
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
    pub(super) health: Option<Spanned<health::RawHealth>>,
}

/// Names an array of tables in serde's "expected ..." messages.
pub(super) trait TableName {
    /// The key as written in a `[[...]]` header.
    const NAME: &'static str;
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
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TableArray(items))
            }
        }

        deserializer.deserialize_seq(ArrayVisitor(PhantomData))
    }
}
