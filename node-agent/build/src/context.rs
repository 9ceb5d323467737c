//! Which files of a build context a Dockerfile step sees: `.dockerignore` rules, COPY/ADD
//! source globs, and a walker that lists the context honoring the rules.
//!
//! Matching follows Docker (moby/patternmatcher and BuildKit's ignore-file reader) rather
//! than `.gitignore`: `*` stays within one path component, a bare name matches only at the
//! context root, `**` spans directories, the last matching line wins and `!` lines
//! re-include, even below an excluded directory.
//!
//! The builder always reads the Dockerfile and `.dockerignore` themselves, whatever the
//! rules say (Docker does too); the rules only decide what COPY and ADD can see. Like
//! BuildKit, it should prefer `<Dockerfile>.dockerignore` next to the Dockerfile over the
//! context's `.dockerignore` when both exist.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(".dockerignore:{line}: bad pattern \"{pattern}\": {reason}")]
    BadIgnorePattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },

    #[error("bad source pattern \"{pattern}\": {reason}")]
    BadGlob {
        pattern: String,
        reason: &'static str,
    },

    #[error("reading the build context at {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Parsed `.dockerignore` rules.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    exception: bool,
    glob: Glob,
}

impl Ignore {
    /// Parses the text of a `.dockerignore`: one pattern a line, trimmed; blank lines and
    /// lines starting with `#` are skipped; `!` makes an exception; each pattern is cleaned
    /// like Go's `filepath.Clean` and loses a leading `/`.
    pub fn parse(text: &str) -> Result<Ignore, Error> {
        // BuildKit drops a UTF-8 byte order mark at the start of the file.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let bad = |reason| Error::BadIgnorePattern {
                line: n + 1,
                pattern: line.trim().to_string(),
                reason,
            };
            let mut pattern = line.trim();
            if pattern.is_empty() || pattern.starts_with('#') {
                continue;
            }
            let exception = match pattern.strip_prefix('!') {
                Some(rest) => {
                    pattern = rest.trim();
                    if pattern.is_empty() {
                        return Err(bad("\"!\" needs a pattern after it"));
                    }
                    true
                }
                None => false,
            };
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1
                && let Some(rest) = cleaned.strip_prefix('/')
            {
                cleaned = rest.to_string();
            }
            let glob = Glob::compile(&cleaned, true).map_err(bad)?;
            patterns.push(Rule { exception, glob });
        }
        Ok(Ignore { patterns })
    }

    /// True when `rel` (context-relative, `/`-separated) is left out of the context: the
    /// last rule matching it or one of its parent directories is not an exception.
    pub fn is_excluded(&self, rel: &str) -> bool {
        match context_path(rel) {
            Some(rel) => self.excluded_by(&rel).is_some(),
            None => false,
        }
    }

    /// True when `rel_dir` is excluded and nothing below it can be re-included, so a walker
    /// need not read it. Conservative: a `false` only costs a walk.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        match context_path(rel_dir) {
            Some(rel) => self.skippable(&rel),
            None => false,
        }
    }

    /// The index of the rule that excludes `rel` (a clean path), if it is excluded.
    fn excluded_by(&self, rel: &str) -> Option<usize> {
        // Last match wins, so scan from the end and stop at the first match.
        let (i, rule) = self
            .patterns
            .iter()
            .enumerate()
            .rev()
            .find(|(_, rule)| rule.glob.matches_or_parent(rel))?;
        (!rule.exception).then_some(i)
    }

    fn skippable(&self, rel: &str) -> bool {
        self.excluded_by(rel)
            .is_some_and(|i| !self.reincludable_below(rel, i))
    }

    /// Whether something below the directory `rel`, excluded by rule `i`, can be
    /// re-included. Rule `i` matches everything below the directory too, so only a later
    /// exception that can match below it can let something back in.
    fn reincludable_below(&self, rel: &str, i: usize) -> bool {
        let below = format!("{rel}/");
        self.patterns[i + 1..]
            .iter()
            .any(|rule| rule.exception && rule.glob.may_match_with_prefix(&below))
    }
}

/// A cleaned, context-relative path; `None` for the context root, which is never excluded.
fn context_path(rel: &str) -> Option<String> {
    let cleaned = clean(rel);
    let rel = cleaned.trim_start_matches('/');
    (!rel.is_empty() && rel != ".").then(|| rel.to_string())
}

/// True when a COPY/ADD source is a pattern rather than a path. A `\`-escaped
/// metacharacter does not count, as in BuildKit.
pub fn has_glob(source: &str) -> bool {
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Go's `filepath.Match(pattern, path)`: `*` and `?` do not match `/`; `[...]` classes
/// with ranges and `^` negation; `\` escapes. For matching many paths, compile a [`Glob`].
pub fn glob_match(pattern: &str, path: &str) -> Result<bool, Error> {
    Ok(Glob::new(pattern)?.is_match(path))
}

/// A compiled pattern: with Go `filepath.Match` semantics from [`Glob::new`], or with
/// patternmatcher's `**` inside an [`Ignore`].
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    One,
    /// `[...]`: one character, `/` included (as in Go).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` before more pattern: nothing, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end: anything.
    AnyTail,
}

/// patternmatcher's classification of a pattern; only needed to reproduce how it treats a
/// leading `**` (see the end of `Glob::compile`).
#[derive(PartialEq)]
enum Shape {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

impl Glob {
    /// Compiles a COPY/ADD source pattern (Go `filepath.Match` syntax; `**` is just `*`).
    pub fn new(pattern: &str) -> Result<Glob, Error> {
        Glob::compile(pattern, false).map_err(|reason| Error::BadGlob {
            pattern: pattern.to_string(),
            reason,
        })
    }

    /// True when the whole of `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        let mut nfa = Nfa::start(&self.toks);
        for c in path.chars() {
            if !nfa.step(c) {
                return false;
            }
        }
        nfa.accepts()
    }

    /// Turns a pattern into tokens, rejecting what Go's `filepath.Match` rejects. With
    /// `double_star`, `**` spans directories the way patternmatcher's regexp does.
    fn compile(pattern: &str, double_star: bool) -> Result<Glob, &'static str> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut shape = Shape::Exact;
        let mut leading_ate_slash = false;
        let mut i = 0;
        while i < chars.len() {
            let first = i == 0;
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    let ate_slash = chars.get(i) == Some(&'/');
                    if ate_slash {
                        i += 1;
                    }
                    if i == chars.len() {
                        shape = if shape == Shape::Exact {
                            Shape::Prefix
                        } else {
                            Shape::Regexp
                        };
                        toks.push(Tok::AnyTail);
                    } else {
                        shape = Shape::Regexp;
                        toks.push(Tok::AnyDirs);
                    }
                    if first {
                        shape = Shape::Suffix;
                        leading_ate_slash = ate_slash;
                    }
                }
                '*' => {
                    // Consecutive stars mean one star in filepath.Match.
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                    shape = Shape::Regexp;
                    toks.push(Tok::Star);
                }
                '?' => {
                    shape = Shape::Regexp;
                    toks.push(Tok::One);
                }
                '\\' => {
                    let escaped = *chars.get(i).ok_or("a trailing \\ escapes nothing")?;
                    i += 1;
                    shape = Shape::Regexp;
                    toks.push(Tok::Lit(escaped));
                }
                '[' => {
                    shape = Shape::Regexp;
                    toks.push(class(&chars, &mut i)?);
                }
                ']' => {
                    shape = Shape::Regexp;
                    toks.push(Tok::Lit(']'));
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        // patternmatcher matches a pattern that starts with `**` and has no other
        // metacharacter by suffix: `**/foo` is "foo" or ends in "/foo", but `**foo` is any
        // path ending in "foo", where `**foo*` (a regexp) needs "foo" to start a component.
        if shape == Shape::Suffix && !leading_ate_slash {
            toks[0] = Tok::AnyTail;
        }
        Ok(Glob { toks })
    }

    /// Whether this pattern matches `rel` or one of its parent directories, checked in one
    /// pass: a parent matches when the pattern accepts just before one of the `/`s.
    fn matches_or_parent(&self, rel: &str) -> bool {
        let mut nfa = Nfa::start(&self.toks);
        for c in rel.chars() {
            if c == '/' && nfa.accepts() {
                return true;
            }
            if !nfa.step(c) {
                return false;
            }
        }
        nfa.accepts()
    }

    /// Whether some non-empty continuation of `prefix` could match.
    fn may_match_with_prefix(&self, prefix: &str) -> bool {
        let mut nfa = Nfa::start(&self.toks);
        prefix.chars().all(|c| nfa.step(c)) && nfa.can_continue()
    }
}

/// Parses a `[...]` class after its `[` the way Go's `filepath.Match` does: `^` negates
/// (`!` does not; Docker treats it as a literal), `-` and `]` must be escaped except as
/// the closing bracket after at least one item.
fn class(chars: &[char], i: &mut usize) -> Result<Tok, &'static str> {
    let negated = chars.get(*i) == Some(&'^');
    if negated {
        *i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(*i) == Some(&']') && !ranges.is_empty() {
            *i += 1;
            return Ok(Tok::Class { negated, ranges });
        }
        let lo = class_char(chars, i)?;
        let hi = if chars.get(*i) == Some(&'-') {
            *i += 1;
            class_char(chars, i)?
        } else {
            lo
        };
        // Go's Match accepts a backwards range that matches nothing, but patternmatcher's
        // regexp rejects it, so a .dockerignore with one fails in Docker too.
        if lo > hi {
            return Err("character range is backwards");
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: &mut usize) -> Result<char, &'static str> {
    let c = match chars.get(*i) {
        None => return Err("unterminated character class"),
        Some('-' | ']') => return Err("'-' and ']' must be escaped inside [...]"),
        Some('\\') => {
            *i += 1;
            *chars.get(*i).ok_or("unterminated character class")?
        }
        Some(&c) => c,
    };
    *i += 1;
    Ok(c)
}

/// A simulation of the tokens as a nondeterministic automaton: linear in pattern times
/// path length, whatever the stars (a backtracking matcher can be exponential).
struct Nfa<'a> {
    toks: &'a [Tok],
    /// `at[t]`: the next character is matched against token `t` (`t == len`: the end).
    at: Vec<bool>,
    /// `inside[t]`: within the `.*/` of the `AnyDirs` token `t`, before its final `/`.
    inside: Vec<bool>,
}

impl<'a> Nfa<'a> {
    fn start(toks: &'a [Tok]) -> Nfa<'a> {
        let mut nfa = Nfa {
            toks,
            at: vec![false; toks.len() + 1],
            inside: vec![false; toks.len()],
        };
        nfa.at[0] = true;
        nfa.skip_empty();
        nfa
    }

    /// Tokens that can match nothing let the match move past them.
    fn skip_empty(&mut self) {
        for (t, tok) in self.toks.iter().enumerate() {
            if self.at[t] && matches!(tok, Tok::Star | Tok::AnyDirs | Tok::AnyTail) {
                self.at[t + 1] = true;
            }
        }
    }

    /// Consumes `c`; false when no match is possible any more.
    fn step(&mut self, c: char) -> bool {
        let n = self.toks.len();
        let mut at = vec![false; n + 1];
        let mut inside = vec![false; n];
        for (t, tok) in self.toks.iter().enumerate() {
            if self.inside[t] {
                inside[t] = true;
                at[t + 1] |= c == '/';
            }
            if !self.at[t] {
                continue;
            }
            match tok {
                Tok::Lit(l) => at[t + 1] |= *l == c,
                Tok::One => at[t + 1] |= c != '/',
                Tok::Class { negated, ranges } => {
                    let hit = ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c));
                    at[t + 1] |= hit != *negated;
                }
                Tok::Star => at[t] |= c != '/',
                Tok::AnyTail => at[t] = true,
                Tok::AnyDirs => {
                    inside[t] = true;
                    at[t + 1] |= c == '/';
                }
            }
        }
        self.at = at;
        self.inside = inside;
        self.skip_empty();
        self.at.iter().any(|&b| b) || self.inside.iter().any(|&b| b)
    }

    fn accepts(&self) -> bool {
        self.at[self.toks.len()]
    }

    /// Whether some non-empty input could still lead to a match (conservatively: any live
    /// state short of the end).
    fn can_continue(&self) -> bool {
        self.at[..self.toks.len()].iter().any(|&b| b) || self.inside.iter().any(|&b| b)
    }
}

/// Go's `path.Clean`: drops empty and `.` components, resolves `..` against earlier
/// components (dropping it at the root), and gives "." for an empty result.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// One file of the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root.
    pub path: PathBuf,
    pub kind: FileKind,
}

/// What an [`Entry`] is, from `symlink_metadata` (links are never followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device node.
    Other,
}

/// Lists the context under `root` that the rules let through: depth first, names sorted
/// bytewise within each directory, a directory before its contents. Symlinks are listed,
/// never followed. An excluded directory is listed only as the parent of something an
/// exception re-includes, as BuildKit sends it; one nothing can re-include is not read.
pub fn walk(root: &Path, ignore: &Ignore) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    walk_dir(root, Path::new(""), "", ignore, &mut entries)?;
    Ok(entries)
}

fn walk_dir(
    root: &Path,
    rel_dir: &Path,
    rel_dir_str: &str,
    ignore: &Ignore,
    entries: &mut Vec<Entry>,
) -> Result<(), Error> {
    let dir = root.join(rel_dir);
    let read = |source| Error::Read {
        path: dir.clone(),
        source,
    };
    let mut names = fs::read_dir(&dir)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<Vec<OsString>>>()
        .map_err(read)?;
    names.sort();
    for name in names {
        let path = rel_dir.join(&name);
        // Patterns are text: a name that is not UTF-8 is matched with its bad bytes
        // replaced, and keeps its real bytes in the entry.
        let lossy = name.to_string_lossy();
        let rel = if rel_dir_str.is_empty() {
            lossy.into_owned()
        } else {
            format!("{rel_dir_str}/{lossy}")
        };
        let full = root.join(&path);
        let file_type = fs::symlink_metadata(&full)
            .map_err(|source| Error::Read {
                path: full.clone(),
                source,
            })?
            .file_type();
        let kind = if file_type.is_symlink() {
            FileKind::Symlink
        } else if file_type.is_dir() {
            FileKind::Dir
        } else if file_type.is_file() {
            FileKind::File
        } else {
            FileKind::Other
        };
        let entry = Entry { path, kind };
        match (ignore.excluded_by(&rel), kind) {
            (None, FileKind::Dir) => {
                let path = entry.path.clone();
                entries.push(entry);
                walk_dir(root, &path, &rel, ignore, entries)?;
            }
            (None, _) => entries.push(entry),
            (Some(i), FileKind::Dir) if ignore.reincludable_below(&rel, i) => {
                let mark = entries.len();
                walk_dir(root, &entry.path, &rel, ignore, entries)?;
                if entries.len() > mark {
                    entries.insert(mark, entry);
                }
            }
            (Some(_), _) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ignore(lines: &[&str]) -> Ignore {
        Ignore::parse(&lines.join("\n")).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
    }

    /// The only rule of a one-line .dockerignore.
    fn rule(pattern: &str) -> Glob {
        ignore(&[pattern]).patterns.remove(0).glob
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum M {
        /// The pattern matches the path itself.
        Exact,
        /// The pattern matches only a parent directory of the path.
        Parent,
        No,
    }

    /// patternmatcher's TestMatches table (single patterns).
    #[test]
    fn patternmatcher_single_patterns() {
        use M::*;
        let cases = [
            ("**", "file", Exact),
            ("**", "file/", Exact),
            ("**/", "file", Exact),
            ("**/", "file/", Exact),
            ("**", "/", Exact),
            ("**/", "/", Exact),
            ("**", "dir/file", Exact),
            ("**/", "dir/file", Exact),
            ("**", "dir/file/", Exact),
            ("**/", "dir/file/", Exact),
            ("**/**", "dir/file", Exact),
            ("**/**", "dir/file/", Exact),
            ("dir/**", "dir/file", Exact),
            ("dir/**", "dir/file/", Exact),
            ("dir/**", "dir/dir2/file", Exact),
            ("dir/**", "dir/dir2/file/", Exact),
            ("**/dir", "dir", Exact),
            ("**/dir", "dir/file", Parent),
            ("**/dir2/*", "dir/dir2/file", Exact),
            ("**/dir2/*", "dir/dir2/file/", Parent),
            ("**/dir2/**", "dir/dir2/dir3/file", Exact),
            ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
            ("**file", "file", Exact),
            ("**file", "dir/file", Exact),
            ("**/file", "dir/file", Exact),
            ("**file", "dir/dir/file", Exact),
            ("**/file", "dir/dir/file", Exact),
            ("**/file*", "dir/dir/file", Exact),
            ("**/file*", "dir/dir/file.txt", Exact),
            ("**/file*txt", "dir/dir/file.txt", Exact),
            ("**/file*.txt", "dir/dir/file.txt", Exact),
            ("**/file*.txt*", "dir/dir/file.txt", Exact),
            ("**/**/*.txt", "dir/dir/file.txt", Exact),
            ("**/**/*.txt2", "dir/dir/file.txt", No),
            ("**/*.txt", "file.txt", Exact),
            ("**/**/*.txt", "file.txt", Exact),
            ("a**/*.txt", "a/file.txt", Exact),
            ("a**/*.txt", "a/dir/file.txt", Exact),
            ("a**/*.txt", "a/dir/dir/file.txt", Exact),
            ("a/*.txt", "a/dir/file.txt", No),
            ("a/*.txt", "a/file.txt", Exact),
            ("a/*.txt**", "a/file.txt", Exact),
            ("a[b-d]e", "ae", No),
            ("a[b-d]e", "ace", Exact),
            ("a[b-d]e", "aae", No),
            ("a[^b-d]e", "aze", Exact),
            (".*", ".foo", Exact),
            (".*", "foo", No),
            ("abc.def", "abcdef", No),
            ("abc.def", "abc.def", Exact),
            ("abc.def", "abcZdef", No),
            ("abc?def", "abcZdef", Exact),
            ("abc?def", "abcdef", No),
            ("**/foo/bar", "foo/bar", Exact),
            ("**/foo/bar", "dir/foo/bar", Exact),
            ("**/foo/bar", "dir/dir2/foo/bar", Exact),
            ("abc/**", "abc", No),
            ("abc/**", "abc/def", Exact),
            ("abc/**", "abc/def/ghi", Exact),
            ("**/.foo", ".foo", Exact),
            ("**/.foo", "bar.foo", No),
            ("a(b)c/def", "a(b)c/def", Exact),
            ("a(b)c/def", "a(b)c/xyz", No),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                Exact,
            ),
            ("a\\\\", "a\\", Exact),
            ("a\\*b", "a*b", Exact),
            // patternmatcher's leading-`**` quirk: a suffix match without a regexp...
            ("**file", "dir/xfile", Exact),
            // ...but a component start with one.
            ("**file*", "dir/xfile.txt", No),
            ("a**b", "a/x/b", Exact),
            ("a**b", "axb", No),
        ];
        for (pattern, path, want) in cases {
            let glob = rule(pattern);
            let exact = glob.is_match(path);
            let got = match (exact, glob.matches_or_parent(path)) {
                (true, _) => Exact,
                (false, true) => Parent,
                (false, false) => No,
            };
            assert_eq!(got, want, "pattern {pattern:?}, path {path:?}");
        }
    }

    #[test]
    fn last_match_wins_and_exceptions_reinclude() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*.go"], "fileutils.go", true),
            (&["*"], "fileutils.go", true),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["docs", "!docs/README.md"], "docs/other.md", true),
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0-py3-none-any.whl",
                false,
            ),
            (&["**", "!dist/*.whl"], "dist/other.tar.gz", true),
            // The .dockerignore reference's examples.
            (&["*/temp*"], "somedir/temporary.txt", true),
            (&["*/temp*"], "somedir/temp", true),
            (&["*/temp*"], "temp", false),
            (&["*/temp*"], "a/b/temp", false),
            (&["*/*/temp*"], "somedir/subdir/temporary.txt", true),
            (&["temp?"], "tempa", true),
            (&["temp?"], "temp", false),
            (&["**/*.go"], "a/b/c.go", true),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-secret.md",
                true,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README.md",
                false,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "other.md",
                true,
            ),
            (
                &["*.md", "README-secret.md", "!README*.md"],
                "README-secret.md",
                false,
            ),
            // A bare name is anchored at the root (unlike .gitignore).
            (&["abc"], "somedir/abc", false),
            (&["abc"], "abc/def", true),
            // Cleaning: a leading `/` or `./`, `..` and doubled slashes.
            (&["/abc"], "abc", true),
            (&["./abc"], "abc", true),
            (&["abc/../def"], "def", true),
            (&["abc//def/"], "abc/def", true),
            (&["/../abc"], "abc", true),
            (&["../abc"], "abc", false),
            (&["! /docs/x", "docs"], "docs/x", true),
            (&["docs", "! /docs/x"], "docs/x", false),
            // Nothing excludes the context root.
            (&["*"], ".", false),
            (&["."], "x", false),
            // Escapes and classes; `[!...]` is not a negation in Go or Docker.
            (&["\\#foo"], "#foo", true),
            (&["a\\?"], "a?", true),
            (&["a\\?"], "ab", false),
            (&["[\\]a]"], "]", true),
            (&["[!a]"], "!", true),
            (&["[!a]"], "b", false),
            (&["a[^x]b"], "a/b", true),
            // The path is cleaned too.
            (&["abc"], "./abc/", true),
            (&["abc"], "/abc", true),
        ];
        for (lines, path, want) in cases {
            assert_eq!(ignore(lines).is_excluded(path), *want, "{lines:?} {path:?}");
        }
    }

    #[test]
    fn reads_like_buildkit() {
        // ignorefile's test content: comments and blanks go, `!` and `/` are stripped.
        let text = "\u{feff}test1\n/test2\r\n/a/file/here\n\n  lastfile  \n# this is a comment\n\
                    ! /inverted/abs/path\n";
        let ig = Ignore::parse(text).unwrap();
        assert_eq!(ig.patterns.len(), 5);
        for path in ["test1", "test2", "a/file/here", "lastfile"] {
            assert!(ig.is_excluded(path), "{path}");
        }
        assert!(!ig.is_excluded("# this is a comment"));
        assert!(ig.patterns[4].exception);
        assert!(!ig.is_excluded("inverted/abs/path"));
    }

    #[test]
    fn bad_patterns_name_the_line() {
        let cases = [
            ("[", 1, "unterminated character class"),
            ("a[", 1, "unterminated character class"),
            ("[^", 1, "unterminated character class"),
            ("[^bc", 1, "unterminated character class"),
            ("[]a]", 1, "'-' and ']' must be escaped inside [...]"),
            ("[-]", 1, "'-' and ']' must be escaped inside [...]"),
            ("[x-]", 1, "'-' and ']' must be escaped inside [...]"),
            ("[-x]", 1, "'-' and ']' must be escaped inside [...]"),
            ("[a-b-c]", 1, "'-' and ']' must be escaped inside [...]"),
            ("\\", 1, "a trailing \\ escapes nothing"),
            ("[z-a]", 1, "character range is backwards"),
            ("ok\n# fine\n!", 3, "\"!\" needs a pattern after it"),
            ("ok\n!  ", 2, "\"!\" needs a pattern after it"),
        ];
        for (text, line, reason) in cases {
            match Ignore::parse(text) {
                Err(Error::BadIgnorePattern {
                    line: l, reason: r, ..
                }) => {
                    assert_eq!((l, r), (line, reason), "{text:?}");
                }
                other => panic!("{text:?}: expected an error, got {other:?}"),
            }
        }
        let e = Ignore::parse("x\n  [abc  \n").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".dockerignore:2: bad pattern \"[abc\": unterminated character class"
        );
    }

    #[test]
    fn skips_a_dir_only_when_nothing_below_can_come_back() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["node_modules"], "node_modules", true),
            (&["node_modules"], "src", false),
            (&["**/__pycache__"], "a/b/__pycache__", true),
            (&["docs", "!docs/README.md"], "docs", false),
            (&["docs", "!docs/*/keep"], "docs", false),
            (&["docs", "!**/keep"], "docs", false),
            (&["docs", "!docs/[a-z]*"], "docs", false),
            (&["docs", "!d*/x"], "docs", false),
            // These exceptions cannot match below docs/.
            (&["docs", "!*.md"], "docs", true),
            (&["docs", "!doc/x"], "docs", true),
            (&["docs", "!docs"], "docs", false),
            (&["!docs/x", "docs"], "docs", true),
            (&["*", "!src"], "build", true),
            (&["*", "!src"], "src", false),
            (&["a/**", "!a/b/c"], "a", false),
            (&["a/**", "!a/b/c"], "a/b", false),
            (&["a/**", "!a/b/c"], "a/x", true),
            (&["a/b"], "a/b/c", true),
            (&["*"], ".", false),
        ];
        for (lines, dir, want) in cases {
            assert_eq!(ignore(lines).can_skip_dir(dir), *want, "{lines:?} {dir:?}");
        }
    }

    /// Go's filepath.Match tests.
    #[test]
    fn globs_match_like_go() {
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
            // COPY sources: `**` is just `*`, `[*]` a class holding `*`.
            ("app/*.py", "app/main.py", true),
            ("app/*.py", "app/sub/main.py", false),
            ("*.txt", "a.txt", true),
            ("*.txt", "dir/a.txt", false),
            ("**/*.txt", "dir/a.txt", true),
            ("**/*.txt", "a/b/c.txt", false),
            ("[*]", "*", true),
            ("[*]", "x", false),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(
                glob_match(pattern, path).unwrap(),
                want,
                "{pattern:?} {path:?}"
            );
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert!(
                matches!(glob_match(bad, "a"), Err(Error::BadGlob { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            glob_match("src/[", "x").unwrap_err().to_string(),
            "bad source pattern \"src/[\": unterminated character class"
        );
    }

    #[test]
    fn tells_globs_from_paths() {
        let cases = [
            ("app/main.py", false),
            ("*.txt", true),
            ("app/?.py", true),
            ("[ab].txt", true),
            ("a\\*b", false),
            ("a\\\\*b", true),
            ("", false),
        ];
        for (source, want) in cases {
            assert_eq!(has_glob(source), want, "{source:?}");
        }
    }

    fn put(root: &Path, rel: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, rel).unwrap();
    }

    #[test]
    fn walks_the_context_honoring_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "Dockerfile",
            ".dockerignore",
            "app/main.py",
            "app/util.py",
            "app/__pycache__/util.pyc",
            "node_modules/pkg/index.js",
            "docs/guide.md",
            "docs/README.md",
            "secret.txt",
        ] {
            put(root, rel);
        }
        fs::create_dir(root.join("empty")).unwrap();
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        std::os::unix::fs::symlink("docs", root.join("docs-link")).unwrap();
        let ig = ignore(&[
            "node_modules",
            "**/__pycache__",
            "docs",
            "!docs/README.md",
            "*.txt",
        ]);
        let got: Vec<(String, FileKind)> = walk(root, &ig)
            .unwrap()
            .into_iter()
            .map(|e| (e.path.to_string_lossy().into_owned(), e.kind))
            .collect();
        use FileKind::*;
        let want = [
            (".dockerignore", File),
            ("Dockerfile", File),
            ("app", Dir),
            ("app/main.py", File),
            ("app/util.py", File),
            // Excluded, but the parent of a re-included file.
            ("docs", Dir),
            ("docs/README.md", File),
            // Not excluded: `docs` matches the path, not where the link points.
            ("docs-link", Symlink),
            ("empty", Dir),
            ("link", Symlink),
        ];
        let want: Vec<(String, FileKind)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn walk_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = walk(&missing, &Ignore::default()).unwrap_err();
        assert!(matches!(&e, Error::Read { path, .. } if *path == missing));
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn walk_keeps_names_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
        fs::write(dir.path().join(name), "").unwrap();
        let entries = walk(dir.path(), &Ignore::default()).unwrap();
        assert_eq!(entries[0].path, Path::new(name));
        assert!(walk(dir.path(), &ignore(&["bad*"])).unwrap().is_empty());
    }

    /// Patterns and paths over a small alphabet, so they often match.
    fn pattern_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                "a", "b", "/", "*", "**", "?", "[ab]", "[^a]", "!", "\\*", ".", "..",
            ]),
            1..6,
        )
        .prop_map(|parts| parts.concat())
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "*", "."]), 1..5)
            .prop_map(|parts| parts.join("/"))
    }

    /// Test oracle: patternmatcher's own algorithm for one cleaned pattern, transcribed
    /// (exact, prefix or suffix comparison, else a regexp), plus its parent-directory rule.
    fn docker_matches(pattern: &str, path: &str) -> bool {
        let chars: Vec<char> = pattern.chars().collect();
        let (exact, prefix, suffix, regexp) = (0, 1, 2, 3);
        let mut shape = exact;
        let mut re = String::from("^");
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let ch = chars[i];
            i += 1;
            if ch == '*' && chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    if shape == exact {
                        shape = prefix;
                    } else {
                        re += ".*";
                        shape = regexp;
                    }
                } else {
                    re += "(.*/)?";
                    shape = regexp;
                }
                if first {
                    shape = suffix;
                }
            } else if ch == '*' {
                re += "[^/]*";
                shape = regexp;
            } else if ch == '?' {
                re += "[^/]";
                shape = regexp;
            } else if ".+()|{}$".contains(ch) {
                re.push('\\');
                re.push(ch);
            } else if ch == '\\' && i < chars.len() {
                re.push('\\');
                re.push(chars[i]);
                i += 1;
                shape = regexp;
            } else if ch == '[' || ch == ']' {
                re.push(ch);
                shape = regexp;
            } else {
                re.push(ch);
            }
            first = false;
        }
        let one = |path: &str| match shape {
            0 => path == pattern,
            1 => path.starts_with(&pattern[..pattern.len() - 2]),
            2 => {
                let tail = &pattern[2..];
                path.ends_with(tail) || tail.strip_prefix('/') == Some(path)
            }
            _ => regex::Regex::new(&format!("{re}$")).unwrap().is_match(path),
        };
        let parts: Vec<&str> = path.split('/').collect();
        one(path) || (1..parts.len()).any(|n| one(&parts[..n].join("/")))
    }

    /// Test oracle: BuildKit's reader and patternmatcher's evaluation loop.
    fn docker_excluded(lines: &[String], path: &str) -> bool {
        let mut matched = false;
        for line in lines {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(pattern);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            if exception != matched {
                continue;
            }
            if docker_matches(&cleaned, path) {
                matched = !exception;
            }
        }
        matched
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,60}(\n\\PC{0,20}){0,3}", path in "\\PC{0,30}") {
            if let Ok(ig) = Ignore::parse(&text) {
                let _ = ig.is_excluded(&path);
                let _ = ig.can_skip_dir(&path);
            }
        }

        #[test]
        fn glob_match_never_panics(pattern in "\\PC{0,40}", path in "\\PC{0,40}") {
            let _ = glob_match(&pattern, &path);
            let _ = has_glob(&pattern);
        }

        /// Same answers as Docker's own algorithm, on patterns without its regexp quirks.
        #[test]
        fn agrees_with_patternmatcher(
            lines in prop::collection::vec(pattern_strategy(), 1..4),
            path in path_strategy(),
        ) {
            if let (Ok(ig), Some(path)) = (Ignore::parse(&lines.join("\n")), context_path(&path)) {
                prop_assert_eq!(
                    ig.is_excluded(&path),
                    docker_excluded(&lines, &path),
                    "{:?} {}", lines, path
                );
            }
        }

        /// A skipped directory hides nothing that the rules would let through.
        #[test]
        fn skipping_a_dir_loses_nothing(
            lines in prop::collection::vec(pattern_strategy(), 1..4),
            dir in path_strategy(),
            below in path_strategy(),
        ) {
            if let Ok(ig) = Ignore::parse(&lines.join("\n")) {
                let dir = clean(&dir);
                if dir != "." && !dir.starts_with("..") && ig.can_skip_dir(&dir) {
                    let path = format!("{dir}/{below}");
                    if context_path(&path).is_some_and(|p| p.starts_with(&format!("{dir}/"))) {
                        prop_assert!(ig.is_excluded(&path), "{lines:?} skip {dir} but not {path}");
                    }
                }
            }
        }
    }
}
