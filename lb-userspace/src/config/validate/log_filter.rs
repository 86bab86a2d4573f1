//! Whether a `log_level` filter would silence lbd's own logs: tracing
//! turns off every target a filter does not name, so a filter that parses
//! may still leave lbd mute. Apart because it reads tracing's directive
//! syntax, unlike every other rule.

/// The log targets lbd logs under: the library (`lb_userspace::...`: all
/// of lbd's work) and the daemon's binary (`lbd`: the fatal start error and
/// the config's warnings).
const LBD_LOG_TARGETS: [&str; 2] = ["lb_userspace", "lbd"];

/// Why the tracing filter `filter` (which `EnvFilter` accepts) would
/// silence some of lbd's own logs, if it would. tracing enables an event by
/// the directives whose target is a prefix of the event's target (a plain
/// string prefix: `lb_userspace` and `lb_user` cover
/// `lb_userspace::daemon`, `lb_userspace2` and `lbd_userspace` do not),
/// and by a bare level (the default directive); an event no directive
/// covers is off. So each of lbd's two targets needs a level of its own
/// (a bare level gives both one): `"lb_userspace=debug"` leaves target
/// `lbd` off (lbd would exit 1 on a start error saying nothing),
/// `"lbd=info"` the whole library, `"h2=debug"` both, and
/// `"lb_userspace::vrrp=debug"` all but one module. A bare word that is not
/// a level (`"warning"`, `"inof"`) is read by tracing as a target to log at
/// every level: fine once both targets have a level (`"warn,h2"`), and
/// named as the likely misspelt level when neither has. An explicit `off`
/// (bare, or for lbd's targets) is taken as meant.
pub(super) fn log_filter_silences_lbd(filter: &str) -> Option<String> {
    use tracing_subscriber::filter::LevelFilter;
    const LEVELS: &str = "trace, debug, info, warn, error, off";
    // Whether a directive for `target` covers every event of lbd's target
    // `own`, or only some (a module's: `lb_userspace::vrrp`).
    let whole = |target: &str, own: &str| own.starts_with(target);
    let part = |target: &str| {
        LBD_LOG_TARGETS.iter().any(|own| {
            target
                .strip_prefix(own)
                .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    // Which of lbd's targets a bare level or a directive for all of it
    // gives a level.
    let mut covered = [false; LBD_LOG_TARGETS.len()];
    // A level for some of lbd's events only (a module's, within spans).
    let mut some = false;
    // The first bare word that is neither a level nor lbd's target.
    let mut stray = None;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `target[span{field=value}]=level`: the level after the span
        // part, the target before it.
        let (head, level) = match directive.rfind(']') {
            Some(end) => (&directive[..=end], directive[end + 1..].strip_prefix('=')),
            None => match directive.rsplit_once('=') {
                Some((head, level)) => (head, Some(level)),
                None => (directive, None),
            },
        };
        let (target, span) = match head.split_once('[') {
            Some((target, _)) => (target, true),
            None => (head, false),
        };
        let bare_level = level.is_none() && directive.parse::<LevelFilter>().is_ok();
        let mut named = false;
        for (own, covered) in LBD_LOG_TARGETS.iter().zip(covered.iter_mut()) {
            if whole(target, own) {
                named = true;
                if !span {
                    *covered = true;
                }
            }
            if !span && bare_level {
                *covered = true;
            }
        }
        if bare_level {
            continue;
        }
        if named || part(target) {
            // Within spans only, or a module of lbd's.
            some |= span || !named;
        } else if level.is_none() && !span && stray.is_none() {
            stray = Some(directive);
        }
    }
    if covered.iter().all(|&c| c) {
        return None;
    }
    let missing: Vec<&str> = LBD_LOG_TARGETS
        .iter()
        .zip(covered)
        .filter(|(_, c)| !c)
        .map(|(own, _)| *own)
        .collect();
    // A stray word beside no level for any of lbd's targets is most
    // likely a misspelt level; beside one, the target left out is what to
    // name.
    if let (Some(word), false) = (stray, covered.iter().any(|&c| c)) {
        return Some(format!(
            "{word:?} is not a level ({LEVELS}); tracing reads a bare word as a target to log, so lbd's own logs would be off{}: write a level, or TARGET=LEVEL (e.g. \"warn\", \"info,lb_userspace::vrrp=debug\"), or a level beside a target (\"warn,h2\")",
            if some { " (but those of the modules named)" } else { "" }
        ));
    }
    if missing.len() == LBD_LOG_TARGETS.len() && !some {
        return Some(format!(
            "{filter:?} names no level for lbd's own logs (targets {}), so lbd would log nothing, not even errors: add one (e.g. \"info,{filter}\"); levels are {LEVELS}",
            LBD_LOG_TARGETS.join(", ")
        ));
    }
    Some(format!(
        "{filter:?} names no level for all of lbd's target{} {}, and tracing turns off every target a filter does not name, so {}: give each of lbd's targets (lb_userspace: all of its work; lbd: its start errors and config warnings) a level, or add a bare level (e.g. \"info,{filter}\"); levels are {LEVELS}",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(" and "),
        match missing.as_slice() {
            ["lbd"] => "an lbd that fails to start would exit saying nothing, and the config's warnings would be lost",
            ["lb_userspace"] => "all of lbd's work would log nothing, not even errors",
            _ => "lbd would log nothing but the modules named, not even its errors",
        }
    ))
}
