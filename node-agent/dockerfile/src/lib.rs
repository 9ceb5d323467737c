//! Dockerfiles as BuildKit reads them: a pure parser (text in, instructions out, no
//! I/O) and the shell-word lexer that substitutes variables where Docker does.
//!
//! `parse` keeps every argument as written; the builder calls `Step::expand` with the
//! variables in scope at that step, and `expand_word` for a stage's base image.

mod display;
mod duration;
mod error;
mod expand;
mod flags;
mod heredoc;
mod instruction;
mod lexer;
mod lines;
mod pattern;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use error::Error;
pub use heredoc::Heredoc;
pub use lexer::{ExpandError, Vars};
pub use pattern::PatternError;

use instruction::Line;

/// A whole Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Dockerfile {
    /// `\` unless a `# escape=` directive says `` ` ``.
    pub escape: char,
    /// The `# syntax=` directive, if any (berth does not fetch frontends).
    pub syntax: Option<String>,
    /// ARG instructions before the first FROM: visible to FROM lines only.
    pub meta_args: Vec<Step>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Stage {
    pub line: usize,
    /// The image as written; expand it with the meta args (`expand_word`).
    pub base: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform=`, unexpanded.
    pub platform: Option<String>,
    pub steps: Vec<Step>,
}

/// One instruction and the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Step {
    pub line: usize,
    pub instruction: Instruction,
}

/// `ARG name` or `ARG name=default`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// The two forms of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Command {
    /// `["executable", "arg"]`: run as is, no shell.
    Exec(Vec<String>),
    /// Anything else: run with the stage's SHELL (`/bin/sh -c` by default).
    Shell(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Instruction {
    Add(Copy),
    Copy(Copy),
    Arg(Vec<ArgDecl>),
    Cmd(Command),
    Entrypoint(Command),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Healthcheck(Healthcheck),
    Maintainer(String),
    OnBuild(Box<Instruction>),
    Run(Run),
    Shell(Vec<String>),
    StopSignal(String),
    User(String),
    Volume(Vec<String>),
    Workdir(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Run {
    /// Ready to run. With heredocs in shell form this is the command line followed by
    /// each body and terminator (`sh -c` handles them); for a lone `RUN <<EOF` it is
    /// the body itself (tabs stripped for `<<-`).
    pub command: Command,
    /// `--network=` (`default`, `none`, `host`).
    pub network: Option<String>,
    /// Each `--mount=` as written (`type=cache,target=/root/.cache`).
    pub mounts: Vec<String>,
    /// `--security=` (`sandbox`, `insecure`).
    pub security: Option<String>,
    /// The heredocs of the line, bodies as read. BuildKit runs a lone heredoc whose
    /// body starts with `#!` as a file rather than through the shell;
    /// `Run::script` finds that case.
    pub heredocs: Vec<Heredoc>,
    /// The command line as written when it has heredocs (`python3 <<EOF`), for display.
    pub heredoc_line: Option<String>,
}

impl Run {
    /// The body of a lone `RUN <<EOF` that starts with `#!`: BuildKit writes it to a
    /// file and executes that instead of passing it to the shell.
    pub fn script(&self) -> Option<&Heredoc> {
        match (&self.command, self.heredocs.as_slice()) {
            (Command::Shell(body), [doc]) if *body == doc.body() && body.starts_with("#!") => {
                Some(doc)
            }
            _ => None,
        }
    }
}

/// COPY and ADD (ADD-only fields stay empty for COPY).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Copy {
    pub sources: Vec<CopySource>,
    pub dest: String,
    /// `--from=` a stage name or index, or an image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY): keep the source's parent directories.
    pub parents: bool,
    /// `--exclude=` patterns.
    pub exclude: Vec<String>,
    /// ADD `--checksum=` of a remote source.
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir` for a git source.
    pub keep_git_dir: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CopySource {
    Path(String),
    /// A heredoc (`COPY <<EOF /file`): a file `name` with `content` (tabs stripped
    /// for `<<-`; variables substituted by `expand` unless `expand` is false).
    Inline {
        name: String,
        content: String,
        expand: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `None` fields (and zero, as in Docker) mean "inherit or default".
    Check {
        test: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// Parses a Dockerfile; `file` is the name errors give (`Dockerfile:7: ...`).
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, Error> {
    let source = lines::split(text, instruction::takes_heredocs).map_err(|(line, message)| {
        Error::Syntax {
            file: file.to_owned(),
            line,
            message,
        }
    })?;
    if source.lines.is_empty() {
        return Err(Error::Empty {
            file: file.to_owned(),
        });
    }
    let mut dockerfile = Dockerfile {
        escape: source.escape,
        syntax: source.syntax,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    for logical in source.lines {
        let line = logical.line;
        let parsed = instruction::parse_line(&logical.text, logical.heredocs, source.escape)
            .map_err(|fault| fault.at(file, line))?;
        match (parsed, dockerfile.stages.last_mut()) {
            (Line::From(from), _) => dockerfile.stages.push(Stage {
                line,
                base: from.base,
                name: from.name,
                platform: from.platform,
                steps: Vec::new(),
            }),
            (Line::Instruction(instruction), Some(stage)) => {
                stage.steps.push(Step { line, instruction })
            }
            (Line::Instruction(instruction @ Instruction::Arg(_)), None) => {
                dockerfile.meta_args.push(Step { line, instruction })
            }
            (Line::Instruction(_), None) => {
                return Err(Error::BeforeFrom {
                    file: file.to_owned(),
                    line,
                    instruction: instruction::keyword(&logical.text).to_uppercase(),
                });
            }
        }
    }
    if dockerfile.stages.is_empty() {
        return Err(Error::NoStage {
            file: file.to_owned(),
        });
    }
    Ok(dockerfile)
}

/// The name errors in ONBUILD triggers give as their file.
const TRIGGER: &str = "ONBUILD trigger";

/// Parses an ONBUILD trigger as an image config stores it, e.g. `RUN echo hi`.
pub fn parse_trigger(text: &str) -> Result<Instruction, Error> {
    let source = lines::split(text, instruction::takes_heredocs).map_err(|(line, message)| {
        Error::Syntax {
            file: TRIGGER.to_owned(),
            line,
            message,
        }
    })?;
    let [logical] = source.lines.as_slice() else {
        return Err(Error::Syntax {
            file: TRIGGER.to_owned(),
            line: 1,
            message: format!("a trigger is one instruction, not {}", source.lines.len()),
        });
    };
    instruction::parse_trigger(&logical.text, logical.heredocs.clone(), source.escape)
        .map_err(|fault| fault.at(TRIGGER, logical.line))
}

/// Expands one word (quote removal and substitution), e.g. a FROM line's image with
/// the meta args.
pub fn expand_word(word: &str, escape: char, vars: Vars<'_>) -> Result<String, Error> {
    lexer::Lexer::new(escape, vars)
        .process(word)
        .map(|processed| processed.word)
        .map_err(|reason| Error::Word {
            word: word.to_owned(),
            reason,
        })
}
