//! Proxies that give lbd no service: a frontend without a
//! default_backend, a proxy in a mode that serves no clients (`mode log`,
//! `mode spop`). The notes saying so, apart from the section loop that
//! skips them.

use super::proxy::Proxy;
use crate::import::model::Note;

/// The note that `proxy`, a frontend without a default_backend, is not
/// imported: a WARNING naming its use_backend rules where it has any (its
/// connections went there: a service missing after cut-over, SNI routing
/// on :443 say), a NOTE where it has none.
pub(super) fn no_default_backend(proxy: &Proxy) -> Note {
    if proxy.use_backends.is_empty() {
        return Note::new(
            &proxy.origin,
            format!(
                "frontend {} has no default_backend: not imported (lbd forwards every connection of a VIP to one set of backends)",
                proxy.name
            ),
        );
    }
    let rules: Vec<String> = proxy
        .use_backends
        .iter()
        .map(|(at, what)| format!("{what} (line {})", at.line))
        .collect();
    Note::new(
        &proxy.origin,
        format!(
            "WARNING: frontend {} is not imported: it has no default_backend and its connections went to use_backend rules ({}), content switching lbd does not do (a VIP's connections go to one set of backends), so its binds serve nothing after cut-over: give each backend a VIP of its own address or port and write those [[vip]]s, or keep HAProxy for this frontend",
            proxy.name,
            rules.join("; ")
        ),
    )
}

/// The WARNING that `proxy` (the default_backend of `user`, if given)
/// is in a mode that serves no clients (`mode log`, HAProxy 2.9+: a
/// syslog backend; `mode spop`, 3.1+: SPOE agents), so it is skipped,
/// not imported; None for `tcp` and `http`. Refusing the whole import
/// for one, as an unknown mode, lost every service beside it.
pub(super) fn serves_no_clients(proxy: &Proxy, user: Option<&Proxy>) -> Option<Note> {
    let mode = proxy.settings.mode.as_ref()?;
    let what = match mode.value.as_str() {
        "log" => "log servers HAProxy forwards its logs to",
        "spop" => "SPOE agents HAProxy's filters talk to",
        _ => return None,
    };
    let used_by = user.map_or(String::new(), |u| {
        format!(", the default_backend of {} {},", u.kind, u.name)
    });
    Some(Note::new(
        &mode.origin,
        format!(
            "WARNING: {} {}{used_by} is in {} ({what}), not a service of clients' connections lbd balances: not imported",
            proxy.kind, proxy.name, mode.what
        ),
    ))
}
