//! `--name=value` options in front of an instruction's arguments (BuildKit's
//! `extractBuilderFlags` and `BFlags`).

/// What kind of value a flag takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    Text,
    /// `--mount=x`, any number of times.
    List,
}

/// The flags an instruction was given, checked against the ones it takes.
#[derive(Default)]
pub(super) struct Flags {
    given: Vec<(String, String)>,
}

impl Flags {
    /// Checks each `--name[=value]` against `known`.
    pub fn parse(words: &[String], known: &[(&str, Kind)]) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for word in words {
            let Some(flag) = word.strip_prefix("--") else {
                return Err(format!("arguments must start with --: {word}"));
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (flag, None),
            };
            let Some(&(_, kind)) = known.iter().find(|(k, _)| *k == name) else {
                return Err(format!("unknown flag: --{name}"));
            };
            if kind != Kind::List && flags.given.iter().any(|(n, _)| n == name) {
                return Err(format!("duplicate flag specified: --{name}"));
            }
            let value = match (kind, value) {
                (Kind::Bool, None) => "true".to_owned(),
                (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("true") => "true".to_owned(),
                (Kind::Bool, Some(v)) if v.eq_ignore_ascii_case("false") => "false".to_owned(),
                (Kind::Bool, Some(v)) => {
                    return Err(format!(
                        "expecting boolean value for flag --{name}, not: {v}"
                    ));
                }
                (_, None) => return Err(format!("missing a value on flag: --{name}")),
                (_, Some(v)) => v.to_owned(),
            };
            flags.given.push((name.to_owned(), value));
        }
        Ok(flags)
    }

    /// A text flag's value; an empty value counts as not given.
    pub fn text(&self, name: &str) -> Option<String> {
        self.given
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        self.given
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.given.iter().any(|(n, v)| n == name && v == "true")
    }
}

/// Splits the leading `--flag` words off `text` (quotes and `\` removed from them),
/// returning them and the rest. A lone `--` ends the flags.
pub(super) fn extract(text: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        if !trimmed.starts_with("--") {
            return (flags, trimmed);
        }
        let (word, after) = flag_word(trimmed);
        rest = after;
        if word == "--" {
            return (flags, rest.trim_start());
        }
        flags.push(word);
    }
}

/// One flag word up to unquoted whitespace, and the text after it.
fn flag_word(text: &str) -> (String, &str) {
    let mut word = String::new();
    let mut quote = None;
    let mut chars = text.char_indices();
    while let Some((i, ch)) = chars.next() {
        match (quote, ch) {
            (None, ch) if ch.is_whitespace() => return (word, &text[i..]),
            (None, '\'' | '"') => quote = Some(ch),
            (Some(q), ch) if ch == q => quote = None,
            (_, '\\') => {
                // A `\` at the very end is dropped.
                if let Some((_, escaped)) = chars.next() {
                    word.push(escaped);
                }
            }
            (_, ch) => word.push(ch),
        }
    }
    (word, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_leading_flags() {
        let (flags, rest) = extract("--from=build --chown=\"a b\" --link src dst");
        assert_eq!(flags, ["--from=build", "--chown=a b", "--link"]);
        assert_eq!(rest, "src dst");
        let (flags, rest) = extract("--a -- --not-a-flag x");
        assert_eq!(flags, ["--a"]);
        assert_eq!(rest, "--not-a-flag x");
        let (flags, rest) = extract("-x --y");
        assert!(flags.is_empty());
        assert_eq!(rest, "-x --y");
        let (flags, rest) = extract("--only");
        assert_eq!(flags, ["--only"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn checks_flags() {
        let known = [
            ("link", Kind::Bool),
            ("from", Kind::Text),
            ("mount", Kind::List),
        ];
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = Flags::parse(
            &words(&["--link=false", "--from=a", "--mount=x", "--mount=y"]),
            &known,
        )
        .unwrap();
        assert!(!ok.bool("link"));
        assert_eq!(ok.text("from").as_deref(), Some("a"));
        assert_eq!(ok.list("mount"), ["x", "y"]);
        let cases = [
            (&["--foo"][..], "unknown flag: --foo"),
            (
                &["--from=a", "--from=b"][..],
                "duplicate flag specified: --from",
            ),
            (&["--from"][..], "missing a value on flag: --from"),
            (
                &["--link=yes"][..],
                "expecting boolean value for flag --link, not: yes",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(
                Flags::parse(&words(given), &known).err().as_deref(),
                Some(want)
            );
        }
    }
}
