//! Instructions as canonical Dockerfile text, for build output and image history:
//! `RUN chmod +x boot.sh`, `COPY --chown=a:b app app`, `ENTRYPOINT ["./boot.sh"]`.
//! A parsed instruction (without heredocs) displays as text that parses back to it.

use std::fmt::{self, Display, Formatter};

use crate::{Command, Copy, CopySource, Healthcheck, Instruction, duration};

/// A JSON array of strings, as exec form and SHELL write it.
fn json(words: &[String]) -> String {
    serde_json::to_string(words).unwrap_or_default()
}

impl Display for Command {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Command::Exec(words) => f.write_str(&json(words)),
            Command::Shell(text) => f.write_str(text),
        }
    }
}

/// ` --name=value`, quoting a value the flag splitter would otherwise cut or unescape.
fn flag(f: &mut Formatter<'_>, name: &str, value: &str) -> fmt::Result {
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, " --{name}=\"{escaped}\"")
    } else {
        write!(f, " --{name}={value}")
    }
}

fn optional_flag(f: &mut Formatter<'_>, name: &str, value: &Option<String>) -> fmt::Result {
    value.as_deref().map_or(Ok(()), |v| flag(f, name, v))
}

fn bool_flag(f: &mut Formatter<'_>, name: &str, set: bool) -> fmt::Result {
    if set { write!(f, " --{name}") } else { Ok(()) }
}

/// Whitespace-separated words, or a JSON array when a word would not survive that.
fn words(f: &mut Formatter<'_>, words: &[String]) -> fmt::Result {
    let awkward = words
        .iter()
        .any(|w| w.is_empty() || w.starts_with('[') || w.chars().any(char::is_whitespace));
    if awkward {
        write!(f, " {}", json(words))
    } else {
        words.iter().try_for_each(|w| write!(f, " {w}"))
    }
}

/// `k=v` pairs; a single pair whose value has spaces uses the legacy `k v` form,
/// which takes the rest of the line as the value.
fn pairs(f: &mut Formatter<'_>, pairs: &[(String, String)]) -> fmt::Result {
    match pairs {
        [(k, v)] if v.chars().any(char::is_whitespace) => write!(f, " {k} {v}"),
        _ => pairs.iter().try_for_each(|(k, v)| write!(f, " {k}={v}")),
    }
}

fn copy(f: &mut Formatter<'_>, c: &Copy) -> fmt::Result {
    optional_flag(f, "from", &c.from)?;
    optional_flag(f, "chown", &c.chown)?;
    optional_flag(f, "chmod", &c.chmod)?;
    bool_flag(f, "link", c.link)?;
    bool_flag(f, "parents", c.parents)?;
    for pattern in &c.exclude {
        flag(f, "exclude", pattern)?;
    }
    optional_flag(f, "checksum", &c.checksum)?;
    bool_flag(f, "keep-git-dir", c.keep_git_dir)?;
    let has_inline = c
        .sources
        .iter()
        .any(|s| matches!(s, CopySource::Inline { .. }));
    if has_inline {
        for source in &c.sources {
            match source {
                CopySource::Path(path) => write!(f, " {path}")?,
                CopySource::Inline {
                    name, expand: true, ..
                } => write!(f, " <<{name}")?,
                CopySource::Inline { name, .. } => write!(f, " <<\"{name}\"")?,
            }
        }
        return write!(f, " {}", c.dest);
    }
    let mut all: Vec<String> = c
        .sources
        .iter()
        .filter_map(|s| match s {
            CopySource::Path(path) => Some(path.clone()),
            CopySource::Inline { .. } => None,
        })
        .collect();
    all.push(c.dest.clone());
    words(f, &all)
}

impl Display for Instruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Instruction::Add(c) => {
                f.write_str("ADD")?;
                copy(f, c)
            }
            Instruction::Copy(c) => {
                f.write_str("COPY")?;
                copy(f, c)
            }
            Instruction::Arg(decls) => {
                f.write_str("ARG")?;
                decls.iter().try_for_each(|d| match &d.default {
                    Some(default) => write!(f, " {}={default}", d.name),
                    None => write!(f, " {}", d.name),
                })
            }
            Instruction::Cmd(command) => write!(f, "CMD {command}"),
            Instruction::Entrypoint(command) => write!(f, "ENTRYPOINT {command}"),
            Instruction::Env(ps) => {
                f.write_str("ENV")?;
                pairs(f, ps)
            }
            Instruction::Label(ps) => {
                f.write_str("LABEL")?;
                pairs(f, ps)
            }
            Instruction::Expose(ports) => write!(f, "EXPOSE {}", ports.join(" ")),
            Instruction::Healthcheck(Healthcheck::None) => f.write_str("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::Check {
                test,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            }) => {
                f.write_str("HEALTHCHECK")?;
                let durations = [
                    ("interval", interval),
                    ("timeout", timeout),
                    ("start-period", start_period),
                    ("start-interval", start_interval),
                ];
                for (name, value) in durations {
                    if let Some(value) = value {
                        write!(f, " --{name}={}", duration::format(*value))?;
                    }
                }
                if let Some(retries) = retries {
                    write!(f, " --retries={retries}")?;
                }
                write!(f, " CMD {test}")
            }
            Instruction::Maintainer(name) => write!(f, "MAINTAINER {name}"),
            Instruction::OnBuild(trigger) => write!(f, "ONBUILD {trigger}"),
            Instruction::Run(run) => {
                f.write_str("RUN")?;
                for mount in &run.mounts {
                    flag(f, "mount", mount)?;
                }
                optional_flag(f, "network", &run.network)?;
                optional_flag(f, "security", &run.security)?;
                match &run.heredoc_line {
                    Some(line) => write!(f, " {line}"),
                    None => write!(f, " {}", run.command),
                }
            }
            Instruction::Shell(words) => write!(f, "SHELL {}", json(words)),
            Instruction::StopSignal(signal) => write!(f, "STOPSIGNAL {signal}"),
            Instruction::User(user) => write!(f, "USER {user}"),
            Instruction::Volume(paths) => {
                f.write_str("VOLUME")?;
                words(f, paths)
            }
            Instruction::Workdir(dir) => write!(f, "WORKDIR {dir}"),
        }
    }
}
