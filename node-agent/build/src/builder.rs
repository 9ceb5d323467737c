//! The imperative shell around the pure stage state: stages started from scratch, an
//! image or an earlier stage; each step looked up in the build cache, or run and
//! recorded; the image written once every step is done. RUN, COPY, ADD and WORKDIR are
//! in `steps`.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;

use crate::args::BuildArgs;
use crate::context::{self, Ignore};
use crate::stages::Stages;
use crate::state::{self, Built, Extras, StageState};
use crate::steps::StepError;
use crate::{BuildOptions, Error, Progress, mount, run};
use berth_dockerfile::{self as dockerfile, Dockerfile, Instruction, Step};
use berth_engine::Paths;
use berth_image::cache::{BuildState, LayerRef, StagedLayer};
use berth_image::{Image, ImageStore, Reference, registry};

pub(crate) struct Builder<'a> {
    pub paths: &'a Paths,
    pub opts: &'a BuildOptions,
    pub store: ImageStore,
    /// The Dockerfile's name in messages.
    pub file: String,
    pub args: BuildArgs,
    pub ignore: Ignore,
    /// The context's listing, read on first use.
    pub context: Option<Vec<context::Entry>>,
    pub built: Vec<Option<Built>>,
    pub stages: Stages,
    step: usize,
    total: usize,
    pub progress: &'a mut Progress,
}

/// The layer directories of `layers`, lowest first.
pub(crate) fn layer_dirs(paths: &Paths, layers: &[LayerRef]) -> Vec<PathBuf> {
    layers
        .iter()
        .map(|l| {
            let hex = l.diff_id.strip_prefix("sha256:").unwrap_or(&l.diff_id);
            paths.layers().join(hex)
        })
        .collect()
}

impl<'a> Builder<'a> {
    pub fn new(
        paths: &'a Paths,
        opts: &'a BuildOptions,
        file: String,
        ignore: Ignore,
        dockerfile: &Dockerfile,
        progress: &'a mut Progress,
    ) -> Result<Builder<'a>, Error> {
        Ok(Builder {
            paths,
            opts,
            store: ImageStore::open(&paths.root)?,
            file,
            args: BuildArgs::new(opts.build_args.clone(), crate::args::platform_args()),
            ignore,
            context: None,
            built: vec![None; dockerfile.stages.len()],
            stages: Stages::new(dockerfile),
            step: 0,
            total: 0,
            progress,
        })
    }

    /// Builds the stages the target needs and returns the target's result.
    pub fn build(&mut self, dockerfile: &Dockerfile) -> Result<Built, Error> {
        self.meta_args(dockerfile)?;
        let target = self.stages.target(self.opts.target.as_deref())?;
        let needed = self
            .stages
            .needed(dockerfile, target, &|name| self.args.meta_var(name));
        self.total = needed
            .iter()
            .map(|&i| 1 + dockerfile.stages[i].steps.len())
            .sum();
        for &i in &needed {
            let built = self.stage(dockerfile, i)?;
            self.built[i] = Some(built);
        }
        let unused = self.args.unused();
        if !unused.is_empty() {
            self.progress.note(&format!(
                "warning: build args not used by the Dockerfile: {}",
                unused.join(", ")
            ));
        }
        self.built[target]
            .take()
            .ok_or(Error::Incomplete("the target stage"))
    }

    /// A step's failure, named by the Dockerfile's name, the line and the instruction.
    pub fn fail(&self, step: &Step, source: impl Into<StepError>) -> Error {
        Error::Step {
            file: self.file.clone(),
            line: step.line,
            step: step.instruction.to_string(),
            source: Box::new(source.into()),
        }
    }

    fn meta_args(&mut self, dockerfile: &Dockerfile) -> Result<(), Error> {
        for step in &dockerfile.meta_args {
            let expanded = step.expand(&self.file, dockerfile.escape, &|name| {
                self.args.meta_var(name)
            })?;
            if let Instruction::Arg(decls) = expanded {
                for decl in decls {
                    self.args.declare_meta(decl);
                }
            }
        }
        Ok(())
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
        let meta = |name: &str| self.args.meta_var(name);
        let base = dockerfile::expand_word(&stage.base, dockerfile.escape, &meta)?;
        let platform = match &stage.platform {
            Some(p) => Some(dockerfile::expand_word(p, dockerfile.escape, &meta)?),
            None => None,
        };
        let label_name = stage.name.clone().filter(|_| self.stages.len() > 1);
        let label = self.label(label_name.as_deref(), &format!("FROM {base}"));
        self.progress.start(label);
        let host = self.args.target_platform().to_string();
        let started = match platform.filter(|p| *p != host) {
            Some(platform) => Err(StepError::Platform { platform, host }),
            None => self.base(&base, index, dockerfile.escape),
        };
        let mut run = match started {
            Ok(run) => run,
            Err(source) => {
                self.progress.fail();
                return Err(Error::Step {
                    file: self.file.clone(),
                    line: stage.line,
                    step: format!("FROM {base}"),
                    source: Box::new(source),
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
        Ok(run.into_built())
    }

    /// The state a stage starts from.
    fn base(&mut self, base: &str, index: usize, escape: char) -> Result<StageState, StepError> {
        if base == "scratch" {
            return Ok(StageState::scratch(index, escape));
        }
        if let Some(mut built) = self
            .stages
            .named(base, index)
            .and_then(|i| self.built[i].clone())
        {
            // Triggers run once, in the first build FROM the image that has them.
            built.extras.on_build.clear();
            return Ok(StageState::on(built, index, escape));
        }
        let image = self.resolve_or_pull(base)?;
        let (key, state) = self.image_state(&image)?;
        let extras = Extras::of_image(&self.store.runtime_config(&image));
        Ok(StageState::on(Built { state, key, extras }, index, escape))
    }

    /// An image as a build state (its layers unpacked), with its key, and recorded in the
    /// cache: its layers count as used until the build is done, whatever a concurrent
    /// `rmi` removes.
    pub fn image_state(&self, image: &Image) -> Result<(String, BuildState), berth_image::Error> {
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
        let key = state::image_key(&image.id);
        let state = BuildState {
            config: image.config.clone(),
            layers,
        };
        self.store.commit_step(None, &key, &state)?;
        Ok((key, state))
    }

    /// A directory of the build's own under the store's `tmp/` (same filesystem as the
    /// layers), removed when dropped.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir, Error> {
        let tmp = self.paths.tmp();
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&tmp)
            .map_err(|e| Error::io("creating a directory in", tmp, e))
    }

    /// An image from the store, pulled first when it is not there (as `docker build`
    /// does).
    pub fn resolve_or_pull(&mut self, name: &str) -> Result<Image, StepError> {
        match self.store.resolve(name) {
            Err(berth_image::Error::NotFound(_)) => {}
            other => return Ok(other?),
        }
        let reference = Reference::parse(name)?;
        self.progress
            .note(&format!("pulling {}", reference.familiar()));
        let options = registry::Options::from_env(None);
        let quiet = registry::Progress::new(false, true);
        registry::pull(&self.paths.root, &reference, &options, &quiet)?;
        Ok(self.store.resolve(name)?)
    }

    fn execute(&mut self, run: &mut StageState, step: &Step, label: String) -> Result<(), Error> {
        if run::interrupted() {
            return Err(Error::Interrupted);
        }
        self.progress.start(label);
        let instruction = step.expand(&self.file, run.escape, &|name| run.var(name))?;
        let result = self.dispatch(run, step, &instruction);
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

    /// Runs one expanded instruction; returns whether it came from the cache.
    fn dispatch(
        &mut self,
        run: &mut StageState,
        step: &Step,
        instruction: &Instruction,
    ) -> Result<bool, Error> {
        let text = instruction.to_string();
        run.advance_instruction(instruction)?;
        match instruction {
            Instruction::Run(r) => self.run_step(run, step, r, &text),
            Instruction::Copy(c) => self.copy_step(run, step, c, false, &text),
            Instruction::Add(c) => self.copy_step(run, step, c, true, &text),
            Instruction::Workdir(dir) => self.workdir_step(run, step, dir, &text),
            other => self.config_step(run, other, &text),
        }
    }

    /// The instructions that change only the config. They are cached too, only so that
    /// their history entries keep their times and an unchanged rebuild is the same image.
    fn config_step(
        &mut self,
        run: &mut StageState,
        instruction: &Instruction,
        text: &str,
    ) -> Result<bool, Error> {
        run.apply_config(instruction, &mut self.args)?;
        if self.cache_hit(run) {
            return Ok(true);
        }
        run.history(text, true);
        self.store.commit_step(None, &run.key, &run.state)?;
        Ok(false)
    }

    /// Looks `run.key` extended by `what` up in the cache; on a miss, `change` alters a
    /// writable root filesystem whose changes become the step's layer. Returns whether
    /// the step came from the cache.
    pub fn fs_step(
        &mut self,
        run: &mut StageState,
        step: &Step,
        text: &str,
        change: impl FnOnce(&Path) -> Result<(), StepError>,
    ) -> Result<bool, Error> {
        if self.cache_hit(run) {
            return Ok(true);
        }
        let mut rootfs = mount::Rootfs::mount(
            &self.paths.tmp(),
            &self.paths.layers(),
            &layer_dirs(self.paths, &run.state.layers),
            true,
        )?;
        change(&rootfs.root()).map_err(|e| self.fail(step, e))?;
        let upper = rootfs.unmount()?;
        self.add_layer(run, text, &upper, &|_, _| false)?;
        Ok(false)
    }

    /// Takes the cached state of `run.key`, if there is one (and the cache is in use).
    pub fn cache_hit(&self, run: &mut StageState) -> bool {
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
    pub fn add_layer(
        &mut self,
        run: &mut StageState,
        text: &str,
        upper: &Path,
        skip: &dyn Fn(&Path, &fs::Metadata) -> bool,
    ) -> Result<(), Error> {
        let staged: Option<StagedLayer> = self.store.pack_layer(upper, skip)?;
        if let Some(staged) = &staged {
            run.push_layer(staged.layer.clone());
        }
        run.history(text, staged.is_none());
        let layer = staged.map(|s| (s, upper));
        self.store.commit_step(layer, &run.key, &run.state)?;
        Ok(())
    }

    /// Writes the final config and manifest and names the image.
    pub fn commit(&mut self, built: Built) -> Result<Image, Error> {
        let bytes = state::image_config(&built)?;
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
        committed
            .pop()
            .ok_or(Error::Incomplete("the committed image"))
    }
}
