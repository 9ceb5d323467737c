//! The container runtime: OCI runtime `Spec` in, an isolated running process out.

pub mod cgroup;
pub mod container;
pub mod create;
pub mod exec;
pub mod init;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod options;
pub mod spec;
pub mod sys;
pub mod tty;
pub mod user;

use crate::paths::Paths;

/// A container's use of an image, as the image store needs to know before removing one.
#[derive(Clone, Debug)]
pub struct ImageUse {
    pub image_id: String,
    pub container: String,
    pub running: bool,
}

/// Which images the containers on this host were made from.
pub fn images_in_use(paths: &Paths) -> Result<Vec<ImageUse>, container::Error> {
    Ok(container::list(paths)?
        .into_iter()
        .map(|c| ImageUse {
            running: c.is_running(),
            image_id: c.config.image_id.clone(),
            container: c.config.name.clone(),
        })
        .collect())
}
