//! keepalived's conditional lines (keepalived.conf(5): "Any configuration
//! line starting with '@' is a conditional configuration line"): `@ID
//! rest` is read as `rest` only by the keepalived whose config id
//! (`-i`/`--config-id`, else its short host name) is ID, `@^ID rest` by
//! every other one. One file then serves both nodes (`@lb1 priority
//! 150`, `@lb2 priority 100`), so which lines apply depends on the node
//! imported: without its config id the lines are refused at their
//! `file:line`, never dropped (dropping them lost priorities and
//! real_servers with only a note).

use crate::import::ImportError;

/// `text` as the keepalived with config id `config_id` reads it: each
/// conditional line that applies without its `@ID` prefix, each other one
/// blank (lines keep their numbers, for provenance and errors). Refused
/// at the first conditional line when `config_id` is None.
pub(super) fn resolve(
    file: &str,
    text: &str,
    config_id: Option<&str>,
) -> Result<String, ImportError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let body = line.trim_start();
        let Some(condition) = body.strip_prefix('@') else {
            out.push_str(line);
            continue;
        };
        let (reverse, id_and_rest) = match condition.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, condition),
        };
        let (id, rest) = id_and_rest
            .split_once([' ', '\t'])
            .unwrap_or((id_and_rest.trim_end(), ""));
        let Some(config_id) = config_id else {
            return Err(ImportError::at(
                file,
                index + 1,
                format!(
                    "\"{}\": a conditional line, which keepalived reads only where its config id (-i/--config-id, else the short host name) is {}{id}; which lines apply depends on the node imported: name it with --config-id ID",
                    body.trim_end(),
                    if reverse { "not " } else { "" }
                ),
            ));
        };
        // keepalived: a line of nothing but the condition is dropped.
        let applies = (id == config_id) != reverse && !rest.trim().is_empty();
        let kept = line.len() - rest.len();
        if applies {
            // The condition blanked, the rest at its column.
            out.extend(std::iter::repeat_n(' ', kept));
            out.push_str(rest);
        } else if line.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_this_node_are_kept_and_others_blanked_keeping_line_numbers() {
        let text = "a\n  @lb1 priority 150\n\t@lb2 priority 100\n@^lb1 state BACKUP\n@lb1\nb";
        let lb1 = resolve("k.conf", text, Some("lb1")).expect("resolved");
        let lines: Vec<&str> = lb1.lines().map(str::trim).collect();
        assert_eq!(lines, ["a", "priority 150", "", "", "", "b"]);
        let lb2 = resolve("k.conf", text, Some("lb2")).expect("resolved");
        let lines: Vec<&str> = lb2.lines().map(str::trim).collect();
        assert_eq!(lines, ["a", "", "priority 100", "state BACKUP", "", "b"]);
        // A longer or shorter id is another node's.
        let other = resolve("k.conf", text, Some("lb")).expect("resolved");
        assert!(!other.contains("priority"));
    }

    #[test]
    fn without_a_config_id_a_conditional_line_is_refused_at_its_line() {
        let err = resolve("k.conf", "a\n  @lb1 priority 150\n", None)
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("k.conf:2: \"@lb1 priority 150\": a conditional line"),
            "{err}"
        );
        assert!(err.contains("--config-id"), "{err}");
        // Text without one is left as it is.
        assert_eq!(
            resolve("k.conf", "a @b\n", None).expect("unchanged"),
            "a @b\n"
        );
    }
}
