//! A service's source rules as `[[acl]]` tables scoped to each of its
//! VIPs, with the rules of the other address family left out.

use super::family;
use super::vips::Vip;
use crate::import::write::Table;

/// The `[[acl]]` tables of `vip`: its service's source rules, scoped to it.
pub(super) fn acl_tables_of(vip: &Vip<'_>) -> Vec<Table> {
    let id = crate::vip_id::VipId {
        address: vip.address,
        port: vip.port,
        protocol: vip.protocol,
    };
    let table = |allow: bool, source: String, comment: String| {
        let mut t = Table::new("[[acl]]", 0);
        t.push("action", if allow { "allow" } else { "deny" }, comment);
        t.push("source", source, "");
        t.push("vip", id.to_string(), vip.service.name.clone());
        t
    };
    let v4 = vip.address.is_ipv4();
    let mut out = Vec::new();
    // (allow, source) of the rules written: a rule the sources say twice
    // (`deny` repeated, one ACL used by two reject rules) is written once,
    // as lbd refuses a rule listed twice.
    let mut written: Vec<(bool, String)> = Vec::new();
    // Rules of the other family can match no client of this VIP; an
    // allow list of only such rules lets none of its family in.
    let allows = vip.service.acl.iter().filter(|r| r.allow);
    if let Some(first) = allows.clone().next() {
        if !allows.clone().any(|r| r.source.address.is_ipv4() == v4) {
            let everything = crate::import::acl::everything();
            let all = everything
                .iter()
                .find(|c| c.address.is_ipv4() == v4)
                .map_or_else(String::new, ToString::to_string);
            written.push((false, all.clone()));
            out.push(table(
                false,
                all,
                format!(
                    "{}: its allow list ({}) holds no {} source",
                    first.origin,
                    first.what,
                    family(vip.address)
                ),
            ));
        }
    }
    for rule in vip
        .service
        .acl
        .iter()
        .filter(|r| r.source.address.is_ipv4() == v4)
    {
        let key = (rule.allow, rule.source.to_string());
        if written.contains(&key) {
            continue;
        }
        written.push(key);
        out.push(table(
            rule.allow,
            rule.source.to_string(),
            format!("{} ({})", rule.origin, rule.what),
        ));
    }
    out
}
