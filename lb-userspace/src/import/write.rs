//! The imported configuration as text: lbd.toml's tables and keys in the
//! order and spelling `config::to_toml` uses, each key with a comment
//! saying where its value came from, and the notes of each table above
//! it. A document of tables is built by `join`, then rendered here, so
//! the wording of the provenance is kept apart from the TOML syntax.

use toml::Value;

/// One `key = value  # comment` line.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) key: &'static str,
    pub(crate) value: Value,
    pub(crate) comment: String,
}

impl Entry {
    pub(crate) fn new(
        key: &'static str,
        value: impl Into<Value>,
        comment: impl Into<String>,
    ) -> Self {
        Self {
            key,
            value: value.into(),
            comment: comment.into(),
        }
    }
}

/// A table (`[[vip]]`, `[vip.health]`, ...) with its notes.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) header: &'static str,
    /// Nesting: 0 for `[[vip]]`, 1 for its sub-tables, 2 for a
    /// backend's health.
    pub(crate) depth: usize,
    pub(crate) notes: Vec<String>,
    pub(crate) entries: Vec<Entry>,
}

impl Table {
    pub(crate) fn new(header: &'static str, depth: usize) -> Self {
        Self {
            header,
            depth,
            notes: Vec::new(),
            entries: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        key: &'static str,
        value: impl Into<Value>,
        comment: impl Into<String>,
    ) {
        self.entries.push(Entry::new(key, value, comment));
    }
}

/// The whole file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Document {
    /// Comment lines at the top.
    pub(crate) header: Vec<String>,
    /// Notes that belong to no table.
    pub(crate) notes: Vec<String>,
    /// Top-level keys.
    pub(crate) top: Vec<Entry>,
    pub(crate) tables: Vec<Table>,
}

impl Document {
    /// Every note, in file order.
    pub(crate) fn all_notes(&self) -> Vec<String> {
        self.notes
            .iter()
            .chain(self.tables.iter().flat_map(|t| &t.notes))
            .cloned()
            .collect()
    }
}

/// `text` with its control characters written as escapes (`\r`, `\n`,
/// `\u{1}`): a TOML comment may hold none, and a source's words can (an
/// HAProxy `\r\n` escape, an nginx quoted newline).
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Width comment text is wrapped at.
const WIDTH: usize = 96;

/// `text` as comment lines starting with `lead` (then `cont`), wrapped.
fn comment(out: &mut String, indent: &str, lead: &str, cont: &str, text: &str) {
    let text = printable(text);
    let mut line = format!("{indent}{lead}");
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = format!("{indent}{cont}");
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn entries(out: &mut String, indent: &str, entries: &[Entry]) {
    let width = entries
        .iter()
        .map(|e| e.key.len() + 3 + e.value.to_string().len())
        .max()
        .unwrap_or(0);
    for entry in entries {
        let assignment = format!("{} = {}", entry.key, entry.value);
        if entry.comment.is_empty() {
            out.push_str(&format!("{indent}{assignment}\n"));
        } else {
            out.push_str(&format!(
                "{indent}{assignment:width$}  # {}\n",
                printable(&entry.comment)
            ));
        }
    }
}

/// Renders the document as lbd.toml.
pub(crate) fn render(document: &Document) -> String {
    let mut out = String::new();
    for line in &document.header {
        comment(&mut out, "", "# ", "# ", line);
    }
    for note in &document.notes {
        comment(&mut out, "", "# NOTE ", "#   ", note);
    }
    out.push('\n');
    entries(&mut out, "", &document.top);
    for table in &document.tables {
        let indent = "  ".repeat(table.depth);
        out.push('\n');
        for note in &table.notes {
            comment(&mut out, &indent, "# NOTE ", "#   ", note);
        }
        out.push_str(&format!("{indent}{}\n", table.header));
        entries(&mut out, &indent, &table.entries);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_comments_and_long_notes_wrap() {
        let mut vip = Table::new("[[vip]]", 0);
        vip.notes.push(format!("a.cfg:3: {}", "word ".repeat(30)));
        vip.push("address", "198.18.0.100", "a.cfg:4 (bind 198.18.0.100:80)");
        vip.push("port", 80, "");
        let document = Document {
            header: vec!["Imported.".to_owned()],
            notes: Vec::new(),
            top: vec![Entry::new("interface", "eth0", "--interface")],
            tables: vec![vip],
        };
        let text = render(&document);
        assert!(
            text.contains("interface = \"eth0\"  # --interface\n"),
            "{text}"
        );
        assert!(
            text.contains("address = \"198.18.0.100\"  # a.cfg:4 (bind 198.18.0.100:80)\n"),
            "{text}"
        );
        assert!(text.contains("port = 80\n"), "{text}");
        assert!(text.lines().all(|l| l.len() <= WIDTH + 10), "{text}");
        assert!(text.contains("#   word"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).expect("TOML");
        assert_eq!(parsed["vip"][0]["port"].as_integer(), Some(80));
    }
}
