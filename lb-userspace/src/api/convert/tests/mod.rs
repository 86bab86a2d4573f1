//! Tests of the API's VIP and health objects turned into config values,
//! one file per kind of object; the VIP spec and the health file and body
//! builders they share live here.

use serde_json::json;

use super::*;
use crate::{
    config::{AllDown, Config, Protocol, MAX_BACKENDS_PER_VIP},
    mac::Mac,
};

mod health_objects;
mod health_refusals;
mod nat_vips;
mod vip_specs;
mod wire_names;

fn vip_spec(body: serde_json::Value) -> VipSpec {
    serde_json::from_value(body).unwrap()
}

fn refused(body: serde_json::Value) -> String {
    match VipConfig::try_from(&vip_spec(body.clone())) {
        Ok(vip) => panic!("{body} was accepted as {vip:?}"),
        Err(e) => e.to_string(),
    }
}

/// A TOML table's lines for the keys of a JSON `health` object.
fn toml_keys(health: &serde_json::Value) -> String {
    health
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

/// The config file with one VIP (forwarding `forwarding`) of one
/// backend, whose health tables have the keys of `vip` and `backend`
/// (JSON objects; null: no table).
fn health_file(forwarding: &str, vip: &serde_json::Value, backend: &serde_json::Value) -> String {
    let mut text = format!(
        "interface = \"eth0\"\n[[vip]]\naddress = \"198.18.0.100\"\nport = 80\n\
         forwarding = \"{forwarding}\"\n"
    );
    if !vip.is_null() {
        text += &format!("[vip.health]\n{}", toml_keys(vip));
    }
    text += "[[vip.backend]]\naddress = \"198.19.2.11\"\n";
    if !backend.is_null() {
        text += &format!("[vip.backend.health]\n{}", toml_keys(backend));
    }
    text
}

/// The `POST /v1/vips` body of the same VIP.
fn health_body(forwarding: &str, vip: &serde_json::Value, backend: &serde_json::Value) -> VipSpec {
    let mut b = json!({"address": "198.19.2.11"});
    if !backend.is_null() {
        b["health"] = backend.clone();
    }
    let mut body = json!({"address": "198.18.0.100", "port": 80,
                          "forwarding": forwarding, "backends": [b]});
    if !vip.is_null() {
        body["health"] = vip.clone();
    }
    vip_spec(body)
}
