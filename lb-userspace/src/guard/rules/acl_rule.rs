//! One deny or allow rule: where it applies (every VIP or one, also the
//! scope of limits), what it does, and the sources it matches; with the
//! check that it can match a client at all.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{Cidr, GuardError};
use crate::vip_id::VipId;

/// What a rule does with the sources it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Dropped (wins over any allow rule).
    Deny,
    /// Let through; with allow rules in force, only matching sources are.
    Allow,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
        })
    }
}

impl FromStr for Action {
    type Err = GuardError;

    fn from_str(text: &str) -> Result<Self, GuardError> {
        match text {
            "deny" => Ok(Self::Deny),
            "allow" => Ok(Self::Allow),
            other => Err(GuardError::Invalid(format!(
                "{other:?} is not an action: use \"deny\" or \"allow\""
            ))),
        }
    }
}

/// Where a rule or limit applies: every VIP, or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every VIP (for limits: every VIP without limits of its own).
    Global,
    /// One VIP.
    Vip(VipId),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Vip(id) => id.fmt(f),
        }
    }
}

impl FromStr for Scope {
    type Err = GuardError;

    /// `global`, or a VIP as `ADDRESS:PORT[/PROTOCOL]`.
    fn from_str(text: &str) -> Result<Self, GuardError> {
        if text == "global" {
            return Ok(Self::Global);
        }
        text.parse()
            .map(Self::Vip)
            .map_err(|e: String| GuardError::Invalid(format!("{e} (or \"global\")")))
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One deny or allow rule (also the body of `POST /v1/acl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Every VIP or one.
    pub scope: Scope,
    /// Deny or allow.
    pub action: Action,
    /// The sources it matches.
    pub source: Cidr,
}

impl AclRule {
    /// What a rule must be to match anyone, for the file and the API
    /// alike: its prefix is not one of IPv4-mapped IPv6 addresses (the
    /// data plane sees IPv4 clients as IPv4), and a VIP's rule is of the
    /// VIP's family (no client of the VIP comes from the other; an allow
    /// list that matches no client locks every client out).
    pub fn check(&self) -> Result<(), GuardError> {
        let source = self.source;
        if let IpAddr::V6(v6) = source.address {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), source.len >= 96) {
                return Err(GuardError::Invalid(format!(
                    "{source} is a prefix of IPv4-mapped IPv6 addresses, which no client has: write the IPv4 prefix {v4}/{}",
                    source.len - 96
                )));
            }
        }
        if let Scope::Vip(id) = self.scope {
            if id.address.is_ipv4() != source.address.is_ipv4() {
                let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
                return Err(GuardError::Invalid(format!(
                    "{source} is {} but the rule is for the {} VIP {id}: no client of the VIP comes from it{}",
                    family(source.address.is_ipv4()),
                    family(id.address.is_ipv4()),
                    if self.action == Action::Allow {
                        ", and an allow list that matches no client locks every client out"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.action, self.source, self.scope)
    }
}

#[cfg(test)]
mod tests;
