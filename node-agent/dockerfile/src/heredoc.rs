//! Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD lines: which words
//! open one, and what their bodies mean.

use crate::lexer::Lexer;

/// One heredoc of an instruction: the body as read from the lines after it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Heredoc {
    /// The terminator word with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The lines up to the terminator, each with its newline; tabs not yet stripped.
    pub content: String,
    /// False when the terminator was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines and the terminator line.
    pub chomp: bool,
}

impl Heredoc {
    /// The body as it is used: with `<<-`, leading tabs stripped from every line.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }

    /// Does this (physical) line end the heredoc?
    pub(super) fn is_terminator(&self, line: &str) -> bool {
        let line = line.trim_end_matches(['\r', '\n']);
        let line = if self.chomp {
            line.trim_start_matches('\t')
        } else {
            line
        };
        line == self.name
    }
}

/// Parses one word as a heredoc opener: `[fd]<<[-]word` with a single-word terminator.
/// Other words (`<<`, `a<<b`, `<<a b`) are not heredocs.
pub(super) fn parse_opener(word: &str) -> Result<Option<Heredoc>, String> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = after_fd.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // The terminator with and without quote removal: if quotes went away, part of it
    // was quoted, and the body is not expanded.
    let mut lexer = Lexer::without_vars('\\');
    // The parser's faults are still text; the lexer's message is kept as it reads.
    let words = lexer.process(rest).map_err(|e| e.to_string())?.words;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer.process(rest).map_err(|e| e.to_string())?.words;
    let [raw] = raw.as_slice() else {
        return Err(format!("inconsistent heredoc terminator: {rest}"));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quotes(name) == quotes(raw),
        chomp,
    }))
}

/// The heredocs a line opens, in order.
pub(super) fn openers(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lexer = Lexer::without_vars('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    // A line the lexer cannot split opens no heredoc (BuildKit ignores the error too).
    let words = lexer.process(line).map(|p| p.words).unwrap_or_default();
    let mut found = Vec::new();
    for word in words {
        found.extend(parse_opener(&word)?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openers_on_a_line() {
        let names = |line: &str| -> Vec<(String, bool, bool)> {
            openers(line)
                .unwrap()
                .into_iter()
                .map(|h| (h.name, h.expand, h.chomp))
                .collect()
        };
        assert_eq!(names("<<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(names("python3 <<-EOT"), [("EOT".into(), true, true)]);
        assert_eq!(
            names("cat <<'A' <<\"B\" 2<<C"),
            [
                ("A".into(), false, false),
                ("B".into(), false, false),
                ("C".into(), true, false)
            ]
        );
        assert!(names("echo '<<EOF' a<<b << x").is_empty());
    }

    #[test]
    fn chomp_strips_tabs() {
        let doc = Heredoc {
            name: "E".into(),
            content: "\t\ta\n\tb\n c\n".into(),
            expand: true,
            chomp: true,
        };
        assert_eq!(doc.body(), "a\nb\n c\n");
        assert!(doc.is_terminator("\t\tE\n"));
        assert!(!doc.is_terminator(" E"));
    }
}
