//! The shell-word lexer of BuildKit (`shell/lex.go`): quote removal, the escape
//! character, and `$var` / `${var...}` substitution, producing either one word (spaces
//! kept) or the words split on unquoted whitespace. It never runs a shell: command
//! substitution, arithmetic and globbing are left alone.

use crate::pattern::{Pattern, PatternError};

/// Why a word could not be expanded; `Error::Expand` and `Error::Word` say which word
/// and where. The messages are BuildKit's, so they read the same as with docker.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching {stop}")]
    Unterminated { stop: char },

    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,

    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,

    #[error("substitutions nested too deeply")]
    TooDeep,

    #[error("syntax error: missing '}}'")]
    MissingBrace,

    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,

    #[error("syntax error: bad substitution")]
    BadSubstitution,

    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { modifier: String },

    /// `${name?message}` or `${name:?message}` with a message of the user's own.
    #[error("{name}: {message}")]
    Required { name: String, message: String },

    #[error("{name}: is not allowed to be unset")]
    Unset { name: String },

    #[error("{name}: is not allowed to be empty")]
    Empty { name: String },

    // Not `#[source]`: the reason is already in this message, and a chain would repeat it.
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    Pattern {
        pattern: String,
        reason: PatternError,
    },
}

/// Variables are looked up through the caller, who decides what is visible (build
/// args, ENV so far, meta args).
pub type Vars<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Substitutions nested deeper than this are refused rather than overflowing the stack.
const MAX_DEPTH: usize = 64;

/// The knobs BuildKit's lexer has; the parser needs the raw ones to find heredocs.
#[derive(Clone, Copy)]
pub(super) struct Lexer<'a> {
    escape: char,
    vars: Vars<'a>,
    /// Keep quote characters in the output (they still group words).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub literal_quotes: bool,
}

/// The result of one pass: the whole text, and the text split into words.
pub(super) struct Processed {
    pub word: String,
    pub words: Vec<String>,
}

fn no_vars(_: &str) -> Option<String> {
    None
}

impl<'a> Lexer<'a> {
    pub fn new(escape: char, vars: Vars<'a>) -> Self {
        Lexer {
            escape,
            vars,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            literal_quotes: false,
        }
    }

    /// A lexer that knows no variables and leaves their references alone.
    pub fn without_vars(escape: char) -> Lexer<'static> {
        Lexer {
            skip_unset: true,
            ..Lexer::new(escape, &no_vars)
        }
    }

    pub fn process(&self, text: &str) -> Result<Processed, ExpandError> {
        let mut scan = Scanner {
            lexer: *self,
            chars: text.chars().collect(),
            pos: 0,
            raw_escapes: self.raw_escapes,
            depth: 0,
        };
        let (word, words) = scan.until(None, self.raw_escapes)?;
        Ok(Processed { word, words })
    }
}

/// Words being collected: substituted values split on whitespace, quoted text does not.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Scanner<'a> {
    lexer: Lexer<'a>,
    chars: Vec<char>,
    pos: usize,
    raw_escapes: bool,
    depth: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.lexer.vars)(name)
    }

    /// Processes up to `stop` (consumed) or the end of the text.
    fn until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn until_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    words.add_string(&value);
                    result.push_str(&value);
                }
                '\'' if !self.lexer.literal_quotes => {
                    let value = self.single_quoted()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                '"' if !self.lexer.literal_quotes => {
                    let value = self.double_quoted()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                _ => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end escapes nothing and is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(ExpandError::Unterminated { stop }),
            None => Ok((result, words.finish())),
        }
    }

    /// `'...'`: everything literal, no escapes at all (as in sh).
    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"..."`: `$` substitutes; the escape character only escapes `"`, `$` and itself.
    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(mut ch) => {
                    self.next();
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep);
        }
        self.depth += 1;
        let result = self.dollar_inner();
        self.depth -= 1;
        result
    }

    fn dollar_inner(&mut self) -> Result<String, ExpandError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        let mut written = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(value) => value,
                    None if self.lexer.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.replace(&name),
            ':' => {
                null_is_unset = true;
                op = self.next().ok_or(ExpandError::MissingBrace)?;
                written.push(op);
            }
            _ => {}
        }
        if !matches!(op, '+' | '-' | '?' | '#' | '%') {
            return Err(ExpandError::UnsupportedModifier { modifier: written });
        }
        // Patterns keep their escapes: `\*` there is a literal star.
        let raw = op == '#' || op == '%';
        let (word, _) = self.until(Some('}'), raw).map_err(|e| self.at_end_or(e))?;
        let value = self.lookup(&name);
        if self.lexer.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let empty = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match op {
            '-' => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if empty { String::new() } else { word }),
            '?' => match value {
                Some(value) if !empty => Ok(value),
                _ if !word.is_empty() => Err(ExpandError::Required {
                    name,
                    message: word,
                }),
                None => Err(ExpandError::Unset { name }),
                Some(_) => Err(ExpandError::Empty { name }),
            },
            _ => {
                // `#`/`%` trim the shortest match, `##`/`%%` the longest.
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = parse_pattern(pattern)?;
                let value = value.unwrap_or_default();
                Ok(if op == '#' {
                    pattern.trim_prefix(&value, greedy)
                } else {
                    pattern.trim_suffix(&value, greedy)
                })
            }
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pattern, _) = self.until(Some('/'), true).map_err(|e| {
            if self.peek().is_none() {
                ExpandError::MissingSlash
            } else {
                e
            }
        })?;
        let (replacement, _) = self.until(Some('}'), true).map_err(|e| self.at_end_or(e))?;
        let Some(value) = self.lookup(name) else {
            return Ok(if self.lexer.skip_unset {
                format!("${{{name}/{pattern}/{replacement}}}")
            } else {
                String::new()
            });
        };
        let parsed = parse_pattern(&pattern)?;
        Ok(parsed.replace(&value, &replacement, all))
    }

    fn at_end_or(&self, error: ExpandError) -> ExpandError {
        if self.peek().is_none() {
            ExpandError::MissingBrace
        } else {
            error
        }
    }

    /// A variable name: letters, digits and `_`; or all digits; or one special
    /// parameter character (`$@ $* $# ...`).
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(digit) = self.peek().filter(|c| c.is_numeric()) {
                    self.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn parse_pattern(pattern: &str) -> Result<Pattern, ExpandError> {
    Pattern::parse(pattern).map_err(|reason| ExpandError::Pattern {
        pattern: pattern.to_owned(),
        reason,
    })
}

/// Splits instruction arguments into words the way the parser does (BuildKit's
/// `parseWords`): on unquoted whitespace, keeping quotes and escapes for the later
/// expansion to remove.
pub(super) fn split_words(text: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let mut ch = chars[i];
        let last = i + 1 == chars.len();
        match phase {
            Phase::Spaces if ch.is_whitespace() => {}
            Phase::Spaces | Phase::Word => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    i += 1;
                    continue;
                }
                phase = Phase::Word;
                if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    if last {
                        break;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    if last {
                        phase = Phase::Word;
                        break;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
        }
        i += 1;
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("A", "a"),
            ("E", ""),
            ("SP", "x  y"),
            ("PATHV", "/usr/local/bin/tool.tar.gz"),
        ])
    }

    fn word(text: &str) -> Result<String, String> {
        let env = env();
        let vars = |name: &str| env.get(name).map(|v| v.to_string());
        Lexer::new('\\', &vars)
            .process(text)
            .map(|p| p.word)
            .map_err(|e| e.to_string())
    }

    fn words(text: &str) -> Vec<String> {
        let env = env();
        let vars = |name: &str| env.get(name).map(|v| v.to_string());
        Lexer::new('\\', &vars).process(text).unwrap().words
    }

    #[test]
    fn substitutes_like_buildkit() {
        let cases = [
            ("$A", "a"),
            ("${A}", "a"),
            ("x$A-y", "xa-y"),
            ("$NOPE.", "."),
            ("$", "$"),
            ("a$", "a$"),
            ("$1x", "x"),
            ("${A:-w}", "a"),
            ("${E:-w}", "w"),
            ("${E-w}", ""),
            ("${NOPE-w}", "w"),
            ("${NOPE:-$A$A}", "aa"),
            ("${A:+w}", "w"),
            ("${E:+w}", ""),
            ("${E+w}", "w"),
            ("${NOPE+w}", ""),
            ("${A:?m}", "a"),
            ("${E?m}", ""),
            ("${PATHV#*/}", "usr/local/bin/tool.tar.gz"),
            ("${PATHV##*/}", "tool.tar.gz"),
            ("${PATHV%.*}", "/usr/local/bin/tool.tar"),
            ("${PATHV%%.*}", "/usr/local/bin/tool"),
            ("${PATHV#nomatch}", "/usr/local/bin/tool.tar.gz"),
            ("${PATHV%.t?r.gz}", "/usr/local/bin/tool"),
            ("${A/a/b}", "b"),
            ("${PATHV//o/0}", "/usr/l0cal/bin/t00l.tar.gz"),
            ("'$A'", "$A"),
            ("\"$A\"", "a"),
            ("\"\\$A\"", "$A"),
            ("\\$A", "$A"),
            ("\"a\\b\"", "a\\b"),
            ("a\\ b", "a b"),
            ("'a\\'", "a\\"),
            ("\"it's\"", "it's"),
            ("end\\", "end"),
        ];
        for (input, want) in cases {
            assert_eq!(word(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn substitution_errors() {
        let cases = [
            ("${NOPE:?need it}", "NOPE: need it"),
            ("${NOPE?}", "NOPE: is not allowed to be unset"),
            ("${E:?}", "E: is not allowed to be empty"),
            ("${A", "syntax error: missing '}'"),
            ("${A:-x", "syntax error: missing '}'"),
            ("${", "syntax error: missing '}'"),
            ("${}", "syntax error: bad substitution"),
            ("${:a}", "syntax error: bad substitution"),
            ("${A!}", "unsupported modifier (!) in substitution"),
            ("${A:x}", "unsupported modifier (:x) in substitution"),
            (
                "'open",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"open",
                "unexpected end of statement while looking for matching double-quote",
            ),
            ("${A/x", "syntax error: missing '/' in ${}"),
            (
                "${A#\\x}",
                "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(word(input), Err(want.to_owned()), "{input}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "${A:-".repeat(10_000);
        assert!(word(&text).is_err());
    }

    #[test]
    fn words_split_on_unquoted_whitespace_and_substituted_values() {
        assert_eq!(words("a  b"), ["a", "b"]);
        assert_eq!(words("\"a  b\" c"), ["a  b", "c"]);
        assert_eq!(words("$SP z"), ["x", "y", "z"]);
        assert_eq!(words("\"$SP\""), ["x  y"]);
        assert_eq!(words("a\\ b"), ["a b"]);
        assert_eq!(words("''"), Vec::<String>::new());
    }

    #[test]
    fn backtick_escape() {
        let vars = |_: &str| None;
        let lex = Lexer::new('`', &vars);
        assert_eq!(lex.process("a`$b c\\d").unwrap().word, "a$b c\\d");
    }

    #[test]
    fn raw_modes_keep_quotes_and_escapes() {
        let mut lex = Lexer::without_vars('\\');
        lex.raw_quotes = true;
        lex.raw_escapes = true;
        let p = lex.process("cat <<'EOF' \"x y\" a\\ b $X").unwrap();
        assert_eq!(p.words, ["cat", "<<'EOF'", "\"x y\"", "a\\ b", "$X"]);
    }

    #[test]
    fn split_words_keeps_quotes() {
        let cases: [(&str, &[&str]); 6] = [
            ("a=1 b=\"x y\"", &["a=1", "b=\"x y\""]),
            ("  a   b  ", &["a", "b"]),
            ("a\\ b c", &["a\\ b", "c"]),
            ("k='it''s' z", &["k='it''s'", "z"]),
            ("\"\"", &["\"\""]),
            ("x\\", &["x"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_words(input, '\\'), want, "{input}");
        }
    }
}
