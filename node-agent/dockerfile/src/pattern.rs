//! Shell patterns for `${v#p}`, `${v%p}` and `${v/p/r}`: `*`, `?` and `\`-escapes,
//! no bracket expressions (like BuildKit). Matching is a set-of-positions walk, so it
//! is linear in the pattern times the value and never backtracks exponentially.

/// Why a pattern could not be parsed: `\` may only escape `*`, `?`, `\`, `}` and `/`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid escape '\\{escaped}'")]
    InvalidEscape { escaped: char },

    #[error("invalid escape at the end")]
    EscapeAtEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    AnyString,
}

#[derive(Debug)]
pub(super) struct Pattern(Vec<Token>);

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(ch) = chars.next() {
            tokens.push(match ch {
                '*' => Token::AnyString,
                '?' => Token::AnyChar,
                // `\}` and `\/` only protect the braces of `${}`.
                '\\' if matches!(chars.peek(), Some('}' | '/')) => continue,
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => Token::Literal(escaped),
                    Some(escaped) => return Err(PatternError::InvalidEscape { escaped }),
                    None => return Err(PatternError::EscapeAtEnd),
                },
                other => Token::Literal(other),
            });
        }
        Ok(Pattern(tokens))
    }

    /// For each `i` in `0..=value.len()`: does `value[..i]` match the whole pattern?
    fn prefix_matches(tokens: &[Token], value: &[char]) -> Vec<bool> {
        let mut reach = vec![false; value.len() + 1];
        reach[0] = true;
        for token in tokens {
            let mut next = vec![false; value.len() + 1];
            match token {
                Token::AnyString => {
                    if let Some(first) = reach.iter().position(|&r| r) {
                        next[first..].iter_mut().for_each(|n| *n = true);
                    }
                }
                Token::AnyChar | Token::Literal(_) => {
                    for (i, ch) in value.iter().enumerate() {
                        let fits = match token {
                            Token::Literal(want) => want == ch,
                            _ => true,
                        };
                        next[i + 1] = reach[i] && fits;
                    }
                }
            }
            reach = next;
        }
        reach
    }

    fn trim_front(tokens: &[Token], value: &[char], greedy: bool) -> Option<usize> {
        let ends = Pattern::prefix_matches(tokens, value);
        if greedy {
            ends.iter().rposition(|&m| m)
        } else {
            ends.iter().position(|&m| m)
        }
    }

    /// `${v#p}` (shortest) and `${v##p}` (longest).
    pub fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match Pattern::trim_front(&self.0, &chars, greedy) {
            Some(end) => chars[end..].iter().collect(),
            None => value.to_owned(),
        }
    }

    /// `${v%p}` and `${v%%p}`: a prefix trim of the reversed value by the reversed pattern.
    pub fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed: Vec<char> = value.chars().rev().collect();
        let tokens: Vec<Token> = self.0.iter().rev().copied().collect();
        match Pattern::trim_front(&tokens, &reversed, greedy) {
            Some(cut) => reversed[cut..].iter().rev().collect(),
            None => value.to_owned(),
        }
    }

    /// `${v/p/r}` replaces the first (leftmost, longest) match, `${v//p/r}` every one.
    pub fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        let mut replaced = false;
        let mut last_end = None;
        while pos <= chars.len() {
            let found = (!replaced || all)
                .then(|| Pattern::trim_front(&self.0, &chars[pos..], true))
                .flatten();
            match found {
                // An empty match right after a match is not another match (as in Go).
                Some(0) if last_end == Some(pos) => {}
                Some(len) => {
                    out.push_str(replacement);
                    replaced = true;
                    last_end = Some(pos + len);
                    if len > 0 {
                        pos += len;
                        continue;
                    }
                }
                None => {}
            }
            if let Some(ch) = chars.get(pos) {
                out.push(*ch);
            }
            pos += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn trims() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert_eq!(p("a*").trim_prefix("aXbaY", false), "XbaY");
        assert_eq!(p("a*").trim_prefix("aXbaY", true), "");
        assert_eq!(p("*a").trim_prefix("baXa", false), "Xa");
        assert_eq!(p("*a").trim_prefix("baXa", true), "");
        assert_eq!(p("b*").trim_suffix("abcb", false), "abc");
        assert_eq!(p("b*").trim_suffix("abcb", true), "a");
        assert_eq!(p("\\*").trim_prefix("*x", false), "x");
        assert_eq!(p("?").trim_suffix("xyz", false), "xy");
        assert_eq!(p("q").trim_suffix("xyz", false), "xyz");
    }

    #[test]
    fn replaces() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert_eq!(p("o").replace("foo", "0", false), "f0o");
        assert_eq!(p("o").replace("foo", "0", true), "f00");
        assert_eq!(p("o*").replace("foo", "_", false), "f_");
        assert_eq!(p("").replace("ab", "-", true), "-a-b-");
        assert_eq!(p("x").replace("ab", "-", true), "ab");
    }
}
