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

pub mod context;
mod copy;
mod mount;
mod progress;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_spec::image::{Config, ConfigBuilder, HistoryBuilder, ImageConfiguration, MediaType};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::context::Ignore;
use berth_dockerfile::{
    self as dockerfile, Command, CopySource, Dockerfile, Healthcheck, Instruction, Step,
};
use berth_engine::Paths;
use berth_engine::create;
use berth_engine::options::{VolumeSource, VolumeSpec};
use berth_image::cache::{BuildState, LayerRef, StagedLayer};
use berth_image::{Image, ImageStore, Reference, registry};
use berth_net::NetworkMode;
use berth_runtime::user;

pub use mount::private_namespace;
pub use progress::{Mode, Progress};
pub use run::catch_interrupts;

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
    #[error("{file}:{line}: {step}: {reason}")]
    Step {
        file: String,
        line: usize,
        step: String,
        reason: String,
    },
    #[error("{file}:{line}: {step}: the command exited with code {code}")]
    RunFailed {
        file: String,
        line: usize,
        step: String,
        code: i32,
    },
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("target stage \"{0}\" is not in the Dockerfile; name one of its `FROM ... AS` stages")]
    NoTarget(String),
    #[error("the build was interrupted")]
    Interrupted,
}

impl Error {
    fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
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

/// Build args every Dockerfile may use without declaring them; like Docker, they are
/// passed to RUN but left out of the cache key and the image.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

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
    // BuildKit prefers the Dockerfile's own ignore file (`app.Dockerfile.dockerignore`).
    let mut own = opts.dockerfile.clone().into_os_string();
    own.push(".dockerignore");
    let own = PathBuf::from(own);
    let ignore_path = if own.exists() {
        own
    } else {
        opts.context.join(".dockerignore")
    };
    let ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => Ignore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
        Err(e) => return Err(Error::io("reading", ignore_path, e)),
    };
    let store = ImageStore::open(&paths.root)?;
    let mut builder = Builder {
        paths,
        opts,
        store,
        file,
        meta: BTreeMap::new(),
        ignore,
        context: None,
        built: vec![None; dockerfile.stages.len()],
        stage_names: dockerfile.stages.iter().map(|s| s.name.clone()).collect(),
        used_args: BTreeSet::new(),
        platform: platform_args(),
        step: 0,
        total: 0,
        progress,
    };
    builder.meta_args(&dockerfile)?;
    let target = builder.target(&dockerfile)?;
    let needed = builder.needed(&dockerfile, target);
    builder.total = needed
        .iter()
        .map(|&i| 1 + dockerfile.stages[i].steps.len())
        .sum();
    for &i in &needed {
        let built = builder.stage(&dockerfile, i)?;
        builder.built[i] = Some(built);
    }
    let unused: Vec<&String> = opts
        .build_args
        .keys()
        .filter(|k| !builder.used_args.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
        .collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        builder.progress.note(&format!(
            "warning: build args not used by the Dockerfile: {}",
            names.join(", ")
        ));
    }
    let Some(result) = builder.built[target].take() else {
        return Err(Error::Setup {
            what: "the build".into(),
            reason: "the target stage was not built".into(),
        });
    };
    builder.commit(result)
}

/// A stage's result.
#[derive(Clone)]
struct Built {
    state: BuildState,
    key: String,
    extras: Extras,
}

/// What an image config holds beyond the OCI fields, as Docker writes it in `config`.
#[derive(Clone, Debug, Default)]
struct Extras {
    healthcheck: Option<Value>,
    on_build: Vec<String>,
    shell: Option<Vec<String>>,
}

struct Builder<'a> {
    paths: &'a Paths,
    opts: &'a BuildOptions,
    store: ImageStore,
    /// The Dockerfile's name in messages.
    file: String,
    /// The ARGs before the first FROM, with their values.
    meta: BTreeMap<String, Option<String>>,
    ignore: Ignore,
    /// The context's listing, read on first use.
    context: Option<Vec<context::Entry>>,
    built: Vec<Option<Built>>,
    /// Each stage's `AS` name.
    stage_names: Vec<Option<String>>,
    used_args: BTreeSet<String>,
    /// The platform args BuildKit predefines, with this host's values.
    platform: BTreeMap<&'static str, String>,
    step: usize,
    total: usize,
    progress: &'a mut Progress,
}

/// The state of the stage being built.
struct StageRun {
    state: BuildState,
    key: String,
    extras: Extras,
    /// ARG values in effect.
    args: BTreeMap<String, String>,
    /// Whether CMD was set in this stage (ENTRYPOINT clears an inherited one).
    cmd_set: bool,
    escape: char,
    /// The stage's position in the Dockerfile: `--from` names only stages before it.
    index: usize,
}

impl StageRun {
    /// The runtime part of the image config.
    fn runtime(&self) -> Option<&Config> {
        self.state.config.config().as_ref()
    }

    /// Changes the runtime part of the image config.
    fn edit(&mut self, change: impl FnOnce(&mut Config)) {
        let mut config = self.runtime().cloned().unwrap_or_else(empty_config);
        change(&mut config);
        self.state.config.set_config(Some(config));
    }

    fn env(&self) -> &[String] {
        self.runtime()
            .and_then(|c| c.env().as_deref())
            .unwrap_or_default()
    }

    /// The value ENV gives `name`, if it does.
    fn env_value(&self, name: &str) -> Option<&str> {
        self.env()
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// A variable as a step sees it: ENV first, then ARG.
    fn var(&self, name: &str) -> Option<String> {
        self.env_value(name)
            .map(str::to_string)
            .or_else(|| self.args.get(name).cloned())
    }

    fn set_env(&mut self, name: &str, value: &str) {
        let mut env = self.env().to_vec();
        let entry = format!("{name}={value}");
        match env.iter_mut().find(|kv| kv.split('=').next() == Some(name)) {
            Some(kv) => *kv = entry,
            None => env.push(entry),
        }
        self.edit(|c| {
            c.set_env(Some(env));
        });
    }

    /// USER, if set.
    fn user(&self) -> Option<String> {
        self.runtime()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty())
    }

    fn workdir(&self) -> String {
        self.runtime()
            .and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    /// `path` made absolute against the working directory and cleaned (`.` and `..`
    /// resolved), ending in `/` when it names a directory (`dir/`, `.`, `..`): for COPY,
    /// that says the destination is one.
    fn absolute(&self, path: &str) -> String {
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", self.workdir())
        };
        let mut parts: Vec<&str> = Vec::new();
        for part in joined.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
        let dir_like = ["/", "/.", "/.."].iter().any(|end| joined.ends_with(end));
        let slash = if dir_like && !parts.is_empty() {
            "/"
        } else {
            ""
        };
        format!("/{}{slash}", parts.join("/"))
    }

    fn shell(&self) -> Vec<String> {
        self.extras
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn layer_dirs(&self, paths: &Paths) -> Vec<PathBuf> {
        layer_dirs(paths, &self.state.layers)
    }

    fn advance(&mut self, what: &str) {
        self.key = chain(&self.key, what);
    }

    fn history(&mut self, created_by: &str, empty_layer: bool) {
        let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let mut builder = HistoryBuilder::default()
            .created(now)
            .created_by(created_by)
            .comment("berth build");
        if empty_layer {
            builder = builder.empty_layer(true);
        }
        let entry = builder.build().expect("every field is set");
        let mut history = self.state.config.history().clone().unwrap_or_default();
        history.push(entry);
        self.state.config.set_history(Some(history));
    }
}

fn layer_dirs(paths: &Paths, layers: &[LayerRef]) -> Vec<PathBuf> {
    layers
        .iter()
        .map(|l| {
            let hex = l.diff_id.strip_prefix("sha256:").unwrap_or(&l.diff_id);
            paths.layers().join(hex)
        })
        .collect()
}

fn empty_config() -> Config {
    ConfigBuilder::default()
        .build()
        .expect("no field is required")
}

fn chain(key: &str, what: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(key);
    hash.update([0]);
    hash.update(what);
    format!("{:x}", hash.finalize())
}

/// Values of the platform args BuildKit predefines.
fn platform_args() -> BTreeMap<&'static str, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let platform = format!("linux/{arch}");
    BTreeMap::from([
        ("TARGETPLATFORM", platform.clone()),
        ("TARGETOS", "linux".into()),
        ("TARGETARCH", arch.into()),
        ("TARGETVARIANT", String::new()),
        ("BUILDPLATFORM", platform),
        ("BUILDOS", "linux".into()),
        ("BUILDARCH", arch.into()),
        ("BUILDVARIANT", String::new()),
    ])
}

impl Builder<'_> {
    fn fail(&self, step: &Step, reason: impl Into<String>) -> Error {
        Error::Step {
            file: self.file.clone(),
            line: step.line,
            step: step.instruction.to_string(),
            reason: reason.into(),
        }
    }

    /// The value of build arg `name`: given on the command line, else `default`.
    fn arg_value(&mut self, name: &str, default: Option<String>) -> Option<String> {
        if let Some(value) = self.opts.build_args.get(name) {
            self.used_args.insert(name.to_string());
            return Some(value.clone());
        }
        default.or_else(|| self.platform.get(name).cloned())
    }

    fn meta_args(&mut self, dockerfile: &Dockerfile) -> Result<(), Error> {
        for step in &dockerfile.meta_args {
            let meta = self.meta.clone();
            let vars = |name: &str| meta.get(name).cloned().flatten();
            if let Instruction::Arg(decls) = step.expand(&self.file, dockerfile.escape, &vars)? {
                for decl in decls {
                    let value = self.arg_value(&decl.name, decl.default);
                    self.meta.insert(decl.name, value);
                }
            }
        }
        Ok(())
    }

    fn meta_vars(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| {
            self.meta
                .get(name)
                .cloned()
                .flatten()
                .or_else(|| self.platform.get(name).cloned())
        }
    }

    /// The stage before `before` that `name` names.
    fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_lowercase();
        self.stage_names[..before]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
    }

    /// The stage before `before` that `--from=name` means: by name, or by index.
    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        self.stage_named(name, before)
            .or_else(|| name.parse::<usize>().ok().filter(|&i| i < before))
    }

    fn target(&self, dockerfile: &Dockerfile) -> Result<usize, Error> {
        match &self.opts.target {
            None => Ok(dockerfile.stages.len() - 1),
            Some(t) => self
                .stage_named(t, dockerfile.stages.len())
                .filter(|_| t.parse::<usize>().is_err())
                .ok_or_else(|| Error::NoTarget(t.clone())),
        }
    }

    /// The stages the target needs (itself included), in Dockerfile order.
    fn needed(&self, dockerfile: &Dockerfile, target: usize) -> Vec<usize> {
        let vars = self.meta_vars();
        let mut needed = BTreeSet::new();
        let mut pending = vec![target];
        while let Some(i) = pending.pop() {
            if !needed.insert(i) {
                continue;
            }
            let stage = &dockerfile.stages[i];
            let base = dockerfile::expand_word(&stage.base, dockerfile.escape, &vars)
                .unwrap_or_else(|_| stage.base.clone());
            pending.extend(self.stage_named(&base, i));
            for step in &stage.steps {
                if let Instruction::Copy(c) | Instruction::Add(c) = &step.instruction
                    && let Some(from) = &c.from
                {
                    let from = dockerfile::expand_word(from, dockerfile.escape, &vars)
                        .unwrap_or_else(|_| from.clone());
                    pending.extend(self.stage_index(&from, i));
                }
            }
        }
        needed.into_iter().collect()
    }

    fn label(&mut self, stage: Option<&str>, text: &str) -> String {
        self.step += 1;
        match stage {
            Some(name) => format!("[{name} {}/{}] {text}", self.step, self.total),
            None => format!("[{}/{}] {text}", self.step, self.total),
        }
    }

    fn stage(&mut self, dockerfile: &Dockerfile, index: usize) -> Result<Built, Error> {
        let stage = &dockerfile.stages[index];
        let base = dockerfile::expand_word(&stage.base, dockerfile.escape, &self.meta_vars())?;
        let label_name = stage.name.clone().filter(|_| dockerfile.stages.len() > 1);
        let label = self.label(label_name.as_deref(), &format!("FROM {base}"));
        self.progress.start(label);
        let platform = match &stage.platform {
            Some(p) => Some(dockerfile::expand_word(
                p,
                dockerfile.escape,
                &self.meta_vars(),
            )?),
            None => None,
        };
        let host = &self.platform["TARGETPLATFORM"];
        let started = match platform.filter(|p| p != host) {
            Some(other) => Err(format!(
                "--platform={other}: berth builds for this host's platform ({host}) only"
            )),
            None => self.base(&base, index, dockerfile.escape),
        };
        let mut run = match started {
            Ok(run) => run,
            Err(reason) => {
                self.progress.fail();
                return Err(Error::Step {
                    file: self.file.clone(),
                    line: stage.line,
                    step: format!("FROM {base}"),
                    reason,
                });
            }
        };
        self.progress.finish(false);
        for trigger in std::mem::take(&mut run.extras.on_build) {
            let instruction = dockerfile::parse_trigger(&trigger)?;
            let step = Step {
                line: stage.line,
                instruction,
            };
            let label = format!("[ONBUILD] {trigger}");
            self.execute(&mut run, &step, label)?;
        }
        for step in &stage.steps {
            let label = self.label(label_name.as_deref(), &step.instruction.to_string());
            self.execute(&mut run, step, label)?;
        }
        Ok(Built {
            state: run.state,
            key: run.key,
            extras: run.extras,
        })
    }

    /// The state a stage starts from.
    fn base(&mut self, base: &str, index: usize, escape: char) -> Result<StageRun, String> {
        let scratch = |key: String| StageRun {
            state: BuildState {
                config: new_config(),
                layers: Vec::new(),
            },
            key,
            extras: Extras::default(),
            args: BTreeMap::new(),
            cmd_set: false,
            escape,
            index,
        };
        if base == "scratch" {
            return Ok(scratch(chain("", "scratch")));
        }
        if let Some(built) = self
            .stage_named(base, index)
            .and_then(|i| self.built[i].clone())
        {
            let mut run = scratch(built.key);
            run.state = built.state;
            run.extras = built.extras;
            // Triggers run once, in the first build FROM the image that has them.
            run.extras.on_build.clear();
            return Ok(run);
        }
        let image = self.resolve_or_pull(base)?;
        let (key, state) = self.image_state(&image).map_err(|e| e.to_string())?;
        let docker = self.store.runtime_config(&image);
        let mut run = scratch(key);
        run.state = state;
        run.extras = Extras {
            healthcheck: Some(docker["Healthcheck"].clone()).filter(|v| !v.is_null()),
            on_build: serde_json::from_value(docker["OnBuild"].clone()).unwrap_or_default(),
            shell: serde_json::from_value(docker["Shell"].clone()).ok(),
        };
        Ok(run)
    }

    /// An image as a build state (its layers unpacked), with its key, and recorded in the
    /// cache: its layers count as used until the build is done, whatever a concurrent
    /// `rmi` removes.
    fn image_state(&self, image: &Image) -> Result<(String, BuildState), Error> {
        self.store.layer_dirs(image)?;
        let layers = image
            .layers()?
            .into_iter()
            .map(|(d, diff_id)| LayerRef {
                digest: d.digest().to_string(),
                diff_id: diff_id.to_string(),
                size: d.size(),
            })
            .collect();
        let key = chain("", &format!("FROM {}", image.id));
        let state = BuildState {
            config: image.config.clone(),
            layers,
        };
        self.store.commit_step(None, &key, &state)?;
        Ok((key, state))
    }

    /// A directory of the build's own under the store's `tmp/` (same filesystem as the
    /// layers), removed when dropped.
    fn scratch_dir(&self) -> Result<tempfile::TempDir, Error> {
        let tmp = self.paths.tmp();
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&tmp)
            .map_err(|e| Error::io("creating a directory in", tmp, e))
    }

    /// An image from the store, pulled first when it is not there (as `docker build`
    /// does).
    fn resolve_or_pull(&mut self, name: &str) -> Result<Image, String> {
        match self.store.resolve(name) {
            Err(berth_image::Error::NotFound(_)) => {}
            other => return other.map_err(|e| e.to_string()),
        }
        let reference = Reference::parse(name).map_err(|e| e.to_string())?;
        self.progress
            .note(&format!("pulling {}", reference.familiar()));
        let options = registry::Options::from_env(None);
        let quiet = registry::Progress::new(false, true);
        registry::pull(&self.paths.root, &reference, &options, &quiet)
            .map_err(|e| e.to_string())?;
        self.store.resolve(name).map_err(|e| e.to_string())
    }

    fn execute(&mut self, run: &mut StageRun, step: &Step, label: String) -> Result<(), Error> {
        if run::interrupted() {
            return Err(Error::Interrupted);
        }
        self.progress.start(label);
        let vars = |name: &str| run.var(name);
        let instruction = step.expand(&self.file, run.escape, &vars)?;
        let text = instruction.to_string();
        // The key takes the whole instruction: its text leaves out heredoc bodies.
        let whole = serde_json::to_string(&instruction).map_err(|e| Error::Setup {
            what: text.clone(),
            reason: format!("serializing the instruction: {e}"),
        })?;
        run.advance(&whole);
        let result = match &instruction {
            Instruction::Run(r) => self.run_step(run, step, r, &text),
            Instruction::Copy(c) | Instruction::Add(c) => {
                let add = matches!(instruction, Instruction::Add(_));
                self.copy_step(run, step, c, add, &text)
            }
            Instruction::Workdir(dir) => {
                let absolute = run.absolute(dir);
                let dir = match absolute.trim_end_matches('/') {
                    "" => "/".to_string(),
                    trimmed => trimmed.to_string(),
                };
                run.edit(|c| {
                    c.set_working_dir(Some(dir.clone()));
                });
                let user = run.user();
                // The chain already has the directory (from the instruction and the
                // steps before it): nothing to add to the key.
                self.fs_step(run, &text, "", |root| {
                    // Created 0755 and owned by the USER, as BuildKit creates it.
                    let owner = match user.as_deref() {
                        Some(spec) => owner(root, spec)?,
                        None => (0, 0),
                    };
                    let target = copy::within(root, &dir, true).map_err(|e| e.to_string())?;
                    copy::make_dirs(root, &target, owner)
                })
            }
            other => self.config_step(run, step, other, &text),
        };
        match result {
            Ok(cached) => {
                self.progress.finish(cached);
                Ok(())
            }
            Err(e) => {
                self.progress.fail();
                Err(e)
            }
        }
    }

    /// The instructions that change only the config. They are cached too, only so that
    /// their history entries keep their times and an unchanged rebuild is the same image.
    fn config_step(
        &mut self,
        run: &mut StageRun,
        step: &Step,
        instruction: &Instruction,
        text: &str,
    ) -> Result<bool, Error> {
        self.apply_config(run, step, instruction)?;
        if self.cache_hit(run) {
            return Ok(true);
        }
        run.history(text, true);
        self.store.commit_step(None, &run.key, &run.state)?;
        Ok(false)
    }

    fn apply_config(
        &mut self,
        run: &mut StageRun,
        step: &Step,
        instruction: &Instruction,
    ) -> Result<(), Error> {
        match instruction {
            Instruction::Arg(decls) => {
                for decl in decls {
                    let inherited = self.meta.get(&decl.name).cloned().flatten();
                    let value = self.arg_value(&decl.name, decl.default.clone().or(inherited));
                    match value {
                        Some(v) => run.args.insert(decl.name.clone(), v),
                        None => run.args.remove(&decl.name),
                    };
                }
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    run.set_env(k, v);
                }
            }
            Instruction::Label(pairs) => run.edit(|c| {
                let mut labels = c.labels().clone().unwrap_or_default();
                labels.extend(pairs.iter().cloned());
                c.set_labels(Some(labels));
            }),
            Instruction::Expose(ports) => run.edit(|c| {
                let mut exposed = c.exposed_ports().clone().unwrap_or_default();
                for port in ports {
                    let port = if port.contains('/') {
                        port.clone()
                    } else {
                        format!("{port}/tcp")
                    };
                    if !exposed.contains(&port) {
                        exposed.push(port);
                    }
                }
                c.set_exposed_ports(Some(exposed));
            }),
            Instruction::User(u) => run.edit(|c| {
                c.set_user(Some(u.clone()));
            }),
            Instruction::Volume(vols) => run.edit(|c| {
                let mut volumes = c.volumes().clone().unwrap_or_default();
                for v in vols {
                    if !volumes.contains(v) {
                        volumes.push(v.clone());
                    }
                }
                c.set_volumes(Some(volumes));
            }),
            Instruction::StopSignal(s) => run.edit(|c| {
                c.set_stop_signal(Some(s.clone()));
            }),
            Instruction::Cmd(cmd) => {
                let args = command_args(cmd, &run.shell());
                run.edit(|c| {
                    c.set_cmd(Some(args));
                });
                run.cmd_set = true;
            }
            Instruction::Entrypoint(entrypoint) => {
                let args = command_args(entrypoint, &run.shell());
                let cmd_set = run.cmd_set;
                run.edit(|c| {
                    c.set_entrypoint(Some(args));
                    // Docker: an ENTRYPOINT drops a CMD that came from the base image.
                    if !cmd_set {
                        c.set_cmd(None);
                    }
                });
            }
            Instruction::Shell(shell) => run.extras.shell = Some(shell.clone()),
            Instruction::Healthcheck(h) => run.extras.healthcheck = Some(healthcheck_json(h)),
            Instruction::Maintainer(m) => {
                run.state.config.set_author(Some(m.clone()));
            }
            Instruction::OnBuild(inner) => run.extras.on_build.push(inner.to_string()),
            Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir(_) => {
                return Err(self.fail(step, "not a config instruction"));
            }
        }
        Ok(())
    }

    /// Looks `run.key` extended by `what` up in the cache; on a miss, `change` alters a
    /// writable root filesystem whose changes become the step's layer. Returns whether
    /// the step came from the cache.
    fn fs_step(
        &mut self,
        run: &mut StageRun,
        text: &str,
        what: &str,
        change: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<bool, Error> {
        run.advance(what);
        if self.cache_hit(run) {
            return Ok(true);
        }
        let mut rootfs = mount::Rootfs::mount(
            &self.paths.tmp(),
            &self.paths.layers(),
            &run.layer_dirs(self.paths),
            true,
        )?;
        change(&rootfs.root()).map_err(|reason| Error::Setup {
            what: text.to_string(),
            reason,
        })?;
        let upper = rootfs.unmount()?;
        self.add_layer(run, text, &upper, &|_, _| false)?;
        Ok(false)
    }

    fn cache_hit(&self, run: &mut StageRun) -> bool {
        if self.opts.no_cache {
            return false;
        }
        match self.store.cached_step(&run.key) {
            Some(state) => {
                run.state = state;
                true
            }
            None => false,
        }
    }

    /// Packs `upper` into the step's layer (none if nothing changed), records history,
    /// and stores the new state in the cache.
    fn add_layer(
        &mut self,
        run: &mut StageRun,
        text: &str,
        upper: &Path,
        skip: &dyn Fn(&Path, &fs::Metadata) -> bool,
    ) -> Result<(), Error> {
        let staged: Option<StagedLayer> = self.store.pack_layer(upper, skip)?;
        if let Some(staged) = &staged {
            run.state.layers.push(staged.layer.clone());
            let mut rootfs = run.state.config.rootfs().clone();
            let mut diff_ids = rootfs.diff_ids().clone();
            diff_ids.push(staged.layer.diff_id.clone());
            rootfs.set_diff_ids(diff_ids);
            run.state.config.set_rootfs(rootfs);
        }
        run.history(text, staged.is_none());
        let layer = staged.map(|s| (s, upper));
        self.store.commit_step(layer, &run.key, &run.state)?;
        Ok(())
    }

    fn run_step(
        &mut self,
        run: &mut StageRun,
        step: &Step,
        r: &dockerfile::Run,
        text: &str,
    ) -> Result<bool, Error> {
        if !r.mounts.is_empty() {
            return Err(self.fail(
                step,
                "RUN --mount is not supported yet; copy what the step needs with COPY",
            ));
        }
        if r.security.as_deref() == Some("insecure") {
            return Err(self.fail(step, "RUN --security=insecure is not allowed"));
        }
        let network = match r.network.as_deref() {
            None | Some("default") => self.opts.network.clone(),
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => {
                return Err(self.fail(
                    step,
                    format!("unknown network \"{other}\"; use default, none or host"),
                ));
            }
        };
        let keep = self.scratch_dir()?;
        // A lone heredoc starting with `#!` runs as a file, as BuildKit runs it: mounted
        // read-only at /dev/pipes/NAME (in /dev's tmpfs, so never in the layer).
        let mut volumes = Vec::new();
        let args = match r.script() {
            Some(doc) => {
                use std::os::unix::fs::PermissionsExt;
                let script = keep.path().join(format!("heredoc-{}", doc.name));
                fs::write(&script, doc.body())
                    .and_then(|()| fs::set_permissions(&script, fs::Permissions::from_mode(0o755)))
                    .map_err(|e| Error::io("writing", &script, e))?;
                let destination = format!("/dev/pipes/{}", doc.name);
                volumes.push(VolumeSpec {
                    source: VolumeSource::Host(script),
                    destination: destination.clone(),
                    read_only: true,
                });
                vec![destination]
            }
            None => command_args(&r.command, &run.shell()),
        };
        let build_args: Vec<String> = run
            .args
            .iter()
            .filter(|(k, _)| run.env_value(k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        run.advance(&format!("{}\0{network:?}", build_args.join("\0")));
        if self.cache_hit(run) {
            return Ok(true);
        }
        let mut env = run.env().to_vec();
        env.extend(build_args);
        for proxy in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(*proxy) {
                env.push(format!("{proxy}={v}"));
            }
        }
        let mut config = run.runtime().cloned().unwrap_or_else(empty_config);
        config.set_cmd(Some(args));
        config.set_entrypoint(None);
        config.set_env(Some(env));
        let layers = run.layer_dirs(self.paths);
        let progress = &mut *self.progress;
        let outcome = run::run(
            self.paths,
            &layers,
            &config,
            network,
            volumes,
            keep.path(),
            &mut |entry| progress.output(&entry.log),
        )?;
        let upper = match outcome {
            run::Outcome::Succeeded(upper) => upper,
            run::Outcome::Failed(code) => {
                return Err(Error::RunFailed {
                    file: self.file.clone(),
                    line: step.line,
                    step: text.to_string(),
                    code,
                });
            }
        };
        let skip = |rel: &Path, meta: &fs::Metadata| {
            run::MOUNT_POINTS.iter().any(|m| rel == Path::new(m))
                && (meta.len() == 0 && meta.is_file()
                    || meta.is_dir()
                        && fs::read_dir(upper.join(rel)).is_ok_and(|mut d| d.next().is_none()))
        };
        self.add_layer(run, text, &upper, &skip)?;
        Ok(false)
    }

    fn copy_step(
        &mut self,
        run: &mut StageRun,
        step: &Step,
        c: &dockerfile::Copy,
        add: bool,
        text: &str,
    ) -> Result<bool, Error> {
        if c.parents || !c.exclude.is_empty() {
            return Err(self.fail(step, "--parents and --exclude are not supported yet"));
        }
        // Where the sources are: the context, or another stage's or an image's root.
        let mut from_rootfs = None;
        let mut from_key = String::new();
        if let Some(from) = &c.from {
            let built = match self.stage_index(from, run.index) {
                Some(i) => Some(self.built[i].clone().ok_or_else(|| {
                    self.fail(
                        step,
                        format!(
                            "stage \"{from}\" was not built: a --from naming a stage may use \
                             only the ARGs declared before the first FROM"
                        ),
                    )
                })?),
                None => None,
            };
            let layers = match built {
                Some(b) => {
                    from_key = b.key.clone();
                    layer_dirs(self.paths, &b.state.layers)
                }
                None => {
                    let image = self.resolve_or_pull(from).map_err(|e| self.fail(step, e))?;
                    let (key, state) = self.image_state(&image)?;
                    from_key = key;
                    layer_dirs(self.paths, &state.layers)
                }
            };
            from_rootfs = Some(mount::Rootfs::mount(
                &self.paths.tmp(),
                &self.paths.layers(),
                &layers,
                false,
            )?);
        }
        if from_rootfs.is_none() && self.context.is_none() {
            self.context = Some(context::walk(&self.opts.context, &self.ignore)?);
        }
        let from_root = from_rootfs.as_ref().map(|r| r.root());
        let origin = match &from_root {
            Some(root) => copy::Origin::Rootfs(root),
            None => copy::Origin::Context {
                dir: &self.opts.context,
                entries: self.context.as_deref().unwrap_or_default(),
            },
        };
        let downloads = self.scratch_dir()?;
        let mut sources = Vec::new();
        let mut inline = Vec::new();
        let is_url = |p: &str| p.starts_with("http://") || p.starts_with("https://");
        // BuildKit's forms of a git source: git@host:repo, git://..., or a URL whose path
        // ends in .git (with an optional #ref).
        let is_git = |p: &str| {
            p.starts_with("git@")
                || p.starts_with("git://")
                || (is_url(p) && p.split('#').next().is_some_and(|u| u.ends_with(".git")))
        };
        if c.checksum.is_some()
            && c.sources
                .iter()
                .any(|s| !matches!(s, CopySource::Path(p) if is_url(p)))
        {
            return Err(self.fail(step, "--checksum is only for sources given by URL"));
        }
        for source in &c.sources {
            match source {
                CopySource::Path(p) if add && is_git(p) => {
                    return Err(self.fail(step, format!("{p}: ADD of a git repository is not supported yet; clone it into the context and COPY it")));
                }
                CopySource::Path(p) if add && is_url(p) => {
                    let fetched = download(p, c.checksum.as_deref(), downloads.path());
                    sources.push(fetched.map_err(|e| self.fail(step, e))?);
                }
                CopySource::Path(p) => {
                    for mut s in origin.resolve(p).map_err(|e| self.fail(step, e))? {
                        s.extract = add
                            && c.from.is_none()
                            && s.kind == context::FileKind::File
                            && copy::is_archive(&s.path);
                        sources.push(s);
                    }
                }
                CopySource::Inline { name, content, .. } => {
                    inline.push((name.clone(), content.clone()))
                }
            }
        }
        let digest = copy::digest(&sources)?;
        let dest = run.absolute(&c.dest);
        let what = format!("{from_key}\0{digest}");
        let chown = c.chown.clone();
        let from_elsewhere = c.from.is_some();
        let mode = c
            .chmod
            .as_deref()
            .map(copy::parse_mode)
            .transpose()
            .map_err(|e| self.fail(step, e))?;
        let result = self.fs_step(run, text, &what, |root| {
            let owner = match &chown {
                Some(spec) => Some(owner(root, spec)?),
                // Docker keeps the owners of what comes from a stage or an image.
                None if from_elsewhere => None,
                None => Some((0, 0)),
            };
            let attrs = copy::Attributes { owner, mode };
            copy::copy(root, &sources, &dest, attrs)?;
            for (name, content) in &inline {
                copy::write_inline(root, name, content, &dest, attrs)?;
            }
            Ok(())
        });
        drop(from_rootfs);
        result.map_err(|e| match e {
            Error::Setup { reason, .. } => self.fail(step, reason),
            e => e,
        })
    }

    /// Writes the final config and manifest and names the image.
    fn commit(&mut self, built: Built) -> Result<Image, Error> {
        let mut config = built.state.config.clone();
        // The image's time is its last step's, so that an unchanged rebuild is the same
        // image (the same id) as Docker's cached rebuilds are.
        let created = config
            .history()
            .as_ref()
            .and_then(|h| h.last())
            .and_then(|h| h.created().clone());
        config.set_created(created);
        let mut json = serde_json::to_value(&config).map_err(|e| Error::Setup {
            what: "writing the image config".into(),
            reason: e.to_string(),
        })?;
        if json["config"].is_null() {
            json["config"] = json!({});
        }
        let extras = &built.extras;
        if let Some(h) = &extras.healthcheck {
            json["config"]["Healthcheck"] = h.clone();
        }
        if !extras.on_build.is_empty() {
            json["config"]["OnBuild"] = json!(extras.on_build);
        }
        if let Some(shell) = &extras.shell {
            json["config"]["Shell"] = json!(shell);
        }
        let bytes = serde_json::to_vec(&json).map_err(|e| Error::Setup {
            what: "writing the image config".into(),
            reason: e.to_string(),
        })?;
        let mut staging = self.store.staging()?;
        let config = staging.add_bytes(MediaType::ImageConfig, &bytes)?;
        let layers = built
            .state
            .layers
            .iter()
            .map(LayerRef::descriptor)
            .collect::<Result<Vec<_>, _>>()?;
        let image = staging.add_image(config, layers, self.opts.tags.clone())?;
        let mut committed = self.store.commit(staging, vec![image])?;
        committed.pop().ok_or_else(|| Error::Setup {
            what: "the build".into(),
            reason: "the image was not committed".into(),
        })
    }
}

fn new_config() -> ImageConfiguration {
    let mut config = ImageConfiguration::default();
    config.set_config(Some(empty_config()));
    config.set_history(Some(Vec::new()));
    let mut rootfs = config.rootfs().clone();
    rootfs.set_diff_ids(Vec::new());
    config.set_rootfs(rootfs);
    config
}

fn command_args(command: &Command, shell: &[String]) -> Vec<String> {
    match command {
        Command::Exec(args) => args.clone(),
        Command::Shell(text) => shell.iter().cloned().chain([text.clone()]).collect(),
    }
}

/// HEALTHCHECK as Docker's image config has it (durations in nanoseconds).
fn healthcheck_json(h: &Healthcheck) -> Value {
    match h {
        Healthcheck::None => json!({ "Test": ["NONE"] }),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match test {
                Command::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                Command::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
            };
            let ns = |d: &Option<std::time::Duration>| d.map(|d| d.as_nanos() as u64);
            let mut v = json!({ "Test": test });
            for (key, value) in [
                ("Interval", ns(interval)),
                ("Timeout", ns(timeout)),
                ("StartPeriod", ns(start_period)),
                ("StartInterval", ns(start_interval)),
                ("Retries", retries.map(u64::from)),
            ] {
                if let Some(value) = value {
                    v[key] = json!(value);
                }
            }
            v
        }
    }
}

/// `--chown=user[:group]`, resolved in the destination's own passwd and group files. A
/// numeric user without a group gets the same number as group, as Docker gives it.
fn owner(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    if let Ok(uid) = spec.parse::<u32>() {
        return Ok((uid, uid));
    }
    let read = |f: &str| {
        copy::within(root, f, true)
            .ok()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let user = user::resolve(spec, &read("etc/passwd"), &read("etc/group"))
        .map_err(|e| format!("--chown={spec}: {e}"))?;
    Ok((user.uid, user.gid))
}

/// ADD of a URL: the file is fetched into `dir` (mode 0600, as Docker leaves it), and
/// checked against `--checksum=sha256:...` when given.
fn download(url: &str, checksum: Option<&str>, dir: &Path) -> Result<copy::Source, String> {
    use std::os::unix::fs::PermissionsExt;
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("download")
        .to_string();
    let failed = |e: &dyn std::fmt::Display| format!("fetching {url}: {e}");
    copy::plain_name(&name).map_err(|e| failed(&e))?;
    // A second installation (by the registry client) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(&e))?;
    let body = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(3600))
            .build()
            .map_err(|e| failed(&e))?;
        let response = client.get(url).send().await.map_err(|e| failed(&e))?;
        if !response.status().is_success() {
            return Err(failed(&format!(
                "the server answered {}",
                response.status()
            )));
        }
        response.bytes().await.map_err(|e| failed(&e))
    })?;
    if let Some(expected) = checksum {
        let actual = berth_image::blob::sha256(&body);
        if actual != expected {
            return Err(format!(
                "{url}: the content's digest is {actual}, but --checksum says {expected}"
            ));
        }
    }
    let path = dir.join(&name);
    fs::write(&path, &body).map_err(|e| failed(&e))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|e| failed(&e))?;
    Ok(copy::Source {
        path,
        name,
        kind: context::FileKind::File,
        children: Vec::new(),
        extract: false,
    })
}
