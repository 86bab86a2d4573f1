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
        let allow_lists: Vec<&str> = {
            let mut names: Vec<&str> = rejects
                .iter()
                .filter(|(_, r)| r.outside)
                .map(|(_, r)| r.name.as_str())
                .collect();
            names.dedup();
            names
        };
        let mut out = Vec::new();
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
            if reject.outside && allow_lists.len() > 1 {
                notes.push(Note::new(
                    &reject.origin,
                    format!("WARNING: {}: one of several \"only these sources\" rules ({}); HAProxy let in only sources in all of them, lbd's allow list is one: not carried over, the VIP is more open than it was", reject.what, allow_lists.join(", ")),
                ));
                continue;
            }
            for (source, def) in sources {
                out.push(AclRule {
                    allow: reject.outside,
                    source,
                    origin: reject.origin.clone(),
                    what: format!("{}; {}: {}", reject.what, def.origin, def.what),
                });
            }
        }
        out.dedup();
        (out, notes)
    }
}
