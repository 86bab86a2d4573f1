//! The guards lbd should have in force, as a plain value: deny and allow
//! rules (global or per VIP) and limits of new flows (a default for every
//! VIP, or per VIP). Pure rules for changing it (`add_rule`,
//! `remove_rule`, `set_limits`, `clear_limits`), each refusing bad input
//! with a message naming what is wrong and leaving the value unchanged.
//! Semantics: `lb_common::guard`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    str::FromStr,
};

use lb_common::guard::{ACL_RULES_MAX, RATE_MAX};
use serde::{Deserialize, Serialize};

use crate::vip_id::VipId;

/// Why a guard change was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A value is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The rule names a VIP lbd does not serve.
    #[error("no VIP {0}: a rule or limit of a VIP needs the VIP")]
    NoVip(VipId),
    /// The rule to remove is not there.
    #[error("no such rule: {0}")]
    NoRule(String),
    /// The limit to remove is not there.
    #[error("no limit is set for {0}")]
    NoLimit(Scope),
    /// Too many rules for the maps.
    #[error("at most {ACL_RULES_MAX_USABLE} ACL rules")]
    TooMany,
}

/// Rules the maps hold (rule id 0 is never used).
pub const ACL_RULES_MAX_USABLE: usize = ACL_RULES_MAX as usize - 1;

/// How many VIPs' limits are kept for VIPs removed (to guard them again if
/// they are added back) before a new scope's limits take their room
/// (`GuardConfig::set_limits`): as many as there can be rules.
pub(crate) const KEPT_FOR_REMOVED_MAX: usize = ACL_RULES_MAX_USABLE;

/// A source prefix: an address with its host bits zero, and a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address.
    pub address: IpAddr,
    /// Prefix length (0..=32 or 0..=128).
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

impl FromStr for Cidr {
    type Err = GuardError;

    /// `ADDRESS/LENGTH`, or a bare address (one address: /32 or /128);
    /// host bits must be zero.
    fn from_str(text: &str) -> Result<Self, GuardError> {
        let invalid = || {
            GuardError::Invalid(format!(
                "{text:?} is not a CIDR prefix (e.g. \"198.18.66.0/24\", \"2001:2:66::/48\" or one address)"
            ))
        };
        let (address, len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => {
                let len: u8 = len.parse().map_err(|_| invalid())?;
                if len > max {
                    return Err(GuardError::Invalid(format!(
                        "{text:?}: prefix length {len} is longer than the address ({max} bits)"
                    )));
                }
                len
            }
        };
        let network = network(address, len);
        if network != address {
            return Err(GuardError::Invalid(format!(
                "{text:?} has host bits set: the prefix is {network}/{len}"
            )));
        }
        Ok(Self { address, len })
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `address` with all but its first `len` bits cleared.
pub fn network(address: IpAddr, len: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

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

/// A limit of new flows: `per_s` a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// New flows per second, 1..=1000000.
    pub per_s: u32,
    /// Bucket size, 1..=1000000 (default: `per_s`).
    pub burst: u32,
}

impl RateLimit {
    /// A limit, checked: both within 1..=`RATE_MAX`. `what` names it in
    /// the error.
    pub fn new(per_s: u32, burst: Option<u32>, what: &str) -> Result<Self, GuardError> {
        let burst = burst.unwrap_or(per_s);
        for (name, value) in [("rate", per_s), ("burst", burst)] {
            if value == 0 || u64::from(value) > RATE_MAX {
                return Err(GuardError::Invalid(format!(
                    "{what} {name}: {value} is out of range 1..={RATE_MAX}"
                )));
            }
        }
        Ok(Self { per_s, burst })
    }
}

/// Prefix length of the prefix buckets of IPv4 sources by default.
pub const DEFAULT_PREFIX_V4: u8 = 24;
/// Prefix length of the prefix buckets of IPv6 sources by default.
pub const DEFAULT_PREFIX_V6: u8 = 64;

/// The limits of new flows of a VIP (or the default of every VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Per source address (None: none).
    #[serde(default)]
    pub source: Option<RateLimit>,
    /// Per source prefix (None: none).
    #[serde(default)]
    pub prefix: Option<RateLimit>,
    /// Length of an IPv4 source prefix, 1..=32.
    #[serde(default = "default_prefix_v4")]
    pub prefix_v4: u8,
    /// Length of an IPv6 source prefix, 1..=128.
    #[serde(default = "default_prefix_v6")]
    pub prefix_v6: u8,
}

fn default_prefix_v4() -> u8 {
    DEFAULT_PREFIX_V4
}

fn default_prefix_v6() -> u8 {
    DEFAULT_PREFIX_V6
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            source: None,
            prefix: None,
            prefix_v4: DEFAULT_PREFIX_V4,
            prefix_v6: DEFAULT_PREFIX_V6,
        }
    }
}

impl Limits {
    /// The first prefix length set to other than its default that does
    /// nothing in `scope`, as (its key, why): a length only shapes the
    /// prefixes `prefix` limits, and a VIP's clients come from one family.
    /// Default lengths are let by (`lbctl config dump` writes both of
    /// every limit). The file and the API refuse the same.
    pub fn unused_prefix_length(&self, scope: &Scope) -> Option<(&'static str, String)> {
        let defaults = Self::default();
        let set = [
            ("prefix_v4", self.prefix_v4 != defaults.prefix_v4, true),
            ("prefix_v6", self.prefix_v6 != defaults.prefix_v6, false),
        ];
        let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        set.into_iter().filter(|(_, set, _)| *set).find_map(|(key, _, v4)| {
            if self.prefix.is_none() {
                return Some((
                    key,
                    format!("needs prefix_rate ({key} is the length of the prefixes prefix_rate limits)"),
                ));
            }
            match scope {
                Scope::Vip(id) if id.address.is_ipv4() != v4 => Some((
                    key,
                    format!(
                        "the limit is for the {} VIP {id}, whose clients have no {} prefix: remove {key}",
                        family(id.address.is_ipv4()),
                        family(v4)
                    ),
                )),
                _ => None,
            }
        })
    }

    /// Checks the rates, the prefix lengths and that something is limited.
    pub fn check(&self) -> Result<(), GuardError> {
        for (what, rate) in [("source", self.source), ("prefix", self.prefix)] {
            if let Some(rate) = rate {
                RateLimit::new(rate.per_s, Some(rate.burst), what)?;
            }
        }
        if !(1..=32).contains(&self.prefix_v4) {
            return Err(GuardError::Invalid(format!(
                "prefix_v4: {} is out of range 1..=32",
                self.prefix_v4
            )));
        }
        if !(1..=128).contains(&self.prefix_v6) {
            return Err(GuardError::Invalid(format!(
                "prefix_v6: {} is out of range 1..=128",
                self.prefix_v6
            )));
        }
        if self.source.is_none() && self.prefix.is_none() {
            return Err(GuardError::Invalid(
                "a limit needs a rate per source, per prefix or both".to_owned(),
            ));
        }
        Ok(())
    }
}

/// One change of the guards (what `lbctl acl` and `lbctl limit` ask for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEdit {
    /// Adds a rule (no change if it is there).
    AddRule(AclRule),
    /// Removes a rule.
    RemoveRule(AclRule),
    /// Sets the limits of a scope.
    SetLimits(Scope, Limits),
    /// Removes the limits of a scope.
    ClearLimits(Scope),
}

/// Every guard lbd should have in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardConfig {
    /// Deny and allow rules.
    pub acl: BTreeSet<AclRule>,
    /// Limits by scope (`Global`: every VIP without its own).
    pub limits: BTreeMap<Scope, Limits>,
}

impl GuardConfig {
    /// Carries out `edit` (`is_vip` says which VIPs exist); refused, it
    /// changes nothing.
    pub fn apply_edit(
        &mut self,
        edit: &GuardEdit,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<(), GuardError> {
        match edit {
            GuardEdit::AddRule(rule) => self.add_rule(*rule, is_vip).map(|_| ()),
            GuardEdit::RemoveRule(rule) => self.remove_rule(rule),
            GuardEdit::SetLimits(scope, limits) => self.set_limits(*scope, *limits, is_vip),
            GuardEdit::ClearLimits(scope) => self.clear_limits(*scope),
        }
    }

    /// Adds `rule` (`is_vip` says which VIPs exist). False if it was
    /// already there (nothing changes).
    ///
    /// At most `ACL_RULES_MAX_USABLE` rules are held, those kept for
    /// removed VIPs included, so a VIP added back always fits the maps
    /// with its rules. But kept rules never refuse a new one: at the cap,
    /// the rules and limits kept for VIPs not served are forgotten first
    /// (every removed VIP's, whole: a VIP coming back with part of its
    /// allow list would refuse sources it let by), and only rules in force
    /// can make the cap refuse. Dropping a VIP's guards at its removal
    /// instead would lose them for the remove-and-add-back that changes a
    /// VIP's mode; counting only rules in force would let a VIP added back
    /// bring more rules than the maps hold.
    pub fn add_rule(
        &mut self,
        rule: AclRule,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<bool, GuardError> {
        rule.check()?;
        check_scope(rule.scope, is_vip)?;
        if self.acl.contains(&rule) {
            return Ok(false);
        }
        if self.acl.len() >= ACL_RULES_MAX_USABLE {
            let in_force = self
                .acl
                .iter()
                .filter(|kept| in_force(&kept.scope, is_vip))
                .count();
            if in_force >= ACL_RULES_MAX_USABLE {
                return Err(GuardError::TooMany);
            }
            self.forget_removed(is_vip, "a new ACL rule needs the room of");
        }
        self.acl.insert(rule);
        Ok(true)
    }

    /// Forgets the rules and limits kept for VIPs not served (`is_vip`
    /// says which are), logging how many and why (`needs`), so that what
    /// is kept for removed VIPs never refuses a change to those served.
    fn forget_removed(&mut self, is_vip: &dyn Fn(&VipId) -> bool, needs: &str) {
        let (rules, limits) = (self.acl.len(), self.limits.len());
        self.acl.retain(|rule| in_force(&rule.scope, is_vip));
        self.limits.retain(|scope, _| in_force(scope, is_vip));
        tracing::info!(
            rules = rules - self.acl.len(),
            limits = limits - self.limits.len(),
            "{needs} the ACL rules and limits kept for removed VIPs: they are forgotten (they would have guarded those VIPs again if added back)"
        );
    }

    /// Removes `rule`.
    pub fn remove_rule(&mut self, rule: &AclRule) -> Result<(), GuardError> {
        if self.acl.remove(rule) {
            Ok(())
        } else {
            Err(GuardError::NoRule(rule.to_string()))
        }
    }

    /// Sets the limits of `scope`, replacing what it had.
    pub fn set_limits(
        &mut self,
        scope: Scope,
        limits: Limits,
        is_vip: &dyn Fn(&VipId) -> bool,
    ) -> Result<(), GuardError> {
        check_scope(scope, is_vip)?;
        limits.check()?;
        if let Some((key, why)) = limits.unused_prefix_length(&scope) {
            return Err(GuardError::Invalid(format!("{key}: {why}")));
        }
        if !self.limits.contains_key(&scope) {
            let kept = self
                .limits
                .keys()
                .filter(|kept| !in_force(kept, is_vip))
                .count();
            if kept >= KEPT_FOR_REMOVED_MAX {
                self.forget_removed(is_vip, "new limits need the room of");
            }
        }
        self.limits.insert(scope, limits);
        Ok(())
    }

    /// Removes the limits of `scope`.
    pub fn clear_limits(&mut self, scope: Scope) -> Result<(), GuardError> {
        self.limits
            .remove(&scope)
            .map(|_| ())
            .ok_or(GuardError::NoLimit(scope))
    }

    /// The limits in force for VIP `id`: its own, else the global ones.
    pub fn limits_of(&self, id: &VipId) -> Option<&Limits> {
        self.limits
            .get(&Scope::Vip(*id))
            .or_else(|| self.limits.get(&Scope::Global))
    }

    /// What removing VIP `id` leaves of these guards, for the removal's
    /// answer: its rules and limits stay (keyed by the VIP, out of the
    /// maps while it is gone) and apply again if it is added back, so a
    /// VIP removed and re-added, say to change its mode, keeps its deny
    /// rules; the operator is told, as `lbctl acl` still lists them. They
    /// are kept only while no new rule or limit needs their room (see
    /// `add_rule`), so VIPs removed all day never exhaust the cap.
    pub fn kept_for_removed(&self, id: &VipId) -> Option<String> {
        let scope = Scope::Vip(*id);
        let rules = self.acl.iter().filter(|r| r.scope == scope).count();
        let limits = self.limits.contains_key(&scope);
        let kept = match (rules, limits) {
            (0, false) => return None,
            (0, true) => "its limits stay".to_owned(),
            (1, false) => "its ACL rule stays".to_owned(),
            (n, false) => format!("its {n} ACL rules stay"),
            (1, true) => "its ACL rule and limits stay".to_owned(),
            (n, true) => format!("its {n} ACL rules and limits stay"),
        };
        Some(format!(
            "VIP {id}: {kept}, out of force while it is gone, and apply again if it is added back, unless new rules or limits need their room first (`lbctl acl del ... --vip {id}`, `lbctl limit clear --vip {id}` remove them)"
        ))
    }

    /// These guards without the rules and limits of VIPs not served
    /// (`is_vip` says which are), with a note for each left out: what a
    /// config file can hold, as a file's guards may only name its own
    /// VIPs (`lbctl config dump`).
    pub fn of_served(&self, is_vip: &dyn Fn(&VipId) -> bool) -> (GuardConfig, Vec<String>) {
        let served = |scope: &Scope| match scope {
            Scope::Global => true,
            Scope::Vip(id) => is_vip(id),
        };
        let mut notes = Vec::new();
        let mut kept = self.clone();
        kept.acl.retain(|rule| {
            let keep = served(&rule.scope);
            if !keep {
                notes.push(format!(
                    "ACL rule {rule} is left out: its VIP is not served (it stays in force for the VIP if it comes back)"
                ));
            }
            keep
        });
        kept.limits.retain(|scope, _| {
            let keep = served(scope);
            if !keep {
                notes.push(format!(
                    "the limits of {scope} are left out: the VIP is not served (they stay in force for the VIP if it comes back)"
                ));
            }
            keep
        });
        (kept, notes)
    }

    /// What putting `file` in force undoes of these guards (runtime
    /// changes), for a reload's answer.
    pub fn undone_by(&self, file: &GuardConfig) -> Vec<String> {
        let mut notes = Vec::new();
        for rule in self.acl.difference(&file.acl) {
            notes.push(format!("ACL rule {rule} (not in the file) is removed"));
        }
        for rule in file.acl.difference(&self.acl) {
            notes.push(format!("ACL rule {rule} (removed at run time) is back"));
        }
        let scopes: BTreeSet<&Scope> = self.limits.keys().chain(file.limits.keys()).collect();
        for scope in scopes {
            match (self.limits.get(scope), file.limits.get(scope)) {
                (Some(_), None) => {
                    notes.push(format!("limits of {scope} (not in the file) are removed"));
                }
                (running, Some(wanted)) if running != Some(wanted) => {
                    notes.push(format!("limits of {scope} are set as the file says"));
                }
                _ => {}
            }
        }
        notes
    }
}

/// Whether guards of `scope` are in force: global, or of a VIP served
/// (`is_vip`); those of a removed VIP are kept out of force.
fn in_force(scope: &Scope, is_vip: &dyn Fn(&VipId) -> bool) -> bool {
    match scope {
        Scope::Global => true,
        Scope::Vip(id) => is_vip(id),
    }
}

/// A VIP scope must name a served VIP.
fn check_scope(scope: Scope, is_vip: &dyn Fn(&VipId) -> bool) -> Result<(), GuardError> {
    match scope {
        Scope::Vip(id) if !is_vip(&id) => Err(GuardError::NoVip(id)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip() -> VipId {
        "198.18.0.100:80/tcp".parse().unwrap()
    }

    fn rule(scope: Scope, action: Action, source: &str) -> AclRule {
        AclRule {
            scope,
            action,
            source: source.parse().unwrap(),
        }
    }

    #[test]
    fn cidrs_parse_strictly_and_name_what_is_wrong() {
        let c: Cidr = "198.18.66.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "198.18.66.0/24");
        assert_eq!("198.18.66.7".parse::<Cidr>().unwrap().len, 32);
        assert_eq!("2001:2:66::/48".parse::<Cidr>().unwrap().len, 48);
        assert_eq!("2001:2::1".parse::<Cidr>().unwrap().len, 128);
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().len, 0);
        let err = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
        assert!(err("198.18.66.7/24").contains("host bits set: the prefix is 198.18.66.0/24"));
        assert!(err("198.18.66.0/33").contains("longer than the address (32 bits)"));
        assert!(err("2001:2::/129").contains("128 bits"));
        for bad in [
            "",
            "nope",
            "198.18.66.0/",
            "198.18.66.0/x",
            "198.18.300.0/24",
            "/24",
        ] {
            assert!(
                err(bad).contains("is not a CIDR prefix"),
                "{bad}: {}",
                err(bad)
            );
        }
    }

    #[test]
    fn a_rule_of_an_unknown_vip_is_refused_and_nothing_changes() {
        let mut guard = GuardConfig::default();
        let r = rule(Scope::Vip(vip()), Action::Deny, "198.18.66.0/24");
        assert_eq!(guard.add_rule(r, &|_| false), Err(GuardError::NoVip(vip())));
        assert!(guard.acl.is_empty());
        assert_eq!(guard.add_rule(r, &|v| *v == vip()), Ok(true));
        assert_eq!(guard.add_rule(r, &|v| *v == vip()), Ok(false));
        assert_eq!(guard.acl.len(), 1);
        let global = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
        assert!(matches!(
            guard.remove_rule(&global),
            Err(GuardError::NoRule(_))
        ));
        guard.remove_rule(&r).unwrap();
        assert!(guard.acl.is_empty());
    }

    #[test]
    fn limits_are_checked_and_the_vips_own_replace_the_default() {
        let mut guard = GuardConfig::default();
        assert!(RateLimit::new(0, None, "source").is_err());
        assert!(RateLimit::new(10, Some(2_000_000), "source")
            .unwrap_err()
            .to_string()
            .contains("source burst: 2000000 is out of range 1..=1000000"));
        let rate = RateLimit::new(10, None, "source").unwrap();
        assert_eq!(rate.burst, 10);
        let source = Some(rate);
        let nothing = Limits::default();
        assert!(guard.set_limits(Scope::Global, nothing, &|_| true).is_err());
        let bad_len = Limits {
            source,
            prefix_v4: 33,
            ..Limits::default()
        };
        assert!(guard.set_limits(Scope::Global, bad_len, &|_| true).is_err());
        let global = Limits {
            source,
            ..Limits::default()
        };
        guard.set_limits(Scope::Global, global, &|_| true).unwrap();
        assert_eq!(guard.limits_of(&vip()), Some(&global));
        let own = Limits {
            prefix: source,
            ..Limits::default()
        };
        assert_eq!(
            guard.set_limits(Scope::Vip(vip()), own, &|_| false),
            Err(GuardError::NoVip(vip()))
        );
        guard.set_limits(Scope::Vip(vip()), own, &|_| true).unwrap();
        assert_eq!(guard.limits_of(&vip()), Some(&own));
        guard.clear_limits(Scope::Vip(vip())).unwrap();
        assert_eq!(
            guard.clear_limits(Scope::Vip(vip())),
            Err(GuardError::NoLimit(Scope::Vip(vip())))
        );
    }

    #[test]
    fn a_reload_names_every_runtime_change_it_undoes() {
        let file = GuardConfig {
            acl: [rule(Scope::Global, Action::Deny, "198.18.66.0/24")]
                .into_iter()
                .collect(),
            ..GuardConfig::default()
        };
        let mut running = file.clone();
        assert!(running.undone_by(&file).is_empty());
        running
            .remove_rule(&rule(Scope::Global, Action::Deny, "198.18.66.0/24"))
            .unwrap();
        running
            .add_rule(
                rule(Scope::Vip(vip()), Action::Allow, "198.18.1.0/24"),
                &|_| true,
            )
            .unwrap();
        let limits = Limits {
            source: Some(RateLimit::new(5, None, "source").unwrap()),
            ..Limits::default()
        };
        running
            .set_limits(Scope::Global, limits, &|_| true)
            .unwrap();
        let notes = running.undone_by(&file);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes
            .iter()
            .any(|n| n.contains("198.18.1.0/24") && n.contains("removed")));
        assert!(notes
            .iter()
            .any(|n| n.contains("198.18.66.0/24") && n.contains("is back")));
        assert!(notes.iter().any(|n| n.contains("limits of global")));
    }

    #[test]
    fn a_removed_vips_guards_are_named_in_the_removals_answer() {
        let mut guard = GuardConfig::default();
        guard
            .add_rule(rule(Scope::Global, Action::Deny, "198.18.66.0/24"), &|_| {
                true
            })
            .unwrap();
        assert_eq!(
            guard.kept_for_removed(&vip()),
            None,
            "a global rule is not the VIP's"
        );
        for source in ["198.18.1.0/24", "198.18.2.0/24"] {
            guard
                .add_rule(rule(Scope::Vip(vip()), Action::Deny, source), &|_| true)
                .unwrap();
        }
        let note = guard.kept_for_removed(&vip()).expect("named");
        assert!(
            note.contains(&format!("VIP {}: its 2 ACL rules stay", vip())),
            "{note}"
        );
        let limits = Limits {
            source: Some(RateLimit::new(5, None, "source").unwrap()),
            ..Limits::default()
        };
        guard
            .set_limits(Scope::Vip(vip()), limits, &|_| true)
            .unwrap();
        let note = guard.kept_for_removed(&vip()).expect("named");
        assert!(note.contains("its 2 ACL rules and limits stay"), "{note}");
    }

    /// `count` distinct /24 prefixes.
    fn prefixes(count: usize) -> impl Iterator<Item = String> {
        (0..count).map(|n| format!("10.{}.{}.0/24", n / 256, n % 256))
    }

    /// VIPs created and removed at run time, each with rules and limits of
    /// its own: their rules are kept (to guard a VIP re-added at once) but
    /// never exhaust the cap: a rule that needs their room takes it, and
    /// the removed VIPs' rules and limits are forgotten, while rules of
    /// VIPs served, and global ones, are never touched.
    #[test]
    fn rules_kept_for_removed_vips_give_way_to_a_new_rule_at_the_cap() {
        let gone = VipId { port: 81, ..vip() };
        let served = |id: &VipId| *id != gone;
        let mut guard = GuardConfig::default();
        let global = rule(Scope::Global, Action::Deny, "198.18.66.0/24");
        guard.add_rule(global, &|_| true).unwrap();
        let own = rule(Scope::Vip(vip()), Action::Deny, "198.18.1.0/24");
        guard.add_rule(own, &|_| true).unwrap();
        for source in prefixes(ACL_RULES_MAX_USABLE - 2) {
            guard
                .add_rule(rule(Scope::Vip(gone), Action::Allow, &source), &|_| true)
                .unwrap();
        }
        let limits = Limits {
            source: Some(RateLimit::new(5, None, "source").unwrap()),
            ..Limits::default()
        };
        guard
            .set_limits(Scope::Vip(gone), limits, &|_| true)
            .unwrap();
        assert_eq!(guard.acl.len(), ACL_RULES_MAX_USABLE);
        let before = guard.clone();
        // While the VIP is served, its rules are in force: the cap holds.
        let new = rule(Scope::Vip(vip()), Action::Deny, "198.18.2.0/24");
        assert_eq!(guard.add_rule(new, &|_| true), Err(GuardError::TooMany));
        assert_eq!(guard, before, "nothing changed");
        // Removed, its rules give way.
        assert_eq!(guard.add_rule(new, &served), Ok(true));
        assert_eq!(
            guard.acl,
            BTreeSet::from([global, own, new]),
            "the removed VIP's rules are forgotten, no other"
        );
        assert!(guard.limits.is_empty(), "and its limits");
        // Below the cap they stay, to guard the VIP if it is added back.
        guard
            .add_rule(
                rule(Scope::Vip(gone), Action::Deny, "198.18.3.0/24"),
                &|_| true,
            )
            .unwrap();
        guard
            .add_rule(rule(Scope::Global, Action::Deny, "198.18.4.0/24"), &served)
            .unwrap();
        assert_eq!(guard.acl.len(), 5);
    }

    /// Limits kept for removed VIPs are bounded too: past as many as there
    /// can be rules, a new scope's limits take their room.
    #[test]
    fn limits_kept_for_removed_vips_are_bounded() {
        let limits = Limits {
            source: Some(RateLimit::new(5, None, "source").unwrap()),
            ..Limits::default()
        };
        let vip_n = |n: usize| VipId {
            port: u16::try_from(n + 1).unwrap(),
            ..vip()
        };
        let mut guard = GuardConfig::default();
        for n in 0..KEPT_FOR_REMOVED_MAX {
            guard
                .set_limits(Scope::Vip(vip_n(n)), limits, &|_| true)
                .unwrap();
        }
        let last = vip_n(KEPT_FOR_REMOVED_MAX);
        // Only `last` is served now; the others were removed.
        guard
            .set_limits(Scope::Vip(last), limits, &|id| *id == last)
            .unwrap();
        assert_eq!(guard.limits.keys().collect::<Vec<_>>(), [&Scope::Vip(last)]);
    }

    #[test]
    fn a_rule_matching_no_client_is_refused_at_run_time_as_in_the_file() {
        let mut guard = GuardConfig::default();
        for (scope, source, says) in [
            (
                Scope::Vip(vip()),
                "2001:2::/48",
                "no client of the VIP comes from it",
            ),
            (
                Scope::Global,
                "::ffff:198.18.0.0/120",
                "write the IPv4 prefix 198.18.0.0/24",
            ),
        ] {
            let error = guard
                .add_rule(rule(scope, Action::Allow, source), &|_| true)
                .unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
        assert_eq!(guard, GuardConfig::default(), "nothing changed");
        guard
            .add_rule(rule(Scope::Global, Action::Allow, "2001:2::/48"), &|_| true)
            .unwrap();
    }

    #[test]
    fn a_prefix_length_that_does_nothing_is_refused_at_run_time_as_in_the_file() {
        let mut guard = GuardConfig::default();
        let source = Some(RateLimit::new(5, None, "source").unwrap());
        let prefix = Some(RateLimit::new(50, None, "prefix").unwrap());
        let without_rate = Limits {
            source,
            prefix_v4: 16,
            ..Limits::default()
        };
        let error = guard
            .set_limits(Scope::Global, without_rate, &|_| true)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("prefix_v4: needs prefix_rate"),
            "{error}"
        );
        let other_family = Limits {
            prefix,
            prefix_v6: 56,
            ..Limits::default()
        };
        let error = guard
            .set_limits(Scope::Vip(vip()), other_family, &|_| true)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("whose clients have no IPv6 prefix"),
            "{error}"
        );
        assert_eq!(guard, GuardConfig::default(), "nothing changed");
        // Globally both families' lengths apply; defaults are always let by.
        guard
            .set_limits(Scope::Global, other_family, &|_| true)
            .unwrap();
        let defaults = Limits {
            source,
            ..Limits::default()
        };
        guard
            .set_limits(Scope::Vip(vip()), defaults, &|_| true)
            .unwrap();
    }

    #[test]
    fn a_file_of_the_guards_leaves_out_those_of_vips_not_served() {
        let other = VipId { port: 81, ..vip() };
        let mut guard = GuardConfig::default();
        for r in [
            rule(Scope::Global, Action::Deny, "198.18.66.0/24"),
            rule(Scope::Vip(vip()), Action::Deny, "198.18.1.0/24"),
            rule(Scope::Vip(other), Action::Deny, "198.18.2.0/24"),
        ] {
            guard.add_rule(r, &|_| true).unwrap();
        }
        let limits = Limits {
            source: Some(RateLimit::new(5, None, "source").unwrap()),
            ..Limits::default()
        };
        guard
            .set_limits(Scope::Vip(other), limits, &|_| true)
            .unwrap();
        let (kept, notes) = guard.of_served(&|id| *id == vip());
        assert_eq!(kept.acl.len(), 2);
        assert!(kept.acl.iter().all(|r| r.scope != Scope::Vip(other)));
        assert!(kept.limits.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("198.18.2.0/24"), "{notes:?}");
        assert!(
            notes[1].contains(&format!("limits of {other}")),
            "{notes:?}"
        );
        assert_eq!(guard.of_served(&|_| true), (guard.clone(), Vec::new()));
    }

    #[test]
    fn scopes_and_actions_read_back_what_they_write() {
        for text in ["global", "198.18.0.100:80/tcp", "[2001:2::100]:53/udp"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        assert!("198.18.0.100"
            .parse::<Scope>()
            .unwrap_err()
            .to_string()
            .contains("global"));
        assert_eq!("allow".parse::<Action>(), Ok(Action::Allow));
        assert!("drop".parse::<Action>().is_err());
    }
}
