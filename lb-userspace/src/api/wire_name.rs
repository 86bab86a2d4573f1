//! Closed sets of values the API carries by their stable names (a VIP's
//! forwarding mode, the hook, a NAT'd flow's state, ...): typed on both
//! sides, spelt on the wire as the config, metrics and `lbctl` spell them.
//! A name the reader does not know is refused with the names it does.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

use crate::{
    config::{Attach, MaglevMode, XdpMode},
    daemon::replication::Topology,
};
use lb_common::{nat::NatFlowState, Affinity, Mode};

/// A type whose every value has a stable name on the wire.
pub trait WireName: Sized + Copy + 'static {
    /// What the values are, for an error ("forwarding mode").
    const WHAT: &'static str;
    /// Every value.
    fn all() -> &'static [Self];
    /// The value's name.
    fn wire_name(self) -> &'static str;
}

/// The value named `name`, or an error listing the names.
fn parse<T: WireName>(name: &str) -> Result<T, String> {
    T::all()
        .iter()
        .copied()
        .find(|v| v.wire_name() == name)
        .ok_or_else(|| {
            let known: Vec<&str> = T::all().iter().map(|v| v.wire_name()).collect();
            format!(
                "unknown {} `{name}`, expected one of {}",
                T::WHAT,
                known.join(", ")
            )
        })
}

/// `#[serde(with = "wire_name::one")]`: a value as its name.
pub mod one {
    use super::*;

    /// Writes the name.
    pub fn serialize<T: WireName, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.wire_name())
    }

    /// Reads a name.
    pub fn deserialize<'de, T: WireName, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let name = String::deserialize(d)?;
        parse(&name).map_err(D::Error::custom)
    }
}

/// `#[serde(with = "wire_name::optional")]`: an optional value as its
/// name or null (with `default`, absent from an older lbd).
pub mod optional {
    use super::*;

    /// Writes the name, or null.
    pub fn serialize<T: WireName, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.serialize_str(value.wire_name()),
            None => s.serialize_none(),
        }
    }

    /// Reads a name or null.
    pub fn deserialize<'de, T: WireName, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(name) => parse(&name).map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

/// `#[serde(with = "wire_name::or_off")]`: an optional value as its name,
/// or `off` when there is none (the XDP mode of a node at tc).
pub mod or_off {
    use super::*;

    /// What stands for no value.
    const OFF: &str = "off";

    /// Writes the name, or `off`.
    pub fn serialize<T: WireName, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.map_or(OFF, WireName::wire_name))
    }

    /// Reads a name or `off`.
    pub fn deserialize<'de, T: WireName, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let name = String::deserialize(d)?;
        if name == OFF {
            return Ok(None);
        }
        parse(&name).map(Some).map_err(D::Error::custom)
    }
}

impl WireName for Mode {
    const WHAT: &'static str = "forwarding mode";
    fn all() -> &'static [Self] {
        &Mode::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for Affinity {
    const WHAT: &'static str = "affinity";
    fn all() -> &'static [Self] {
        &Affinity::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for NatFlowState {
    const WHAT: &'static str = "NAT flow state";
    fn all() -> &'static [Self] {
        &NatFlowState::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for Attach {
    const WHAT: &'static str = "hook";
    fn all() -> &'static [Self] {
        &Attach::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for XdpMode {
    const WHAT: &'static str = "XDP mode";
    fn all() -> &'static [Self] {
        &XdpMode::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for MaglevMode {
    const WHAT: &'static str = "Maglev mode";
    fn all() -> &'static [Self] {
        &MaglevMode::ALL
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

impl WireName for Topology {
    const WHAT: &'static str = "replication mode";
    fn all() -> &'static [Self] {
        &[Topology::VrrpPair, Topology::FullMesh]
    }
    fn wire_name(self) -> &'static str {
        self.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        #[serde(with = "one")]
        mode: Mode,
        #[serde(default, with = "optional")]
        maglev: Option<MaglevMode>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hook {
        #[serde(with = "or_off")]
        xdp_mode: Option<XdpMode>,
    }

    #[test]
    fn every_value_travels_by_its_name_and_back() {
        fn round_trip<T: WireName + PartialEq + std::fmt::Debug>() {
            for &value in T::all() {
                assert_eq!(parse::<T>(value.wire_name()), Ok(value));
            }
        }
        round_trip::<Mode>();
        round_trip::<NatFlowState>();
        round_trip::<Attach>();
        round_trip::<MaglevMode>();
        round_trip::<XdpMode>();
        round_trip::<Topology>();
        let body = Body {
            mode: Mode::DsrL2,
            maglev: Some(MaglevMode::Minimal),
        };
        let text = serde_json::to_string(&body).expect("serialize");
        assert_eq!(text, r#"{"mode":"dsr-l2","maglev":"minimal"}"#);
        assert_eq!(serde_json::from_str::<Body>(&text).expect("parse"), body);
    }

    #[test]
    fn no_xdp_mode_travels_as_off() {
        for (value, text) in [
            (None, r#"{"xdp_mode":"off"}"#),
            (Some(XdpMode::Native), r#"{"xdp_mode":"native"}"#),
        ] {
            let hook = Hook { xdp_mode: value };
            assert_eq!(serde_json::to_string(&hook).expect("serialize"), text);
            assert_eq!(serde_json::from_str::<Hook>(text).expect("parse"), hook);
        }
        assert!(serde_json::from_str::<Hook>(r#"{"xdp_mode":"fast"}"#).is_err());
    }

    #[test]
    fn an_absent_optional_is_none_and_an_unknown_name_is_refused_by_name() {
        let body: Body = serde_json::from_str(r#"{"mode":"nat"}"#).expect("parse");
        assert_eq!(body.maglev, None);
        let error = serde_json::from_str::<Body>(r#"{"mode":"warp"}"#)
            .expect_err("unknown")
            .to_string();
        assert!(
            error
                .contains("unknown forwarding mode `warp`, expected one of dsr-l2, nat, ipip, gue"),
            "{error}"
        );
    }
}
