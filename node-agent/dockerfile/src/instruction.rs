//! One logical line to one instruction: the keyword, its flags, and its arguments in
//! the form each instruction takes (BuildKit's line parsers and `instructions/parse.go`).
//! Arguments stay as written; substitution happens later, in `expand`.

use crate::error::Fault;
use crate::flags::{self, Flags, Kind};
use crate::heredoc::{self, Heredoc};
use crate::lexer::split_words;
use crate::{ArgDecl, Command, Copy, CopySource, Healthcheck, Instruction, Run, duration};

/// Every keyword, for "did you mean".
const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A FROM line, which starts a stage rather than being a step of one.
pub(super) struct From {
    pub base: String,
    pub name: Option<String>,
    pub platform: Option<String>,
}

pub(super) enum Line {
    From(From),
    Instruction(Instruction),
}

/// The separators of whitespace-delimited arguments (BuildKit's `[\t\v\f\r ]+`).
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

fn split_separated(text: &str) -> Vec<String> {
    text.split(is_separator)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The instruction keyword of a line, as written.
pub(super) fn keyword(text: &str) -> &str {
    let text = text.trim();
    text.split(is_separator).next().unwrap_or(text)
}

/// Keyword, flag words, and the (trimmed) arguments after the flags.
fn split_command(text: &str) -> (&str, Vec<String>, &str) {
    let text = text.trim();
    let keyword = keyword(text);
    let rest = text[keyword.len()..].trim_start_matches(is_separator);
    let (flags, args) = flags::extract(rest);
    (keyword, flags, args.trim())
}

/// `["a", "b"]`: `Some` when the arguments are a JSON array of strings, `None` when
/// they are not JSON at all (shell form).
fn parse_json(args: &str) -> Result<Option<Vec<String>>, Fault> {
    if !args.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(args) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn command(args: &str) -> Result<Command, Fault> {
    Ok(match parse_json(args)? {
        Some(words) => Command::Exec(words),
        None => Command::Shell(args.to_owned()),
    })
}

/// Whether a line may open heredocs: RUN, COPY and ADD in shell form, also as an
/// ONBUILD trigger.
pub(super) fn takes_heredocs(text: &str) -> bool {
    let (keyword, _, args) = split_command(text);
    match keyword.to_ascii_lowercase().as_str() {
        "run" | "copy" | "add" => !matches!(parse_json(args), Ok(Some(_))),
        "onbuild" => takes_heredocs(args),
        _ => false,
    }
}

pub(super) fn parse_line(text: &str, heredocs: Vec<Heredoc>, escape: char) -> Result<Line, Fault> {
    let (keyword, flag_words, args) = split_command(text);
    let lower = keyword.to_ascii_lowercase();
    if lower == "from" {
        return parse_from(&flag_words, args).map(Line::From);
    }
    let upper = keyword.to_ascii_uppercase();
    let flags = |known: &[(&str, Kind)]| Flags::parse(&flag_words, known).map_err(Fault::from);
    let instruction = match lower.as_str() {
        "run" => {
            let flags = flags(&[
                ("mount", Kind::List),
                ("network", Kind::Text),
                ("security", Kind::Text),
            ])?;
            let command = match parse_json(args)? {
                Some(words) => Command::Exec(words),
                None if args.is_empty() => return Err("RUN requires at least one argument".into()),
                None => Command::Shell(shell_with_heredocs(args, &heredocs)),
            };
            Instruction::Run(Run {
                command,
                network: flags.text("network"),
                mounts: flags.list("mount"),
                security: flags.text("security"),
                heredoc_line: (!heredocs.is_empty()).then(|| args.to_owned()),
                heredocs,
            })
        }
        "cmd" => {
            flags(&[])?;
            Instruction::Cmd(command(args)?)
        }
        "entrypoint" => {
            flags(&[])?;
            Instruction::Entrypoint(command(args)?)
        }
        "shell" => {
            flags(&[])?;
            match parse_json(args)? {
                Some(words) if !words.is_empty() => Instruction::Shell(words),
                Some(_) => return Err("SHELL requires at least one argument".into()),
                None if args.is_empty() => {
                    return Err("SHELL requires at least one argument".into());
                }
                None => {
                    return Err(format!(
                        "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"], not: {args}"
                    )
                    .into());
                }
            }
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(
            flags(&[
                ("interval", Kind::Text),
                ("timeout", Kind::Text),
                ("start-period", Kind::Text),
                ("start-interval", Kind::Text),
                ("retries", Kind::Text),
            ])?,
            args,
        )?),
        "env" => {
            flags(&[])?;
            Instruction::Env(name_values(&upper, args, escape)?)
        }
        "label" => {
            flags(&[])?;
            Instruction::Label(name_values(&upper, args, escape)?)
        }
        "arg" => {
            flags(&[])?;
            Instruction::Arg(parse_args(args, escape)?)
        }
        "expose" => {
            flags(&[])?;
            let ports = split_separated(args);
            if ports.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(ports)
        }
        "volume" => {
            flags(&[])?;
            let paths = parse_json(args)?.unwrap_or_else(|| split_separated(args));
            if paths.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            if paths.iter().any(|p| p.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(paths)
        }
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(format!("{upper} requires exactly one argument").into());
            }
            let value = args.to_owned();
            match lower.as_str() {
                "user" => Instruction::User(value),
                "workdir" => Instruction::Workdir(value),
                "stopsignal" => Instruction::StopSignal(value),
                _ => Instruction::Maintainer(value),
            }
        }
        "copy" => Instruction::Copy(parse_copy(
            "COPY",
            flags(&[
                ("from", Kind::Text),
                ("chown", Kind::Text),
                ("chmod", Kind::Text),
                ("link", Kind::Bool),
                ("parents", Kind::Bool),
                ("exclude", Kind::List),
            ])?,
            args,
            heredocs,
        )?),
        "add" => Instruction::Add(parse_copy(
            "ADD",
            flags(&[
                ("chown", Kind::Text),
                ("chmod", Kind::Text),
                ("link", Kind::Bool),
                ("checksum", Kind::Text),
                ("keep-git-dir", Kind::Bool),
                ("exclude", Kind::List),
            ])?,
            args,
            heredocs,
        )?),
        "onbuild" => {
            flags(&[])?;
            if args.is_empty() {
                return Err("ONBUILD requires at least one argument".into());
            }
            Instruction::OnBuild(Box::new(parse_trigger(args, heredocs, escape)?))
        }
        _ => {
            return Err(Fault::UnknownInstruction {
                name: keyword.to_owned(),
                suggestion: suggest(keyword),
            });
        }
    };
    Ok(Line::Instruction(instruction))
}

/// An ONBUILD trigger: any instruction but ONBUILD, FROM and MAINTAINER.
pub(super) fn parse_trigger(
    text: &str,
    heredocs: Vec<Heredoc>,
    escape: char,
) -> Result<Instruction, Fault> {
    match keyword(text).to_ascii_uppercase().as_str() {
        "ONBUILD" => return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        trigger @ ("FROM" | "MAINTAINER") => {
            return Err(format!("{trigger} isn't allowed as an ONBUILD trigger").into());
        }
        _ => {}
    }
    match parse_line(text, heredocs, escape)? {
        Line::Instruction(instruction) => Ok(instruction),
        Line::From(_) => Err("FROM isn't allowed as an ONBUILD trigger".into()),
    }
}

fn parse_from(flag_words: &[String], args: &str) -> Result<From, Fault> {
    let flags = Flags::parse(flag_words, &[("platform", Kind::Text)])?;
    let words = split_separated(args);
    let (base, name) = match words.as_slice() {
        [base] => (base.clone(), None),
        [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
            (base.clone(), Some(name.to_lowercase()))
        }
        _ => {
            return Err(
                "FROM requires either one or three arguments (FROM image [AS name])".into(),
            );
        }
    };
    if let Some(name) = &name {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(format!(
                "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
            )
            .into());
        }
    }
    Ok(From {
        base,
        name,
        platform: flags.text("platform"),
    })
}

/// A shell-form RUN with heredocs as `sh -c` takes it. A lone heredoc is the script
/// itself; otherwise the bodies and terminators follow the command line, as BuildKit
/// reassembles them.
fn shell_with_heredocs(args: &str, heredocs: &[Heredoc]) -> String {
    match heredocs {
        [] => args.to_owned(),
        [doc, ..] if matches!(heredoc::parse_opener(args), Ok(Some(_))) => doc.body(),
        docs => docs.iter().fold(args.to_owned(), |mut full, doc| {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
            full
        }),
    }
}

fn parse_healthcheck(flags: Flags, args: &str) -> Result<Healthcheck, Fault> {
    if args.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".into());
    }
    let kind = args.split(char::is_whitespace).next().unwrap_or(args);
    let rest = args[kind.len()..].trim_start();
    match kind.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() => Ok(Healthcheck::None),
        "NONE" => Err("HEALTHCHECK NONE takes no arguments".into()),
        "CMD" => {
            let test = command(rest)?;
            if test == Command::Shell(String::new()) || test == Command::Exec(Vec::new()) {
                return Err("Missing command after HEALTHCHECK CMD".into());
            }
            let interval = |name: &str| -> Result<_, Fault> {
                let Some(text) = flags.text(name) else {
                    return Ok(None);
                };
                let value = duration::parse(&text).map_err(|e| format!("--{name}: {e}"))?;
                if value.is_zero() {
                    return Ok(None);
                }
                if value.as_nanos() < 1_000_000 {
                    return Err(format!("Interval \"--{name}\" cannot be less than 1ms").into());
                }
                Ok(Some(value))
            };
            let retries = match flags.text("retries") {
                None => None,
                Some(text) => match text.parse::<i64>() {
                    Ok(n) if n < 0 => {
                        return Err(format!("--retries cannot be negative ({n})").into());
                    }
                    Ok(0) => None,
                    Ok(n) => {
                        Some(u32::try_from(n).map_err(|_| format!("--retries {n} is too large"))?)
                    }
                    Err(_) => {
                        return Err(format!("--retries must be a number, not \"{text}\"").into());
                    }
                },
            };
            Ok(Healthcheck::Check {
                test,
                interval: interval("interval")?,
                timeout: interval("timeout")?,
                start_period: interval("start-period")?,
                start_interval: interval("start-interval")?,
                retries,
            })
        }
        _ => Err(format!("unknown type \"{kind}\" in HEALTHCHECK (try CMD or NONE)").into()),
    }
}

/// ENV and LABEL: `k=v k2="v 2"`, or the legacy `k v` where the rest of the line is
/// the value.
fn name_values(keyword: &str, args: &str, escape: char) -> Result<Vec<(String, String)>, Fault> {
    let words = split_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} requires at least one argument").into());
    };
    let pairs = if !first.contains('=') {
        let Some(split) = args.find(is_separator) else {
            return Err(
                format!("{keyword} must have two arguments (name value, or name=value)").into(),
            );
        };
        vec![(
            args[..split].to_owned(),
            args[split..].trim_start_matches(is_separator).to_owned(),
        )]
    } else {
        words
            .iter()
            .map(|word| match word.split_once('=') {
                Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
                None => Err(format!(
                    "syntax error: can't find = in \"{word}\"; it must be of the form name=value"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if pairs.iter().any(|(name, _)| name.is_empty()) {
        return Err(format!("{keyword} names can not be blank").into());
    }
    Ok(pairs)
}

fn parse_args(args: &str, escape: char) -> Result<Vec<ArgDecl>, Fault> {
    let words = split_words(args, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    words
        .into_iter()
        .map(|word| {
            let decl = match word.split_once('=') {
                Some((name, default)) => ArgDecl {
                    name: name.to_owned(),
                    default: Some(default.to_owned()),
                },
                None => ArgDecl {
                    name: word,
                    default: None,
                },
            };
            if decl.name.is_empty() {
                return Err("ARG names can not be blank".into());
            }
            Ok(decl)
        })
        .collect()
}

fn parse_copy(
    keyword: &str,
    flags: Flags,
    args: &str,
    heredocs: Vec<Heredoc>,
) -> Result<Copy, Fault> {
    let json = parse_json(args)?;
    let is_json = json.is_some();
    let mut words = json.unwrap_or_else(|| split_separated(args));
    if words.len() < 2 {
        return Err(format!(
            "{keyword} requires at least two arguments (sources and a destination)"
        )
        .into());
    }
    let dest = words.pop().unwrap_or_default();
    if !is_json && heredoc::parse_opener(&dest)?.is_some() {
        return Err(format!("{keyword} cannot accept a heredoc as a destination").into());
    }
    let mut bodies = heredocs.into_iter();
    let mut sources = Vec::new();
    for word in words {
        let opener = if is_json {
            None
        } else {
            heredoc::parse_opener(&word)?
        };
        sources.push(match opener {
            None => CopySource::Path(word),
            Some(_) => {
                let doc = bodies
                    .next()
                    .ok_or_else(|| format!("{keyword}: no body for heredoc {word}"))?;
                CopySource::Inline {
                    content: doc.body(),
                    name: doc.name,
                    expand: doc.expand,
                }
            }
        });
    }
    Ok(Copy {
        sources,
        dest,
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.list("exclude"),
        checksum: flags.text("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
    })
}

/// The closest keyword by edit distance, if it is close enough to be a typo.
fn suggest(word: &str) -> Option<&'static str> {
    let upper = word.to_uppercase();
    KEYWORDS
        .iter()
        .map(|k| (distance(&upper, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance; keywords are short, so the quadratic table is fine.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("COPPY"), Some("COPY"));
        assert_eq!(suggest("entrypont"), Some("ENTRYPOINT"));
        assert_eq!(suggest("RUNN"), Some("RUN"));
        assert_eq!(suggest("XYZZY"), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
