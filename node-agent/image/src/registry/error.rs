//! The one error type of the registry module. Messages name the registry, reference or
//! file they are about and say what to do; none ever carries a password or a token.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] crate::Error),

    #[error("cannot reach registry {registry}: {reason}; is it running, and is the address right?")]
    Unreachable { registry: String, reason: String },

    #[error(
        "registry {registry}: secure connection failed: {reason}; if it uses a CA of its own, put \
         the CA certificate in {ca_dir}/ca.crt, or pass --tls-verify=false for a registry you trust"
    )]
    Tls {
        registry: String,
        reason: String,
        ca_dir: String,
    },

    #[error("registry {registry} requires a login: run `berth login {registry}`")]
    LoginRequired { registry: String },

    #[error(
        "registry {registry} refused the credentials (wrong username or password, or no \
         permission for this repository); run `berth login {registry}` again"
    )]
    Refused { registry: String },

    #[error("{reference}: not found in the registry ({reason}); check the repository and the tag")]
    NotFound { reference: String, reason: String },

    #[error(
        "{what}: the registry sent data with digest {actual}, but {expected} was expected; \
         nothing was stored"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("registry {registry}: {what}: {reason}")]
    Registry {
        registry: String,
        what: String,
        reason: String,
    },

    #[error("{what}: {reason}")]
    Unsupported { what: String, reason: String },

    #[error("{}: {reason}; fix the file or remove it", path.display())]
    BadFile { path: PathBuf, reason: String },

    #[error("{0}")]
    Usage(String),

    #[error("starting the network runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl Error {
    pub(crate) fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Unsupported {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
