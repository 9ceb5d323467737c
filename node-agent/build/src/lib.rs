//! `berth build`: a Dockerfile and a context in, an image in the store out.
//!
//! Each stage starts from `scratch`, an image or an earlier stage. Steps that change
//! files (RUN, COPY, ADD, WORKDIR) produce a layer each: RUN in a container the runtime
//! makes of the step's root filesystem, the others on an overlay mount in the build's
//! private mount namespace; the upper directory becomes the layer (see
//! `ImageStore::pack_layer`). Steps that only change the config are applied in memory.
//!
//! The cache: every step extends a chain key with what determines its result (the whole
//! instruction after substitution; for RUN the build args in effect and the network; for
//! COPY and ADD a digest of the sources' content). A step whose key has a record in the
//! store's build cache is not run: the record's state is taken as is. The image is named
//! only once every step is done, so a failed build moves no tag.
//!
//! Pure: `stages` (the stage graph), `state` (a stage's config and cache key), `args`
//! (build args). Imperative: `builder` (stages, cache, commit), `steps` (RUN, COPY, ADD,
//! WORKDIR), `copy`, `download`, `run`, `mount`; `context` reads the build context.

mod args;
mod builder;
pub mod context;
mod copy;
mod download;
mod mount;
mod progress;
mod run;
mod stages;
mod state;
mod steps;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use crate::builder::Builder;
use crate::context::Ignore;
use berth_dockerfile as dockerfile;
use berth_engine::{Paths, create, lifecycle, monitor};
use berth_image::{Image, Reference};
use berth_net::NetworkMode;

pub use copy::Error as CopyError;
pub use download::Error as DownloadError;
pub use mount::private_namespace;
pub use progress::{Mode, ModeError, Progress};
pub use run::catch_interrupts;
pub use stages::Error as StageError;
pub use state::Error as StateError;
pub use steps::StepError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::Error),
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Container(#[from] create::Error),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{file}:{line}: {step}: {source}")]
    Step {
        file: String,
        line: usize,
        step: String,
        // Boxed: the reasons a step fails are many and some large.
        #[source]
        source: Box<StepError>,
    },
    #[error("{file}:{line}: {step}: the command exited with code {code}")]
    RunFailed {
        file: String,
        line: usize,
        step: String,
        code: i32,
    },
    #[error("{what}: {source}")]
    Mount {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("running the build step's container {container}: {source}")]
    StartStep {
        container: String,
        #[source]
        source: monitor::SpawnError,
    },
    #[error("waiting for the build step's container {container}: {source}")]
    WaitStep {
        container: String,
        #[source]
        source: lifecycle::Error,
    },
    #[error(transparent)]
    Io(#[from] berth_sys::fs::IoError),
    #[error("the build ended without {0}; this is a bug in berth, please report it")]
    Incomplete(&'static str),
    #[error("the build was interrupted")]
    Interrupted,
}

impl Error {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io(berth_sys::fs::io_error(action, path)(source))
    }
}

/// What `berth build` was asked for.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// The network of RUN steps without `--network`.
    pub network: NetworkMode,
}

/// Builds the image and names it with the tags. Returns the image.
pub fn build(paths: &Paths, opts: &BuildOptions, progress: &mut Progress) -> Result<Image, Error> {
    let text = fs::read_to_string(&opts.dockerfile)
        .map_err(|e| Error::io("reading the Dockerfile", &opts.dockerfile, e))?;
    let file = opts
        .dockerfile
        .strip_prefix(&opts.context)
        .unwrap_or(&opts.dockerfile)
        .display()
        .to_string();
    let dockerfile = dockerfile::parse(&file, &text)?;
    let ignore = read_ignore(opts)?;
    let mut builder = Builder::new(paths, opts, file, ignore, &dockerfile, progress)?;
    let result = builder.build(&dockerfile)?;
    builder.commit(result)
}

/// The context's ignore rules. BuildKit prefers the Dockerfile's own ignore file
/// (`app.Dockerfile.dockerignore`) to the context's `.dockerignore`.
fn read_ignore(opts: &BuildOptions) -> Result<Ignore, Error> {
    let mut own = opts.dockerfile.clone().into_os_string();
    own.push(".dockerignore");
    let own = PathBuf::from(own);
    let path = if own.exists() {
        own
    } else {
        opts.context.join(".dockerignore")
    };
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Ignore::parse(&text)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}
