//! BIRD's control socket, the one lbd uses to make BIRD re-read its config
//! after the routes file changed (what `birdc configure` does), without
//! needing `birdc` or BIRD's own privileges.
//!
//! The protocol is lines: BIRD greets with `0001 BIRD x.y ready.`; each
//! reply line starts with a four-digit code followed by `-` when more
//! lines of the reply follow, or a space on the last one; lines that start
//! with a space continue the previous one. Codes `0xxx` mean success,
//! `8xxx` run-time and `9xxx` parse-time errors (BIRD's
//! `doc/reply_codes`).

mod checked;
mod commands;
mod failures;
mod reply;
mod session;
#[cfg(test)]
mod tests;

pub(crate) use checked::{configure_checked, probe};
pub(crate) use commands::{configure, toggle, Toggle, Toggled};
pub(crate) use failures::{is_not_running, is_refused};
