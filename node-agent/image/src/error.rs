//! The one error type of the image module: every variant names the reference, file or
//! archive entry it is about, and the message says what to do about it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image \"{0}\" not found locally; `berth images` lists what is here")]
    NotFound(String),

    #[error("invalid reference \"{reference}\": {reason}")]
    InvalidReference {
        reference: String,
        reason: &'static str,
    },

    #[error(
        "image id prefix \"{prefix}\" matches {} images ({}); give more of the id",
        ids.len(),
        ids.join(", ")
    )]
    AmbiguousId { prefix: String, ids: Vec<String> },

    #[error("refusing to create a tag with a digest reference \"{0}\"; give a tag instead")]
    TagWithDigest(String),

    #[error(
        "image {id} has several names ({}); remove them one by one, or use -f to remove them all",
        names.join(", ")
    )]
    SeveralNames { id: String, names: Vec<String> },

    #[error(
        "image {image} is used by running container {container}; stop and remove the container \
         first (-f does not override this)"
    )]
    UsedByRunning { image: String, container: String },

    #[error(
        "image {image} is used by stopped container {container}; remove the container first, or \
         use -f"
    )]
    UsedByStopped { image: String, container: String },

    #[error(transparent)]
    Io(#[from] berth_sys::fs::IoError),

    /// Something in the store itself is wrong: a missing blob, a digest that does not
    /// match, a manifest that does not parse.
    #[error("image store: {what}: {reason}; remove the image (berth rmi) and add it again")]
    Corrupt { what: String, reason: String },

    /// An archive, tarball or layer given to berth is malformed.
    #[error("{what}: {reason}")]
    BadInput { what: String, reason: String },

    #[error(
        "{what}: digest is {actual}, but {expected} was expected; the data is corrupt or \
         truncated"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// What cannot happen unless berth itself is wrong.
    #[error("internal error: {0}; this is a berth bug, please report it")]
    Internal(String),

    #[error("layer {layer}: entry \"{entry}\" {reason}; refusing to unpack it")]
    UnsafeEntry {
        layer: String,
        entry: String,
        reason: String,
    },
}

impl Error {
    /// For `map_err`: `.map_err(Error::io("reading", &path))`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let io = berth_sys::fs::io_error(action, path);
        move |source| Error::Io(io(source))
    }

    pub(crate) fn bad_input(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::BadInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
