//! What the operator is told a change leaves or undoes of the guards: the
//! notes of a VIP removal's, a config dump's and a reload's answers.

use std::collections::BTreeSet;

use super::{changes::in_force, GuardConfig, Scope};
use crate::vip_id::VipId;

impl GuardConfig {
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
        let served = |scope: &Scope| in_force(scope, is_vip);
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

#[cfg(test)]
mod tests;
