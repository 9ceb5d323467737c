//! The steps that change files: RUN in a container, COPY and ADD and WORKDIR on a
//! mounted root filesystem. Each extends the key with what it reads beyond the
//! instruction, then runs only on a cache miss.

use std::fs;
use std::path::Path;

use crate::builder::{Builder, layer_dirs};
use crate::state::StageState;
use crate::{Error, context, copy, download, mount, run};
use berth_dockerfile::{self as dockerfile, CopySource, Step};
use berth_engine::options::{VolumeSource, VolumeSpec};
use berth_image::registry;
use berth_net::NetworkMode;
use berth_runtime::user;

/// Why a step failed; `Error::Step` adds the file, line and instruction.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("--platform={platform}: berth builds for this host's platform ({host}) only")]
    Platform { platform: String, host: String },
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Pull(#[from] registry::Error),
    #[error("RUN --mount is not supported yet; copy what the step needs with COPY")]
    RunMount,
    #[error("RUN --security=insecure is not allowed")]
    Insecure,
    #[error("unknown network \"{network}\"; use default, none or host")]
    UnknownNetwork { network: String },
    #[error("--parents and --exclude are not supported yet")]
    CopyFlags,
    #[error(
        "stage \"{stage}\" was not built: a --from naming a stage may use only the ARGs \
         declared before the first FROM"
    )]
    StageNotBuilt { stage: String },
    #[error("--checksum is only for sources given by URL")]
    ChecksumNotUrl,
    #[error(
        "{url}: ADD of a git repository is not supported yet; clone it into the context and COPY it"
    )]
    Git { url: String },
    #[error(transparent)]
    Copy(#[from] copy::Error),
    #[error(transparent)]
    Download(#[from] download::Error),
    #[error("--chown={spec}: {source}")]
    Owner {
        spec: String,
        #[source]
        source: user::Error,
    },
}

fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://")
}

/// BuildKit's forms of a git source: git@host:repo, git://..., or a URL whose path ends in
/// .git (with an optional #ref).
fn is_git(p: &str) -> bool {
    p.starts_with("git@")
        || p.starts_with("git://")
        || (is_url(p) && p.split('#').next().is_some_and(|u| u.ends_with(".git")))
}

/// `--chown=user[:group]`, resolved in the destination's own passwd and group files. A
/// numeric user without a group gets the same number as group, as Docker gives it.
fn owner(root: &Path, spec: &str) -> Result<(u32, u32), StepError> {
    if let Ok(uid) = spec.parse::<u32>() {
        return Ok((uid, uid));
    }
    let read = |f: &str| {
        copy::within(root, f, true)
            .ok()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let user = user::resolve(spec, &read("etc/passwd"), &read("etc/group")).map_err(|source| {
        StepError::Owner {
            spec: spec.into(),
            source,
        }
    })?;
    Ok((user.uid, user.gid))
}

impl Builder<'_> {
    pub(crate) fn workdir_step(
        &mut self,
        run: &mut StageState,
        step: &Step,
        dir: &str,
        text: &str,
    ) -> Result<bool, Error> {
        let dir = run.apply_workdir(dir);
        let user = run.user();
        // The chain already has the directory (from the instruction and the steps
        // before it): nothing to add to the key.
        run.advance("");
        self.fs_step(run, step, text, |root| {
            // Created 0755 and owned by the USER, as BuildKit creates it.
            let owner = match user.as_deref() {
                Some(spec) => owner(root, spec)?,
                None => (0, 0),
            };
            let target = copy::within(root, &dir, true)?;
            Ok(copy::make_dirs(root, &target, owner)?)
        })
    }

    pub(crate) fn run_step(
        &mut self,
        run: &mut StageState,
        step: &Step,
        r: &dockerfile::Run,
        text: &str,
    ) -> Result<bool, Error> {
        if !r.mounts.is_empty() {
            return Err(self.fail(step, StepError::RunMount));
        }
        if r.security.as_deref() == Some("insecure") {
            return Err(self.fail(step, StepError::Insecure));
        }
        let network = match r.network.as_deref() {
            None | Some("default") => self.opts.network.clone(),
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => {
                let network = other.to_string();
                return Err(self.fail(step, StepError::UnknownNetwork { network }));
            }
        };
        let keep = self.scratch_dir()?;
        // A lone heredoc starting with `#!` runs as a file, as BuildKit runs it: mounted
        // read-only at /dev/pipes/NAME (in /dev's tmpfs, so never in the layer).
        let mut volumes = Vec::new();
        let command = match r.script() {
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
            None => run.command(&r.command),
        };
        let run_args = run.run_args();
        run.advance_run(&run_args, &network);
        if self.cache_hit(run) {
            return Ok(true);
        }
        let config = run.run_config(command, &run_args, &self.args.proxy_env());
        let layers = layer_dirs(self.paths, &run.state.layers);
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

    /// Where `COPY --from` copies from: the stage's or image's root filesystem, mounted,
    /// and its key.
    fn copy_origin(
        &mut self,
        run: &StageState,
        step: &Step,
        from: &str,
    ) -> Result<(mount::Rootfs, String), Error> {
        let (key, layers) = match self.stages.from(from, run.index) {
            Some(i) => {
                let built = self.built[i].as_ref().ok_or_else(|| {
                    let stage = from.to_string();
                    self.fail(step, StepError::StageNotBuilt { stage })
                })?;
                (built.key.clone(), built.state.layers.clone())
            }
            None => {
                let image = self.resolve_or_pull(from).map_err(|e| self.fail(step, e))?;
                let (key, state) = self.image_state(&image).map_err(|e| self.fail(step, e))?;
                (key, state.layers)
            }
        };
        let rootfs = mount::Rootfs::mount(
            &self.paths.tmp(),
            &self.paths.layers(),
            &layer_dirs(self.paths, &layers),
            false,
        )?;
        Ok((rootfs, key))
    }

    pub(crate) fn copy_step(
        &mut self,
        run: &mut StageState,
        step: &Step,
        c: &dockerfile::Copy,
        add: bool,
        text: &str,
    ) -> Result<bool, Error> {
        if c.parents || !c.exclude.is_empty() {
            return Err(self.fail(step, StepError::CopyFlags));
        }
        // Where the sources are: the context, or another stage's or an image's root.
        let (from_rootfs, from_key) = match &c.from {
            Some(from) => {
                let (rootfs, key) = self.copy_origin(run, step, from)?;
                (Some(rootfs), key)
            }
            None => (None, String::new()),
        };
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
        if c.checksum.is_some()
            && c.sources
                .iter()
                .any(|s| !matches!(s, CopySource::Path(p) if is_url(p)))
        {
            return Err(self.fail(step, StepError::ChecksumNotUrl));
        }
        for source in &c.sources {
            match source {
                CopySource::Path(p) if add && is_git(p) => {
                    return Err(self.fail(step, StepError::Git { url: p.clone() }));
                }
                CopySource::Path(p) if add && is_url(p) => {
                    let fetched = download::download(p, c.checksum.as_deref(), downloads.path());
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
        let digest = copy::digest(&sources).map_err(|e| self.fail(step, e))?;
        let dest = run.absolute(&c.dest);
        let chown = c.chown.clone();
        let from_elsewhere = c.from.is_some();
        let mode = c
            .chmod
            .as_deref()
            .map(copy::parse_mode)
            .transpose()
            .map_err(|e| self.fail(step, e))?;
        run.advance_copy(&from_key, &digest);
        let result = self.fs_step(run, step, text, |root| {
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
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_urls_and_git_sources_apart() {
        assert!(is_url("https://example.com/f"));
        assert!(!is_url("./https"));
        assert!(is_git("git@github.com:o/r.git"));
        assert!(is_git("git://example.com/r"));
        assert!(is_git("https://example.com/r.git#v1"));
        assert!(!is_git("https://example.com/r.tar.gz"));
        assert!(!is_git("app.git"), "a path in the context");
    }

    #[test]
    fn step_errors_name_the_file_line_and_instruction() {
        let e = Error::Step {
            file: "Dockerfile".into(),
            line: 2,
            step: "ADD https://example.com/repo.git#v1 /src".into(),
            source: Box::new(StepError::Git {
                url: "https://example.com/repo.git#v1".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "Dockerfile:2: ADD https://example.com/repo.git#v1 /src: \
             https://example.com/repo.git#v1: ADD of a git repository is not supported yet; \
             clone it into the context and COPY it"
        );
    }

    #[test]
    fn chown_takes_numbers_or_the_roots_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(owner(root, "1234").unwrap(), (1234, 1234));
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "app:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(root.join("etc/group"), "extra:x:1002:\n").unwrap();
        assert_eq!(owner(root, "app").unwrap(), (1000, 1001));
        assert_eq!(owner(root, "app:extra").unwrap(), (1000, 1002));
        let err = owner(root, "nobody").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--chown=nobody: unable to find user nobody"),
            "{err}"
        );
    }
}
