//! What the Replica sync needs from the container engine, as a trait: [`Host`] is the
//! engine `berth run` uses (it needs root); the sync's tests use a fake.

use std::sync::Arc;

use berth_crds::ReplicaStatus;
use berth_engine::Paths;
use berth_engine::container::{self, Container, Liveness};
use berth_engine::create::{self, CreateOptions};
use berth_engine::{lifecycle, monitor};

use crate::convert;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The image is neither here nor pullable.
    #[error("{0}")]
    ImageNotFound(String),
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The Replica status reason for a container that could not be made.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ImageNotFound(_) => "ImageNotFound",
            Error::Failed(_) => "CreateError",
        }
    }

    fn failed(e: impl std::fmt::Display) -> Self {
        Error::Failed(e.to_string())
    }
}

/// A container made for a Replica, as the sync sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    /// The uid of the Replica it was made for (from its labels).
    pub replica_uid: String,
    /// Its monitor is gone without running it (never started, failed to start, or gave
    /// up): it should be started again.
    pub stopped: bool,
    /// The Replica status its state amounts to.
    pub status: ReplicaStatus,
}

/// The engine calls of the sync. Synchronous (files, fork and exec): the sync runs them
/// off the async threads with [`call`].
pub trait Engine: Send + Sync + 'static {
    /// The containers on this host made for Replicas.
    fn containers(&self) -> Result<Vec<Observed>, Error>;
    /// Makes and starts the container `opts` describe, first removing one of the same
    /// name that an earlier Replica left.
    fn run(&self, opts: CreateOptions) -> Result<Observed, Error>;
    /// Starts a stopped container again.
    fn restart(&self, id: &str) -> Result<Observed, Error>;
    /// Removes a container, stopping it first.
    fn remove(&self, id: &str) -> Result<(), Error>;
}

/// Runs `f` on the engine on a blocking thread.
pub async fn call<T: Send + 'static>(
    engine: &Arc<dyn Engine>,
    f: impl FnOnce(&dyn Engine) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&*engine))
        .await
        .map_err(|e| Error::Failed(format!("the engine task failed: {e}")))?
}

/// This host's engine, under `paths`; `address` is the hostIP its statuses report.
pub struct Host {
    pub paths: Paths,
    pub address: String,
}

impl Host {
    fn observe(&self, c: &Container) -> Option<Observed> {
        Some(Observed {
            id: c.config.id.clone(),
            name: c.config.name.clone(),
            replica_uid: convert::replica_uid(c)?.to_string(),
            stopped: matches!(
                c.liveness(),
                Liveness::Created | Liveness::Exited | Liveness::Dead
            ),
            status: convert::status(c, &self.address),
        })
    }

    fn load(&self, id: &str) -> Result<Observed, Error> {
        let c = container::load(&self.paths, id).map_err(Error::failed)?;
        self.observe(&c)
            .ok_or_else(|| Error::Failed(format!("container {id} has no Replica label")))
    }
}

impl Engine for Host {
    fn containers(&self) -> Result<Vec<Observed>, Error> {
        Ok(container::list(&self.paths)
            .map_err(Error::failed)?
            .iter()
            .filter_map(|c| self.observe(c))
            .collect())
    }

    fn run(&self, opts: CreateOptions) -> Result<Observed, Error> {
        let name = opts.name.clone().unwrap_or_default();
        if let Ok(old) = container::find(&self.paths, &name) {
            lifecycle::remove(&self.paths, &old, true).map_err(Error::failed)?;
        }
        pull_if_absent(&self.paths, &opts.image)?;
        let c = create::create(&self.paths, &opts).map_err(|e| {
            let message = e.to_string();
            match message.contains("not found locally") {
                true => Error::ImageNotFound(message),
                false => Error::Failed(message),
            }
        })?;
        // A container that fails to start is still reported (as Failed, with the error
        // its state records), and restarted with back-off.
        if let Err(e) = monitor::spawn_detached(&self.paths, &c) {
            tracing::warn!(container = %name, error = %e, "container failed to start");
        }
        self.load(&c.config.id)
    }

    fn restart(&self, id: &str) -> Result<Observed, Error> {
        let c = container::load(&self.paths, id).map_err(Error::failed)?;
        if let Err(e) = monitor::spawn_detached(&self.paths, &c) {
            tracing::warn!(container = %c.config.name, error = %e, "container failed to start again");
        }
        self.load(id)
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        let c = container::load(&self.paths, id).map_err(Error::failed)?;
        lifecycle::remove(&self.paths, &c, true).map_err(Error::failed)
    }
}

/// Pulls the image when this host does not have it. The registry client runs its own
/// async runtime, so it gets a thread of its own (the caller's belongs to tokio's pool).
fn pull_if_absent(paths: &Paths, image: &str) -> Result<(), Error> {
    use berth_image::{self as image, ImageStore, Reference, registry};
    match ImageStore::open(&paths.root)
        .map_err(Error::failed)?
        .resolve(image)
    {
        Err(image::Error::NotFound(_)) => {}
        _ => return Ok(()),
    }
    let reference = Reference::parse(image).map_err(Error::failed)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let progress = registry::Progress::new(false, true);
            registry::pull(
                &paths.root,
                &reference,
                &registry::Options::from_env(None),
                &progress,
            )
            .map(drop)
            .map_err(|e| {
                Error::ImageNotFound(format!(
                    "image \"{image}\" not found locally, and pulling it failed: {e}"
                ))
            })
        })
        .join()
        .map_err(|_| Error::Failed("the image pull panicked".into()))?
    })
}
