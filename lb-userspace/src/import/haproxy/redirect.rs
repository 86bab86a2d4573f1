//! `redirect` rules: HAProxy answered requests itself, which lbd cannot;
//! the binds every request of which was redirected are kept out of the
//! VIPs, the other redirects warned of.

use super::proxy::{self, Proxy};
use super::tls::is_tls;
use crate::import::model::{Listen, Note};

/// `proxy`'s binds less those its redirects (and its backend's, `farm`)
/// answered for every request: HAProxy redirected every request (or every
/// one without TLS, `if !{ ssl_fc }`, `unless { ssl_fc }`) of its binds
/// without `ssl`, so lbd serving them would hand the application
/// cleartext requests it never saw (login forms, cookies): those binds
/// are kept out, with a WARNING. A redirect on a condition the import
/// does not interpret is a WARNING naming the binds it may have answered.
pub(super) fn redirected(proxy: &Proxy, farm: &Proxy, notes: &mut Vec<Note>) -> Vec<Listen> {
    let mut redirects: Vec<&proxy::Redirect> = proxy.redirects.iter().collect();
    if !std::ptr::eq(proxy, farm) {
        redirects.extend(farm.redirects.iter());
    }
    let named = |listens: &[&Listen]| {
        listens
            .iter()
            .map(|l| format!("{} (line {})", l.what, l.origin.line))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plain: Vec<&Listen> = proxy.binds.iter().filter(|l| !is_tls(proxy, l)).collect();
    let mut keep_out = false;
    for redirect in &redirects {
        let text = match redirect.scope {
            proxy::RedirectScope::Every | proxy::RedirectScope::Plain if !plain.is_empty() => {
                keep_out = true;
                let which = if redirect.scope == proxy::RedirectScope::Every {
                    "every request"
                } else {
                    "every request without TLS"
                };
                format!(
                    "WARNING: {}: HAProxy answered {which} with a redirect on {}; lbd cannot redirect (it would send them to the servers in cleartext): not imported; serve the redirect from the backends (or keep HAProxy for it) if clients still connect there",
                    redirect.what,
                    named(&plain)
                )
            }
            proxy::RedirectScope::Every | proxy::RedirectScope::Plain => format!(
                "WARNING: {}: HAProxy answered these requests with a redirect; lbd cannot redirect: not carried over",
                redirect.what
            ),
            proxy::RedirectScope::Conditional => {
                let all: Vec<&Listen> = proxy.binds.iter().collect();
                format!(
                    "WARNING: {}: HAProxy answered the requests this condition matches with a redirect; lbd cannot redirect, so on {} they now reach the servers (the condition is not interpreted): serve the redirect from the backends, or check that they need none",
                    redirect.what,
                    named(&all)
                )
            }
        };
        notes.push(Note::new(&redirect.origin, text));
    }
    proxy
        .binds
        .iter()
        .filter(|l| !keep_out || is_tls(proxy, l))
        .cloned()
        .collect()
}
