//! Variable substitution in a parsed step, where Docker does it: file and metadata
//! instructions, never in commands (the shell does that at run time).

use crate::lexer::{ExpandError, Lexer, Vars};
use crate::{ArgDecl, Copy, CopySource, Error, Instruction, Step};

impl Step {
    /// Substitutes variables where Docker does: ADD and COPY (sources, destination,
    /// `--from`, `--chown`, `--chmod`, `--checksum`, unquoted heredoc bodies), ARG,
    /// ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME and WORKDIR. RUN, CMD, ENTRYPOINT,
    /// SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are returned as they are.
    ///
    /// Every word sees `vars` as they were before this step, so in
    /// `ENV A=1 B=$A` the `$A` is the earlier A (as in BuildKit).
    pub fn expand(&self, file: &str, escape: char, vars: Vars<'_>) -> Result<Instruction, Error> {
        let lexer = Lexer::new(escape, vars);
        let fail = |word: &str, reason: ExpandError| Error::Expand {
            file: file.to_owned(),
            line: self.line,
            word: word.to_owned(),
            reason,
        };
        let word = |w: &str| lexer.process(w).map(|p| p.word).map_err(|m| fail(w, m));
        let words = |ws: &[String]| ws.iter().map(|w| word(w)).collect::<Result<Vec<_>, _>>();
        let pairs = |ps: &[(String, String)]| {
            ps.iter()
                .map(|(k, v)| Ok((word(k)?, word(v)?)))
                .collect::<Result<Vec<_>, Error>>()
        };
        // Heredoc bodies keep their quotes; `$` and `\` still work (BuildKit's raw
        // expansion, which always uses `\`).
        let mut body_lexer = Lexer::new('\\', vars);
        body_lexer.literal_quotes = true;
        let body = |b: &str| {
            body_lexer
                .process(b)
                .map(|p| p.word)
                .map_err(|m| fail(b, m))
        };
        let copy = |c: &Copy| -> Result<Copy, Error> {
            let opt = |o: &Option<String>| o.as_deref().map(word).transpose();
            Ok(Copy {
                sources: c
                    .sources
                    .iter()
                    .map(|source| {
                        Ok(match source {
                            CopySource::Path(path) => CopySource::Path(word(path)?),
                            CopySource::Inline {
                                name,
                                content,
                                expand,
                            } => CopySource::Inline {
                                name: name.clone(),
                                content: if *expand {
                                    body(content)?
                                } else {
                                    content.clone()
                                },
                                expand: *expand,
                            },
                        })
                    })
                    .collect::<Result<_, Error>>()?,
                dest: word(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                checksum: opt(&c.checksum)?,
                ..c.clone()
            })
        };
        Ok(match &self.instruction {
            Instruction::Add(c) => Instruction::Add(copy(c)?),
            Instruction::Copy(c) => Instruction::Copy(copy(c)?),
            Instruction::Arg(decls) => Instruction::Arg(
                decls
                    .iter()
                    .map(|d| {
                        Ok(ArgDecl {
                            name: word(&d.name)?,
                            default: d.default.as_deref().map(word).transpose()?,
                        })
                    })
                    .collect::<Result<_, Error>>()?,
            ),
            Instruction::Env(ps) => Instruction::Env(pairs(ps)?),
            Instruction::Label(ps) => Instruction::Label(pairs(ps)?),
            Instruction::Expose(ports) => Instruction::Expose(words(ports)?),
            Instruction::Volume(paths) => Instruction::Volume(words(paths)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(word(s)?),
            Instruction::User(u) => Instruction::User(word(u)?),
            Instruction::Workdir(w) => Instruction::Workdir(word(w)?),
            other => other.clone(),
        })
    }
}
