//! Refusals in the operator's words: lbd (and the checks lbctl shares
//! with it) name a wrong value by its API or config file key
//! (`table_size: 100 is not a prime`), which is right for an HTTP client
//! but not for someone who typed `lbctl vip add ... --table-size 100`.
//! Each command that sends a request maps the keys of its refusals to
//! the flags that set them; lbd's own texts stay as they are.

use lb_userspace::api::client::ClientError;

use crate::Failure;

/// A command's keys and the flags that give them: (key as lbd names it,
/// flag as the operator types it).
pub(crate) type Names = &'static [(&'static str, &'static str)];

/// The health check keys (`health.interval_ms`) of `vip add` and
/// `backend add`, set by the `--check-*` flags.
const HEALTH: Names = &[
    ("health.check", "--check"),
    ("health.port", "--check-port"),
    ("health.path", "--check-path"),
    ("health.host", "--check-host"),
    ("health.expect_status", "--check-expect-status"),
    ("health.expect_body", "--check-expect-body"),
    ("health.tls", "--check-tls"),
    ("health.user", "--check-user"),
    ("health.database", "--check-database"),
    ("health.interval_ms", "--check-interval-ms"),
    ("health.fast_interval_ms", "--check-fast-interval-ms"),
    ("health.timeout_ms", "--check-timeout-ms"),
    ("health.rise", "--check-rise"),
    ("health.fall", "--check-fall"),
    ("health.through_tunnel", "--check-through-tunnel"),
];

/// `lbctl vip add`: the VIP's own keys; its health keys are [`HEALTH`].
pub(crate) const VIP_ADD: Names = &[
    ("table_size", "--table-size"),
    ("on_all_down", "--on-all-down"),
    ("forwarding", "--forwarding"),
    ("affinity", "--affinity"),
    ("drain_timeout_s", "--drain-timeout"),
    ("slow_start_s", "--slow-start"),
    ("nat_source", "--nat-source"),
];

/// `lbctl backend drain`.
pub(crate) const BACKEND_DRAIN: Names = &[("timeout_s", "--timeout")];

/// `lbctl backend weight`: the weight is its positional WEIGHT.
pub(crate) const BACKEND_WEIGHT: Names = &[("weight", "WEIGHT")];

/// `lbctl limit set`.
pub(crate) const LIMIT_SET: Names = &[
    ("source.per_s", "--source-rate"),
    ("source.burst", "--source-burst"),
    ("prefix.per_s", "--prefix-rate"),
    ("prefix.burst", "--prefix-burst"),
    ("source_rate", "--source-rate"),
    ("source_burst", "--source-burst"),
    ("prefix_rate", "--prefix-rate"),
    ("prefix_burst", "--prefix-burst"),
    ("prefix_v4", "--prefix-v4"),
    ("prefix_v6", "--prefix-v6"),
];

/// The failure of a request lbd answered `error` to, its keys named by
/// the command's flags (`names`, with the health flags when `health`)
/// when lbd refused the request (exit 2: what was sent is wrong);
/// other failures as they are.
pub(crate) fn refused(error: ClientError, names: Names, health: bool) -> Failure {
    let refusal =
        matches!(&error, ClientError::Api(_)) && error.exit_code() == ClientError::EXIT_USAGE;
    let mut failure = Failure::from(error);
    if refusal {
        failure.message = in_flags(&failure.message, names, health);
    }
    failure
}

/// `message` with the keys of `names` (and [`HEALTH`] when `health`)
/// written as their flags: `key: ...` at its start (the field a refusal
/// names), a key with `_` or `.` wherever it stands as a word (no
/// sentence has such a word), and `key = "value"` (the file's spelling
/// of a setting) as `--flag value`. A plain word (`weight`,
/// `forwarding`) elsewhere is left alone: it may be just a word.
pub(crate) fn in_flags(message: &str, names: Names, health: bool) -> String {
    let mut all: Vec<(&str, &str)> = names.to_vec();
    if health {
        all.extend_from_slice(HEALTH);
    }
    // The longest key first: `prefix.per_s` before a shorter one inside it.
    all.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
    let mut text = message.to_owned();
    for (key, flag) in &all {
        text = settings_as_flags(&text, key, flag);
        if let Some(rest) = text.strip_prefix(&format!("{key}:")) {
            text = format!("{flag}:{rest}");
        }
        if key.contains(['_', '.']) {
            text = words_replaced(&text, key, flag);
        }
    }
    text
}

/// `text` with `key = "value"` written `flag value`.
fn settings_as_flags(text: &str, key: &str, flag: &str) -> String {
    let pattern = format!("{key} = \"");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        let after = &rest[at + pattern.len()..];
        let Some(end) = after.find('"') else {
            break;
        };
        if !is_word_start(rest, at) {
            out.push_str(&rest[..at + pattern.len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str(flag);
        out.push(' ');
        out.push_str(&after[..end]);
        rest = &after[end + 1..];
        // `key = "a" or "b"`: `--flag a or b`.
        while let Some(next) = rest.strip_prefix(" or \"") {
            let Some(end) = next.find('"') else {
                break;
            };
            out.push_str(" or ");
            out.push_str(&next[..end]);
            rest = &next[end + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// `text` with every whole-word `key` written `flag`.
fn words_replaced(text: &str, key: &str, flag: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let end = at + key.len();
        let ends_word = !rest[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        if is_word_start(rest, at) && ends_word {
            out.push_str(flag);
        } else {
            out.push_str(key);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether `at` in `text` begins a word (not inside a key or a flag).
fn is_word_start(text: &str, at: usize) -> bool {
    !text[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '['))
}

#[cfg(test)]
mod tests {
    use lb_userspace::api::ApiError;

    use super::*;

    fn refusal(status: u16, message: &str) -> ClientError {
        ClientError::Api(ApiError {
            status,
            code: "invalid".into(),
            message: message.into(),
        })
    }

    /// `vip add`: lbd's refusals name its flags, `--nat-source` without
    /// `--forwarding nat` and a `--table-size` that is no prime.
    #[test]
    fn vip_add_refusals_name_its_flags() {
        let failure = refused(
            refusal(
                400,
                "nat_source: only a VIP with forwarding = \"nat\" has a NAT address",
            ),
            VIP_ADD,
            true,
        );
        assert!(
            failure
                .message
                .starts_with("--nat-source: only a VIP with --forwarding nat has a NAT address"),
            "{}",
            failure.message
        );
        assert_eq!(failure.code, ClientError::EXIT_USAGE);
        let failure = refused(
            refusal(400, "table_size: 100 is not a prime"),
            VIP_ADD,
            true,
        );
        assert!(
            failure
                .message
                .starts_with("--table-size: 100 is not a prime"),
            "{}",
            failure.message
        );
        let failure = refused(
            refusal(400, "health.interval_ms: 5 is out of range 100..=3600000"),
            VIP_ADD,
            true,
        );
        assert!(
            failure
                .message
                .starts_with("--check-interval-ms: 5 is out of range"),
            "{}",
            failure.message
        );
        // A backend's key is the --backend value's own spelling (weight=W).
        let failure = refused(
            refusal(400, "backends[0].weight: 0 is out of range"),
            VIP_ADD,
            true,
        );
        assert!(
            failure.message.starts_with("backends[0].weight: "),
            "{}",
            failure.message
        );
    }

    /// `--check-expect-body`: lbd's refusal of the text, or of it on a
    /// check that reads no body, names the flag.
    #[test]
    fn expect_body_refusals_name_its_flag() {
        let failure = refused(
            refusal(
                400,
                "health.expect_body: only an HTTP check reads a body, and this check is \"tcp\" (check = \"tcp\" is the default): set check = \"http\" or leave expect_body out",
            ),
            &[],
            true,
        );
        assert!(
            failure
                .message
                .starts_with("--check-expect-body: only an HTTP check reads a body"),
            "{}",
            failure.message
        );
    }

    /// `--check-tls`: lbd's refusal of it on a check that runs no TLS
    /// names the flag.
    #[test]
    fn tls_refusals_name_its_flag() {
        let failure = refused(
            refusal(
                400,
                "health.tls: only a TCP or HTTP check runs over TLS, and this check is \"pgsql\": set check = \"tcp\" or \"http\", or leave tls out",
            ),
            &[],
            true,
        );
        assert!(
            failure
                .message
                .starts_with("--check-tls: only a TCP or HTTP check runs over TLS"),
            "{}",
            failure.message
        );
    }

    /// `backend add`: its health flags (the VIP's forwarding is no flag
    /// of it: left as the VIP's setting).
    #[test]
    fn backend_add_refusals_name_its_check_flags() {
        let failure = refused(
            refusal(
                400,
                "health.through_tunnel: only a VIP with forwarding = \"ipip\" or \"gue\" has a tunnel to check through",
            ),
            &[],
            true,
        );
        assert!(
            failure.message.starts_with(
                "--check-through-tunnel: only a VIP with forwarding = \"ipip\" or \"gue\" has a tunnel"
            ),
            "{}",
            failure.message
        );
    }

    /// `backend drain --timeout` and `backend weight WEIGHT`.
    #[test]
    fn drain_and_weight_refusals_name_their_arguments() {
        let failure = refused(
            refusal(400, "timeout_s: 700000 is out of range 0..=604800"),
            BACKEND_DRAIN,
            false,
        );
        assert!(
            failure.message.starts_with("--timeout: 700000"),
            "{}",
            failure.message
        );
        let failure = refused(
            refusal(400, "weight: 70000 is out of range 0..=65535"),
            BACKEND_WEIGHT,
            false,
        );
        assert!(
            failure.message.starts_with("WEIGHT: 70000"),
            "{}",
            failure.message
        );
    }

    /// `limit set`: lbd's keys and the keys of the checks lbctl shares
    /// with it.
    #[test]
    fn limit_set_refusals_name_its_flags() {
        assert_eq!(
            in_flags(
                "--prefix-v4: needs prefix_rate (prefix_v4 is the length of the prefixes prefix_rate limits)",
                LIMIT_SET,
                false
            ),
            "--prefix-v4: needs --prefix-rate (--prefix-v4 is the length of the prefixes --prefix-rate limits)"
        );
        let failure = refused(
            refusal(400, "source.per_s: 0 is out of range 1..=1000000"),
            LIMIT_SET,
            false,
        );
        assert!(
            failure.message.starts_with("--source-rate: 0"),
            "{}",
            failure.message
        );
        assert_eq!(
            in_flags("prefix_v6: 200 is out of range 1..=128", LIMIT_SET, false),
            "--prefix-v6: 200 is out of range 1..=128"
        );
    }

    /// Only a refusal is rewritten (a 404 naming a VIP, a 5xx are as
    /// lbd said them), and a plain word is not taken for a key.
    #[test]
    fn only_refusals_and_only_keys_are_rewritten() {
        let failure = refused(refusal(404, "table_size: x"), VIP_ADD, false);
        assert!(
            failure.message.starts_with("table_size: x"),
            "{}",
            failure.message
        );
        let failure = refused(refusal(500, "table_size: x"), VIP_ADD, false);
        assert!(
            failure.message.starts_with("table_size: x"),
            "{}",
            failure.message
        );
        assert_eq!(
            in_flags(
                "every backend has weight 0 and forwarding is on",
                BACKEND_WEIGHT,
                false
            ),
            "every backend has weight 0 and forwarding is on"
        );
        assert_eq!(
            in_flags("vip[0].table_size: x", VIP_ADD, false),
            "vip[0].table_size: x"
        );
    }
}
