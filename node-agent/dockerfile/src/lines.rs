//! From text to logical lines, as BuildKit's parser reads a Dockerfile: parser
//! directives at the top, comments and blank lines dropped, continuation lines joined
//! with the escape character, and heredoc bodies read after the line that opens them.

use crate::heredoc::{self, Heredoc};

/// One instruction's text, joined from its physical lines.
#[derive(Debug)]
pub(super) struct Logical {
    /// The 1-based line the instruction starts on.
    pub line: usize,
    pub text: String,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug)]
pub(super) struct Source {
    pub escape: char,
    pub syntax: Option<String>,
    pub lines: Vec<Logical>,
}

/// Parser directives: `# key=value` lines, only before anything else.
struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl Directives {
    fn check(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        // An unknown directive is a comment, and ends the directives.
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        match key.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        ));
                    }
                }
            }
            "syntax" => self.syntax = Some(value.to_owned()),
            _ => {}
        }
        self.seen.push(key);
        Ok(())
    }
}

/// `#\s*key\s*=\s*value\s*` with key `[a-zA-Z][a-zA-Z0-9]*`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line
        .strip_prefix('#')?
        .trim_start_matches(|c: char| c.is_ascii_whitespace());
    let key_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..]
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .strip_prefix('=')?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    (!value.is_empty()).then_some((key, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Strips a trailing escape character (and spaces or tabs after it) that continues
/// the line; an escaped escape character (`\\`) does not continue it.
fn continuation(line: &str, escape: char) -> Option<&str> {
    let body = line.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    match body.chars().next_back() {
        Some(before) if before == escape => None,
        _ => Some(body),
    }
}

/// Splits `text` into logical lines; errors carry the 1-based line they are about.
/// `takes_heredocs` says whether an instruction's text may open heredocs.
pub(super) fn split(
    text: &str,
    takes_heredocs: impl Fn(&str) -> bool,
) -> Result<Source, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut physical = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let mut directives = Directives {
        escape: '\\',
        syntax: None,
        seen: Vec::new(),
        done: false,
    };
    let mut lines = Vec::new();
    while let Some((number, raw)) = physical.next() {
        let first = raw.trim_end_matches(['\r', '\n']).trim_start();
        directives.check(first).map_err(|e| (number, e))?;
        let escape = directives.escape;
        let first = if is_comment(first) { "" } else { first };
        let mut joined = String::new();
        let mut more = match continuation(first, escape) {
            Some(body) => {
                joined.push_str(body);
                true
            }
            None if first.is_empty() => continue,
            None => {
                joined.push_str(first);
                false
            }
        };
        let mut last = number;
        while more {
            let Some((number, raw)) = physical.next() else {
                break;
            };
            last = number;
            let line = raw.trim_end_matches(['\r', '\n']);
            // Comments and blank lines inside a continued instruction are skipped.
            if is_comment(line) || line.trim_start().is_empty() {
                continue;
            }
            match continuation(line, escape) {
                Some(body) => joined.push_str(body),
                None => {
                    joined.push_str(line);
                    more = false;
                }
            }
        }
        let mut heredocs = Vec::new();
        if joined.contains("<<") && takes_heredocs(&joined) {
            for mut doc in heredoc::openers(&joined).map_err(|e| (number, e))? {
                let mut terminated = false;
                for (number, raw) in physical.by_ref() {
                    last = number;
                    if doc.is_terminator(raw) {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err((
                        number,
                        format!(
                            "unterminated heredoc: no line \"{}\" ends it before line {last}",
                            doc.name
                        ),
                    ));
                }
                heredocs.push(doc);
            }
        }
        lines.push(Logical {
            line: number,
            text: joined,
            heredocs,
        });
    }
    Ok(Source {
        escape: directives.escape,
        syntax: directives.syntax,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(usize, String)> {
        split(text, |_| true)
            .unwrap()
            .lines
            .into_iter()
            .map(|l| (l.line, l.text))
            .collect()
    }

    #[test]
    fn directives_only_at_the_top() {
        let source = split(
            "# syntax=docker/dockerfile:1\n#ESCAPE = `\nFROM x\n",
            |_| true,
        )
        .unwrap();
        assert_eq!(source.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(source.escape, '`');
        let after_comment = split("# hello\n# escape=`\nFROM x\n", |_| true).unwrap();
        assert_eq!(after_comment.escape, '\\');
        let after_blank = split("\n# escape=`\nFROM x\n", |_| true).unwrap();
        assert_eq!(after_blank.escape, '\\');
        let after_unknown = split("# foo=bar\n# escape=`\nFROM x\n", |_| true).unwrap();
        assert_eq!(after_unknown.escape, '\\');
        let after_instruction = split("FROM x\n# escape=`\n", |_| true).unwrap();
        assert_eq!(after_instruction.escape, '\\');
    }

    #[test]
    fn directive_errors() {
        let err = split("# escape=x\nFROM a\n", |_| true).unwrap_err();
        assert_eq!(
            err,
            (1, "invalid escape token 'x' does not match ` or \\".into())
        );
        let err = split("# syntax=a\n# syntax=b\n", |_| true).unwrap_err();
        assert_eq!(
            err,
            (2, "only one syntax parser directive can be used".into())
        );
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let text = "\u{feff}FROM a\n\n  # comment\nRUN echo a \\\n  # inside\n\n    b \\  \n c\nRUN x \\\\\nRUN last \\";
        assert_eq!(
            texts(text),
            [
                (1, "FROM a".to_owned()),
                (4, "RUN echo a     b  c".to_owned()),
                (9, "RUN x \\\\".to_owned()),
                (10, "RUN last ".to_owned()),
            ]
        );
    }

    #[test]
    fn backtick_continuation() {
        let source = split("# escape=`\nRUN a `\n b\\\n", |_| true).unwrap();
        assert_eq!(source.lines[0].text, "RUN a  b\\");
    }

    #[test]
    fn heredoc_bodies_follow_the_line() {
        let text = "RUN cat <<A <<-B\nline a\nA\n\tline b\n\tB\nRUN next\n";
        let source = split(text, |_| true).unwrap();
        assert_eq!(source.lines.len(), 2);
        let docs = &source.lines[0].heredocs;
        assert_eq!(docs[0].content, "line a\n");
        assert_eq!(docs[1].content, "\tline b\n");
        assert_eq!(source.lines[1].line, 6);
        let err = split("RUN <<EOF\nno end\n", |_| true).unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("unterminated heredoc"), "{}", err.1);
    }
}
