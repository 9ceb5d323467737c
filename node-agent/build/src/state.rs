//! The state of the stage being built, and its cache key. Pure: the instructions that
//! only change the image config are applied here in memory, and every step extends the
//! chain key with what determines its result; the builder does the I/O around them.
//!
//! What a step adds to the key: the whole instruction after substitution (heredoc bodies
//! included); for RUN also the build args in effect and the network; for COPY and ADD the
//! key of the stage or image copied from and a digest of the sources' content; nothing
//! more for the rest, whose result the chain before them already determines.

use std::collections::BTreeMap;
use std::time::SystemTime;

use oci_spec::image::{Config, ConfigBuilder, HistoryBuilder, ImageConfiguration};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::BuildArgs;
use berth_dockerfile::{Command, Healthcheck, Instruction};
use berth_image::cache::{BuildState, LayerRef};
use berth_net::NetworkMode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{instruction}: not an instruction that only changes the config (a builder bug)")]
    NotConfig { instruction: String },
    #[error("{instruction}: serializing the instruction for its cache key: {source}")]
    Key {
        instruction: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing the image config: {0}")]
    Config(#[source] serde_json::Error),
}

/// A stage's result.
#[derive(Clone, Debug)]
pub struct Built {
    pub state: BuildState,
    pub key: String,
    pub extras: Extras,
}

/// What an image config holds beyond the OCI fields, as Docker writes it in `config`.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    pub healthcheck: Option<Value>,
    pub on_build: Vec<String>,
    pub shell: Option<Vec<String>>,
}

impl Extras {
    /// The extras of an image, from the `config` object of its Docker config.
    pub fn of_image(docker: &Value) -> Extras {
        Extras {
            healthcheck: Some(docker["Healthcheck"].clone()).filter(|v| !v.is_null()),
            on_build: serde_json::from_value(docker["OnBuild"].clone()).unwrap_or_default(),
            shell: serde_json::from_value(docker["Shell"].clone()).ok(),
        }
    }
}

/// The state of the stage being built.
#[derive(Clone, Debug)]
pub struct StageState {
    pub state: BuildState,
    pub key: String,
    pub extras: Extras,
    /// ARG values in effect.
    pub args: BTreeMap<String, String>,
    /// Whether CMD was set in this stage (ENTRYPOINT clears an inherited one).
    cmd_set: bool,
    pub escape: char,
    /// The stage's position in the Dockerfile: `--from` names only stages before it.
    pub index: usize,
}

impl StageState {
    /// A stage `FROM scratch`.
    pub fn scratch(index: usize, escape: char) -> StageState {
        StageState::on(
            Built {
                state: BuildState {
                    config: new_config(),
                    layers: Vec::new(),
                },
                key: chain("", "scratch"),
                extras: Extras::default(),
            },
            index,
            escape,
        )
    }

    /// A stage starting from an image or an earlier stage's result.
    pub fn on(base: Built, index: usize, escape: char) -> StageState {
        StageState {
            state: base.state,
            key: base.key,
            extras: base.extras,
            args: BTreeMap::new(),
            cmd_set: false,
            escape,
            index,
        }
    }

    pub fn into_built(self) -> Built {
        Built {
            state: self.state,
            key: self.key,
            extras: self.extras,
        }
    }

    /// The runtime part of the image config.
    pub fn runtime(&self) -> Option<&Config> {
        self.state.config.config().as_ref()
    }

    /// Changes the runtime part of the image config.
    fn edit(&mut self, change: impl FnOnce(&mut Config)) {
        let mut config = self.runtime().cloned().unwrap_or_else(empty_config);
        change(&mut config);
        self.state.config.set_config(Some(config));
    }

    pub fn env(&self) -> &[String] {
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
    pub fn var(&self, name: &str) -> Option<String> {
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
    pub fn user(&self) -> Option<String> {
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
    pub fn absolute(&self, path: &str) -> String {
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

    pub fn advance(&mut self, what: &str) {
        self.key = chain(&self.key, what);
    }

    /// The first part of every step's key: the whole instruction (its text leaves out
    /// heredoc bodies).
    pub fn advance_instruction(&mut self, instruction: &Instruction) -> Result<(), Error> {
        let whole = serde_json::to_string(instruction).map_err(|source| Error::Key {
            instruction: instruction.to_string(),
            source,
        })?;
        self.advance(&whole);
        Ok(())
    }

    /// The build args a RUN step gets as `NAME=value`: those in effect that ENV does not
    /// override.
    pub fn run_args(&self) -> Vec<String> {
        self.args
            .iter()
            .filter(|(k, _)| self.env_value(k).is_none())
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// RUN's part of the key: its build args (from `run_args`) and its network.
    pub fn advance_run(&mut self, run_args: &[String], network: &NetworkMode) {
        self.advance(&format!("{}\0{network:?}", run_args.join("\0")));
    }

    /// COPY's and ADD's part of the key: the key of the stage or image the sources come
    /// from (empty for the context) and the digest of the sources.
    pub fn advance_copy(&mut self, from_key: &str, digest: &str) {
        self.advance(&format!("{from_key}\0{digest}"));
    }

    /// The config of a RUN step's container: the image's, running `command` with the
    /// build args (and `extra_env`) added to its environment.
    pub fn run_config(
        &self,
        command: Vec<String>,
        run_args: &[String],
        extra_env: &[String],
    ) -> Config {
        let mut env = self.env().to_vec();
        env.extend_from_slice(run_args);
        env.extend_from_slice(extra_env);
        let mut config = self.runtime().cloned().unwrap_or_else(empty_config);
        config.set_cmd(Some(command));
        config.set_entrypoint(None);
        config.set_env(Some(env));
        config
    }

    /// The command of a RUN step in shell or exec form.
    pub fn command(&self, command: &Command) -> Vec<String> {
        command_args(command, &self.shell())
    }

    /// WORKDIR: sets the working directory and returns it (absolute, no trailing `/`),
    /// for the builder to create.
    pub fn apply_workdir(&mut self, dir: &str) -> String {
        let absolute = self.absolute(dir);
        let dir = match absolute.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        };
        self.edit(|c| {
            c.set_working_dir(Some(dir.clone()));
        });
        dir
    }

    /// Applies an instruction that only changes the config (not RUN, COPY, ADD or
    /// WORKDIR). ARG takes its value from `args`.
    pub fn apply_config(
        &mut self,
        instruction: &Instruction,
        args: &mut BuildArgs,
    ) -> Result<(), Error> {
        match instruction {
            Instruction::Arg(decls) => {
                for decl in decls {
                    match args.stage_value(decl) {
                        Some(v) => self.args.insert(decl.name.clone(), v),
                        None => self.args.remove(&decl.name),
                    };
                }
            }
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    self.set_env(k, v);
                }
            }
            Instruction::Label(pairs) => self.edit(|c| {
                let mut labels = c.labels().clone().unwrap_or_default();
                labels.extend(pairs.iter().cloned());
                c.set_labels(Some(labels));
            }),
            Instruction::Expose(ports) => self.edit(|c| {
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
            Instruction::User(u) => self.edit(|c| {
                c.set_user(Some(u.clone()));
            }),
            Instruction::Volume(vols) => self.edit(|c| {
                let mut volumes = c.volumes().clone().unwrap_or_default();
                for v in vols {
                    if !volumes.contains(v) {
                        volumes.push(v.clone());
                    }
                }
                c.set_volumes(Some(volumes));
            }),
            Instruction::StopSignal(s) => self.edit(|c| {
                c.set_stop_signal(Some(s.clone()));
            }),
            Instruction::Cmd(cmd) => {
                let args = self.command(cmd);
                self.edit(|c| {
                    c.set_cmd(Some(args));
                });
                self.cmd_set = true;
            }
            Instruction::Entrypoint(entrypoint) => {
                let args = self.command(entrypoint);
                let cmd_set = self.cmd_set;
                self.edit(|c| {
                    c.set_entrypoint(Some(args));
                    // Docker: an ENTRYPOINT drops a CMD that came from the base image.
                    if !cmd_set {
                        c.set_cmd(None);
                    }
                });
            }
            Instruction::Shell(shell) => self.extras.shell = Some(shell.clone()),
            Instruction::Healthcheck(h) => self.extras.healthcheck = Some(healthcheck_json(h)),
            Instruction::Maintainer(m) => {
                self.state.config.set_author(Some(m.clone()));
            }
            Instruction::OnBuild(inner) => self.extras.on_build.push(inner.to_string()),
            Instruction::Run(_)
            | Instruction::Copy(_)
            | Instruction::Add(_)
            | Instruction::Workdir(_) => {
                return Err(Error::NotConfig {
                    instruction: instruction.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Adds a step's layer to the image.
    pub fn push_layer(&mut self, layer: LayerRef) {
        let mut rootfs = self.state.config.rootfs().clone();
        let mut diff_ids = rootfs.diff_ids().clone();
        diff_ids.push(layer.diff_id.clone());
        rootfs.set_diff_ids(diff_ids);
        self.state.config.set_rootfs(rootfs);
        self.state.layers.push(layer);
    }

    /// Records a step in the image's history, timed now.
    pub fn history(&mut self, created_by: &str, empty_layer: bool) {
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

/// The final image config of a stage as Docker writes it: the OCI fields plus the
/// extras, created when its last step was (so that an unchanged rebuild is the same
/// image, with the same id, as Docker's cached rebuilds are).
pub fn image_config(built: &Built) -> Result<Vec<u8>, Error> {
    let mut config = built.state.config.clone();
    let created = config
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.created().clone());
    config.set_created(created);
    let mut json = serde_json::to_value(&config).map_err(Error::Config)?;
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
    serde_json::to_vec(&json).map_err(Error::Config)
}

/// The key an image starts a chain with.
pub fn image_key(image_id: &str) -> String {
    chain("", &format!("FROM {image_id}"))
}

fn chain(key: &str, what: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(key);
    hash.update([0]);
    hash.update(what);
    format!("{:x}", hash.finalize())
}

fn empty_config() -> Config {
    ConfigBuilder::default()
        .build()
        .expect("no field is required")
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

#[cfg(test)]
mod tests;
