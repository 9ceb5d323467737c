//! The one error type of the Dockerfile parser: every variant names the file and line
//! it is about (except a lone word expanded outside any file), and says what is wrong.

use crate::lexer::ExpandError;

/// Why a Dockerfile (or an ONBUILD trigger, or one word of it) could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the Dockerfile ({file}) is empty; it needs at least a FROM instruction")]
    Empty { file: String },

    #[error("{file}: no FROM instruction; a Dockerfile needs at least one build stage")]
    NoStage { file: String },

    #[error(
        "{file}:{line}: unknown instruction \"{name}\"{}",
        did_you_mean(suggestion)
    )]
    UnknownInstruction {
        file: String,
        line: usize,
        name: String,
        suggestion: Option<&'static str>,
    },

    #[error("{file}:{line}: {instruction} before the first FROM; only ARG may come before FROM")]
    BeforeFrom {
        file: String,
        line: usize,
        instruction: String,
    },

    /// Anything else wrong with the text of one instruction (or directive).
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },

    /// Variable substitution failed, e.g. `${v:?msg}` with `v` unset, or `${v`.
    #[error("{file}:{line}: failed to process \"{word}\": {reason}")]
    Expand {
        file: String,
        line: usize,
        word: String,
        reason: ExpandError,
    },

    /// Like `Expand`, for a word expanded on its own (`expand_word`).
    #[error("failed to process \"{word}\": {reason}")]
    Word { word: String, reason: ExpandError },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean {s}?)"))
}

/// A problem found in one logical line, before the file and line are attached.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fault {
    UnknownInstruction {
        name: String,
        suggestion: Option<&'static str>,
    },
    Message(String),
}

impl From<String> for Fault {
    fn from(message: String) -> Self {
        Fault::Message(message)
    }
}

impl From<&str> for Fault {
    fn from(message: &str) -> Self {
        Fault::Message(message.to_owned())
    }
}

impl Fault {
    pub(super) fn at(self, file: &str, line: usize) -> Error {
        let file = file.to_owned();
        match self {
            Fault::UnknownInstruction { name, suggestion } => Error::UnknownInstruction {
                file,
                line,
                name,
                suggestion,
            },
            Fault::Message(message) => Error::Syntax {
                file,
                line,
                message,
            },
        }
    }
}
