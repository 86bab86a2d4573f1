//! HAProxy's source ACLs as lbd's `[[acl]]` rules: `acl NAME src
//! PREFIX...` with `tcp-request connection|content reject if !NAME` (only
//! those sources: an allow list) or `... reject if NAME` (a deny list).
//! HAProxy rejects a connection when any reject rule matches, which is
//! what lbd's rules do as long as there is one allow list; other rules
//! (accept rules, other criteria, compound conditions) are noted.

use super::lexer::Line;
use crate::guard::rules::Cidr;
use crate::import::model::{AclRule, Note, Origin};

/// One `acl NAME CRITERION VALUES` line.
#[derive(Debug, Clone)]
struct Def {
    name: String,
    /// The sources of a plain `src` ACL; None: anything else.
    sources: Option<Vec<Cidr>>,
    origin: Origin,
    what: String,
}

/// A `tcp-request ... reject if|unless [!]NAME` rule.
#[derive(Debug, Clone)]
struct Reject {
    /// Rejects the sources outside the ACL (an allow list).
    outside: bool,
    name: String,
    origin: Origin,
    what: String,
}

/// The ACL lines and reject rules of a proxy.
#[derive(Debug, Clone, Default)]
pub(super) struct Rules {
    defs: Vec<Def>,
    rejects: Vec<Reject>,
    /// A rule that makes the order matter (an accept): nothing is
    /// translated then.
    ordered: Option<Origin>,
    notes: Vec<Note>,
}

impl Rules {
    /// An `acl` line.
    pub(super) fn define(&mut self, file: &str, line: &Line) {
        let origin = Origin::new(file, line.no);
        let (Some(name), Some(criterion)) = (line.words.get(1), line.words.get(2)) else {
            self.notes.push(Note::new(
                &origin,
                format!(
                    "WARNING: {}: an ACL without a criterion; not carried over",
                    line.text()
                ),
            ));
            return;
        };
        let values = &line.words[3.min(line.words.len())..];
        let sources = (criterion == "src" && !values.is_empty())
            .then(|| {
                values
                    .iter()
                    .map(|v| crate::import::acl::source(v))
                    .collect::<Option<Vec<_>>>()
            })
            .flatten();
        self.defs.push(Def {
            name: name.clone(),
            sources,
            origin,
            what: line.text(),
        });
    }

    /// A `tcp-request` line; false when it is one with no effect on who
    /// may connect (`inspect-delay`), left to the caller.
    pub(super) fn tcp_request(&mut self, file: &str, line: &Line) -> bool {
        let origin = Origin::new(file, line.no);
        let words: Vec<&str> = line.words.iter().map(String::as_str).collect();
        match words.as_slice() {
            [_, "inspect-delay", ..] => false,
            [_, "connection" | "content" | "session", "reject", cond @ ("if" | "unless"), term] => {
                let (negated, name) = match term.strip_prefix('!') {
                    Some(name) => (true, name),
                    None => (false, *term),
                };
                self.rejects.push(Reject {
                    outside: negated == (*cond == "if"),
                    name: name.to_owned(),
                    origin,
                    what: line.text(),
                });
                true
            }
            [_, _, "accept", ..] => {
                self.ordered.get_or_insert(origin.clone());
                self.notes.push(Note::new(
                    &origin,
                    format!("WARNING: {}: an accept rule; lbd's [[acl]] rules have no order: not carried over", line.text()),
                ));
                true
            }
            _ => {
                self.notes.push(Note::new(
                    &origin,
                    format!("WARNING: {}: lbd translates only `reject if [!]ACL` of a `src` ACL into [[acl]]; not carried over", line.text()),
                ));
                true
            }
        }
    }

    /// The rules of a service whose proxies (frontend and backend) have
    /// `all`, as lbd's rules, and the notes on what is not carried over.
    pub(super) fn resolve(all: &[&Rules]) -> (Vec<AclRule>, Vec<Note>) {
        let mut notes: Vec<Note> = all.iter().flat_map(|r| r.notes.clone()).collect();
        let rejects: Vec<(&Rules, &Reject)> = all
            .iter()
            .flat_map(|r| r.rejects.iter().map(move |x| (*r, x)))
            .collect();
        if let Some(at) = all.iter().find_map(|r| r.ordered.as_ref()) {
            for (_, reject) in &rejects {
                notes.push(Note::new(
                    &reject.origin,
                    format!("WARNING: {}: with the accept rule at {at} the order of the rules matters, which lbd's [[acl]] rules do not have: not carried over (write the [[acl]] tables yourself)", reject.what),
                ));
            }
            return (Vec::new(), notes);
        }
        // Each reject with the sources of its ACL, looked up in the
        // proxy that has the rule (ACLs are per section in HAProxy).
        let mut resolved: Vec<(&Reject, Vec<(Cidr, &Def)>)> = Vec::new();
        for (rules, reject) in &rejects {
            let defs: Vec<&Def> = rules
                .defs
                .iter()
                .filter(|d| d.name == reject.name)
                .collect();
            let sources: Option<Vec<(Cidr, &Def)>> = (!defs.is_empty())
                .then(|| {
                    defs.iter()
                        .map(|d| {
                            d.sources
                                .as_ref()
                                .map(|s| s.iter().map(|c| (*c, *d)).collect::<Vec<_>>())
                        })
                        .collect::<Option<Vec<_>>>()
                        .map(|v| v.into_iter().flatten().collect())
                })
                .flatten();
            let Some(sources) = sources else {
                notes.push(Note::new(
                    &reject.origin,
                    format!("WARNING: {}: ACL {} is not a plain `src` ACL of this section (lbd's rules match source addresses): not carried over", reject.what, reject.name),
                ));
                continue;
            };
            resolved.push((reject, sources));
        }
        // The "only these sources" lists, told apart by what they hold,
        // not their names: the same list used by two rules (or defined
        // alike in the frontend and the backend) is one list, while a
        // frontend `trusted` and a backend `trusted` that differ are two,
        // which HAProxy intersects and lbd's one allow list cannot.
        let mut allow_lists: Vec<(Vec<Cidr>, String)> = Vec::new();
        for (reject, sources) in resolved.iter().filter(|(r, _)| r.outside) {
            let mut set: Vec<Cidr> = sources.iter().map(|(c, _)| *c).collect();
            set.sort();
            set.dedup();
            if !allow_lists.iter().any(|(s, _)| *s == set) {
                allow_lists.push((set, format!("{} at {}", reject.name, reject.origin)));
            }
        }
        let mut out: Vec<AclRule> = Vec::new();
        for (reject, sources) in resolved {
            if reject.outside && allow_lists.len() > 1 {
                let names: Vec<&str> = allow_lists.iter().map(|(_, n)| n.as_str()).collect();
                notes.push(Note::new(
                    &reject.origin,
                    format!("WARNING: {}: one of several different \"only these sources\" rules ({}); HAProxy let in only sources in all of them, lbd's allow list is one: not carried over, the VIP is more open than it was", reject.what, names.join(", ")),
                ));
                continue;
            }
            for (source, def) in sources {
                // One rule per meaning (allow or deny, prefix; the scope is
                // the service's VIPs): lbd refuses a rule listed twice.
                if out
                    .iter()
                    .any(|r| r.allow == reject.outside && r.source == source)
                {
                    continue;
                }
                out.push(AclRule {
                    allow: reject.outside,
                    source,
                    origin: reject.origin.clone(),
                    what: format!("{}; {}: {}", reject.what, def.origin, def.what),
                });
            }
        }
        (out, notes)
    }
}
