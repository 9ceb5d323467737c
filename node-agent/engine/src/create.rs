//! `berth run`'s first half: from the image and the user's options to a container
//! record on disk (its spec, root filesystem plan and files), ready for a monitor.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::runtime::PosixRlimit;

use crate::container::{self, Config, Container, LogOptions, MountRecord, RestartPolicy};
use crate::endpoint;
use crate::options::{VolumeSource, VolumeSpec};
use crate::paths::Paths;
use crate::spec::{self, BindMount, Resources, RunConfig};
use crate::volume;
use berth_image::{self as image, ImageStore};
use berth_net::ports::{PortSpec, Protocol};
use berth_net::{self as net, NetworkMode};
use berth_runtime::cgroup::Hierarchy;
use berth_runtime::init::Rootfs;
use berth_runtime::user;
use berth_sys::fs::{Lock, random_hex};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Spec(#[from] spec::Error),
    #[error(transparent)]
    User(#[from] user::Error),
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error(transparent)]
    Volume(#[from] volume::Error),
    #[error(transparent)]
    Cgroup(#[from] berth_runtime::cgroup::Error),
    #[error(transparent)]
    Network(#[from] endpoint::Error),
    #[error(transparent)]
    Ports(#[from] net::ports::Error),
    #[error("the working directory \"{0}\" is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    #[error("conflicting options: --restart {0} and --rm (a removed container cannot restart)")]
    RestartWithRm(String),
    #[error("bind mount source {path}: {source}")]
    BindSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("preparing container files in {path}: {source}")]
    Files {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `berth run` was asked for, parsed and validated by the command line.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub image: String,
    pub args: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub resources: Resources,
    pub ulimits: Vec<PosixRlimit>,
    pub network: Option<NetworkMode>,
    pub network_aliases: Vec<String>,
    pub ports: Vec<PortSpec>,
    /// `-P`: publish every EXPOSEd port on a free host port.
    pub publish_all: bool,
    /// `--expose`: ports added to the image's EXPOSEd ones.
    pub expose: Vec<String>,
    /// `--link`: (container, alias).
    pub links: Vec<(String, String)>,
    pub volumes: Vec<VolumeSpec>,
    pub restart: Option<RestartPolicy>,
    pub auto_remove: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub log: LogOptions,
    pub interactive: bool,
    /// `-t`: the process gets a pseudo-terminal.
    pub tty: bool,
    pub labels: std::collections::BTreeMap<String, String>,
}

fn host_file(path: &str, fallback: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|_| fallback.to_string())
}

/// Creates the container: resolves the image, builds its spec and writes its record and
/// files. On failure nothing is left behind.
pub fn create(paths: &Paths, opts: &CreateOptions) -> Result<Container, Error> {
    let store = ImageStore::open(&paths.root)?;
    let _image_lock = store.lock()?;
    let image = store.resolve(&opts.image)?;
    let layers = store.layer_dirs(&image)?;
    create_on(
        paths,
        opts,
        &Base {
            image_id: &image.id,
            config: image.config.config().as_ref(),
            layers: &layers,
        },
    )
}

/// What a container is made from: an image in the store, or (for `berth build`) the
/// state of a build step.
pub struct Base<'a> {
    pub image_id: &'a str,
    pub config: Option<&'a oci_spec::image::Config>,
    /// Unpacked layer directories, lowest first.
    pub layers: &'a [PathBuf],
}

/// Creates the container from `base`, whose layers the caller keeps from being
/// collected until this returns.
pub fn create_on(paths: &Paths, opts: &CreateOptions, base: &Base) -> Result<Container, Error> {
    let restart = opts.restart.unwrap_or(RestartPolicy::No);
    if opts.auto_remove && restart != RestartPolicy::No {
        return Err(Error::RestartWithRm(format!("{restart:?}").to_lowercase()));
    }
    let layers = base.layers;
    let empty = Vec::new();
    let icfg = base.config;
    let field = |f: Option<&Vec<String>>| f.cloned().unwrap_or_default();
    let args = spec::command(
        &field(icfg.and_then(|c| c.entrypoint().as_ref())),
        &field(icfg.and_then(|c| c.cmd().as_ref())),
        opts.entrypoint.as_deref(),
        &opts.args,
    )?;
    let user_spec = opts
        .user
        .clone()
        .or_else(|| icfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let passwd = image::read_file(layers, "etc/passwd").unwrap_or_default();
    let group = image::read_file(layers, "etc/group").unwrap_or_default();
    let exec_user = user::resolve(&user_spec, &passwd, &group)?;

    let id = random_hex(32);
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| container::generate_name(&id));
    container::validate_name(&name)?;
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let network = opts.network.clone().unwrap_or_default();
    let mut expose_specs = icfg
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default();
    expose_specs.extend(opts.expose.iter().cloned());
    let mut ports = opts.ports.clone();
    if opts.publish_all {
        ports.extend(net::ports::exposed(&expose_specs)?);
    }
    let mut exposed: Vec<(u16, Protocol)> = net::ports::exposed(&expose_specs)?
        .iter()
        .chain(&ports)
        .map(|p| (p.container_port, p.protocol))
        .collect();
    exposed.sort();
    exposed.dedup();
    let net_plan = endpoint::plan(
        paths,
        &name,
        &endpoint::Request {
            mode: &network,
            aliases: &opts.network_aliases,
            ports: &ports,
            links: &opts.links,
        },
    )?;
    let run_env: Vec<String> = net_plan.env.iter().chain(&opts.env).cloned().collect();
    let env = spec::environment(
        icfg.and_then(|c| c.env().as_ref()).unwrap_or(&empty),
        &run_env,
        &hostname,
        &exec_user.home,
    );
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| icfg.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::RelativeWorkdir(cwd));
    }
    let capabilities = spec::capabilities(&opts.cap_add, &opts.cap_drop)?;

    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for v in &opts.volumes {
        let (kind, vol_name, source) = match &v.source {
            VolumeSource::Named(n) => (
                "volume",
                Some(n.clone()),
                volume::create(paths, n)?.mountpoint,
            ),
            VolumeSource::Host(p) => {
                // Docker creates a missing bind source directory for -v (and binds a
                // file that is there as a file).
                if fs::symlink_metadata(p).is_err() {
                    fs::create_dir_all(p).map_err(|source| Error::BindSource {
                        path: p.clone(),
                        source,
                    })?;
                }
                ("bind", None, p.clone())
            }
        };
        binds.push(BindMount {
            source: source.clone(),
            destination: v.destination.clone(),
            read_only: v.read_only,
        });
        mounts.push(MountRecord {
            kind: kind.into(),
            name: vol_name,
            source,
            destination: v.destination.clone(),
            read_only: v.read_only,
        });
    }

    let dir = paths.container(&id);
    let cgroup2 = matches!(Hierarchy::detect()?, Hierarchy::V2 { .. });
    let run = RunConfig {
        hostname: hostname.clone(),
        args,
        env,
        cwd,
        user: exec_user,
        capabilities,
        read_only: opts.read_only,
        terminal: opts.tty,
        resources: opts.resources.clone(),
        rlimits: opts.ulimits.clone(),
        network: network.clone(),
        binds,
        etc_dir: dir.join("etc"),
        cgroups_path: format!("{}/{id}", paths.cgroup_parent),
        cgroup2,
    };
    let mut spec = spec::generate(&run)?;
    spec.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path(dir.join("merged"))
            .readonly(opts.read_only)
            .build()
            .map_err(spec::Error::from)?,
    ));

    let layers_dir = paths.layers();
    let mut layer_names: Vec<String> = image::without_repeats(layers)
        .iter()
        .map(|l| {
            l.strip_prefix(&layers_dir)
                .map_or_else(|_| l.display().to_string(), |r| r.display().to_string())
        })
        .collect();
    if layer_names.is_empty() {
        // overlayfs needs a lower layer; an image without layers gets an empty one.
        layer_names.push(dir.join("empty").display().to_string());
    }
    let config = Config {
        id: id.clone(),
        name,
        created: SystemTime::now(),
        image: opts.image.clone(),
        image_id: base.image_id.to_string(),
        rootfs: Rootfs {
            layers_dir,
            layers: layer_names,
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        },
        spec,
        restart,
        auto_remove: opts.auto_remove,
        stop_signal: opts
            .stop_signal
            .clone()
            .or_else(|| icfg.and_then(|c| c.stop_signal().clone()))
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: opts.stop_timeout.unwrap_or(10),
        log: opts.log,
        network: network.clone(),
        mounts,
        interactive: opts.interactive,
        labels: opts.labels.clone(),
    };

    let _lock =
        Lock::exclusive(&paths.containers().join(".lock")).map_err(|source| Error::Files {
            path: paths.containers(),
            source,
        })?;
    let container = container::create(paths, &config)?;
    let attachments = endpoint::Attachments {
        name: config.name.clone(),
        hostname: hostname.clone(),
        ports,
        links: net_plan.links,
        exposed,
        ..Default::default()
    };
    let result = write_files(&container, &hostname, &network).and_then(|()| {
        endpoint::create(
            paths,
            &container.dir,
            &id,
            attachments,
            &network,
            &opts.network_aliases,
        )
        .map_err(Error::from)
    });
    if let Err(e) = result {
        let _ = endpoint::release(paths, &container.dir, &id);
        let _ = fs::remove_dir_all(&container.dir);
        return Err(e);
    }
    Ok(container)
}

fn write_files(c: &Container, hostname: &str, network: &NetworkMode) -> Result<(), Error> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Files { path, source }
    };
    for d in ["upper", "work", "merged", "etc"] {
        let p = c.dir.join(d);
        fs::create_dir_all(&p).map_err(err(&p))?;
    }
    if c.config
        .rootfs
        .layers
        .first()
        .is_some_and(|l| l.starts_with('/'))
    {
        let p = c.dir.join("empty");
        fs::create_dir_all(&p).map_err(err(&p))?;
    }
    // On a bridge network, the endpoint writes the full file next.
    let hosts = match network {
        NetworkMode::Host => host_file("/etc/hosts", "127.0.0.1\tlocalhost\n"),
        _ => net::hosts::render(&[], &[]),
    };
    let etc = c.dir.join("etc");
    for (file, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", host_file("/etc/resolv.conf", "")),
    ] {
        let p = etc.join(file);
        fs::write(&p, content).map_err(err(&p))?;
    }
    Ok(())
}
