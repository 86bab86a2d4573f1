//! The brace-block grammar keepalived and nginx share: statements of
//! words, some opening a `{ ... }` block of statements. They differ in what
//! ends a statement (a newline in keepalived, `;` in nginx), in their
//! comments (`#` and `!` anywhere in keepalived, `#` at the start of a word
//! in nginx) and quotes (nginx also takes `'...'` and backslash escapes).
//! A tokenizer and a stack of open blocks, so that an unbalanced brace or
//! an unterminated quote is refused at its line.

use super::ImportError;

/// Which of the two formats a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Keepalived,
    Nginx,
}

/// One statement: its words (quotes removed), its line, and the block it
/// opens, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub(crate) words: Vec<String>,
    pub(crate) line: usize,
    pub(crate) block: Option<Vec<Statement>>,
    /// The file it is written in, when that is not the file being read:
    /// set on what keepalived's `include` splices into a block, so that
    /// its values and errors name their own file.
    pub(crate) file: Option<String>,
}

impl Statement {
    /// The first word (the directive).
    pub(crate) fn name(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The words after the directive.
    pub(crate) fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or_default()
    }

    /// The statements of its block (none when it opens no block).
    pub(crate) fn children(&self) -> &[Statement] {
        self.block.as_deref().unwrap_or_default()
    }

    /// The file it is written in: its own, else `outer`, the file being
    /// read.
    pub(crate) fn file_in<'a>(&'a self, outer: &'a str) -> &'a str {
        self.file.as_deref().unwrap_or(outer)
    }

    /// The statement as written, for provenance comments.
    pub(crate) fn text(&self) -> String {
        self.words.join(" ")
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    /// End of a statement: a newline (keepalived) or `;` (nginx).
    End,
}

/// Splits `text` into tokens, each with its line.
fn tokens(file: &str, text: &str, dialect: Dialect) -> Result<Vec<(Token, usize)>, ImportError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let mut word_line = 1;
    let mut in_word = false;
    let flush = |word: &mut String, in_word: &mut bool, out: &mut Vec<(Token, usize)>, at| {
        if *in_word {
            out.push((Token::Word(std::mem::take(word)), at));
            *in_word = false;
        }
    };
    // nginx: the last character was an unescaped `$` outside quotes (or
    // the `{` after one): a `{` then is part of the word (`${host}`).
    let mut variable = false;
    while let Some(c) = chars.next() {
        let after_dollar = std::mem::take(&mut variable);
        match c {
            // nginx reads `${name}` as one word: the `{` after a `$` does
            // not open a block (and the `}` closing it is inside a word,
            // below). Without this `return 301 https://${host};` was
            // refused.
            '{' if dialect == Dialect::Nginx && after_dollar => {
                word.push(c);
                variable = true;
            }
            // nginx ends a word at whitespace, `;` or `{`, not at `}`: a
            // `}` inside a word is an ordinary character.
            '}' if dialect == Dialect::Nginx && in_word => word.push(c),
            '\n' => {
                flush(&mut word, &mut in_word, &mut out, word_line);
                if dialect == Dialect::Keepalived {
                    out.push((Token::End, line));
                }
                line += 1;
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut out, word_line),
            '#' | '!' if dialect == Dialect::Keepalived || (c == '#' && !in_word) => {
                flush(&mut word, &mut in_word, &mut out, word_line);
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '{' | '}' | ';' if dialect == Dialect::Nginx || c != ';' => {
                flush(&mut word, &mut in_word, &mut out, word_line);
                out.push((
                    match c {
                        '{' => Token::Open,
                        '}' => Token::Close,
                        _ => Token::End,
                    },
                    line,
                ));
            }
            '"' | '\'' if dialect == Dialect::Nginx || c == '"' => {
                if !in_word {
                    word_line = line;
                    in_word = true;
                }
                let opened = line;
                loop {
                    match chars.next() {
                        None => {
                            return Err(ImportError::at(
                                file,
                                opened,
                                format!("unterminated quote: the {c} opened here is never closed"),
                            ))
                        }
                        Some(q) if q == c => break,
                        // keepalived reads a line at a time: a quote ends
                        // with it, and one left open is refused here, not
                        // where a later quote happens to close it.
                        Some('\n') if dialect == Dialect::Keepalived => {
                            return Err(ImportError::at(
                                file,
                                opened,
                                format!("unterminated quote: the {c} is never closed on this line"),
                            ))
                        }
                        Some('\\') if dialect == Dialect::Nginx => {
                            if let Some(escaped) = chars.next() {
                                if escaped == '\n' {
                                    line += 1;
                                }
                                word.push(escaped);
                            }
                        }
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
            }
            '\\' if dialect == Dialect::Nginx => {
                if !in_word {
                    word_line = line;
                    in_word = true;
                }
                if let Some(escaped) = chars.next() {
                    word.push(escaped);
                }
            }
            c => {
                if !in_word {
                    word_line = line;
                    in_word = true;
                }
                variable = c == '$';
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut out, word_line);
    Ok(out)
}

/// How deep blocks may nest: real files go 4 or 5 deep; the readers walk
/// the tree recursively, so a hostile one must not exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// A block being read: its statements and the words that opened it.
struct Frame {
    statements: Vec<Statement>,
    head: Vec<String>,
    line: usize,
}

/// Parses `text` into its top-level statements.
pub(crate) fn parse(
    file: &str,
    text: &str,
    dialect: Dialect,
) -> Result<Vec<Statement>, ImportError> {
    let mut stack = vec![Frame {
        statements: Vec::new(),
        head: Vec::new(),
        line: 0,
    }];
    let mut words: Vec<String> = Vec::new();
    let mut start = 0;
    let missing_semicolon = |words: &[String], start| {
        ImportError::at(
            file,
            start,
            format!("\"{}\" is not ended with ';'", words.join(" ")),
        )
    };
    for (token, line) in tokens(file, text, dialect)? {
        let top = stack.len() - 1;
        match token {
            Token::Word(word) => {
                if words.is_empty() {
                    start = line;
                }
                words.push(word);
            }
            Token::End => {
                if !words.is_empty() {
                    stack[top].statements.push(Statement {
                        words: std::mem::take(&mut words),
                        line: start,
                        block: None,
                        file: None,
                    });
                } else if dialect == Dialect::Nginx {
                    return Err(ImportError::at(file, line, "unexpected ';'"));
                }
            }
            Token::Open => {
                let (head, at) = if !words.is_empty() {
                    (std::mem::take(&mut words), start)
                } else {
                    // keepalived: `vrrp_instance VI_1` then `{` on the next line.
                    let named = dialect == Dialect::Keepalived
                        && stack[top]
                            .statements
                            .last()
                            .is_some_and(|s| s.block.is_none());
                    match stack[top].statements.pop() {
                        Some(last) if named => (last.words, last.line),
                        _ => {
                            return Err(ImportError::at(
                                file,
                                line,
                                "'{' opens a block with no name",
                            ))
                        }
                    }
                };
                if stack.len() > MAX_DEPTH {
                    return Err(ImportError::at(
                        file,
                        at,
                        format!(
                            "\"{} {{\": blocks nested more than {MAX_DEPTH} deep; no real configuration is",
                            head.join(" ")
                        ),
                    ));
                }
                stack.push(Frame {
                    statements: Vec::new(),
                    head,
                    line: at,
                });
            }
            Token::Close => {
                if !words.is_empty() {
                    if dialect == Dialect::Nginx {
                        return Err(missing_semicolon(&words, start));
                    }
                    stack[top].statements.push(Statement {
                        words: std::mem::take(&mut words),
                        line: start,
                        block: None,
                        file: None,
                    });
                }
                if stack.len() == 1 {
                    return Err(ImportError::at(file, line, "'}' closes no open block"));
                }
                let Some(frame) = stack.pop() else {
                    return Err(ImportError::at(file, line, "'}' closes no open block"));
                };
                let parent = stack.len() - 1;
                stack[parent].statements.push(Statement {
                    words: frame.head,
                    line: frame.line,
                    block: Some(frame.statements),
                    file: None,
                });
            }
        }
    }
    if !words.is_empty() {
        if dialect == Dialect::Nginx {
            return Err(missing_semicolon(&words, start));
        }
        let top = stack.len() - 1;
        stack[top].statements.push(Statement {
            words,
            line: start,
            block: None,
            file: None,
        });
    }
    if stack.len() > 1 {
        let open = &stack[stack.len() - 1];
        return Err(ImportError::at(
            file,
            open.line,
            format!(
                "the block \"{} {{\" opened here is never closed",
                open.head.join(" ")
            ),
        ));
    }
    Ok(stack.pop().map(|f| f.statements).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_blocks_comments_and_a_brace_on_the_next_line() {
        let text = "! comment\nvrrp_instance VI_1\n{\n  state MASTER # inline\n  virtual_ipaddress { 198.18.0.100 }\n  notify \"/usr/bin/n x\"\n}\n";
        let top = parse("k.conf", text, Dialect::Keepalived).expect("parses");
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].words, ["vrrp_instance", "VI_1"]);
        assert_eq!(top[0].line, 2);
        let children = top[0].children();
        assert_eq!(children[0].words, ["state", "MASTER"]);
        assert_eq!(children[0].line, 4);
        assert_eq!(children[1].children()[0].words, ["198.18.0.100"]);
        assert_eq!(children[2].words, ["notify", "/usr/bin/n x"]);
    }

    #[test]
    fn nginx_statements_quotes_escapes_and_hash_inside_words() {
        let text = "upstream app {\n  server 198.18.0.11:80 weight=2; # c\n  server '198.18.0.12' down;\n}\nlog_format x \"a;b\" a#b;\n";
        let top = parse("n.conf", text, Dialect::Nginx).expect("parses");
        assert_eq!(
            top[0].children()[0].words,
            ["server", "198.18.0.11:80", "weight=2"]
        );
        assert_eq!(
            top[0].children()[1].words,
            ["server", "198.18.0.12", "down"]
        );
        assert_eq!(top[1].words, ["log_format", "x", "a;b", "a#b"]);
        assert_eq!(top[1].line, 5);
    }

    #[test]
    fn broken_input_names_its_line() {
        let err = |text, dialect| parse("f", text, dialect).expect_err("refused").to_string();
        assert_eq!(
            err("upstream a {\n server 198.18.0.1\n}\n", Dialect::Nginx),
            "f:2: \"server 198.18.0.1\" is not ended with ';'"
        );
        assert_eq!(
            err("http {\n upstream a {\n}\n", Dialect::Nginx),
            "f:1: the block \"http {\" opened here is never closed"
        );
        assert_eq!(
            err("a;\n}\n", Dialect::Nginx),
            "f:2: '}' closes no open block"
        );
        assert_eq!(
            err("vrrp_instance A {\n notify \"/x\n}\n", Dialect::Keepalived),
            "f:2: unterminated quote: the \" is never closed on this line"
        );
        // A later quote does not close it: the blocks after it are not
        // swallowed into one word.
        assert_eq!(
            err(
                "vrrp_instance A {\n notify \"/x\n}\nvrrp_script chk {\n script \"pidof haproxy\"\n}\n",
                Dialect::Keepalived
            ),
            "f:2: unterminated quote: the \" is never closed on this line"
        );
        assert_eq!(
            err("{\n}\n", Dialect::Keepalived),
            "f:1: '{' opens a block with no name"
        );
    }

    #[test]
    fn nginx_braced_variables_and_closing_braces_inside_words() {
        let text = "server { return 301 https://${host}$request_uri; set $a x}y; }\nmap $uri $v{ default 0; }\n";
        let top = parse("n.conf", text, Dialect::Nginx).expect("parses");
        assert_eq!(
            top[0].children()[0].words,
            ["return", "301", "https://${host}$request_uri"]
        );
        assert_eq!(top[0].children()[1].words, ["set", "$a", "x}y"]);
        // A `{` not right after `$` still opens a block.
        assert_eq!(top[1].words, ["map", "$uri", "$v"]);
        assert_eq!(top[1].children()[0].words, ["default", "0"]);
        // Escaped, `$` is no variable: the `{` opens a block; `${` at a
        // word's start is one.
        let top = parse("n.conf", "a ${x} \\$y{ b; }\n", Dialect::Nginx).expect("parses");
        assert_eq!(top[0].words.get(1).map(String::as_str), Some("${x}"));
        assert_eq!(top[0].children()[0].words, ["b"]);
        // keepalived reads braces as blocks wherever they are.
        let top = parse("k.conf", "a ${\n b\n}\n", Dialect::Keepalived).expect("parses");
        assert_eq!(top[0].words, ["a", "$"]);
    }
}
