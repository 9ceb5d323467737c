//! The stage graph: which stage `--target` means, which earlier stage a `FROM` or a
//! `--from` names, and which stages a target needs. Pure: the Dockerfile and the values
//! of the ARGs before the first FROM in, stage indexes out.

use std::collections::BTreeSet;

use berth_dockerfile::{self as dockerfile, Dockerfile, Instruction};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("target stage \"{0}\" is not in the Dockerfile; name one of its `FROM ... AS` stages")]
    NoTarget(String),
}

/// The stages' `AS` names, by position.
#[derive(Clone, Debug)]
pub struct Stages {
    names: Vec<Option<String>>,
}

impl Stages {
    pub fn new(dockerfile: &Dockerfile) -> Stages {
        Stages {
            names: dockerfile.stages.iter().map(|s| s.name.clone()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The stage before `before` that `name` names (names are case-insensitive, as the
    /// parser keeps them lowercase).
    pub fn named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_lowercase();
        self.names[..before.min(self.names.len())]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
    }

    /// The stage before `before` that `--from=name` means: by name, or by index. `None`
    /// means an image.
    pub fn from(&self, name: &str, before: usize) -> Option<usize> {
        self.named(name, before)
            .or_else(|| name.parse::<usize>().ok().filter(|&i| i < before))
    }

    /// The stage `--target` names (by name only, as Docker takes it), or the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, Error> {
        match target {
            None => Ok(self.names.len().saturating_sub(1)),
            Some(t) => self
                .named(t, self.names.len())
                .filter(|_| t.parse::<usize>().is_err())
                .ok_or_else(|| Error::NoTarget(t.to_string())),
        }
    }

    /// The stages `target` needs (itself included), in Dockerfile order: its base when
    /// that is a stage, and the stages its `COPY --from` name, transitively. `vars` gives
    /// the meta ARGs a base or a `--from` may use.
    pub fn needed(
        &self,
        dockerfile: &Dockerfile,
        target: usize,
        vars: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut pending = vec![target];
        while let Some(i) = pending.pop() {
            if !needed.insert(i) {
                continue;
            }
            let stage = &dockerfile.stages[i];
            // A word that does not expand is left as is: the stage fails when it starts.
            let expand = |word: &String| {
                dockerfile::expand_word(word, dockerfile.escape, vars)
                    .unwrap_or_else(|_| word.clone())
            };
            pending.extend(self.named(&expand(&stage.base), i));
            for step in &stage.steps {
                if let Instruction::Copy(c) | Instruction::Add(c) = &step.instruction
                    && let Some(from) = &c.from
                {
                    pending.extend(self.from(&expand(from), i));
                }
            }
        }
        needed.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "\
FROM alpine AS Deps
RUN echo deps
FROM deps AS build
COPY --from=tools /t /t
FROM busybox AS tools
FROM scratch AS unused
COPY --from=0 /a /a
FROM build AS final
COPY --from=tools /t /t
COPY --from=${IMG} /x /x
COPY --from=2 /y /y
";

    fn parse(text: &str) -> (Dockerfile, Stages) {
        let dockerfile = dockerfile::parse("Dockerfile", text).unwrap();
        let stages = Stages::new(&dockerfile);
        (dockerfile, stages)
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn target_is_the_last_stage_or_a_named_one() {
        let (_, stages) = parse(MULTI);
        assert_eq!(stages.len(), 5);
        assert_eq!(stages.target(None).unwrap(), 4);
        assert_eq!(stages.target(Some("build")).unwrap(), 1);
        assert_eq!(stages.target(Some("DEPS")).unwrap(), 0);
        // An index is not a target name, as in Docker.
        assert!(matches!(stages.target(Some("1")), Err(Error::NoTarget(t)) if t == "1"));
        let err = stages.target(Some("nosuch")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "target stage \"nosuch\" is not in the Dockerfile; name one of its `FROM ... AS` stages"
        );
    }

    #[test]
    fn from_names_only_earlier_stages_by_name_or_index() {
        let (_, stages) = parse(MULTI);
        assert_eq!(stages.from("deps", 1), Some(0));
        assert_eq!(stages.from("Deps", 1), Some(0));
        assert_eq!(stages.from("0", 3), Some(0));
        assert_eq!(stages.from("2", 4), Some(2));
        // `tools` comes after `build`: inside `build`, it is an image's name.
        assert_eq!(stages.from("tools", 1), None);
        assert_eq!(stages.from("tools", 4), Some(2));
        // An index of the stage itself or a later one is an image too.
        assert_eq!(stages.from("1", 1), None);
        assert_eq!(stages.from("alpine", 4), None);
        // A stage names only earlier stages, never itself.
        assert_eq!(stages.named("final", 4), None);
    }

    #[test]
    fn needed_follows_bases_and_copy_from_but_not_unrelated_stages() {
        let (dockerfile, stages) = parse(MULTI);
        // final <- build (base) <- deps (base); tools and index 2 by --from; `unused`
        // (3) is reachable from nothing.
        assert_eq!(stages.needed(&dockerfile, 4, &none), vec![0, 1, 2, 4]);
        assert_eq!(stages.needed(&dockerfile, 1, &none), vec![0, 1]);
        assert_eq!(stages.needed(&dockerfile, 3, &none), vec![0, 3]);
        assert_eq!(stages.needed(&dockerfile, 2, &none), vec![2]);
    }

    #[test]
    fn needed_expands_meta_args_in_base_and_from() {
        let text = "\
ARG BASE=one
FROM busybox AS one
FROM busybox AS two
FROM ${BASE} AS three
COPY --from=${SRC} /a /a
";
        let (dockerfile, stages) = parse(text);
        let vars = |name: &str| match name {
            "BASE" => Some("two".to_string()),
            "SRC" => Some("one".to_string()),
            _ => None,
        };
        assert_eq!(stages.needed(&dockerfile, 2, &vars), vec![0, 1, 2]);
        // Unset, `${BASE}` expands to nothing: an image, no stage.
        assert_eq!(stages.needed(&dockerfile, 2, &none), vec![2]);
    }
}
