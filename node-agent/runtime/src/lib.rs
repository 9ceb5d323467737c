//! The OCI runtime core: an OCI runtime `Spec` and a root filesystem in, an isolated
//! process out. It knows nothing of images, networks, container names or supervision:
//! those belong to the engine, which drives it.

pub mod bundle;
pub mod cgroup;
pub mod exec;
pub mod init;
pub mod mounts;
pub mod pid;
pub mod process;
pub mod program;
pub mod tty;
pub mod user;

/// The `PATH` a process gets when neither the image nor the user sets one, and where
/// a bare program name is looked up then.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
