//! Registries: pulling and pushing images over the OCI distribution API (with the
//! oci-client crate), logging in and out, and the TLS and credential settings of each
//! registry. The network work runs on a tokio runtime that each call makes and ends:
//! only the `pull`, `push` and `login` commands start threads, never `run`.

mod auth;
mod client;
mod error;
mod progress;
mod pull;
mod push;
mod sources;

use std::future::Future;
use std::path::Path;

pub use auth::{AuthFiles, Credentials};
pub use client::Options;
pub use error::Error;
pub use progress::Progress;
pub use pull::Pulled;
pub use push::Pushed;

use super::reference::{DEFAULT_DOMAIN, Reference};
use client::Registry;

/// Blobs fetched or uploaded at once.
const CONCURRENCY: usize = 3;

/// Pulls `reference` into the store under `root` and names it there.
pub fn pull(
    root: &Path,
    reference: &Reference,
    options: &Options,
    progress: &Progress,
) -> Result<Pulled, Error> {
    block_on(pull::pull(root, reference, options, progress))?
}

/// Pushes the local image `reference` names to the registry it names.
pub fn push(
    root: &Path,
    reference: &Reference,
    options: &Options,
    progress: &Progress,
) -> Result<Pushed, Error> {
    block_on(push::push(root, reference, options, progress))?
}

/// Checks `credentials` with `registry`, then stores them in berth's auth file.
pub fn login(registry: &str, credentials: &Credentials, options: &Options) -> Result<(), Error> {
    let quiet = Progress::new(false, true);
    let connection = Registry::new(registry, options, Some(credentials.clone()), &quiet)?;
    block_on(connection.check_login())??;
    options.auth.store(registry, credentials)
}

/// Removes the credentials for `registry` from berth's auth file; whether it had any.
pub fn logout(registry: &str, options: &Options) -> Result<bool, Error> {
    options.auth.remove(registry)
}

/// The registry a `login`/`logout` argument names (`localhost:5000`,
/// `https://r.example.com/v2/`; none is Docker Hub), as references name it.
pub fn server(argument: Option<&str>) -> Result<String, Error> {
    let Some(argument) = argument else {
        return Ok(DEFAULT_DOMAIN.to_string());
    };
    let host = auth::normalize(argument);
    let parsed = Reference::parse(&format!("{host}/x"))?;
    if host.is_empty() || parsed.domain() != host {
        return Err(Error::Usage(format!(
            "\"{argument}\" is not a registry address; give HOST[:PORT], as in localhost:5000"
        )));
    }
    Ok(host)
}

/// Runs `future` to its end on a runtime of its own.
fn block_on<F: Future>(future: F) -> Result<F::Output, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    Ok(runtime.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_normalized() {
        assert_eq!(server(None).unwrap(), "docker.io");
        assert_eq!(server(Some("localhost:5000")).unwrap(), "localhost:5000");
        assert_eq!(
            server(Some("https://r.example.com/v2/")).unwrap(),
            "r.example.com"
        );
        assert_eq!(server(Some("index.docker.io")).unwrap(), "docker.io");
        for bad in ["me", "Bad Host:1", ""] {
            assert!(server(Some(bad)).is_err(), "{bad}");
        }
    }
}
